"""A pathologist draws annotations on DEMO-001 in Chromium (Annotorious 3 on OpenSeadragon);
they survive a reload, and the slide's GeoJSON export has the structure QuPath reads."""
from __future__ import annotations

import math
import numbers

import pytest

pytestmark = pytest.mark.e2e


def validate_qupath_geojson(data) -> int:
    """The structure QuPath's GeoJSON import reads; returns the number of features."""
    assert isinstance(data, dict) and data.get("type") == "FeatureCollection", "not a FeatureCollection"
    assert isinstance(data.get("features"), list)

    def position(p):
        assert isinstance(p, list) and len(p) == 2, f"position {p!r} is not [x, y]"
        assert all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in p), p

    for feature in data["features"]:
        assert feature.get("type") == "Feature"
        geometry = feature["geometry"]
        assert geometry["type"] in ("Polygon", "MultiPolygon", "Point", "LineString")
        if geometry["type"] == "Point":
            position(geometry["coordinates"])
        else:
            polygons = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
            for rings in polygons:
                assert isinstance(rings, list) and rings
                for ring in rings:
                    assert len(ring) >= 4, "a ring needs at least 4 positions"
                    for p in ring:
                        position(p)
                    assert ring[0] == ring[-1], "ring not closed"
        properties = feature["properties"]
        assert properties["objectType"] == "annotation"
        classification = properties["classification"]
        assert isinstance(classification["name"], str) and classification["name"]
        color = classification.get("color")
        assert color is None or (len(color) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in color))
    return len(data["features"])


def _open_demo_case(page, url: str) -> dict:
    # The demo's analysis jobs run in the server's worker meanwhile: do not wait for every
    # thumbnail ('load'), only for the document, then for the viewers.
    if page.url != f"{url}/cases/DEMO-001/":
        page.goto(f"{url}/cases/DEMO-001/", wait_until="domcontentloaded", timeout=90000)
    page.wait_for_function("window.caseViewer !== undefined && window.caseAnnotations !== undefined", timeout=60000)
    page.evaluate("() => window.caseViewer.ready")
    page.evaluate("() => window.caseAnnotations.ready")
    page.wait_for_function("window.caseViewer.viewers.every(v => v.world.getItemCount() && v.getFullyLoaded())",
                           timeout=90000)
    return page.evaluate("() => JSON.parse(document.getElementById('review-config').textContent)")


def _stage(page, index: int) -> dict:
    return page.evaluate("""(i) => { const r = window.caseViewer.panes[i].viewer.element.getBoundingClientRect();
        return {x: r.left, y: r.top, width: r.width, height: r.height}; }""", index)


def _to_image(page, index: int, x: float, y: float, box: dict) -> list[float]:
    p = page.evaluate("([i, x, y]) => window.caseViewer.panes[i].elementToImage({x, y})",
                      [index, x - box["x"], y - box["y"]])
    return [p["x"], p["y"]]


