"""Issue 14 (viewer-a) in Chromium on the analysed demo case DEMO-001: the rectangle tool draws
by dragging, nucleus outlines at high zoom (fill optional), the cell inspector, the attribution
table, per-class density ramps, magnification presets and brightness/contrast/gamma, and the
page details (favicon, navigator, readable annotation labels, upload form inside the panel).
Few page loads on purpose: each test checks several behaviours on one page."""
from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from PIL import Image

from tests.e2e.test_annotations import _open_demo_case
from tests.e2e.test_overlays import _diff, _open, _settle, analysed_case  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e


def _shot(page, x, y, r):
    png = page.screenshot(clip={"x": x - r, "y": y - r, "width": 2 * r, "height": 2 * r})
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


def _luminance(rgb: str) -> float:
    values = [int(v) / 255 for v in rgb[rgb.index("(") + 1:rgb.index(")")].split(",")[:3]]
    lin = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in values]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def _central_cell(page, index=0):
    return page.evaluate("""(i) => {
        const rec = window.caseOverlays.panes[i].records.get('cells');
        const c = rec.parsed; const s = window.caseViewer.panes[i].slide;
        let best = -1, bestD = Infinity;
        for (let k = 0; k < c.count; k++) {
          const d = Math.hypot(c.f32[3 * k] - s.width / 2, c.f32[3 * k + 1] - s.height / 2);
          if (d < bestD) { bestD = d; best = k; }
        }
        return {x: c.f32[3 * best], y: c.f32[3 * best + 1], id: c.u32[3 * best + 2] >>> 8};
    }""", index)


