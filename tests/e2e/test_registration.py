"""Synced viewing through the automatic registration (issue 17), in the real product and browser:
a pathologist runs "Auto" in Align mode on a real serial pair (her2st C2 / C3); the browser then
maps points through the non-rigid field exactly as the server's map_points_* do, the IHC view
follows the field, and the linked cursor marks the same tissue in the other pane."""
from __future__ import annotations

import hashlib
import io
import json
import time
import math
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from PIL import Image

from analysis.core.slides.registration import (
    DisplacementField,
    Similarity,
    map_points_fixed_to_moving,
    map_points_moving_to_fixed,
)
from tests._env import PROJECT_ROOT, SHARED_DATA

pytestmark = pytest.mark.e2e

SLIDES = SHARED_DATA / "slides"
SETTLED_JS = """() => window.caseViewer.viewers.every(v => {
  const vp = v.viewport;
  return vp.centerSpringX.isAtTargetValue() && vp.centerSpringY.isAtTargetValue() && vp.zoomSpring.isAtTargetValue();
})"""


def _api(page, method: str, url: str, data: dict | None = None):
    """A request as the logged-in page (its session cookie and CSRF token)."""
    csrf = next((c["value"] for c in page.context.cookies() if c["name"] == "csrftoken"), "")
    headers = {"X-CSRFToken": csrf, "Accept": "application/json", "Referer": url}
    if data is not None:
        headers["Content-Type"] = "application/json"
    return page.request.fetch(url, method=method, headers=headers,
                              data=json.dumps(data) if data is not None else None)


@pytest.fixture(scope="module")
def her2st_case_id():
    for name in ("her2st-C2-HE.jpg", "her2st-C3-HE.jpg"):
        if not (SLIDES / name).exists():
            pytest.skip(f"missing test file {SLIDES / name}")
    return "REG-E2E"


