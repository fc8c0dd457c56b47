"""convex_area (exact hull pixel count) and the parallel nucleus_features: same values as skimage / serial / regionprops."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from skimage.measure import regionprops
from skimage.morphology import convex_hull_image

from analysis.core.cells import features
from analysis.core.cells.convex import convex_area

CASE = "scmtop/cmu-1-small-region"


def _skimage_count(img):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return int(np.sum(convex_hull_image(img)))


@pytest.mark.parametrize("seed", range(4))
def test_convex_area_equals_skimage_on_random_blobs(seed):
    rng = np.random.default_rng(seed)
    for _ in range(800):  # lines, single pixels, scattered pixels, holes
        h, w = rng.integers(1, 14, 2)
        img = rng.random((h, w)) < rng.uniform(0.05, 0.9)
        if img.any():
            assert convex_area(img) == _skimage_count(img), img.astype(int)


def test_convex_area_of_empty_mask_is_zero():
    assert convex_area(np.zeros((3, 4), dtype=bool)) == 0


def test_solidity_equals_regionprops_on_reference_nuclei(shared_file):
    nuclei = json.loads(shared_file(f"{CASE}/cmu-1-small-region.json").read_text())["nuc"].values()
    for nucleus in nuclei:
        contour = np.asarray(nucleus["contour"])
        mask, _ = features.nucleus_mask(contour=contour)
        props = regionprops(mask)[0]
        assert convex_area(props.image) == _skimage_count(props.image)
        solidity = features.morph_features(contour=contour, mask=mask)["Morph_Solidity"]
        assert np.float64(solidity).view(np.int64) == np.float64(props.solidity).view(np.int64)


@pytest.fixture(scope="module")
def reference_nuclei(shared_file):
    nuc = list(json.loads(shared_file(f"{CASE}/cmu-1-small-region.json").read_text())["nuc"].values())[:700]
    return [np.asarray(n["contour"], dtype=np.int64) for n in nuc]


def test_nucleus_features_bit_identical_serial_parallel_and_skimage_hull(reference_nuclei, shared_file, monkeypatch):
    read, close = features.openslide_region_reader(slide_path=shared_file("slides/CMU-1-Small-Region.svs"))
    try:
        serial = features.nucleus_features(contours=reference_nuclei, read_region=read, workers=1)
        parallel = features.nucleus_features(contours=reference_nuclei, read_region=read, workers=2)
        # The path it replaced: nucleus by nucleus through regionprops, skimage's qhull hull.
        monkeypatch.setattr(features, "convex_area", _skimage_count)
        monkeypatch.setattr(features, "_MEASURE", features.measure_each)
        qhull = features.nucleus_features(contours=reference_nuclei, read_region=read, workers=1)
    finally:
        close()
    for other in (parallel, qhull):
        assert list(other.columns) == list(serial.columns)
        assert (other.dtypes == serial.dtypes).all()
        for column in serial.columns:
            a, b = serial[column].to_numpy(), other[column].to_numpy()
            if a.dtype.kind == "f":
                np.testing.assert_array_equal(a.view(np.int64), b.view(np.int64), err_msg=column)
            else:
                np.testing.assert_array_equal(a, b, err_msg=column)


def test_bad_contour_raises_before_any_read():
    def read(*_):
        raise AssertionError("no read expected")

    with pytest.raises(features.CellFeatureError):
        features.nucleus_features(contours=[np.zeros((3, 3))], read_region=read)


def test_parallel_features_finish_whatever_sigterm_handler_the_parent_has(reference_nuclei, shared_file):
    """A process whose SIGTERM only sets an event (an in-process worker loop did that) once hung
    the pool's shutdown forever: workers now exit on their sentinel and take default signals."""
    import signal
    import threading

    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    read, close = features.openslide_region_reader(slide_path=shared_file("slides/CMU-1-Small-Region.svs"))
    done = []
    try:
        thread = threading.Thread(target=lambda: done.append(
            features.nucleus_features(contours=reference_nuclei[:300], read_region=read, workers=2)), daemon=True)
        thread.start()
        thread.join(timeout=120)
    finally:
        close()
        signal.signal(signal.SIGTERM, previous)
    assert done and len(done[0]) == 300
