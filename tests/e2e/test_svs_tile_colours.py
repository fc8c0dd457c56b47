"""A real browser decodes passed-through Aperio tiles with OpenSlide's colours.

CMU-1-Small-Region.svs stores RGB-photometric JPEG tiles (component ids 0, 1, 2, no JFIF/Adobe marker):
left to guess, a decoder takes them for YCbCr. The tiles the product passes through carry an Adobe APP14
marker (transform 0) and ids 'R', 'G', 'B' (analysis.core.slides.reader.complete_jpeg); Chromium must
draw them as OpenSlide decodes them, and the bare stream (tables + tile) must indeed come out wrong.
"""
from __future__ import annotations

import base64

import numpy as np
import pytest
from openslide import OpenSlide

from analysis.core.slides.reader import DeepZoomGeometry, SlideReader, render_tile_jpeg

pytestmark = pytest.mark.e2e


def _browser_pixels(browser, jpeg: bytes) -> np.ndarray:
    page = browser.new_page()
    try:
        page.set_content("<canvas id=c width=240 height=240></canvas>")
        data = page.evaluate(
            """async (src) => {
                const img = new Image(); img.src = src; await img.decode();
                const ctx = document.getElementById('c').getContext('2d');
                ctx.drawImage(img, 0, 0);
                return Array.from(ctx.getImageData(0, 0, 240, 240).data);
            }""",
            "data:image/jpeg;base64," + base64.b64encode(jpeg).decode())
    finally:
        page.close()
    return np.asarray(data, dtype=np.int16).reshape(240, 240, 4)[..., :3]


def test_chromium_draws_passed_through_svs_tiles_in_openslide_colours(browser, shared_file):
    path = shared_file("slides/CMU-1-Small-Region.svs")
    reader = SlideReader(path)
    geometry = DeepZoomGeometry(width=reader.dimensions[0], height=reader.dimensions[1], tile_size=240)
    col, row = 4, 3
    served = render_tile_jpeg(reader, geometry, level=geometry.max_level, col=col, row=row)
    expected = np.asarray(OpenSlide(str(path)).read_region((col * 240, row * 240), 0, (240, 240)).convert("RGB"),
                          dtype=np.int16)
    assert np.abs(_browser_pixels(browser, served) - expected).mean() < 1.5  # decoder rounding only

    found = reader._raw_levels[0]
    index = row * found.across + col
    with open(path, "rb") as handle:
        handle.seek(int(found.offsets[index]))
        stored = handle.read(int(found.counts[index]))
    bare = found.tables[:-2] + stored[2:]  # what a pass-through without the colour fix would send
    assert np.abs(_browser_pixels(browser, bare) - expected).mean() > 20
    reader.close()
