"""Instance-segmentation metrics on label images: detection F1 / PQ, Dice, AJI.

Definitions follow the HoVer-Net repository's ``metrics/stats_utils.py`` (used by its
``compute_stats.py``; Graham et al., Med Image Anal 2019):

- ``detection_scores``: a true and a predicted nucleus are a match when their IoU is
  >= ``iou_threshold``. For thresholds >= 0.5 a nucleus can overlap at most one
  other nucleus by more than half of their union, so the matching is unique without an
  assignment solver (HoVer-Net ``get_fast_pq``, Kirillov et al. 2019). F1 = 2TP /
  (2TP + FP + FN) (= PQ's detection quality DQ); SQ = mean IoU of the matches; PQ = DQ*SQ.
  HoVer-Net's ``get_fast_pq`` uses IoU > 0.5; we use >= to match "IoU >= 0.5" in our
  spec; the two only differ on exact ties.
- ``dice_coefficient``: foreground Dice, 2|A n B| / (|A| + |B|), HoVer-Net ``get_dice_1``.
- ``aggregated_jaccard_index``: AJI of Kumar et al., IEEE TMI 36(7):1550-1560, 2017:
  every true nucleus G_i is paired with the prediction S_j of highest IoU; C += |G_i n S_j|,
  U += |G_i u S_j|; true nuclei without any overlapping prediction and predictions never
  paired add their area to U; AJI = C / U. A prediction may be paired with several true
  nuclei (this is AJI, not AJI+), exactly as HoVer-Net ``get_fast_aji``.

Label images: 2-D integer arrays, 0 = background, each nucleus one positive label
(labels need not be consecutive).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from skimage.draw import polygon as draw_polygon


class MetricInputError(ValueError):
    """Label images or polygons a metric cannot be computed on."""


@dataclass(frozen=True)
class DetectionScores:
    true_positives: int
    false_positives: int
    false_negatives: int
    precision: float
    recall: float
    f1: float  # = PQ detection quality (DQ)
    segmentation_quality: float  # SQ: mean IoU of matched pairs (NaN if none)
    panoptic_quality: float  # PQ = DQ * SQ (0 if no match)


@dataclass(frozen=True)
class _Overlap:
    """Sparse contingency table of two label images."""

    true_ids: np.ndarray  # (n_true,) labels present in truth
    pred_ids: np.ndarray  # (n_pred,)
    true_areas: np.ndarray  # (n_true,) pixel counts
    pred_areas: np.ndarray  # (n_pred,)
    pair_true: np.ndarray  # (k,) index into true_ids of each overlapping pair
    pair_pred: np.ndarray  # (k,) index into pred_ids
    pair_inter: np.ndarray  # (k,) intersection pixel counts

    @property
    def pair_union(self) -> np.ndarray:
        return self.true_areas[self.pair_true] + self.pred_areas[self.pair_pred] - self.pair_inter

    @property
    def pair_iou(self) -> np.ndarray:
        return self.pair_inter / self.pair_union


def _check_labels(*, truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(truth)
    pred = np.asarray(pred)
    for name, arr in (("truth", truth), ("pred", pred)):
        if arr.ndim != 2:
            raise MetricInputError(f"{name} must be a 2-D label image, got shape {arr.shape}")
        if not np.issubdtype(arr.dtype, np.integer):
            raise MetricInputError(f"{name} must hold integer labels, got dtype {arr.dtype}")
        if arr.size and arr.min() < 0:
            raise MetricInputError(f"{name} holds negative labels; 0 is background, nuclei > 0")
    if truth.shape != pred.shape:
        raise MetricInputError(f"truth shape {truth.shape} differs from pred shape {pred.shape}")
    return truth.astype(np.int64, copy=False), pred.astype(np.int64, copy=False)


def _overlap(*, truth: np.ndarray, pred: np.ndarray) -> _Overlap:
    truth, pred = _check_labels(truth=truth, pred=pred)
    true_ids, true_areas = np.unique(truth[truth > 0], return_counts=True)
    pred_ids, pred_areas = np.unique(pred[pred > 0], return_counts=True)
    both = (truth > 0) & (pred > 0)
    # One code per (true, pred) pair of an overlapping pixel: counts = intersections.
    width = int(pred.max()) + 1
    codes, inter = np.unique(truth[both] * width + pred[both], return_counts=True)
    pair_true = np.searchsorted(true_ids, codes // width)
    pair_pred = np.searchsorted(pred_ids, codes % width)
    return _Overlap(
        true_ids=true_ids,
        pred_ids=pred_ids,
        true_areas=true_areas.astype(np.float64),
        pred_areas=pred_areas.astype(np.float64),
        pair_true=pair_true,
        pair_pred=pair_pred,
        pair_inter=inter.astype(np.float64),
    )


def detection_scores(
    *, truth: np.ndarray, pred: np.ndarray, iou_threshold: float = 0.5
) -> DetectionScores:
    """Detection precision / recall / F1 at an IoU threshold, plus SQ and PQ.

    Requires ``iou_threshold >= 0.5`` so that matches are unique (see module docstring).
    """
    if not 0.5 <= iou_threshold <= 1.0:
        raise MetricInputError(
            f"iou_threshold must be in [0.5, 1] for unique matching, got {iou_threshold}"
        )
    ov = _overlap(truth=truth, pred=pred)
    iou = ov.pair_iou
    matched = iou >= iou_threshold
    tp = int(matched.sum())
    fp = len(ov.pred_ids) - tp
    fn = len(ov.true_ids) - tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    denominator = 2 * tp + fp + fn
    f1 = 2 * tp / denominator if denominator else 1.0  # both empty: perfect agreement
    sq = float(iou[matched].mean()) if tp else float("nan")
    pq = f1 * sq if tp else 0.0
    return DetectionScores(
        true_positives=tp,
        false_positives=fp,
        false_negatives=fn,
        precision=precision,
        recall=recall,
        f1=f1,
        segmentation_quality=sq,
        panoptic_quality=pq,
    )


def dice_coefficient(*, truth: np.ndarray, pred: np.ndarray) -> float:
    """Foreground (pixel) Dice 2|A n B| / (|A| + |B|); 1.0 when both are empty."""
    truth, pred = _check_labels(truth=truth, pred=pred)
    a = truth > 0
    b = pred > 0
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return 2.0 * int((a & b).sum()) / total


def aggregated_jaccard_index(*, truth: np.ndarray, pred: np.ndarray) -> float:
    """Aggregated Jaccard Index (Kumar et al. 2017), as HoVer-Net ``get_fast_aji``."""
    ov = _overlap(truth=truth, pred=pred)
    if len(ov.true_ids) == 0 and len(ov.pred_ids) == 0:
        return 1.0
    intersection = 0.0
    union = 0.0
    paired_true = np.zeros(len(ov.true_ids), dtype=bool)
    paired_pred = np.zeros(len(ov.pred_ids), dtype=bool)
    if len(ov.pair_true):
        iou = ov.pair_iou
        # Best prediction per true nucleus: sort by (true, -iou) and take each group's first.
        # Ties go to the lower prediction label, as np.argmax does in HoVer-Net.
        order = np.lexsort((ov.pair_pred, -iou, ov.pair_true))
        first = np.ones(len(order), dtype=bool)
        first[1:] = ov.pair_true[order][1:] != ov.pair_true[order][:-1]
        best = order[first]
        intersection = float(ov.pair_inter[best].sum())
        union = float(ov.pair_union[best].sum())
        paired_true[ov.pair_true[best]] = True
        paired_pred[ov.pair_pred[best]] = True
    union += float(ov.true_areas[~paired_true].sum()) + float(ov.pred_areas[~paired_pred].sum())
    return intersection / union if union else 0.0


def polygons_to_label_image(
    *, polygons: Iterable[np.ndarray | Sequence[Sequence[float]]], shape: tuple[int, int]
) -> np.ndarray:
    """Rasterise polygons ([[x, y], ...] in pixel coordinates, y down) into a label image.

    Polygon k (in iteration order) gets label k + 1; a pixel belongs to a polygon when its
    centre lies inside (skimage.draw.polygon). Where polygons overlap the later one wins.
    Polygons with fewer than 3 points or no pixel inside are skipped (their label unused).
    """
    if len(shape) != 2 or min(shape) <= 0:
        raise MetricInputError(f"shape must be (height, width) > 0, got {shape}")
    labels = np.zeros(shape, dtype=np.int32)
    for index, points in enumerate(polygons, start=1):
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise MetricInputError(f"polygon {index} must be an (N, 2) array of [x, y], got {pts.shape}")
        if len(pts) < 3:
            continue
        rr, cc = draw_polygon(pts[:, 1], pts[:, 0], shape=shape)
        labels[rr, cc] = index
    return labels


def read_geojson_polygons(*, path) -> list[np.ndarray]:
    """Outer rings of the Polygon / MultiPolygon features of a GeoJSON file, as (N, 2) [x, y].

    A small reader for hand-outline ground truth (QuPath export style); the product's
    full GeoJSON IO lives in analysis/core/cells/table.py.
    """
    import json
    from pathlib import Path

    data = json.loads(Path(path).read_text())
    features = data.get("features") if isinstance(data, dict) else data
    if not isinstance(features, list):
        raise MetricInputError(f"{path}: not a GeoJSON FeatureCollection or feature list")
    rings: list[np.ndarray] = []
    for feature in features:
        geometry = feature.get("geometry") or {}
        kind = geometry.get("type")
        if kind == "Polygon":
            rings.append(np.asarray(geometry["coordinates"][0], dtype=np.float64))
        elif kind == "MultiPolygon":
            rings.extend(np.asarray(p[0], dtype=np.float64) for p in geometry["coordinates"])
    return rings