def test_outlines_inspector_display_and_density(analysed_case, logged_in_page, live_site):  # noqa: F811
    page = logged_in_page
    failed = []
    page.on("response", lambda r: failed.append((r.status, r.url)) if r.status >= 400 else None)
    _open(page, live_site["url"])
    page.wait_for_function("window.caseDisplay !== undefined", timeout=10000)
    page.evaluate("() => window.caseDisplay.ready")

    # -- favicon: declared, served (the /favicon.ico of pages without it redirects), no 404 on the page
    assert page.get_attribute("link[rel=icon]", "href").endswith("favicon.svg")
    icon = page.request.get(f"{live_site['url']}/favicon.ico")
    assert icon.status == 200 and "svg" in icon.headers["content-type"]
    assert not [f for f in failed if f[0] == 404], failed

    # -- the navigator is opaque: layers do not show through it
    assert page.evaluate("() => getComputedStyle(document.querySelector('.cv-pane[data-index=\"0\"] .navigator')).opacity") == "1"

    # -- magnification presets from the mpp; keys 1-5 on the active pane
    mpp = page.evaluate("() => window.caseViewer.panes[0].mpp")
    assert mpp
    page.mouse.move(*_centre(page, 0))  # the H&E pane is the active one
    page.keyboard.press("3")
    # the zoom animates to the preset: wait until it has landed (10x: zoom = mpp * 10 / 10), not just near it
    page.wait_for_function("(z) => Math.abs(window.caseViewer.panes[0].getView().zoom / z - 1) < 1e-3", arg=mpp,
                           timeout=10000)
    assert abs(page.evaluate("() => window.caseDisplay.magnification(0)") - 10) < 0.05
    toggle = page.locator(".cv-pane[data-index='0'] .cv-display-toggle")
    assert toggle.inner_text().startswith("10×")
    toggle.click()
    page.click(".cv-pane[data-index='0'] .cv-display button[data-magnification='5']")
    page.wait_for_function("() => Math.abs(window.caseDisplay.magnification(0) - 5) < 0.05", timeout=10000)
    assert page.get_attribute(".cv-pane[data-index='0'] .cv-display button[data-magnification='5']", "aria-pressed") == "true"
    help_rows = page.inner_text(".cv-help-dialog")
    assert "1.25×" in help_rows and "40×" in help_rows

    # -- brightness / contrast / gamma: this pane's slide only, client-side (no new tile requests)
    _settle(page)
    box = page.locator(".cv-pane[data-index='0'] .cv-stage").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    before = _shot(page, cx, cy, 60)
    other_before = _shot(page, *_centre(page, 1), 60)
    tiles = []
    page.on("request", lambda r: tiles.append(r.url) if "_files/" in r.url else None)
    slider = page.locator(".cv-pane[data-index='0'] .cv-display input[data-adjust='gamma']")
    slider.evaluate("(s) => { s.value = '1.8'; s.dispatchEvent(new Event('input', {bubbles: true})); }")
    page.locator(".cv-pane[data-index='0'] .cv-display input[data-adjust='contrast']").evaluate(
        "(s) => { s.value = '1.5'; s.dispatchEvent(new Event('input', {bubbles: true})); }")
    page.wait_for_timeout(300)
    adjusted = page.evaluate("() => window.caseDisplay.adjustments(0)")
    assert adjusted["gamma"] == 1.8 and adjusted["contrast"] == 1.5 and "contrast(1.5)" in adjusted["filter"]
    assert _diff(before, _shot(page, cx, cy, 60)) > 0.05, "the adjustment did not change the slide"
    assert _diff(other_before, _shot(page, *_centre(page, 1), 60)) < 0.003, "the other pane changed"
    assert tiles == [], f"adjusting fetched tiles: {tiles[:3]}"
    assert page.evaluate("() => getComputedStyle(window.caseOverlays.panes[0].canvas).filter") == "none"
    page.click(".cv-pane[data-index='0'] .cv-display button[data-adjust='reset']")
    assert page.evaluate("() => window.caseDisplay.adjustments(0).filter") == ""
    page.click(".cv-pane[data-index='0'] .cv-display-close")

    # -- density layers: one ramp per class, no navy floor
    layers = {layer["name"]: layer for layer in page.evaluate("() => window.caseOverlays.layers(0)")}
    densities = [layers[n]["legend"] for n in layers if n.startswith("density-")]
    assert len(densities) >= 2
    assert len({tuple(e["color"] for e in legend) for legend in densities}) == len(densities), "same ramp twice"
    assert all(legend[0]["color"].upper() != "#00224E" for legend in densities)

    # -- nucleus outlines zoomed far in: the nucleus under the outline stays visible
    page.evaluate("() => window.caseOverlays.setVisible(0, 'cells', true)")
    _settle(page)
    assert page.evaluate("() => window.caseOverlays.status(0).layers.cells.drawn") != "outlines"  # 5x: discs
    target = _central_cell(page)
    page.evaluate("(t) => window.caseViewer.setState({center: {x: t.x, y: t.y}, zoom: 1, rotation: 0})", target)
    _settle(page)
    page.evaluate("() => window.caseDisplay.setMagnification(0, 40)")
    _settle(page)
    status = page.evaluate("() => window.caseOverlays.status(0).layers.cells")
    assert status["drawn"] == "outlines", status
    assert status["outlines"]["cells"] > 0 and status["outlines"]["segments"] >= 3 * status["outlines"]["cells"]
    point = page.evaluate("(t) => window.caseOverlays.recordScreenPoint(0, 'cells', {id: t.id})", target)
    page.mouse.move(5, 5)  # no hover
    _settle(page)
    radius_px = page.evaluate("() => 4.5 / window.caseViewer.panes[0].mpp * window.caseViewer.panes[0].getView().zoom")
    r = int(radius_px * 2)
    outlined = _shot(page, point["x"], point["y"], r)
    page.evaluate("() => window.caseOverlays.setVisible(0, 'cells', false)")
    _settle(page)
    bare = _shot(page, point["x"], point["y"], r)
    centre = slice(r - 2, r + 3)
    assert _diff(bare[centre, centre], outlined[centre, centre]) < 0.2, "the nucleus centre is covered"
    assert _diff(bare, outlined) > 0.02, "no outline drawn"
    page.evaluate("() => { window.caseOverlays.setVisible(0, 'cells', true); window.caseOverlays.setFill(0, 'cells', true); }")
    _settle(page)
    filled = _shot(page, point["x"], point["y"], r)
    assert np.abs(outlined[centre, centre] - filled[centre, centre]).mean() > 8, "the fill option fills nothing"
    page.evaluate("() => window.caseOverlays.setFill(0, 'cells', false)")

    # -- the inspector: opens away from the clicked cell, readable names, nothing clipped
    page.mouse.move(point["x"], point["y"])
    page.wait_for_function(f"() => window.caseOverlays.status(0).hover === {target['id']}", timeout=5000)
    page.mouse.click(point["x"], point["y"])
    page.wait_for_function(f"() => window.caseOverlays.status(0).inspected === {target['id']}", timeout=60000)
    _settle(page)
    inspector = page.locator(".cv-pane[data-index='0'] .ov-inspector")
    ibox = inspector.bounding_box()
    now = page.evaluate("(t) => window.caseOverlays.recordScreenPoint(0, 'cells', {id: t.id})", target)
    inside = ibox["x"] <= now["x"] <= ibox["x"] + ibox["width"] and ibox["y"] <= now["y"] <= ibox["y"] + ibox["height"]
    assert not inside, f"the inspector covers the clicked cell ({now}, {ibox})"
    slide_id = page.evaluate("() => window.caseViewer.panes[0].slide.id")
    expected = page.evaluate(f"() => fetch('/api/slides/{slide_id}/cells/{target['id']}/').then(r => r.json())")
    prob = inspector.locator("[data-field='prob']").inner_text()
    assert prob == "n/a" if expected["prob"] is None else float(prob) == pytest.approx(expected["prob"], rel=1e-3)
    names = inspector.locator("th[data-metric-name]")
    if names.count():
        for i in range(names.count()):
            raw = names.nth(i).get_attribute("data-metric-name")
            assert names.nth(i).inner_text() != raw and names.nth(i).get_attribute("title") == raw
        clipped = inspector.evaluate("""(node) => [...node.querySelectorAll('.ov-graph th, .ov-graph td')]
            .filter(c => c.scrollWidth > c.clientWidth + 1).map(c => c.textContent)""")
        assert clipped == []
        wrap = inspector.locator(".ov-graph-wrap")
        assert wrap.evaluate("(w) => w.scrollWidth <= w.clientWidth + 1"), "the graph table needs a sideways scroll"
    morph = inspector.locator("dt[title^='Morph_']")
    assert morph.count() == 0 or "Morph_" not in morph.first.inner_text()
    # Esc closes it, from the inspector itself or from the slide
    inspector.locator(".ov-close").focus()
    page.keyboard.press("Escape")
    assert inspector.is_hidden()
    now = page.evaluate("(t) => window.caseOverlays.recordScreenPoint(0, 'cells', {id: t.id})", target)  # it panned
    page.mouse.move(now["x"], now["y"])
    page.wait_for_function(f"() => window.caseOverlays.status(0).hover === {target['id']}", timeout=5000)
    page.mouse.click(now["x"], now["y"])
    page.wait_for_function(f"() => window.caseOverlays.status(0).inspected === {target['id']}", timeout=60000)
    page.keyboard.press("Escape")
    assert inspector.is_hidden()


