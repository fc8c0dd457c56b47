"""Morph / texture features: OpenCV-equivalent mask and grey levels, hand-worked GLCMs."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from skimage.feature import graycomatrix, graycoprops

from analysis.core.cells.features import (
    CellFeatureError,
    curvature_features,
    fill_contour,
    morph_features,
    nucleus_features,
    nucleus_mask,
    openslide_region_reader,
    rgb_to_gray,
    texture_features,
)

CASE = "scmtop/cmu-1-small-region"


def test_filled_square_includes_its_outline():
    mask = fill_contour(points=np.array([[1, 1], [4, 1], [4, 4], [1, 4]]), shape=(6, 6))
    expected = np.zeros((6, 6), np.uint8)
    expected[1:5, 1:5] = 1
    np.testing.assert_array_equal(mask, expected)


def test_line_tie_stays_on_the_minor_axis_in_both_directions():
    # Segment (0,0)-(2,1) passes exactly between (1,0) and (1,1): OpenCV's LineIterator
    # (left to right, step only when err < 0) keeps (1,0). A 2-point contour is drawn as
    # the segment there and back, with no area to fill.
    for points in ([[0, 0], [2, 1]], [[2, 1], [0, 0]]):
        mask = fill_contour(points=np.array(points), shape=(3, 4))
        assert sorted(map(tuple, np.argwhere(mask).tolist())) == [(0, 0), (0, 1), (1, 2)]


def test_fill_spans_plus_outline_by_hand():
    # Triangle (0,0), (6,0), (0,3). Scanline fill (lower vertex row excluded): the
    # hypotenuse is at x = 6, 4, 2 on rows 0, 1, 2 -> spans 0..6, 0..4, 0..2. Its
    # 8-connected line runs from (0,3) (left end first): minor offset ceil(j/2 - 1/2)
    # gives (0,3) (1,3) (2,2) (3,2) (4,1) (5,1) (6,0); the ties at j = 1, 3, 5 do not step.
    mask = fill_contour(points=np.array([[0, 0], [6, 0], [0, 3]]), shape=(4, 7))
    assert mask.sum(axis=1).tolist() == [7, 6, 4, 2]
    assert mask[3, :2].all() and mask[1, 5] and mask[2, 3]


def test_nucleus_mask_pads_two_pixels():
    mask, origin = nucleus_mask(contour=np.array([[10, 20], [12, 20], [12, 21], [10, 21]]))
    assert origin == (8, 18)
    assert mask.shape == (1 + 4, 2 + 4)
    assert mask.sum() == 6 and mask[2:4, 2:5].all()


def test_morph_of_a_square_by_hand():
    features = morph_features(contour=np.array([[0, 0], [3, 0], [3, 3], [0, 3]]))
    assert features["Morph_Area"] == 16.0
    assert features["Morph_AreaBbox"] == 16.0
    assert features["Morph_Extent"] == 1.0
    assert features["Morph_Solidity"] == 1.0
    assert features["Morph_CellEccentricities"] == pytest.approx(0.0, abs=1e-12)
    assert features["Morph_Elongation"] == pytest.approx(1.0)
    # central moments of a 4x4 block: variance (4^2 - 1) / 12 = 1.25 -> axis 4 sqrt(1.25)
    assert features["Morph_MajorAxisLength"] == pytest.approx(4 * math.sqrt(1.25))


def test_curvature_of_a_square_contour_by_hand():
    # All 4 corners kept (L1 steps of 3 > 2). t = (1,0), (0,1), (-1,0), (0,-1); s_bar = 3;
    # C_0 = (t_1 - t_0)/3 = (-1,1)/3, C_3 = (t_0 - t_3)/3 = (1,1)/3, so C_bar_0 = (0, 1/3)
    # and k_0 = t_0y * 0 - t_0x * 1/3 = -1/3; by symmetry every vertex gives -1/3.
    features = curvature_features(contour=np.array([[0, 0], [3, 0], [3, 3], [0, 3]]))
    assert features["Morph_CurvMean"] == pytest.approx(-1 / 3)
    assert features["Morph_CurvStd"] == pytest.approx(0.0, abs=1e-12)
    assert features["Morph_CurvMax"] == pytest.approx(-1 / 3)
    assert features["Morph_CurvMin"] == pytest.approx(-1 / 3)
    # Points closer than L1 distance 3 to the last kept one are skipped: same result.
    dense = curvature_features(contour=np.array([[0, 0], [1, 0], [3, 0], [3, 3], [0, 3]]))
    assert dense == features


def test_rgb_to_gray_is_opencv4_fixed_point():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [228, 205, 35]]], np.uint8)
    # OpenCV 4 COLOR_RGB2GRAY: red 76, green 150, blue 29, white 255; (228, 205, 35) is
    # 192.497 in floating point but 193 in OpenCV's 15-bit fixed point.
    assert rgb_to_gray(rgb=rgb).tolist() == [[76, 150, 29, 255, 193]]
    with pytest.raises(CellFeatureError, match="uint8"):
        rgb_to_gray(rgb=rgb.astype(float))


def test_texture_by_hand():
    # Pairs (r,c)->(r,c+1): (10,20), (20,20), (10,10); (0,10) is dropped (grey 0).
    gray = np.array([[10, 20, 20], [0, 10, 10]], np.uint8)
    features = texture_features(gray=gray, mask=np.ones_like(gray))
    assert features["Texture_ASM"] == pytest.approx(1 / 3)
    assert features["Texture_Contrast"] == pytest.approx(100 / 3)
    assert features["Texture_Homogeneity"] == pytest.approx((1 / 101 + 2) / 3)
    assert features["Texture_Correlation"] == pytest.approx(0.5)
    assert features["Texture_Entropy"] == pytest.approx(math.log(3), rel=1e-12)
    assert features["Texture_IntensityMean"] == pytest.approx(70 / 6)
    assert features["Texture_IntensityMax"] == 20 and features["Texture_IntensityMin"] == 0


def test_texture_matches_skimage_glcm_properties():
    rng = np.random.default_rng(3)
    for _ in range(20):
        gray = rng.integers(0, 256, (9, 12)).astype(np.uint8)
        mask = (rng.random(gray.shape) > 0.2).astype(np.uint8)
        ours = texture_features(gray=gray, mask=mask)
        glcm = graycomatrix(np.where(mask, gray, 0), [1], [0]).astype(np.float64)
        glcm[0, :, :, :] = 0
        glcm[:, 0, :, :] = 0
        glcm /= max(glcm.sum(), 1)
        for name, prop in (("Texture_ASM", "ASM"), ("Texture_Contrast", "contrast"),
                           ("Texture_Correlation", "correlation"), ("Texture_Homogeneity", "homogeneity")):
            assert ours[name] == pytest.approx(graycoprops(glcm, prop)[0, 0], rel=1e-10)


def test_constant_texture_has_correlation_one():
    features = texture_features(gray=np.full((4, 4), 7, np.uint8), mask=np.ones((4, 4), np.uint8))
    assert features["Texture_Correlation"] == 1.0
    assert features["Texture_ASM"] == 1.0


def test_bad_contours_raise():
    with pytest.raises(CellFeatureError, match=r"\(N, 2\)"):
        nucleus_mask(contour=np.zeros((3,)))
    with pytest.raises(CellFeatureError, match="integer"):
        nucleus_mask(contour=np.array([[0.5, 1.0], [2.0, 3.0]]))
    with pytest.raises(CellFeatureError, match="shape"):
        texture_features(gray=np.zeros((2, 2), np.uint8), mask=np.ones((3, 3), np.uint8))


def test_openslide_decode_equals_reference_png(shared_file):
    from PIL import Image

    read, close = openslide_region_reader(slide_path=shared_file("slides/CMU-1-Small-Region.svs"))
    try:
        region = read(1000, 1500, 300, 200)
    finally:
        close()
    reference = np.asarray(Image.open(shared_file(f"{CASE}/cmu-1-small-region_level0_rgb.png")))
    np.testing.assert_array_equal(region[..., :3], reference[1500:1700, 1000:1300, :3])


def test_reference_morph_and_texture_on_a_sample(shared_file):
    """150 reference nuclei: every Morph_* and Texture_* value to 1e-6 relative.

    Also shows why the grey formula is OpenCV 4's 15-bit one, not SEMANTICS.md's 14-bit
    table formula: the latter changes Texture_IntensityMean of reference nucleus 11.
    """
    data = json.loads(shared_file(f"{CASE}/cmu-1-small-region.json").read_text())
    contours = [np.array(n["contour"]) for n in data["nuc"].values()]
    reference = pd.read_csv(shared_file(f"{CASE}/cmu-1-small-region_Feats_T.csv")).set_index("name")
    names = reference.index[:150]
    read, close = openslide_region_reader(slide_path=shared_file("slides/CMU-1-Small-Region.svs"))
    try:
        ours = nucleus_features(contours=[contours[i] for i in names], read_region=read)
        mask, (x0, y0) = nucleus_mask(contour=contours[11])
        rgb = read(x0, y0, mask.shape[1], mask.shape[0])
    finally:
        close()
    for column in ours.columns:
        np.testing.assert_allclose(ours[column].to_numpy(float), reference.loc[names, column].to_numpy(float),
                                   rtol=1e-6, err_msg=column)
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    gray14 = ((4899 * r + 9617 * g + 1868 * b + 8192) >> 14).astype(np.uint8)
    expected = reference.loc[11, "Texture_IntensityMean"]
    assert texture_features(gray=rgb_to_gray(rgb=rgb), mask=mask)["Texture_IntensityMean"] == pytest.approx(expected)
    assert texture_features(gray=gray14, mask=mask)["Texture_IntensityMean"] != pytest.approx(expected)
