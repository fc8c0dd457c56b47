"""Overlay layers on the real product: the demo case DEMO-001 is analysed and scored by the
server's embedded worker, then in headless Chromium every layer changes the slides'
pixels when toggled from its panel, an attribution row highlights its source cells, and the
cell inspector shows the values the API gives for the clicked cell."""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.e2e

LOADED_JS = ("[...Array(v.world.getItemCount()).keys()].map(i => v.world.getItemAt(i))"
             ".every(t => t.getOpacity() === 0 || t.getFullyLoaded())")
SETTLED_JS = f"""() => window.caseViewer.viewers.every(v => {{
  const vp = v.viewport;
  return vp.centerSpringX.isAtTargetValue() && vp.centerSpringY.isAtTargetValue() && vp.zoomSpring.isAtTargetValue()
    && {LOADED_JS};
}})"""


@pytest.fixture(scope="module")
def analysed_case(browser, live_site):
    """Wait (up to 6 min) until the demo slides are analysed and the case is scored."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{live_site['url']}/accounts/login/")
    page.fill("#id_username", "pathologist")
    page.fill("#id_password", live_site["logins"]["pathologist"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_site['url']}/")
    api = context.request
    cases = api.get(f"{live_site['url']}/api/cases/?limit=100").json()
    case = next(c for c in cases.get("results", cases) if c["case_id"] == "DEMO-001")
    deadline = time.monotonic() + 360
    jobs = []
    while time.monotonic() < deadline:
        body = api.get(f"{live_site['url']}/api/jobs/?case={case['id']}&limit=100").json()
        jobs = body.get("results", body)
        failed = [j for j in jobs if j["status"] == "failed"]
        assert not failed, f"demo jobs failed: {[(j['kind'], j['error']) for j in failed]}"
        analyses = [j for j in jobs if j["kind"] == "analyze_slide"]
        scores = [j for j in jobs if j["kind"] == "score_case"]
        if (len(analyses) >= 2 and all(j["status"] == "succeeded" for j in analyses)
                and scores and all(j["status"] == "succeeded" for j in scores)):
            break
        time.sleep(2)
    else:
        pytest.fail(f"the demo case was not analysed and scored in time: {[(j['kind'], j['status']) for j in jobs]}")
    slides = {s["stain"]: s for s in case["slides"]}
    context.close()
    return {"case": case, "slides": slides}


def _open(page, url):
    page.goto(f"{url}/cases/DEMO-001/")
    page.wait_for_function("window.caseOverlays !== undefined", timeout=60000)
    page.evaluate("() => window.caseOverlays.ready")
    _settle(page)


def _settle(page):
    page.wait_for_function(SETTLED_JS, timeout=60000)
    page.wait_for_timeout(250)  # debounced record refetch
    page.wait_for_function("() => window.caseOverlays.panes.every(p => p.fetching.size === 0)", timeout=30000)
    page.wait_for_function(SETTLED_JS, timeout=60000)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def _stage(page, index: int) -> np.ndarray:
    box = page.locator(f".cv-pane[data-index='{index}'] .cv-stage").bounding_box()
    clip = {"x": box["x"] + box["width"] * 0.3, "y": box["y"] + box["height"] * 0.15,
            "width": box["width"] * 0.45, "height": box["height"] * 0.5}
    return np.asarray(Image.open(io.BytesIO(page.screenshot(clip=clip))).convert("RGB")).astype(np.int16)


def _diff(a, b) -> float:
    return float((np.abs(a - b).max(axis=2) > 24).mean())


def test_each_layer_toggles_from_its_panel_and_changes_the_pixels(analysed_case, logged_in_page, live_site):
    page = logged_in_page
    _open(page, live_site["url"])
    for index in (0, 1):
        layers = page.evaluate(f"() => window.caseOverlays.layers({index})")
        names = [layer["name"] for layer in layers]
        assert "cells" in names and "edges" in names and any(n.startswith("density-") for n in names), names
        if index == 1:
            assert "her2" in names
        toggle = page.locator(f".cv-pane[data-index='{index}'] .ov-panel-toggle")
        for layer in layers:
            # Legend with counts and colours from the server.
            assert layer["legend"] and all("color" in e for e in layer["legend"])
            before = _stage(page, index)  # panel closed: only the slide in the picture
            toggle.click()
            page.check(f".cv-pane[data-index='{index}'] input[data-layer='{layer['name']}']")
            legend = page.locator(f".cv-pane[data-index='{index}'] .ov-layer[data-layer='{layer['name']}'] .ov-legend li")
            assert legend.count() == len(layer["legend"])
            assert legend.first.locator(".ov-swatch").get_attribute("style") == f"--c:{layer['legend'][0]['color']}"
            toggle.click()
            _settle(page)
            after = _stage(page, index)
            mode = page.evaluate(f"() => window.caseOverlays.status({index}).layers['{layer['name']}'].mode")
            assert _diff(before, after) > 0.003, f"{layer['name']} on pane {index} ({mode}) changed nothing"
            toggle.click()
            page.uncheck(f".cv-pane[data-index='{index}'] input[data-layer='{layer['name']}']")
            toggle.click()
            _settle(page)
            assert _diff(before, _stage(page, index)) < 0.003


def test_attribution_row_highlights_its_source_cells(analysed_case, logged_in_page, live_site):
    page = logged_in_page
    _open(page, live_site["url"])
    rows = page.eval_on_selector_all("table.attributions tr[data-feature]", "rows => rows.map(r => r.dataset.feature)")
    assert rows, "the score card has no attribution table"
    # An H&E graph feature when the model uses one, else any slide feature.
    target = None
    for name in rows:
        feature = page.evaluate("(n) => fetch(`/api/features/${n}/`).then(r => r.json())", name)
        if feature.get("source_cells") and feature["group"] in ("he", "ihc"):
            if target is None or (feature["source_cells"].get("pair_type") and not target[1]["source_cells"].get("pair_type")):
                target = (name, feature)
    assert target, f"no slide feature among {rows}"
    name, feature = target
    index = 0 if feature["group"] == "he" else 1
    page.evaluate(f"() => window.caseOverlays.setVisible({index}, 'cells', true)")
    _settle(page)
    before = _stage(page, index)
    page.click(f"table.attributions tr[data-feature='{name}']")
    page.wait_for_function(f"() => window.caseOverlays.status({index}).highlight !== null", timeout=15000)
    _settle(page)
    status = page.evaluate(f"() => window.caseOverlays.status({index})")
    assert status["highlight"]["feature"] == name
    assert status["highlight"]["classMask"] or status["highlight"]["her2Mask"]
    if feature["source_cells"].get("pair_type"):
        assert status["highlight"]["pairMask"], "the feature's edges are not selected"
    assert page.evaluate("() => window.caseOverlays.getState().highlight") == name
    highlighted = _stage(page, index)
    assert _diff(before, highlighted) > 0.003, "the highlight did not change the slide"
    page.click(f"table.attributions tr[data-feature='{name}']")  # clears
    page.wait_for_function(f"() => window.caseOverlays.status({index}).highlight === null", timeout=5000)


def test_click_on_a_cell_shows_the_inspector_with_the_api_values(analysed_case, logged_in_page, live_site):
    page = logged_in_page
    _open(page, live_site["url"])
    page.evaluate("() => window.caseOverlays.setVisible(0, 'cells', true)")
    _settle(page)
    # Zoom onto a cell in the middle of the slide's records, then click it.
    target = page.evaluate("""() => {
        const pane = window.caseOverlays.panes[0];
        const rec = pane.records.get('cells');
        if (!rec) return null;
        const c = rec.parsed; let best = -1, bestD = Infinity;
        const w = window.caseViewer.panes[0].slide.width / 2, h = window.caseViewer.panes[0].slide.height / 2;
        for (let i = 0; i < c.count; i++) {
          const d = Math.hypot(c.f32[3 * i] - w, c.f32[3 * i + 1] - h);
          if (d < bestD) { bestD = d; best = i; }
        }
        return {x: c.f32[3 * best], y: c.f32[3 * best + 1], id: c.u32[3 * best + 2] >>> 8};
    }""")
    assert target, "no cell records on the H&E at the home view"
    page.evaluate("(t) => window.caseViewer.setState({center: {x: t.x, y: t.y}, zoom: 2, rotation: 0})", target)
    _settle(page)
    assert page.evaluate("() => window.caseOverlays.status(0).layers.cells.mode") == "records"
    point = page.evaluate("(t) => window.caseOverlays.recordScreenPoint(0, 'cells', {id: t.id})", target)
    page.mouse.move(point["x"], point["y"])
    page.wait_for_function(f"() => window.caseOverlays.status(0).hover === {target['id']}", timeout=5000)
    page.mouse.click(point["x"], point["y"])
    page.wait_for_function(f"() => window.caseOverlays.status(0).inspected === {target['id']}", timeout=60000)
    slide_id = page.evaluate("() => window.caseViewer.panes[0].slide.id")
    expected = page.evaluate(f"() => fetch('/api/slides/{slide_id}/cells/{target['id']}/').then(r => r.json())")
    inspector = page.locator(".cv-pane[data-index='0'] .ov-inspector")
    assert inspector.get_attribute("data-cell-id") == str(expected["id"])
    assert inspector.locator("[data-field='cls']").inner_text().lower() == expected["cls"].replace("_", " ")
    if expected.get("prob") is not None:
        assert float(inspector.locator("[data-field='prob']").inner_text()) == pytest.approx(expected["prob"], rel=1e-3)
    if expected.get("area_um2") is not None:
        assert float(inspector.locator("[data-field='area_um2']").inner_text()) == pytest.approx(expected["area_um2"], rel=1e-3)
    for pair, metrics in (expected.get("graph") or {}).items():
        for metric, value in metrics.items():
            if isinstance(value, (int, float)) and value == value:
                cell = inspector.locator(f"td[data-pair='{pair}'][data-metric='{metric}']")
                assert float(cell.inner_text().replace(",", "")) == pytest.approx(value, rel=1e-3, abs=1e-3)
            break
    assert page.locator(".cv-pane[data-index='0'] .ov-contour polygon").count() == (1 if expected.get("contour") else 0)