def _wait_slide_ready(page, url: str, slide_id: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        slide = _api(page, "GET", f"{url}/api/slides/{slide_id}/").json()
        if slide["status"] == "ready":
            return
        assert slide["status"] != "failed", slide
        assert time.monotonic() < deadline, f"slide {slide_id} still {slide['status']}"
        time.sleep(1)


def _make_case(page, url: str, case_id: str) -> int:
    existing = _api(page, "GET", f"{url}/api/cases/?case_id={case_id}").json()
    rows = existing["results"] if isinstance(existing, dict) else existing
    if rows:
        return rows[0]["id"]
    created = _api(page, "POST", f"{url}/api/cases/", {
        "case_id": case_id, "age": 50, "clinical_t": "T2", "clinical_n": "N0", "clinical_stage": "II",
        "er_status": "positive", "pr_status": "negative", "hr_status": "positive", "her2_ihc": "3+"})
    assert created.status == 201, created.text()
    pk = created.json()["id"]
    for stain, name in (("he", "her2st-C2-HE.jpg"), ("ihc", "her2st-C3-HE.jpg")):
        slide = _api(page, "POST", f"{url}/api/slides/", {"case": pk, "stain": stain, "path": str(SLIDES / name)})
        # 202: a plain JPEG is converted to a pyramid by a job first (201 when converted before)
        assert slide.status in (201, 202), slide.text()
        slide_id = slide.json()["id"]
        _wait_slide_ready(page, url, slide_id)
        # the JPEGs carry no resolution; 0.7 um/px as in benchmarks/registration.py
        mpp = _api(page, "PUT", f"{url}/api/slides/{slide_id}/mpp/", {"mpp": 0.7})
        assert mpp.status == 200, mpp.text()
    return pk


def test_auto_registration_and_synced_viewing_through_the_field(logged_in_page, live_site, her2st_case_id):
    page, url = logged_in_page, live_site["url"]
    pk = _make_case(page, url, her2st_case_id)
    page.goto(f"{url}/cases/{her2st_case_id}/")
    page.wait_for_function("window.caseViewer !== undefined", timeout=60000)
    page.evaluate("() => window.caseViewer.ready")

    # Align mode -> Auto: the job runs in the product's worker; the viewer takes its result.
    page.click(".cv-align")
    # its hint stands clear of both navigators (it covered the H&E one at the seam of the panes)
    hint = page.wait_for_selector(".cv-toast", state="visible", timeout=5000).bounding_box()
    for index in (0, 1):
        nav = page.locator(f".cv-pane[data-index='{index}'] .navigator").bounding_box()
        apart = (hint["y"] + hint["height"] <= nav["y"] or nav["y"] + nav["height"] <= hint["y"]
                 or hint["x"] + hint["width"] <= nav["x"] or nav["x"] + nav["width"] <= hint["x"])
        assert apart, (index, hint, nav)
    page.click(".cv-align-auto")
    page.wait_for_function("window.caseViewer.registration.field !== null", timeout=240000)
    assert page.evaluate("() => window.caseViewer.alignMode") is False
    assert page.evaluate("() => window.caseViewer.registration.active") is True
    assert "non-rigid" in page.inner_text(".cv-registration-status")

    alignment = _api(page, "GET", f"{url}/api/cases/{pk}/alignment/").json()
    assert alignment["source"] == "automatic"
    served = _api(page, "GET", url + alignment["field_url"])
    assert served.status == 200
    raw = served.body()
    # the URL names the stored file's checksum: the browser maps with exactly the stored field
    assert hashlib.sha256(raw).hexdigest().startswith(parse_qs(urlparse(alignment["field_url"]).query)["v"][0])
    field = DisplacementField.from_dict(json.loads(raw))
    similarity = Similarity(**{k: alignment[k] for k in ("offset_x", "offset_y", "rotation", "scale")})

    # points over the H&E tissue (the section spans ~1,500-8,000 px in both axes)
    xs, ys = np.meshgrid(np.linspace(2200, 7600, 7), np.linspace(2500, 8600, 7))
    points = np.column_stack([xs.ravel(), ys.ravel()])
    server_fwd = map_points_fixed_to_moving(points=points, similarity=similarity, field=field)
    server_inv = map_points_moving_to_fixed(points=server_fwd, similarity=similarity, field=field)
    browser_fwd = np.array(page.evaluate(
        "pts => pts.map(([x, y]) => { const q = window.caseViewer.registration.mapPoint(0, 1, {x, y}); return [q.x, q.y]; })",
        points.tolist()))
    browser_inv = np.array(page.evaluate(
        "pts => pts.map(([x, y]) => { const q = window.caseViewer.registration.mapPoint(1, 0, {x, y}); return [q.x, q.y]; })",
        server_fwd.tolist()))
    assert np.abs(browser_fwd - server_fwd).max() < 1e-3  # same float16 grid, both float64: identical
    assert np.abs(browser_inv - server_inv).max() < 1e-3
    # and the field matters here: the similarity alone would put some points elsewhere
    similarity_only = similarity.apply(points)
    assert np.hypot(*(server_fwd - similarity_only).T).max() > 3.0

    # synced views follow the field: the H&E centre shows up at the IHC centre
    target = points[24]
    page.evaluate("p => window.caseViewer.setState({center: {x: p[0], y: p[1]}, zoom: 0.4, rotation: 0})",
                  target.tolist())
    page.wait_for_function(SETTLED_JS, timeout=30000)
    ihc_center = page.evaluate("() => window.caseViewer.panes[1].getView().center")
    expected = map_points_fixed_to_moving(points=target, similarity=similarity, field=field)[0]
    assert math.dist((ihc_center["x"], ihc_center["y"]), expected) < 1.0

    # the linked cursor: the tissue under the mouse in the H&E is marked at the same tissue in the IHC
    box = page.locator(".cv-pane[data-index='0'] .cv-osd").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.6)
    marker = page.locator(".cv-pane[data-index='1'] .cv-linked-cursor")
    marker.wait_for(state="visible")
    under_mouse = page.evaluate("""([x, y]) => {
        const pane = window.caseViewer.panes[0];
        const rect = pane.osdElement.getBoundingClientRect();
        return pane.elementToImage({x: x - rect.left, y: y - rect.top});
    }""", [box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.6])
    mapped = map_points_fixed_to_moving(points=[under_mouse["x"], under_mouse["y"]], similarity=similarity,
                                        field=field)[0]
    marked = (float(marker.get_attribute("data-x")), float(marker.get_attribute("data-y")))
    assert math.dist(marked, mapped) < 1e-3
    page.wait_for_function("window.caseViewer.viewers.every(v => v.getFullyLoaded())", timeout=60000)
    shot = page.screenshot()
    (PROJECT_ROOT / "docs" / "img").mkdir(exist_ok=True)
    (PROJECT_ROOT / "docs" / "img" / "registration-linked-cursor.png").write_bytes(shot)

    # adjusting by hand and saving drops the field; "Reset to automatic" brings it back
    page.click(".cv-align")
    page.keyboard.press("ArrowRight")
    page.click(".cv-align-save")
    page.wait_for_function("window.caseViewer.registration.field === null")
    assert _api(page, "GET", f"{url}/api/cases/{pk}/alignment/").json()["source"] == "manual"
    page.click(".cv-align")
    page.click(".cv-align-restore")
    page.wait_for_function("window.caseViewer.registration.active === true", timeout=30000)
    assert _api(page, "GET", f"{url}/api/cases/{pk}/alignment/").json()["source"] == "automatic"


