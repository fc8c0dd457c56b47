"""Metrics on tiny hand-made label images whose values are worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.core.cells.segmentation.metrics import (
    MetricInputError,
    aggregated_jaccard_index,
    detection_scores,
    dice_coefficient,
    polygons_to_label_image,
)


@pytest.fixture()
def pair() -> tuple[np.ndarray, np.ndarray]:
    """6 x 6. Truth: t1 = 2x2 block (4 px), t2 = 2x3 block (6 px).

    Pred: p5 covers t1 plus one column (6 px): inter 4, union 6, IoU 2/3.
          p7 is the lower row of t2 (3 px): inter 3, union 6, IoU 1/2.
          p9 is one pixel far away: a false positive.
    """
    truth = np.zeros((6, 6), dtype=np.int32)
    truth[0:2, 0:2] = 1
    truth[3:5, 2:5] = 2
    pred = np.zeros((6, 6), dtype=np.int32)
    pred[0:2, 0:3] = 5
    pred[4, 2:5] = 7
    pred[5, 5] = 9
    return truth, pred


def test_detection_scores_by_hand(pair):
    truth, pred = pair
    s = detection_scores(truth=truth, pred=pred, iou_threshold=0.5)
    assert (s.true_positives, s.false_positives, s.false_negatives) == (2, 1, 0)
    assert s.precision == pytest.approx(2 / 3)
    assert s.recall == pytest.approx(1.0)
    assert s.f1 == pytest.approx(4 / 5)  # 2 TP / (2 TP + FP + FN) = 4 / 5
    assert s.segmentation_quality == pytest.approx((2 / 3 + 1 / 2) / 2)  # 7 / 12
    assert s.panoptic_quality == pytest.approx(0.8 * 7 / 12)


def test_detection_threshold_is_inclusive_and_moves_matches(pair):
    truth, pred = pair
    # IoU of t2/p7 is exactly 0.5: a match at >= 0.5, not at 0.6.
    s = detection_scores(truth=truth, pred=pred, iou_threshold=0.6)
    assert (s.true_positives, s.false_positives, s.false_negatives) == (1, 2, 1)
    assert s.f1 == pytest.approx(2 / (2 + 3))


def test_dice_by_hand(pair):
    truth, pred = pair
    # |T| = 10, |P| = 6 + 3 + 1 = 10, |T n P| = 4 + 3 = 7 -> 14 / 20
    assert dice_coefficient(truth=truth, pred=pred) == pytest.approx(0.7)


def test_aji_by_hand(pair):
    truth, pred = pair
    # C = 4 + 3, U = 6 + 6 + |p9| = 13
    assert aggregated_jaccard_index(truth=truth, pred=pred) == pytest.approx(7 / 13)


def test_aji_reuses_a_prediction_for_two_truths():
    # Two 2-px truths under one 5-px prediction: both pair with it (AJI, not AJI+).
    truth = np.zeros((1, 5), dtype=np.int64)
    truth[0, 0:2] = 1
    truth[0, 3:5] = 2
    pred = np.ones((1, 5), dtype=np.int64)
    # C = 2 + 2; U = 5 + 5 (the prediction's union counted once per truth)
    assert aggregated_jaccard_index(truth=truth, pred=pred) == pytest.approx(0.4)
    # Neither truth reaches IoU 0.5 (2/5): no detection.
    assert detection_scores(truth=truth, pred=pred).f1 == 0.0


def test_aji_counts_missed_truth_in_union():
    truth = np.zeros((4, 4), dtype=np.int32)
    truth[0, 0:2] = 1  # matched exactly
    truth[3, 0:3] = 2  # missed: adds 3 to U
    pred = np.zeros((4, 4), dtype=np.int32)
    pred[0, 0:2] = 4
    assert aggregated_jaccard_index(truth=truth, pred=pred) == pytest.approx(2 / 5)


def test_perfect_and_empty():
    labels = np.zeros((5, 5), dtype=np.int32)
    labels[1:3, 1:3] = 3
    assert detection_scores(truth=labels, pred=labels * 2).f1 == 1.0
    assert aggregated_jaccard_index(truth=labels, pred=labels) == 1.0
    empty = np.zeros_like(labels)
    assert dice_coefficient(truth=empty, pred=empty) == 1.0
    assert detection_scores(truth=labels, pred=empty).recall == 0.0
    assert aggregated_jaccard_index(truth=labels, pred=empty) == 0.0


def test_polygons_rasterise_by_pixel_centres():
    # Square with corners at pixel centres (1,1) and (3,3): the 3 x 3 pixels it spans.
    labels = polygons_to_label_image(polygons=[[[1, 1], [3, 1], [3, 3], [1, 3]]], shape=(6, 6))
    assert labels.sum() == 9
    assert labels[1:4, 1:4].min() == 1
    # x is the column, y the row: a wide, short rectangle.
    labels = polygons_to_label_image(polygons=[[[0, 0], [4, 0], [4, 1], [0, 1]]], shape=(6, 6))
    assert labels[0:2, 0:5].all() and labels.sum() == 10


@pytest.mark.parametrize(
    "truth, pred",
    [
        (np.zeros((3, 3), np.int32), np.zeros((3, 4), np.int32)),
        (np.zeros((3, 3), np.float32), np.zeros((3, 3), np.int32)),
        (-np.ones((3, 3), np.int32), np.zeros((3, 3), np.int32)),
        (np.zeros((3, 3, 1), np.int32), np.zeros((3, 3, 1), np.int32)),
    ],
)
def test_bad_label_images_raise(truth, pred):
    with pytest.raises(MetricInputError):
        aggregated_jaccard_index(truth=truth, pred=pred)


def test_threshold_below_half_is_refused():
    with pytest.raises(MetricInputError, match="unique"):
        detection_scores(truth=np.zeros((2, 2), np.int32), pred=np.zeros((2, 2), np.int32), iou_threshold=0.3)
