"""Issue 14 items 14 and 20 in Chromium on the real product (demo case analysed by the server's
worker): an annotation's panel shows its region statistics, equal to a count done directly from
the run's cell table; the QC layer toggles from the layer panel and draws tissue and tile outlines."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.e2e.test_overlays import _diff, _open, _settle, _stage, analysed_case  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e
CREATE_JS = """async ([slide, geometry]) => {
  const token = (document.cookie.match(/(?:^|;\\s*)csrftoken=([^;]+)/) || [])[1]
    || JSON.parse(document.getElementById('case-viewer-config').textContent).csrfToken;
  const r = await fetch(`/api/slides/${slide}/annotations/`, {method: 'POST', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json', 'X-CSRFToken': decodeURIComponent(token || '')},
    body: JSON.stringify({type: 'Feature', geometry, properties: {label: 'artefact', shape: 'freehand'}})});
  return {status: r.status, body: await r.json()};
}"""


def _cells_of(live_site, slide_id: int):
    from analysis.core.cells.table import read_cells

    runs = sorted(Path(live_site["data_dir"]).glob(f"**/slide-{slide_id}/run-*/cells.parquet"),
                  key=lambda p: p.stat().st_mtime)
    assert runs, "no run folder of the slide"
    return read_cells(path=runs[-1], columns=["x", "y", "cls", "her2_class"])


def test_annotation_panel_shows_region_statistics(analysed_case, logged_in_page, live_site, tmp_path):
    from analysis.core.cells.region import points_in_rings
    from analysis.core.her2.grading import h_score, her2_slide_score

    page = logged_in_page
    _open(page, live_site["url"])
    page.evaluate("() => window.caseAnnotations.ready")
    ihc = page.request.get(f"{live_site['url']}/api/slides/{analysed_case['slides']['ihc']['id']}/").json()
    w, h = ihc["width"], ihc["height"]
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    ring = np.c_[w / 2 + 0.3 * w * np.cos(t), h / 2 + 0.3 * h * np.sin(t)].round(1).tolist()
    created = page.evaluate(CREATE_JS, [ihc["id"], {"type": "Polygon", "coordinates": [ring + [ring[0]]]}])
    assert created["status"] == 201, created
    record = created["body"]
    page.evaluate("(id) => window.caseAnnotations.reload(id)", ihc["id"])
    page.wait_for_function("(id) => window.caseAnnotations.records().some(r => r.id === id)", arg=record["id"],
                           timeout=15000)
    page.evaluate("(id) => window.caseAnnotations.select(id, {fit: true})", record["id"])
    panel = page.locator(f"#an-selected[data-annotation='{record['id']}'] .an-stats")
    panel.locator("[data-stat='cells']").wait_for(timeout=30000)

    # the count done directly from the run's cell table
    cells = _cells_of(live_site, ihc["id"])
    inside = points_in_rings(x=cells["x"].to_numpy(), y=cells["y"].to_numpy(),
                             rings=[np.asarray(record["geometry"]["coordinates"][0], float)])
    truth = cells[inside]
    graded = truth.loc[truth["cls"] == "tumour", "her2_class"].dropna()
    assert len(truth) > 50
    assert panel.locator("[data-stat='cells']").inner_text().replace(",", "") == str(len(truth))
    for cls, n in truth["cls"].value_counts().items():
        row = panel.locator(f"table:nth-of-type(1) tr[data-key='{cls}'] td")
        assert row.inner_text().replace(",", "") == str(n), cls
    for grade, n in graded.value_counts().items():
        assert panel.locator(f"table:nth-of-type(2) tr[data-key='{grade}'] td").inner_text().replace(",", "") == str(n)
    assert panel.locator("[data-stat='asco']").inner_text() == her2_slide_score(her2_class=graded).score
    assert panel.locator("[data-stat='hscore']").inner_text() == str(round(h_score(her2_class=graded)))
    mpp = ihc.get("mpp_x")
    area_text = panel.locator("[data-stat='area']").inner_text()
    assert area_text.endswith("mm²")
    if mpp:
        r = np.asarray(record["geometry"]["coordinates"][0], float)
        area = 0.5 * abs(np.dot(r[:, 0], np.roll(r[:, 1], -1)) - np.dot(r[:, 1], np.roll(r[:, 0], -1))) * mpp * mpp / 1e6
        assert float(area_text.split()[0]) == pytest.approx(area, rel=0.01)
    page.locator("#an-selected").screenshot(path=str(tmp_path / "region-statistics.png"))  # docs/img has a copy


def test_qc_layer_toggles_and_draws(analysed_case, logged_in_page, live_site, tmp_path):
    page = logged_in_page
    _open(page, live_site["url"])
    for index in (0, 1):
        layers = {layer["name"]: layer for layer in page.evaluate(f"() => window.caseOverlays.layers({index})")}
        assert "qc" in layers and layers["qc"]["kind"] == "qc"
        labels = [e["label"] for e in layers["qc"]["legend"]]
        assert labels[0].startswith("Tissue analysed") and labels[1].startswith("Tiles analysed")
        before = _stage(page, index)
        toggle = page.locator(f".cv-pane[data-index='{index}'] .ov-panel-toggle")
        toggle.click()
        page.check(f".cv-pane[data-index='{index}'] input[data-layer='qc']")
        legend = page.locator(f".cv-pane[data-index='{index}'] .ov-layer[data-layer='qc'] .ov-legend li")
        assert legend.count() == len(labels) and legend.locator("input").count() == 0  # a key, not toggles
        if index == 0:
            page.locator(f".cv-pane[data-index='{index}'] .ov-panel").screenshot(path=str(tmp_path / "qc-layer-panel.png"))
        toggle.click()
        _settle(page)
        after = _stage(page, index)
        assert page.evaluate(f"() => window.caseOverlays.status({index}).layers.qc.tiles") == "loaded"
        assert _diff(before, after) > 0.01, "the QC layer drew nothing"
        if index == 0:
            page.locator(f".cv-pane[data-index='{index}'] .cv-stage").screenshot(path=str(tmp_path / "qc-layer.png"))  # docs/img has a copy
        toggle.click()
        page.uncheck(f".cv-pane[data-index='{index}'] input[data-layer='qc']")
        toggle.click()
        _settle(page)
        assert _diff(before, _stage(page, index)) < 0.003  # off again: the slide as before


POINT_JS = CREATE_JS.replace("shape: 'freehand'", "shape: 'point'")


def test_a_point_annotation_says_it_has_no_area(analysed_case, logged_in_page, live_site):
    """A point's panel read "Area a point: no area"; it says "Area: — (a point has no area)"."""
    page = logged_in_page
    _open(page, live_site["url"])
    page.evaluate("() => window.caseAnnotations.ready")
    he = analysed_case["slides"]["he"]["id"]
    created = page.evaluate(POINT_JS, [he, {"type": "Point", "coordinates": [500.0, 600.0]}])
    assert created["status"] == 201, created
    record = created["body"]
    page.evaluate("(id) => window.caseAnnotations.reload(id)", he)
    page.wait_for_function("(id) => window.caseAnnotations.records().some(r => r.id === id)", arg=record["id"],
                           timeout=15000)
    page.evaluate("(id) => window.caseAnnotations.select(id, {fit: true})", record["id"])
    stats = page.locator(f"#an-selected[data-annotation='{record['id']}'] .an-stats")
    stats.locator("[data-stat='area']").wait_for(timeout=15000)
    assert stats.inner_text().splitlines()[-1] == "Area: — (a point has no area)"
    assert stats.locator("[data-stat='cells']").count() == 0
