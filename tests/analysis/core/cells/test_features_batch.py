"""features_batch: every column bit for bit equal to the per-nucleus definition in features.py."""
from __future__ import annotations

import json

import numpy as np
import pytest

from analysis.core.cells import features
from analysis.core.cells.features_batch import _fill, _segment_sum, measure_batch

CASE = "scmtop/cmu-1-small-region"


def _assert_bits_equal(expected: dict, got: dict) -> None:
    assert list(got) == list(expected) or sorted(got) == sorted(expected)
    for name, values in expected.items():
        a = np.asarray(values, dtype=np.float64)
        b = np.asarray(got[name], dtype=np.float64)
        assert a.shape == b.shape, name
        same = (a.view(np.int64) == b.view(np.int64)) | (np.isnan(a) & np.isnan(b))
        assert same.all(), f"{name}: {int((~same).sum())} nuclei differ, first {np.flatnonzero(~same)[:5]}"


def _crops(contours, rng):
    """Random grey crops of each nucleus_mask's shape (zeros included: they drop out of the GLCM)."""
    return [rng.integers(0, 256, features.nucleus_mask(contour=c)[0].shape, dtype=np.uint8) for c in contours]


def test_pairwise_sum_is_numpys_sum():
    rng = np.random.default_rng(0)
    lengths = np.array(list(range(1, 300)) + [1000, 4097], dtype=np.int64)
    values = rng.standard_normal(int(lengths.sum())) * rng.uniform(1, 1e4)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    sums = _segment_sum(values, starts, lengths)
    expected = [values[a : a + n].sum() for a, n in zip(starts, lengths)]
    np.testing.assert_array_equal(sums.view(np.int64), np.asarray(expected).view(np.int64))
    assert np.add.reduceat(values, starts).view(np.int64).tolist() != np.asarray(expected).view(np.int64).tolist()


def test_reference_nuclei_bit_for_bit(shared_file):
    """All 2,394 nuclei of the sc-MTOP reference case with their real pixels."""
    nuclei = json.loads(shared_file(f"{CASE}/cmu-1-small-region.json").read_text())["nuc"].values()
    contours = [np.asarray(n["contour"], dtype=np.int64) for n in nuclei]
    read, close = features.openslide_region_reader(slide_path=shared_file("slides/CMU-1-Small-Region.svs"))
    try:
        crops = []
        for contour in contours:
            mask, (x0, y0) = features.nucleus_mask(contour=contour)
            crops.append(features.rgb_to_gray(rgb=read(x0, y0, mask.shape[1], mask.shape[0])))
    finally:
        close()
    _assert_bits_equal(features.measure_each(contours, crops), measure_batch(contours, crops))


@pytest.mark.parametrize("seed", range(3))
def test_random_and_degenerate_polygons_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    contours = []
    for _ in range(400):
        kind = rng.integers(5)
        if kind == 0:  # star-convex blob, like a segmenter's outline
            n = int(rng.integers(8, 40))
            angle = np.sort(rng.uniform(0, 2 * np.pi, n))
            radius = rng.uniform(2, 25) * rng.uniform(0.6, 1.0, n)
            points = np.c_[radius * np.cos(angle), radius * np.sin(angle)]
        elif kind == 1:  # random (often self-intersecting) polygon
            points = rng.uniform(-15, 15, (int(rng.integers(3, 12)), 2))
        elif kind == 2:  # a point, a segment, a collinear run
            points = np.outer(np.arange(int(rng.integers(1, 5))), rng.integers(-3, 4, 2))
        elif kind == 3:  # tiny square or triangle
            points = rng.integers(0, 4, (int(rng.integers(3, 5)), 2))
        else:  # long thin sliver
            points = np.c_[np.linspace(0, rng.uniform(10, 60), 6), rng.uniform(-1.5, 1.5, 6)]
        contour = np.round(points).astype(np.int64) + rng.integers(0, 5000, 2)
        mask, _ = features.nucleus_mask(contour=contour)
        if mask.any():
            contours.append(contour)
    crops = _crops(contours, rng)
    _assert_bits_equal(features.measure_each(contours, crops), measure_batch(contours, crops))


def test_fill_equals_fill_contour_or_both_refuse():
    rng = np.random.default_rng(7)
    for _ in range(3000):
        points = rng.integers(-6, 30, (int(rng.integers(1, 10)), 2))
        try:
            expected = features.fill_contour(points=points, shape=(24, 24))
        except features.CellFeatureError:
            expected = None
        mask, ok = _fill(points[:, 0].astype(np.int64), points[:, 1].astype(np.int64), 24, 24)
        if expected is None:
            assert not ok, points
        else:
            assert ok and np.array_equal(mask, expected), points


def test_nucleus_without_a_grey_pair_and_bad_input():
    contour = np.array([[10, 10], [14, 10], [14, 14], [10, 14]], dtype=np.int64)
    dark = np.zeros(features.nucleus_mask(contour=contour)[0].shape, np.uint8)  # no GLCM pair at all
    _assert_bits_equal(features.measure_each([contour], [dark]), measure_batch([contour], [dark]))
    with pytest.raises(features.CellFeatureError, match="nucleus 0: grey crop"):
        measure_batch([contour], [dark[:-1]])
    bow_tie = np.array([[0, 0], [8, 8], [8, 0], [0, 8], [4, 20]], dtype=np.int64)
    try:
        features.fill_contour(points=bow_tie, shape=(30, 30))
    except features.CellFeatureError:
        with pytest.raises(features.CellFeatureError, match="odd number"):
            measure_batch([bow_tie], _crops([bow_tie], np.random.default_rng(0)))
