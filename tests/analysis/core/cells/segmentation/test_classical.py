"""Classical segmenter: accuracy on hand-outlined real tiles, structure, rules, IHC."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from analysis.core.cells.classes import CellClass
from analysis.core.cells.segmentation.base import RESULT_COLUMNS
from analysis.core.cells.segmentation.classical import (
    ClassicalSegmenter,
    ClassRules,
    SegmentationInputError,
    classify_nuclei,
    h_maxima,
    segment_image_file,
    segment_ihc_nuclei,
    segment_in_tiles,
)
from analysis.core.cells.segmentation.metrics import (
    aggregated_jaccard_index,
    detection_scores,
    dice_coefficient,
    polygons_to_label_image,
    read_geojson_polygons,
)
from analysis.core.cells.stain import HDAB_DEFAULT, HE_DEFAULT, od_to_rgb

GBM_TILES = ("01", "02", "03", "04", "05")
GBM_MPP = 0.5  # SOURCES.md: "about 0.5 um/px"


def _gbm(shared_file, name: str) -> tuple[np.ndarray, np.ndarray]:
    rgb = tifffile.imread(shared_file(f"nuclei/gbm/{name}.tif"))[..., :3]
    truth = polygons_to_label_image(
        polygons=read_geojson_polygons(path=shared_file(f"nuclei/gbm/{name}.geojson")),
        shape=rgb.shape[:2],
    )
    return rgb, truth


def _check_result(df: pd.DataFrame, shape: tuple[int, int]) -> None:
    assert tuple(df.columns) == RESULT_COLUMNS
    assert df["x"].dtype == np.float64 and df["y"].dtype == np.float64
    assert df["prob"].dtype == np.float32 and df["area_px"].dtype == np.float32
    assert df["x"].between(0, shape[1] - 1).all() and df["y"].between(0, shape[0] - 1).all()
    assert set(df["cls"]) <= {c.value for c in CellClass}
    for contour in df["contour"]:
        assert contour.dtype == np.int32 and contour.ndim == 2 and contour.shape[1] == 2
        assert contour[:, 0].min() >= 0 and contour[:, 0].max() < shape[1]
        assert contour[:, 1].min() >= 0 and contour[:, 1].max() < shape[0]


def _disk_image(*, centres, radius: float, shape=(96, 96), stain_vectors=HE_DEFAULT.vectors,
                nucleus_od: float = 0.8, background_od: float = 0.1) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    h = np.zeros(shape)
    for cx, cy in centres:
        h[(xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2] = nucleus_od
    conc = np.stack([h, np.full(shape, background_od)], axis=-1)  # hematoxylin, eosin/DAB
    return od_to_rgb(od=conc @ stain_vectors[:2])


def test_gbm_accuracy_meets_target(shared_file):
    """The issue's target: detection F1 (IoU >= 0.5) >= 0.75 averaged over the 5 tiles.

    Scored on the product's output (the returned contours, rasterised), not on an
    internal label image. Measured: F1 0.851, AJI 0.707, Dice 0.864 (docs/segmentation.md).
    """
    segmenter = ClassicalSegmenter()
    f1, aji, dice = [], [], []
    for name in GBM_TILES:
        rgb, truth = _gbm(shared_file, name)
        result = segmenter.segment(rgb=rgb, mpp=GBM_MPP)
        _check_result(result, rgb.shape[:2])
        pred = polygons_to_label_image(polygons=result["contour"], shape=rgb.shape[:2])
        f1.append(detection_scores(truth=truth, pred=pred).f1)
        aji.append(aggregated_jaccard_index(truth=truth, pred=pred))
        dice.append(dice_coefficient(truth=truth, pred=pred))
    assert np.mean(f1) >= 0.75, f1
    assert min(f1) >= 0.70, f1
    assert np.mean(aji) >= 0.65, aji
    assert np.mean(dice) >= 0.80, dice


def test_result_matches_label_image_and_info(shared_file):
    rgb, _ = _gbm(shared_file, "02")
    segmenter = ClassicalSegmenter()
    labels, measurements = segmenter.segment_labels(rgb=rgb, mpp=GBM_MPP)
    result = segmenter.segment(rgb=rgb, mpp=GBM_MPP)
    assert len(result) == labels.max() == len(measurements)
    # Contours rasterise back to exactly the label image.
    raster = polygons_to_label_image(polygons=result["contour"], shape=labels.shape)
    assert ((raster > 0) == (labels > 0)).mean() > 0.999
    assert np.allclose(result["area_px"], np.bincount(labels.ravel())[1:])
    assert segmenter.info.approximate is True and segmenter.info.name == "classical-v1"
    assert segmenter.info.params["min_area_um2"] == 12.0


def test_parameters_scale_with_mpp(shared_file):
    rgb, _ = _gbm(shared_file, "01")
    segmenter = ClassicalSegmenter()
    at_half = segmenter.segment(rgb=rgb, mpp=0.5)
    doubled = np.ascontiguousarray(np.repeat(np.repeat(rgb, 2, axis=0), 2, axis=1))
    at_quarter = segmenter.segment(rgb=doubled, mpp=0.25)
    assert abs(len(at_quarter) - len(at_half)) <= 0.1 * len(at_half)
    # Same nuclei, same size in um2 (pixel areas 4x).
    assert np.median(at_quarter["area_px"]) / 4 == pytest.approx(np.median(at_half["area_px"]), rel=0.1)


def test_touching_nuclei_are_split_and_blank_is_empty():
    # Two 8-px-radius disks whose centres are 13 px apart overlap: one blob, two nuclei.
    rgb = _disk_image(centres=[(40, 48), (53, 48), (20, 20)], radius=8)
    result = ClassicalSegmenter().segment(rgb=rgb, mpp=0.5)
    assert len(result) == 3
    xs = np.sort(result["x"].to_numpy())
    assert xs[0] == pytest.approx(20, abs=1.0)
    assert xs[1] < 46.5 < xs[2]  # the split runs between the two touching centres
    blank = np.full((64, 64, 3), 245, dtype=np.uint8)
    assert len(ClassicalSegmenter().segment(rgb=blank, mpp=0.5)) == 0


def test_h_maxima_matches_scikit_image():
    from scipy import ndimage as ndi
    from skimage.morphology import h_maxima as sk_h_maxima

    mask = np.zeros((80, 80), dtype=bool)
    yy, xx = np.mgrid[:80, :80]
    for cx, cy, r in [(20, 20, 10), (33, 22, 9), (60, 60, 12), (60, 30, 5)]:
        mask |= (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    distance = ndi.distance_transform_edt(mask)
    quantised = np.round(distance * 16) / 16  # our grid: 1/16 px
    for h in (0.5, 1.0, 2.0):
        ours = h_maxima(image=quantised, height=h)
        theirs = sk_h_maxima(quantised, h).astype(bool)
        assert np.array_equal(ours, theirs), h


def _measurements(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"area_um2": [60.0] * n, "elongation": [1.2] * n, "solidity": [0.95] * n, "h_mean": [1.0] * n}
    base.update(columns)
    return pd.DataFrame(base)


def test_class_rules_each_fire():
    m = _measurements(
        #          spindle lympho neutro macro  tumour other  dark-small-but-elongated
        area_um2=[50.0, 25.0, 45.0, 60.0, 110.0, 20.0, 25.0],
        elongation=[3.5, 1.1, 1.3, 1.6, 1.3, 1.2, 1.8],
        solidity=[0.95, 0.96, 0.75, 0.88, 0.92, 0.95, 0.96],
        h_mean=[1.0, 1.5, 1.0, 0.6, 0.9, 0.7, 1.5],
    )
    got = list(classify_nuclei(measurements=m))
    assert got == ["stroma", "lymphocyte", "neutrophil", "macrophage", "tumour", "other", "other"]
    # Darkness is relative to the tile's median nucleus: halve all stain, same classes.
    half = m.assign(h_mean=m["h_mean"] / 2)
    assert list(classify_nuclei(measurements=half)) == got
    # A rule threshold moves the decision.
    assert classify_nuclei(measurements=m, rules=ClassRules(spindle_elongation=4.0))[0] != "stroma"


def test_ihc_nuclei_on_real_images(shared_file):
    ihc = np.asarray(Image.open(shared_file("ihc/skimage-ihc.png")))[..., :3]
    result = segment_ihc_nuclei(rgb=ihc, mpp=0.5)
    _check_result(result, ihc.shape[:2])
    # 512 x 512 px of colon mucosa at ~0.5 um/px: about 200 nuclei by eye.
    assert 120 <= len(result) <= 400, len(result)
    assert set(result["cls"]) == {"tumour", "other"}
    kidney = tifffile.imread(shared_file("ihc/kidney-ihc-48-5.tif"))[..., :3]
    result = segment_ihc_nuclei(rgb=kidney, mpp=0.5)
    _check_result(result, kidney.shape[:2])
    # Mostly glass: a few nuclei at most, all on the one tissue fragment (x 270-420, y 490-590).
    assert len(result) <= 50
    assert result["x"].between(260, 430).all() and result["y"].between(480, 600).all()


def test_ihc_brown_membranes_are_not_nuclei():
    # Four blue nuclei, each in a strong brown membrane ring (HER2 3+ look).
    shape = (120, 120)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    h = np.zeros(shape)
    dab = np.zeros(shape)
    centres = [(30, 30), (30, 90), (90, 30), (90, 90)]
    for cx, cy in centres:
        r = np.hypot(xx - cx, yy - cy)
        h[r <= 7] = 0.6
        dab[(r >= 16) & (r <= 18)] = 1.2  # 1 um membrane at 0.5 um/px, strong DAB
    rgb = od_to_rgb(od=np.stack([h, dab], axis=-1) @ HDAB_DEFAULT.vectors[:2])
    result = segment_ihc_nuclei(rgb=rgb, mpp=0.5)
    assert len(result) == 4
    found = sorted(zip(np.round(result["x"]), np.round(result["y"])))
    assert found == sorted((float(x), float(y)) for x, y in centres)


@pytest.mark.parametrize(
    "rgb, mpp, match",
    [
        (np.zeros((32, 32), np.uint8), 0.5, "RGB"),
        (np.zeros((32, 32, 3), np.float32), 0.5, "uint8"),
        (np.zeros((4, 4, 3), np.uint8), 0.5, "too small"),
        (np.zeros((32, 32, 3), np.uint8), 0.0, "mpp"),
        (np.zeros((32, 32, 3), np.uint8), float("nan"), "mpp"),
    ],
)
def test_bad_input_raises(rgb, mpp, match):
    with pytest.raises(SegmentationInputError, match=match):
        ClassicalSegmenter().segment(rgb=rgb, mpp=mpp)


def test_tiles_stitch_without_loss_or_duplicates():
    # A grid of well-separated nuclei; tiles of 100 px with 20 px overlap cut through many.
    centres = [(x, y) for x in range(12, 300, 24) for y in range(12, 200, 24)]
    rgb = _disk_image(centres=centres, radius=6, shape=(200, 300))
    segmenter = ClassicalSegmenter()
    whole = segmenter.segment(rgb=rgb, mpp=0.5)
    tiled = segment_in_tiles(rgb=rgb, mpp=0.5, segment=segmenter.segment, tile_px=100, overlap_um=10.0)
    assert len(whole) == len(centres)
    assert len(tiled) == len(centres)
    got = np.array(sorted(zip(np.round(tiled["x"]), np.round(tiled["y"]))))
    assert np.array_equal(got, np.array(sorted(centres), dtype=float))
    # Contours are shifted with their centroids.
    for (x, y), contour in zip(tiled[["x", "y"]].to_numpy(), tiled["contour"]):
        assert abs(contour[:, 0].mean() - x) < 2 and abs(contour[:, 1].mean() - y) < 2


def test_segment_image_file(tmp_path, shared_file):
    rgb = _disk_image(centres=[(20, 20), (60, 40)], radius=7, shape=(64, 96))
    path = tmp_path / "tile.tif"
    # 20,000 px/cm = 0.5 um/px, as a scanner writes it.
    tifffile.imwrite(path, rgb, resolution=(20000, 20000), resolutionunit="CENTIMETER")
    result = segment_image_file(image_path=path, stain="he", mpp=None)
    assert len(result) == 2
    assert result.attrs["mpp"] == pytest.approx(0.5) and result.attrs["mpp_source"] == "file"
    assert result.attrs["segmenter"]["name"] == "classical-v1"
    plain = tmp_path / "tile.png"
    Image.fromarray(rgb).save(plain)
    with pytest.raises(SegmentationInputError, match="resolution"):
        segment_image_file(image_path=plain, stain="he", mpp=None)
    with pytest.raises(SegmentationInputError, match="stain"):
        segment_image_file(image_path=plain, stain="pas", mpp=0.5)
    with pytest.raises(SegmentationInputError, match="does not exist"):
        segment_image_file(image_path=tmp_path / "nope.png", stain="he", mpp=0.5)
    # An IHC image submitted as H&E is segmented, with a warning for the UI.
    ihc = segment_image_file(image_path=shared_file("ihc/skimage-ihc.png"), stain="he", mpp=0.5)
    assert "looks like ihc" in ihc.attrs["warning"]
    ihc = segment_image_file(image_path=shared_file("ihc/skimage-ihc.png"), stain="ihc", mpp=0.5)
    assert ihc.attrs["warning"] == "" and len(ihc) > 100
    assert ihc.attrs["stain_estimate"]["estimated"] is True
