"""A pathologist logs in, opens the demo case, sees both slides painted and navigation synced."""
from __future__ import annotations

import io
import math

import pytest
from PIL import Image, ImageStat

pytestmark = pytest.mark.e2e


SETTLED_JS = """() => window.caseViewer.viewers.every(v => {
  const vp = v.viewport;
  return vp.centerSpringX.isAtTargetValue() && vp.centerSpringY.isAtTargetValue() && vp.zoomSpring.isAtTargetValue();
})"""


def _painted(png: bytes) -> float:
    """Standard deviation of the pixels: tissue gives texture, an empty canvas none."""
    return max(ImageStat.Stat(Image.open(io.BytesIO(png)).convert("RGB")).stddev)


def _open_demo_case(page, url: str) -> None:
    page.goto(f"{url}/")
    page.click("text=DEMO-001")
    page.wait_for_url("**/cases/DEMO-001/")
    page.wait_for_function("window.caseViewer !== undefined", timeout=60000)
    page.evaluate("() => window.caseViewer.ready")
    page.wait_for_function("window.caseViewer.viewers.every(v => v.world.getItemCount() && v.getFullyLoaded())",
                           timeout=60000)


def test_worklist_to_case_with_tiles_in_both_viewers(logged_in_page, live_site):
    page = logged_in_page
    assert "DEMO-001" in page.inner_text("table.worklist")
    _open_demo_case(page, live_site["url"])
    for index in (0, 1):
        box = page.locator(f".cv-pane[data-index='{index}'] .cv-stage").bounding_box()
        clip = {"x": box["x"] + box["width"] * 0.25, "y": box["y"] + box["height"] * 0.25,
                "width": box["width"] * 0.4, "height": box["height"] * 0.4}
        assert _painted(page.screenshot(clip=clip)) > 8, f"viewer {index} shows no tissue"
    # The tiles came from our server, through the authenticated tile route.
    loaded = page.evaluate("() => performance.getEntriesByType('resource').map(e => e.name)")
    assert any("_files/" in name and name.endswith(".jpeg") for name in loaded)


def test_panning_one_viewer_moves_the_other(logged_in_page, live_site):
    page = logged_in_page
    _open_demo_case(page, live_site["url"])
    before = page.evaluate("() => window.caseViewer.panes.map(p => p.getView())")
    box = page.locator(".cv-pane[data-index='0'] .cv-stage").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 150, y - 90, steps=10)
    page.mouse.up()
    page.wait_for_function(SETTLED_JS, timeout=30000)
    after = page.evaluate("() => window.caseViewer.panes.map(p => p.getView())")
    he_moved = math.dist((before[0]["center"]["x"], before[0]["center"]["y"]),
                         (after[0]["center"]["x"], after[0]["center"]["y"]))
    ihc_moved = math.dist((before[1]["center"]["x"], before[1]["center"]["y"]),
                          (after[1]["center"]["x"], after[1]["center"]["y"]))
    assert he_moved > 50, "the drag did not pan the H&E viewer"
    # Same physical shift in the IHC viewer (the demo pair has scale 1, rotation 0).
    assert ihc_moved == pytest.approx(he_moved, rel=0.02)