def _centre(page, index):
    box = page.locator(f".cv-pane[data-index='{index}'] .cv-stage").bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def test_rectangle_attribution_table_and_panel_layout(analysed_case, logged_in_page, live_site):  # noqa: F811
    page = logged_in_page
    url = live_site["url"]
    config = _open_demo_case(page, url)
    he = config["slides"][0]

    # -- Rectangle: a drag draws and saves a rectangle, and does not pan
    page.select_option("#an-slide", str(he["id"]))
    page.select_option("#an-label", "missed tumour region")
    page.click(".an-buttons button[data-tool='rectangle']")
    box = page.evaluate("""() => { const r = window.caseViewer.panes[0].viewer.element.getBoundingClientRect();
        return {x: r.left, y: r.top, width: r.width, height: r.height}; }""")
    x0, y0 = box["x"] + box["width"] * 0.35, box["y"] + box["height"] * 0.35
    x1, y1 = box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.55
    corner0 = page.evaluate("(p) => window.caseViewer.panes[0].elementToImage(p)", {"x": x0 - box["x"], "y": y0 - box["y"]})
    corner1 = page.evaluate("(p) => window.caseViewer.panes[0].elementToImage(p)", {"x": x1 - box["x"], "y": y1 - box["y"]})
    view = page.evaluate("() => window.caseViewer.panes[0].getView().center")
    zoom = page.evaluate("() => window.caseViewer.panes[0].getView().zoom")
    before = len(page.evaluate("() => window.caseAnnotations.records()"))
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=6)
    page.mouse.move(x1, y1, steps=6)
    page.mouse.up()
    page.wait_for_function("(n) => window.caseAnnotations.records().length === n + 1", arg=before, timeout=15000)
    record = max(page.evaluate("() => window.caseAnnotations.records()"), key=lambda r: r["id"])
    assert record["shape"] == "rectangle" and record["slide"] == he["id"]
    ring = record["geometry"]["coordinates"][0]
    assert len(ring) == 5 and ring[0] == ring[-1]
    xs, ys = sorted({p[0] for p in ring}), sorted({p[1] for p in ring})
    tolerance = 3 / zoom
    assert len(xs) == 2 and len(ys) == 2
    assert math.isclose(xs[0], corner0["x"], abs_tol=tolerance) and math.isclose(xs[1], corner1["x"], abs_tol=tolerance)
    assert math.isclose(ys[0], corner0["y"], abs_tol=tolerance) and math.isclose(ys[1], corner1["y"], abs_tol=tolerance)
    assert page.evaluate("() => window.caseViewer.panes[0].getView().center") == view, "the drag panned the slide"
    page.reload(wait_until="domcontentloaded", timeout=90000)
    _open_demo_case(page, url)
    assert any(r["id"] == record["id"] and r["shape"] == "rectangle" for r in page.evaluate("() => window.caseAnnotations.records()"))

    # -- the tool follows the slide drawn on: a drag on the IHC with the H&E chosen switches to the IHC
    #    and does not pan (it used to pan silently); the next drag draws there
    ihc = next(s for s in config["slides"] if s["id"] != he["id"])
    page.select_option("#an-slide", str(he["id"]))
    page.click(".an-buttons button[data-tool='rectangle']")
    box = page.evaluate("""() => { const r = window.caseViewer.panes[1].viewer.element.getBoundingClientRect();
        return {x: r.left, y: r.top, width: r.width, height: r.height}; }""")
    views = page.evaluate("() => window.caseViewer.panes.map(p => p.getView().center)")
    before = len(page.evaluate("() => window.caseAnnotations.records()"))
    for attempt in range(2):
        page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.4)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.55, steps=8)
        page.mouse.up()
        if attempt == 0:
            assert page.input_value("#an-slide") == str(ihc["id"])
            assert "Now drawing on" in page.inner_text("#an-hint")
            assert page.evaluate("() => window.caseViewer.panes.map(p => p.getView().center)") == views, "it panned"
    page.wait_for_function("(n) => window.caseAnnotations.records().length === n + 1", arg=before, timeout=15000)
    drawn = max(page.evaluate("() => window.caseAnnotations.records()"), key=lambda r: r["id"])
    assert drawn["shape"] == "rectangle" and drawn["slide"] == ihc["id"]

    # -- annotation labels readable (not light blue on pale blue)
    page.evaluate("(id) => window.caseAnnotations.select(id, {fit: false})", record["id"])
    item = page.locator(f"#an-list li[data-annotation='{record['id']}'] .an-item")
    colour = item.evaluate("(n) => getComputedStyle(n).color")
    background = item.evaluate("""(n) => { for (let e = n; e; e = e.parentElement) {
        const c = getComputedStyle(e).backgroundColor; if (c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent') return c; }
        return 'rgb(255, 255, 255)'; }""")
    assert _contrast(colour, background if not background.startswith("rgba") else "rgb(235, 243, 249)") >= 4.5, (colour, background)

    # -- the attribution table: the chart's inputs, nothing clipped, no sideways scroll, selection shown
    page.wait_for_selector("table.attributions tr[data-feature]")
    figure = json.loads(page.text_content("#score-figures"))
    # the bars' raw input names ride in the hover (customdata: "plain name<br>raw name")
    bars = [c.split("<br>")[-1] for c in figure["data"][0]["customdata"] if c]
    rows = page.eval_on_selector_all("table.attributions tr[data-feature]", "rs => rs.map(r => r.dataset.feature)")
    assert rows == bars
    clipped = page.eval_on_selector_all("table.attributions th, table.attributions td",
                                        "cs => cs.filter(c => c.scrollWidth > c.clientWidth + 1).map(c => c.textContent)")
    assert clipped == [], clipped
    assert page.eval_on_selector("table.attributions", "(t) => t.getBoundingClientRect().right <= t.closest('.card').getBoundingClientRect().right")
    page.click(f"table.attributions tr[data-feature='{rows[0]}']")
    page.wait_for_timeout(300)
    assert page.eval_on_selector(".sidepanel", "(s) => s.scrollLeft") == 0
    assert page.eval_on_selector(".sidepanel", "(s) => s.scrollWidth <= s.clientWidth")
    selected = page.locator(f"table.attributions tr[data-feature='{rows[0]}']")
    assert "ov-selected" in selected.get_attribute("class")
    cell_bg = selected.locator("td").first.evaluate("(n) => getComputedStyle(n).backgroundColor")
    other_bg = page.locator(f"table.attributions tr[data-feature='{rows[1]}'] td").first.evaluate("(n) => getComputedStyle(n).backgroundColor")
    assert cell_bg != other_bg, "the selected row is not highlighted"
    page.click(f"table.attributions tr[data-feature='{rows[0]}']")

    # -- the upload form stays inside the side panel
    form = page.locator("form.upload")
    if form.count():
        assert form.evaluate("""(f) => { const card = f.closest('.card').getBoundingClientRect();
            return [...f.querySelectorAll('input, select, button')].every(e => e.getBoundingClientRect().right <= card.right + 0.5); }""")
    # leave the demo case as found (test_annotations.py expects no H&E annotations of its own run)
    status = page.evaluate("""async (r) => {
        const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
        const reply = await fetch(`/api/annotations/${r.id}/`, {method: 'DELETE', credentials: 'same-origin',
          headers: {'X-CSRFToken': token, 'Content-Type': 'application/json'}, body: JSON.stringify({version: r.version})});
        return reply.status; }""", page.evaluate("(id) => window.caseAnnotations.records().find(r => r.id === id)", record["id"]))
    assert status == 204
