"""An Aperio SVS in the case viewer: OpenSeadragon takes the file's 240 px tile grid from the DZI and
paints the tissue from passed-through and DCT-scaled tiles."""
from __future__ import annotations

import io
import subprocess
import sys

import pytest
from PIL import Image, ImageStat

from tests.e2e.conftest import PROJECT_ROOT

pytestmark = pytest.mark.e2e


def test_svs_case_is_painted_from_240_px_tiles(logged_in_page, live_site, shared_file, tmp_path):
    slide = shared_file("slides/CMU-1-Small-Region.svs")
    env = {**live_site["env"], "LADDER_SLIDE_ROOTS": str(slide.parent)}
    subprocess.run([sys.executable, "manage.py", "import_slides", "--case", "SVS-E2E", "--stain", "he", str(slide)],
                   cwd=PROJECT_ROOT, env=env, check=True, capture_output=True, timeout=300)
    page = logged_in_page
    page.goto(f"{live_site['url']}/cases/SVS-E2E/")
    page.wait_for_function("window.caseViewer !== undefined", timeout=60000)
    page.evaluate("() => window.caseViewer.ready")
    page.wait_for_function("window.caseViewer.viewers.every(v => v.world.getItemCount() && v.getFullyLoaded())",
                           timeout=60000)
    tile_width = page.evaluate("() => window.caseViewer.viewers[0].world.getItemAt(0).source.getTileWidth(0)")
    assert tile_width == 240
    # zoom to full resolution at the centre: passed-through tiles
    page.evaluate("""() => { const v = window.caseViewer.viewers[0];
        v.viewport.zoomTo(v.viewport.imageToViewportZoom(1.0), null, true); }""")
    page.wait_for_function("window.caseViewer.viewers[0].getFullyLoaded()", timeout=60000)
    box = page.locator(".cv-pane[data-index='0'] .cv-stage").bounding_box()
    shot = page.screenshot(clip=box)
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    image.save(tmp_path / "svs-viewer.png")  # kept by pytest under its basetemp, for a look
    assert max(ImageStat.Stat(image).stddev) > 8, "no tissue painted"
    red, green, blue = ImageStat.Stat(image).mean
    assert red > green and blue > green  # H&E pink/purple; tiles read as YCbCr would turn it green
    loaded = page.evaluate("() => performance.getEntriesByType('resource').map(e => e.name)")
    assert any("_files/12/" in name for name in loaded)  # level 12 = full resolution of this slide
    assert page.errors == []
