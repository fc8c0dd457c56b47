"""Phantom H&E / HER2-IHC pair: readable slides, complete truth, pixels that match the truth."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import openslide
import pandas as pd
import pytest
import tifffile
from skimage.color import rgb2hed

from analysis.core.cells.classes import CellClass, Her2Class
from analysis.core.demo.phantom import (
    MEMBRANE_RADIUS_UM,
    PhantomError,
    ensure_phantom_pair,
    expected_her2_score,
    generate_phantom_pair,
)

SIZE = 2048
SEED = 3
MPP = 0.5


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return generate_phantom_pair(out_dir=tmp_path_factory.mktemp("phantom"), width=SIZE, height=SIZE, mpp=MPP, seed=SEED)


@pytest.fixture(scope="module")
def truth(pair) -> pd.DataFrame:
    return pd.read_parquet(pair.truth_path)


@pytest.fixture(scope="module")
def he_hed(pair) -> tuple[np.ndarray, np.ndarray]:
    rgb = tifffile.imread(pair.he_path, key=0)
    return rgb, rgb2hed(rgb)


@pytest.fixture(scope="module")
def ihc_hed(pair) -> np.ndarray:
    return rgb2hed(tifffile.imread(pair.ihc_path, key=0))


def disc_values(channel: np.ndarray, *, x: float, y: float, radius_px: float) -> np.ndarray:
    r = int(np.ceil(radius_px))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    inside = xx**2 + yy**2 <= radius_px**2
    ys, xs = (yy[inside] + int(y)), (xx[inside] + int(x))
    ok = (ys >= 0) & (ys < channel.shape[0]) & (xs >= 0) & (xs < channel.shape[1])
    return channel[ys[ok], xs[ok]]


def ring_sectors(dab: np.ndarray, *, x: float, y: float, sectors: int = 36) -> np.ndarray:
    """Mean DAB per angular sector of the membrane annulus (radius 6 um +- 1 um)."""
    centre = MEMBRANE_RADIUS_UM / MPP
    r = int(centre + 2 / MPP + 1)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    rho = np.hypot(xx, yy)
    band = np.abs(rho - centre) <= 1.0 / MPP
    sector = ((np.arctan2(yy, xx) + np.pi) / (2 * np.pi) * sectors).astype(int) % sectors
    patch = dab[int(y) - r : int(y) + r + 1, int(x) - r : int(x) + r + 1]
    return np.array([patch[band & (sector == k)].mean() for k in range(sectors)])


def test_slides_open_in_openslide_with_levels_and_mpp(pair):
    for path in (pair.he_path, pair.ihc_path):
        slide = openslide.OpenSlide(path)
        assert slide.properties["openslide.vendor"] == "generic-tiff"
        assert slide.level_dimensions == ((SIZE, SIZE), (SIZE // 2, SIZE // 2))
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(MPP)
        assert float(slide.properties["openslide.mpp-y"]) == pytest.approx(MPP)
        slide.close()


def test_truth_table_has_every_class_and_consistent_her2(pair, truth):
    assert list(truth.columns) == ["cell_id", "x", "y", "cls", "radius_um", "her2_class", "ihc_x", "ihc_y"]
    assert truth["cell_id"].is_unique
    phantom_classes = {c.value for c in CellClass if c is not CellClass.OTHER}
    assert set(truth["cls"]) == phantom_classes
    tumour = truth["cls"] == CellClass.TUMOUR.value
    assert truth.loc[tumour, "her2_class"].notna().all()
    assert truth.loc[~tumour, "her2_class"].isna().all()
    assert set(truth.loc[tumour, "her2_class"]) <= {h.value for h in Her2Class}
    assert truth["x"].between(0, SIZE - 1).all() and truth["y"].between(0, SIZE - 1).all()
    assert truth.groupby("cls")["radius_um"].median()["lymphocyte"] < truth.groupby("cls")["radius_um"].median()["tumour"]
    stored = json.loads(pair.truth_json_path.read_text())
    assert stored["class_counts"] == truth["cls"].value_counts().to_dict() == pair.class_counts
    assert stored["her2_counts"] == {h.value: int((truth["her2_class"] == h.value).sum()) for h in Her2Class}
    assert stored["expected_her2_score"] == expected_her2_score(counts=stored["her2_counts"]) == 3
    assert (stored["width"], stored["height"], stored["mpp"]) == (SIZE, SIZE, MPP)


def test_ihc_transform_is_the_default_known_offset(pair, truth):
    stored = json.loads(pair.truth_json_path.read_text())["ihc_transform"]
    assert stored["offset_um"] == [24.0, -16.0] and stored["rotation_deg"] == 0.0
    assert np.allclose(stored["matrix_he_to_ihc"], [[1, 0, 48], [0, 1, -32]])
    assert np.allclose(truth["ihc_x"] - truth["x"], 48) and np.allclose(truth["ihc_y"] - truth["y"], -32)


def test_nuclei_are_darker_and_bluer_than_background(truth, he_hed):
    rgb, hed = he_hed
    h = hed[..., 0]
    glass = h[:40, :40]
    tissue_h = np.median(h[hed[..., 1] > 0.01])  # eosin-stained: stroma and cytoplasm
    for cls in (c.value for c in CellClass if c is not CellClass.OTHER):
        cells = truth[truth["cls"] == cls].head(25)
        for x, y in zip(cells["x"], cells["y"]):
            nucleus_h = np.percentile(disc_values(h, x=x, y=y, radius_px=3 / MPP), 80)
            assert nucleus_h > glass.max() and nucleus_h > tissue_h + 0.01, (cls, x, y)
            darkest = np.argmax(disc_values(h, x=x, y=y, radius_px=3 / MPP))
            pixel = disc_values(rgb.reshape(-1, 3).reshape(rgb.shape), x=x, y=y, radius_px=3 / MPP)[darkest]
            r, g, b = (int(v) for v in pixel)
            assert b > r and b > g and r + g + b < 600, (cls, pixel)


def test_membrane_dab_follows_her2_grade(truth, ihc_hed):
    dab = ihc_hed[..., 2]
    tumour = truth[truth["cls"] == "tumour"]
    margin = (MEMBRANE_RADIUS_UM + 3) / MPP
    inside = tumour["ihc_x"].between(margin, SIZE - margin) & tumour["ihc_y"].between(margin, SIZE - margin)
    tumour = tumour[inside]
    by_grade = {}
    for grade in Her2Class:
        cells = tumour[tumour["her2_class"] == grade.value].head(12)
        assert len(cells) >= 1, f"no {grade.value} cells to check"
        by_grade[grade] = [ring_sectors(dab, x=x, y=y) for x, y in zip(cells["ihc_x"], cells["ihc_y"])]
    mean = {g: float(np.mean([s.mean() for s in v])) for g, v in by_grade.items()}
    assert mean[Her2Class.STRONG_COMPLETE] > mean[Her2Class.WEAK_COMPLETE] > mean[Her2Class.NULL_COMPLETE]
    assert mean[Her2Class.NULL_COMPLETE] > mean[Her2Class.NULL_INCOMPLETE]
    assert mean[Her2Class.STRONG_COMPLETE] > 2 * mean[Her2Class.WEAK_COMPLETE]
    # Completeness: share of sectors clearly above the unstained level.
    threshold = mean[Her2Class.NULL_INCOMPLETE] + 0.5 * (mean[Her2Class.WEAK_COMPLETE] - mean[Her2Class.NULL_INCOMPLETE])
    for grade in (Her2Class.STRONG_COMPLETE, Her2Class.WEAK_COMPLETE):
        assert all((s > threshold).mean() >= 0.9 for s in by_grade[grade]), grade
    for grade in (Her2Class.STRONG_INCOMPLETE, Her2Class.WEAK_INCOMPLETE):
        assert all((s > threshold).mean() <= 0.6 for s in by_grade[grade]), grade


def test_generation_is_deterministic_for_a_seed(pair, truth, tmp_path: Path):
    again = generate_phantom_pair(out_dir=tmp_path, width=SIZE, height=SIZE, mpp=MPP, seed=SEED)
    pd.testing.assert_frame_equal(pd.read_parquet(again.truth_path), truth)
    for a, b in ((pair.he_path, again.he_path), (pair.ihc_path, again.ihc_path)):
        assert np.array_equal(tifffile.imread(a, key=0), tifffile.imread(b, key=0))


def test_another_seed_gives_another_phantom(truth, tmp_path: Path):
    other = generate_phantom_pair(out_dir=tmp_path, width=SIZE, height=SIZE, mpp=MPP, seed=SEED + 1)
    other_truth = pd.read_parquet(other.truth_path)
    assert len(other_truth) != len(truth) or not np.array_equal(other_truth["x"], truth["x"])


def test_ensure_skips_matching_outputs_and_regenerates_on_change(pair):
    stamps = {p: p.stat().st_mtime_ns for p in (pair.he_path, pair.ihc_path, pair.truth_path)}
    same = ensure_phantom_pair(out_dir=pair.he_path.parent, width=SIZE, height=SIZE, mpp=MPP, seed=SEED)
    assert same.generated is False and same.expected_her2_score == pair.expected_her2_score
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    with pytest.raises(PhantomError, match="unknown"):
        ensure_phantom_pair(out_dir=pair.he_path.parent, colour="blue")


def test_ensure_generates_when_missing_then_skips(tmp_path: Path):
    first = ensure_phantom_pair(out_dir=tmp_path, width=1536, height=1536, seed=7, her2_score=0, ihc_rotation_deg=2.0)
    assert first.generated and first.expected_her2_score == 0
    second = ensure_phantom_pair(out_dir=tmp_path, width=1536, height=1536, seed=7, her2_score=0, ihc_rotation_deg=2.0)
    assert second.generated is False
    changed = ensure_phantom_pair(out_dir=tmp_path, width=1536, height=1536, seed=7, her2_score=2, ihc_rotation_deg=2.0)
    assert changed.generated and changed.expected_her2_score == 2
    # Rotated IHC: nuclei are drawn where the stored transform puts them.
    truth = pd.read_parquet(changed.truth_path)
    matrix = np.array(json.loads(changed.truth_json_path.read_text())["ihc_transform"]["matrix_he_to_ihc"])
    mapped = matrix[:, :2] @ truth[["x", "y"]].to_numpy().T + matrix[:, 2:]
    assert np.abs(mapped - truth[["ihc_x", "ihc_y"]].to_numpy().T).max() <= 0.5
    h = rgb2hed(tifffile.imread(changed.ihc_path, key=0))[..., 0]
    lymph = truth[truth["cls"] == "lymphocyte"].head(20)
    glass = h[:30, :30].max()
    assert all(disc_values(h, x=x, y=y, radius_px=2).mean() > glass for x, y in zip(lymph["ihc_x"], lymph["ihc_y"]))


@pytest.mark.parametrize(
    "counts, score",
    [
        ({"strong_complete": 11, "null_incomplete": 89}, 3),
        ({"strong_complete": 10, "null_incomplete": 90}, 0),  # exactly 10 % is not > 10 %
        ({"strong_complete": 5, "weak_complete": 6, "null_incomplete": 89}, 2),
        ({"weak_incomplete": 11, "null_complete": 89}, 1),
        ({"weak_incomplete": 10, "null_complete": 90}, 0),
        ({"null_complete": 50, "null_incomplete": 50}, 0),
    ],
)
def test_expected_her2_score_rules(counts, score):
    assert expected_her2_score(counts=counts) == score


def test_expected_her2_score_needs_cells():
    with pytest.raises(PhantomError, match="no graded tumour cells"):
        expected_her2_score(counts={})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"width": 100}, "at least 512"),
        ({"mpp": 5.0}, "mpp"),
        ({"her2_score": 4}, "her2_score"),
        ({"ihc_rotation_deg": 45.0}, "small angle"),
        ({"ihc_offset_um": (500.0, 0.0)}, "5 %"),
    ],
)
def test_bad_parameters_are_refused(tmp_path: Path, kwargs, message):
    with pytest.raises(PhantomError, match=message):
        generate_phantom_pair(out_dir=tmp_path, **{"width": 1024, "height": 1024, **kwargs})
    assert list(tmp_path.iterdir()) == []


def test_a_plain_hematoxylin_threshold_finds_the_nuclei(truth, he_hed):
    """What a classical segmenter does first (Otsu on the deconvolved hematoxylin, then
    filled components) already recovers almost every drawn nucleus and few extras."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    h = ndimage.gaussian_filter(he_hed[1][..., 0], 1.0)
    tissue = he_hed[1][..., 1] > 0.005
    mask = ndimage.binary_fill_holes(h > threshold_otsu(h[tissue]))
    labels, count = ndimage.label(mask)
    hit = labels[truth["y"].astype(int), truth["x"].astype(int)]
    assert (hit > 0).mean() >= 0.95
    sizes = np.bincount(labels.ravel())
    real = sizes >= (1.5 / MPP) ** 2 * np.pi  # ignore specks under a 1.5 um radius disc
    real[0] = False
    found = np.isin(np.flatnonzero(real), hit)
    assert found.mean() >= 0.9  # nearly every sizeable dark blob is a drawn nucleus