def test_annotation_shown_on_and_copied_to_the_other_slide(logged_in_page, live_site, her2st_case_id):
    """Runs after the test above (same case, automatic registration applied)."""
    page, url = logged_in_page, live_site["url"]
    pk = _make_case(page, url, her2st_case_id)
    alignment = _api(page, "GET", f"{url}/api/cases/{pk}/alignment/").json()
    if alignment.get("source") != "automatic":
        pytest.skip("needs the automatic registration of the test above")
    he_id, ihc_id = alignment["fixed"], alignment["moving"]
    nest = [[4000, 5000], [5200, 5000], [5200, 6100], [4000, 6100], [4000, 5000]]
    drawn = _api(page, "POST", f"{url}/api/slides/{he_id}/annotations/", {
        "type": "Feature", "geometry": {"type": "Polygon", "coordinates": [nest]},
        "properties": {"label": "missed tumour region", "comment": "tumour nest"}})
    assert drawn.status == 201, drawn.text()
    drawn_id = drawn.json()["id"]

    page.goto(f"{url}/cases/{her2st_case_id}/")
    page.wait_for_function("window.caseViewer !== undefined && window.caseAnnotations !== undefined", timeout=60000)
    page.evaluate("() => window.caseViewer.ready")
    page.evaluate("() => window.caseAnnotations.ready")
    page.evaluate("id => window.caseAnnotations.select(id, {fit: true})", drawn_id)
    page.click(".an-transfer-show")
    preview = page.locator(".cv-pane[data-index='1'] .an-transfer-preview polygon")
    preview.wait_for(state="attached")
    assert "non-rigid" in page.inner_text(".an-transfer-status")
    page.click(".an-transfer-copy")
    page.wait_for_function(f"window.caseAnnotations.records().some(r => r.transferred_from === {drawn_id})")
    copy = page.evaluate(f"() => window.caseAnnotations.records().find(r => r.transferred_from === {drawn_id})")
    assert copy["slide"] == ihc_id and copy["source"] == "transferred" and copy["transfer"]["nonrigid"] is True
    # the copy is selected: its details and its list entry carry the badge
    page.locator(".an-transfer-note .an-transferred").wait_for(state="visible")
    assert page.locator(f"li[data-annotation='{copy['id']}'] .an-transferred").count() == 1
    page.wait_for_function("window.caseViewer.viewers.every(v => v.getFullyLoaded())", timeout=60000)
    (PROJECT_ROOT / "docs" / "img" / "registration-annotation-transfer.png").write_bytes(page.screenshot())


def _pane_pixels(page, index: int) -> np.ndarray:
    page.wait_for_timeout(800)
    page.wait_for_function(f"window.caseViewer.viewers[{index}].getFullyLoaded()", timeout=60000)
    page.wait_for_timeout(300)
    png = page.locator(f".cv-pane[data-index='{index}'] .cv-osd").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(float)


def test_a_rotated_slide_is_drawn_whole(logged_in_page, live_site, her2st_case_id):
    """The IHC of a registered pair is shown rotated; OpenSeadragon's WebGL drawer drew such a view
    as a patchwork (blank rectangles, tissue from elsewhere). The pane turned by 10 degrees must be
    the unturned pane turned by 10 degrees, up to resampling."""
    page, url = logged_in_page, live_site["url"]
    _make_case(page, url, her2st_case_id)
    page.set_viewport_size({"width": 1400, "height": 860})
    page.goto(f"{url}/cases/{her2st_case_id}/")
    page.wait_for_function("window.caseViewer !== undefined", timeout=60000)
    page.evaluate("() => window.caseViewer.ready")
    page.evaluate("() => window.caseViewer.setSync(false)")
    page.evaluate("""() => { const v = window.caseViewer.viewers[1].viewport;  // the C3 tissue edge, at ~2x
        v.setRotation(0, true); v.panTo(v.imageToViewportCoordinates(4800, 5200), true);
        v.zoomTo(v.imageToViewportZoom(0.3), null, true); }""")
    flat = _pane_pixels(page, 1)
    angle = 10
    page.evaluate(f"() => window.caseViewer.viewers[1].viewport.setRotation({angle}, true)")
    turned = _pane_pixels(page, 1)
    h, w = flat.shape[:2]
    expected = np.asarray(Image.fromarray(flat.astype(np.uint8)).rotate(-angle, resample=Image.BILINEAR,
                                                                       center=(w / 2, h / 2))).astype(float)
    yy, xx = np.mgrid[:h, :w]
    inside = np.hypot(yy - h / 2, xx - w / 2) < 0.45 * min(h, w)  # away from the corners the turn leaves empty
    inside[:40, :180] = False  # the Layers button
    differs = np.abs(expected - turned).mean(axis=2)[inside] > 40
    assert differs.mean() < 0.005, f"{differs.mean():.1%} of the turned pane is not the pane turned"
