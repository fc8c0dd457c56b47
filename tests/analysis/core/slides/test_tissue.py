"""Tissue detection on thumbnails and the level-0 tissue tiles."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from analysis.core.slides.tissue import (
    NoTissueError,
    TissueDetectionError,
    TissueMask,
    TissueParams,
    detect_tissue,
    tissue_tiles,
)


def _glass(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(242, 3, (h, w, 3)), 0, 255).astype(np.uint8)


def test_blank_glass_raises_no_tissue():
    with pytest.raises(NoTissueError, match="no tissue"):
        detect_tissue(thumbnail=_glass(200, 300), downsample=32, mpp=0.5)
    with pytest.raises(NoTissueError):
        detect_tissue(thumbnail=np.full((64, 64, 3), 255, np.uint8), downsample=32, mpp=0.5)


def test_keeps_big_pale_tissue_and_drops_dust():
    thumb = _glass(300, 300)
    yy, xx = np.mgrid[:300, :300]
    blob = (xx - 150) ** 2 + (yy - 150) ** 2 < 80**2
    thumb[blob] = [205, 170, 200]  # pale pink H&E tissue
    thumb[10:13, 10:13] = [60, 40, 90]  # dark dust, 3 x 3 px
    tissue = detect_tissue(thumbnail=thumb, downsample=16, mpp=0.5)  # 8 um per mask px
    assert tissue.mask[150, 150] and not tissue.mask[11, 11]
    assert abs(tissue.mask.sum() - blob.sum()) / blob.sum() < 0.03
    x0, y0, x1, y1 = tissue.bbox_level0()
    assert abs(x0 - 70 * 16) <= 32 and abs(x1 - 231 * 16) <= 32 and abs(y0 - 70 * 16) <= 32


def test_closing_joins_fragments_and_fills_lumina():
    thumb = _glass(200, 200)
    thumb[50:150, 50:98] = [150, 100, 170]
    thumb[50:150, 100:150] = [150, 100, 170]  # a 2 px crack
    thumb[90:110, 115:135] = 242  # a lumen inside
    tissue = detect_tissue(thumbnail=thumb, downsample=8, mpp=0.5, params=TissueParams(closing_um=12))
    assert tissue.mask[100, 99] and tissue.mask[100, 125]


def test_real_kidney_ihc_finds_the_one_piece(shared_file):
    rgb = np.asarray(Image.open(shared_file("ihc/kidney-ihc-48-5.tif")).convert("RGB"))
    tissue = detect_tissue(thumbnail=rgb, downsample=1, mpp=2.0)
    x0, y0, x1, y1 = tissue.bbox_level0()
    # The section lies near (285-400, 505-565); the rest is glass, dust and a pen mark.
    assert 270 <= x0 <= 300 and 390 <= x1 <= 420 and 490 <= y0 <= 515 and 555 <= y1 <= 580
    assert tissue.tissue_fraction < 0.01


def test_real_cmu1_thumbnail(shared_file):
    import openslide

    slide = openslide.OpenSlide(str(shared_file("slides/CMU-1-Small-Region.svs")))
    thumb = np.asarray(slide.get_thumbnail((512, 512)).convert("RGB"))
    downsample = slide.dimensions[0] / thumb.shape[1]
    tissue = detect_tissue(thumbnail=thumb, downsample=downsample, mpp=0.499)
    assert 0.3 < tissue.tissue_fraction < 0.6  # the section covers the middle strip
    tiles = tissue_tiles(tissue=tissue, slide_width=2220, slide_height=2967, tile_px=512)
    assert 15 <= len(tiles) < 30  # of a 5 x 6 grid: the blank corners are skipped
    assert (0, 0, 512, 512) not in tiles  # top-left corner is glass


def test_tissue_tiles_geometry():
    mask = np.zeros((10, 10), bool)
    mask[2, 7] = True
    tissue = TissueMask(mask=mask, downsample=100.0, threshold_od=0.2, tissue_fraction=0.01)
    # Mask pixel (row 2, col 7) is level-0 x 700-800, y 200-300: four 256-px tiles meet it.
    tiles = tissue_tiles(tissue=tissue, slide_width=1000, slide_height=1000, tile_px=256)
    assert {(t[0], t[1]) for t in tiles} == {(512, 0), (768, 0), (512, 256), (768, 256)}
    assert (768, 0, 232, 256) in tiles  # clipped at the slide's right edge
    grown = tissue_tiles(tissue=tissue, slide_width=1000, slide_height=1000, tile_px=256, margin_px=300)
    assert len(grown) > len(tiles)


@pytest.mark.parametrize("kwargs, message", [
    ({"thumbnail": np.zeros((10, 10), np.uint8)}, "RGB"),
    ({"thumbnail": np.zeros((10, 10, 3), np.float32)}, "uint8"),
    ({"thumbnail": np.zeros((10, 10, 3), np.uint8), "mpp": 0}, "mpp"),
])
def test_bad_input(kwargs, message):
    args = {"downsample": 8, "mpp": 0.5, **kwargs}
    with pytest.raises(TissueDetectionError, match=message):
        detect_tissue(**args)