def test_draw_polygon_label_reload_and_export(logged_in_page, live_site):
    page = logged_in_page
    url = live_site["url"]
    config = _open_demo_case(page, url)
    he = config["slides"][0]
    assert he["stain"] == "he"
    assert page.evaluate("(id) => window.caseAnnotations.records().filter(r => r.slide === id).length", he["id"]) == 0

    page.select_option("#an-slide", str(he["id"]))
    page.select_option("#an-label", "missed tumour region")
    page.fill("#an-comment", "e2e polygon")
    page.click(".an-buttons button[data-tool='polygon']")
    assert page.get_attribute(".an-buttons button[data-tool='polygon']", "aria-pressed") == "true"

    box = _stage(page, 0)
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    vertices = [(cx - 120, cy - 80), (cx + 110, cy - 90), (cx + 130, cy + 70), (cx - 100, cy + 90)]
    expected = [_to_image(page, 0, x, y, box) for x, y in vertices]
    zoom = page.evaluate("() => window.caseViewer.panes[0].getView().zoom")  # screen px per level-0 px
    for x, y in vertices[:-1]:
        page.mouse.move(x, y, steps=4)
        page.mouse.click(x, y)
        page.wait_for_timeout(350)  # separate clicks, not a double click
    page.mouse.move(*vertices[-1], steps=4)
    page.mouse.dblclick(*vertices[-1])

    page.wait_for_function("(id) => window.caseAnnotations.records().some(r => r.slide === id)", arg=he["id"],
                           timeout=15000)
    record = page.evaluate("(id) => window.caseAnnotations.records().find(r => r.slide === id)", he["id"])
    assert record["label"] == "missed tumour region" and record["comment"] == "e2e polygon"
    assert record["author"] == "pathologist" and record["shape"] == "polygon"
    ring = record["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 5
    tolerance = 3 / zoom  # 3 screen px, in level-0 px
    for got, want in zip(ring[:-1], expected):
        assert math.dist(got, want) < tolerance, (ring, expected)
    assert page.get_attribute(".an-buttons button[data-tool='polygon']", "aria-pressed") == "false"

    page.reload(wait_until="domcontentloaded", timeout=90000)
    _open_demo_case(page, url)
    after = page.evaluate("(id) => window.caseAnnotations.records().filter(r => r.slide === id)", he["id"])
    assert [(a["id"], a["label"], a["comment"], a["geometry"]) for a in after] == \
        [(record["id"], "missed tumour region", "e2e polygon", record["geometry"])]
    shown = page.evaluate("(id) => window.caseAnnotations.annotator(id).getAnnotations().map(a => a.id)", he["id"])
    assert shown == [str(record["id"])]
    assert page.locator(f"#an-list li[data-annotation='{record['id']}']").count() == 1
    assert "missed tumour region" in page.inner_text("#an-list")

    response = page.request.get(f"{url}/api/slides/{he['id']}/annotations.geojson")
    assert response.status == 200
    exported = response.json()
    assert validate_qupath_geojson(exported) == 1
    feature = exported["features"][0]
    assert feature["geometry"] == record["geometry"]
    assert feature["properties"]["classification"]["name"] == "missed tumour region"
    assert feature["properties"]["author"] == "pathologist"


def test_point_and_freehand_then_revert_in_the_panel(logged_in_page, live_site):
    page = logged_in_page
    url = live_site["url"]
    config = _open_demo_case(page, url)
    ihc = config["slides"][1]
    before = page.evaluate("() => window.caseAnnotations.records().length")
    page.select_option("#an-slide", str(ihc["id"]))
    page.select_option("#an-label", "HER2 grade wrong")
    page.click(".an-buttons button[data-tool='point']")
    box = _stage(page, 1)
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.click(cx, cy)
    page.wait_for_function("(n) => window.caseAnnotations.records().length === n + 1", arg=before, timeout=15000)
    point = max(page.evaluate("() => window.caseAnnotations.records()"), key=lambda r: r["id"])
    assert point["shape"] == "point" and point["slide"] == ihc["id"]
    assert page.locator(f".an-points circle[data-annotation='{point['id']}']").count() == 1

    page.select_option("#an-label", "artefact")
    page.click(".an-buttons button[data-tool='freehand']")
    view_before = page.evaluate("() => window.caseViewer.panes[1].getView().center")
    page.mouse.move(cx - 60, cy - 60)
    page.mouse.down()
    for step in range(24):
        angle = 2 * math.pi * step / 24
        page.mouse.move(cx + 70 * math.cos(angle), cy + 70 * math.sin(angle), steps=2)
    page.mouse.up()
    page.wait_for_function("(n) => window.caseAnnotations.records().length === n + 2", arg=before, timeout=15000)
    freehand = max(page.evaluate("() => window.caseAnnotations.records()"), key=lambda r: r["id"])
    assert freehand["shape"] == "freehand" and freehand["label"] == "artefact"
    assert len(freehand["geometry"]["coordinates"][0]) > 10
    assert page.evaluate("() => window.caseViewer.panes[1].getView().center") == view_before, "the drag panned"

    # Edit the comment in the panel, then revert to the first revision from the history.
    page.evaluate("(id) => window.caseAnnotations.select(id, {fit: false})", freehand["id"])
    page.fill("#an-selected .an-edit-comment", "changed")
    page.click("#an-selected .an-save")
    page.wait_for_function("(id) => window.caseAnnotations.records().find(r => r.id === id).comment === 'changed'",
                           arg=freehand["id"], timeout=10000)
    page.click("#an-selected .an-history")
    page.click("#an-selected li[data-revision='1'] .an-revert")
    page.wait_for_function("(id) => window.caseAnnotations.records().find(r => r.id === id).version === 3",
                           arg=freehand["id"], timeout=10000)
    reverted = page.evaluate("(id) => window.caseAnnotations.records().find(r => r.id === id)", freehand["id"])
    assert reverted["comment"] == "" and reverted["geometry"] == freehand["geometry"]
