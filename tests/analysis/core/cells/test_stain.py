"""Colour deconvolution, Macenko estimation and DAB presence on synthetic and real images."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from analysis.core.cells import stain
from analysis.core.cells.stain import (
    HDAB_DEFAULT,
    HE_DEFAULT,
    StainError,
    StainMatrix,
    dab_presence,
    deconvolve,
    estimate_stain_matrix,
    od_to_rgb,
    rgb_to_od,
    stain_channel,
)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1)
    return float(np.degrees(np.arccos(cos)))


def _synthetic(matrix: np.ndarray, concentrations: np.ndarray) -> np.ndarray:
    """RGB pixels (H, W, 3 uint8) from concentrations (H, W, k) of the first k stains."""
    od = concentrations @ matrix[: concentrations.shape[-1]]
    return od_to_rgb(od=od)


def test_od_uses_i0_255_and_log10():
    rgb = np.array([[[255, 51, 1], [0, 255, 255]]], dtype=np.uint8)
    od = rgb_to_od(rgb=rgb)
    assert od[0, 0, 0] == 0.0  # white glass
    assert od[0, 0, 1] == pytest.approx(np.log10(5.0), abs=1e-6)  # 255 / 51 = 5
    assert od[0, 0, 2] == pytest.approx(np.log10(255.0), abs=1e-6)
    assert od[0, 1, 0] == od[0, 0, 2]  # 0 is clipped to 1: no infinite OD
    assert stain.MAX_OD == pytest.approx(np.log10(255.0))


def test_default_vectors_are_ruifrok_johnston():
    he = HE_DEFAULT.vectors
    assert np.allclose(he[0], np.array([0.650, 0.704, 0.286]) / np.linalg.norm([0.650, 0.704, 0.286]))
    assert np.allclose(HDAB_DEFAULT.vectors[1], np.array([0.268, 0.570, 0.776]) / np.linalg.norm([0.268, 0.570, 0.776]))
    # The third vector of a 2-stain matrix is orthogonal to both (cross product).
    assert abs(HDAB_DEFAULT.vectors[2] @ HDAB_DEFAULT.vectors[0]) < 1e-9
    assert HDAB_DEFAULT.names == ("hematoxylin", "dab", "residual")


def test_deconvolution_recovers_concentrations():
    rng = np.random.default_rng(1)
    conc = rng.uniform(0.05, 1.0, size=(40, 40, 2))
    rgb = _synthetic(HDAB_DEFAULT.vectors, conc)
    got = deconvolve(rgb=rgb, stain_matrix=HDAB_DEFAULT)
    # 8-bit rounding limits the precision to a few hundredths of OD.
    assert np.abs(got[..., :2] - conc).max() < 0.05
    assert np.abs(got[..., 2]).max() < 0.05  # nothing unexplained
    h = stain_channel(rgb=rgb, stain="dab", stain_matrix=HDAB_DEFAULT)
    assert np.allclose(h, got[..., 1], atol=1e-5)


def test_hematoxylin_matches_scikit_image_rgb2hed(shared_file):
    from skimage.color import rgb2hed

    rgb = tifffile.imread(shared_file("nuclei/gbm/01.tif"))[..., :3]
    ours = stain_channel(rgb=rgb, stain="hematoxylin", stain_matrix=stain.HED_DEFAULT)
    theirs = rgb2hed(rgb)[..., 0]
    # skimage: natural log divided by ln(1e-6), so its unit is our log10 OD / 6; its
    # vectors are the same Ruifrok values rounded to 2 decimals.
    assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.999
    assert np.nanmedian(theirs / np.where(ours > 0.2, ours, np.nan)) == pytest.approx(1 / 6, rel=0.03)


def test_macenko_recovers_known_vectors():
    true_h = np.array([0.55, 0.75, 0.36])  # ~10 deg from the default hematoxylin
    true_e = np.array([0.15, 0.95, 0.27])
    matrix = np.vstack([true_h / np.linalg.norm(true_h), true_e / np.linalg.norm(true_e)])
    rng = np.random.default_rng(2)
    conc = rng.uniform(0.0, 1.0, size=(120, 120, 2)) ** 2
    rgb = _synthetic(matrix, conc * np.array([1.2, 0.8]))
    estimate = estimate_stain_matrix(rgb=rgb, default=HE_DEFAULT)
    assert estimate.estimated, estimate.reason
    # Within 5 deg: beta drops the palest pure-eosin pixels (red OD < 0.15), a known
    # Macenko bias toward the mixed interior of the stain cone.
    assert _angle_deg(estimate.matrix.vectors[0], matrix[0]) < 5
    assert _angle_deg(estimate.matrix.vectors[1], matrix[1]) < 5


def test_macenko_falls_back_when_degenerate():
    blank = np.full((64, 64, 3), 250, dtype=np.uint8)
    got = estimate_stain_matrix(rgb=blank, default=HE_DEFAULT)
    assert not got.estimated and got.matrix is HE_DEFAULT and "stained pixels" in got.reason
    # One stain only: the two directions collapse.
    rng = np.random.default_rng(3)
    one = _synthetic(HE_DEFAULT.vectors, rng.uniform(0.2, 1.0, size=(64, 64, 1)))
    got = estimate_stain_matrix(rgb=one, default=HE_DEFAULT)
    assert not got.estimated and "apart" in got.reason


def test_macenko_on_real_images(shared_file):
    he = tifffile.imread(shared_file("nuclei/gbm/02.tif"))[..., :3]
    got = estimate_stain_matrix(rgb=he, default=HE_DEFAULT)
    assert got.estimated, got.reason
    assert _angle_deg(got.matrix.vectors[0], HE_DEFAULT.vectors[0]) < 15
    ihc = np.asarray(Image.open(shared_file("ihc/skimage-ihc.png")))[..., :3]
    got = estimate_stain_matrix(rgb=ihc, default=HDAB_DEFAULT)
    assert got.estimated, got.reason
    assert _angle_deg(got.matrix.vectors[1], HDAB_DEFAULT.vectors[1]) < 15
    # An IHC image read as H&E: its "eosin" is DAB, far from eosin: defaults come back.
    got = estimate_stain_matrix(rgb=ihc, default=HE_DEFAULT)
    assert not got.estimated and "eosin" in got.reason


def test_dab_presence_tells_ihc_from_he(shared_file):
    import openslide

    ihc = np.asarray(Image.open(shared_file("ihc/skimage-ihc.png")))[..., :3]
    assert dab_presence(rgb=ihc).looks_like == "ihc"
    for name in ("01", "03", "05"):
        he = tifffile.imread(shared_file(f"nuclei/gbm/{name}.tif"))[..., :3]
        presence = dab_presence(rgb=he)
        assert presence.looks_like == "he", (name, presence)
        assert presence.dab_fraction < 0.005
    # CMU-1's purple-pink eosin is the hard case for 3-stain deconvolution.
    slide = openslide.OpenSlide(str(shared_file("slides/CMU-1-Small-Region.svs")))
    cmu = np.asarray(slide.read_region((0, 0), 0, slide.dimensions).convert("RGB"))[::2, ::2]
    assert dab_presence(rgb=cmu).looks_like == "he"
    blank = np.full((32, 32, 3), 252, dtype=np.uint8)
    assert dab_presence(rgb=blank).looks_like == "unknown"


def test_bad_inputs_raise():
    with pytest.raises(StainError, match="uint8"):
        rgb_to_od(rgb=np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(StainError, match="RGB"):
        rgb_to_od(rgb=np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(StainError, match="parallel"):
        StainMatrix.from_vectors(names=("a", "b"), vectors=((1, 1, 0), (2, 2, 0)))
    with pytest.raises(StainError, match="3 finite"):
        StainMatrix.from_vectors(names=("a", "b"), vectors=((0, 0, 0), (1, 0, 0)))
    with pytest.raises(StainError, match="not in this matrix"):
        stain_channel(rgb=np.zeros((2, 2, 3), np.uint8), stain="dab", stain_matrix=HE_DEFAULT)
