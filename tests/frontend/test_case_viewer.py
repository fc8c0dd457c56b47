"""End-to-end tests of the paired slide viewer (static/viewer/) in headless Chromium.

A temporary site is served by Python's http.server: harness pages built exactly as
the Django case page renders them (docs/viewer.md), the repository's static/ folder,
and two Deep Zoom pyramids made from a real slide (CMU-1-Small-Region.svs):

* slide 1, "H&E": the slide itself, 2220 x 2967 px at 0.499 um/px;
* slide 2, "IHC": the same tissue cropped at (200, 300) and downscaled by 2, so
  p_ihc = 0.5 * p_he + (-100, -150) exactly, at 0.998 um/px. The harness gives the
  viewer this alignment, so sync must map through offset and scale != 1.

Playwright drives the system Chromium (/usr/bin/chromium); it never downloads one.
"""
from __future__ import annotations

import io
import json
import math
import os
import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STATIC_DIR = PROJECT_ROOT / "static"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# Never let Playwright fetch a browser, whatever the environment says.
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

pytestmark = pytest.mark.e2e

HE_MPP = 0.499
IHC_CROP = (200, 300)
IHC_FACTOR = 2
TRUE_ALIGNMENT = {"offset_x": -100.0, "offset_y": -150.0, "rotation": 0.0, "scale": 0.5}
ALIGNMENT_URL = "/api/cases/7/alignment/"
CSRF = "test-csrf-token-123"
BACKGROUND_RGB = (0x11, 0x12, 0x13)  # .cv-stage background in case_viewer.css

sync_api = pytest.importorskip("playwright.sync_api")


# ---------------------------------------------------------------------------
# site: DZI pyramids + harness pages + static/


DZI_TILE = 254
DZI_OVERLAP = 1


def _write_dzi(*, image, out_dir: Path, name: str) -> tuple[int, int]:
    """Write <name>.dzi and <name>_files/<level>/<col>_<row>.jpeg for a PIL image.

    Same geometry as openslide.deepzoom.DeepZoomGenerator(tile_size=254, overlap=1,
    limit_bounds=False) and the Deep Zoom spec: level L is the image halved
    (max_level - L) times, rounding up; tiles carry 1 px of overlap on inner edges.
    Each level is resized once from the one above (DeepZoomGenerator resamples per
    tile: 4x slower, and these tests must stay quick).
    """
    from PIL import Image

    width, height = image.size
    max_level = math.ceil(math.log2(max(width, height)))
    (out_dir / f"{name}.dzi").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" Format="jpeg" Overlap="{DZI_OVERLAP}" '
        f'TileSize="{DZI_TILE}"><Size Width="{width}" Height="{height}"/></Image>\n',
        encoding="utf-8",
    )
    level_image = image
    for level in range(max_level, -1, -1):
        factor = 2 ** (max_level - level)
        size = (math.ceil(width / factor), math.ceil(height / factor))
        if level_image.size != size:
            level_image = level_image.resize(size, Image.Resampling.BOX)
        level_dir = out_dir / f"{name}_files" / str(level)
        level_dir.mkdir(parents=True, exist_ok=True)
        for column in range(math.ceil(size[0] / DZI_TILE)):
            for row in range(math.ceil(size[1] / DZI_TILE)):
                left = column * DZI_TILE - (DZI_OVERLAP if column else 0)
                top = row * DZI_TILE - (DZI_OVERLAP if row else 0)
                right = min((column + 1) * DZI_TILE + DZI_OVERLAP, size[0])
                bottom = min((row + 1) * DZI_TILE + DZI_OVERLAP, size[1])
                level_image.crop((left, top, right, bottom)).save(level_dir / f"{column}_{row}.jpeg", quality=80)
    return width, height


def _harness_html(config: dict) -> str:
    """The page exactly as the Django template renders it (docs/viewer.md)."""
    config_json = json.dumps(config).replace("</", "<\\/")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>case viewer harness</title>
<link rel="stylesheet" href="/static/viewer/case_viewer.css">
</head><body style="margin:0;padding:8px;background:#f4f4f4">
<script src="/static/vendor/openseadragon/openseadragon.min.js"></script>
<div id="case-viewer"></div>
<script id="case-viewer-config" type="application/json">{config_json}</script>
<script type="module" src="/static/viewer/case_viewer.js"></script>
</body></html>
"""


def _slide_config(*, he_size, ihc_size, ihc_mpp):
    return [
        {"id": 1, "stain": "he", "label": "H&E", "name": "CMU-1-Small-Region.svs", "dzi_url": "/slides/1.dzi",
         "width": he_size[0], "height": he_size[1], "mpp": HE_MPP},
        {"id": 2, "stain": "ihc", "label": "HER2 IHC", "name": "CMU-1 crop, half size", "dzi_url": "/slides/2.dzi",
         "width": ihc_size[0], "height": ihc_size[1], "mpp": ihc_mpp},
    ]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory, shared_file):
    if not (STATIC_DIR / "vendor" / "openseadragon" / "openseadragon.min.js").is_file():
        pytest.skip("static/vendor/openseadragon missing: run `npm ci && python scripts/vendor_static.py`")
    openslide = pytest.importorskip("openslide")
    from PIL import Image

    root = tmp_path_factory.mktemp("viewer_site")
    (root / "static").symlink_to(STATIC_DIR, target_is_directory=True)
    slides_dir = root / "slides"
    slides_dir.mkdir()

    with openslide.OpenSlide(str(shared_file("slides/CMU-1-Small-Region.svs"))) as svs:
        assert float(svs.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(HE_MPP)
        full = svs.read_region((0, 0), 0, svs.dimensions).convert("RGB")
    he_size = _write_dzi(image=full, out_dir=slides_dir, name="1")
    crop = full.crop((IHC_CROP[0], IHC_CROP[1], full.width, full.height))
    ihc = crop.resize((crop.width // IHC_FACTOR, crop.height // IHC_FACTOR), Image.Resampling.BOX)
    ihc_size = _write_dzi(image=ihc, out_dir=slides_dir, name="2")

    pages = {
        "pair.html": {
            "drawer": "canvas",  # 2D canvas: fast and readable in headless Chromium (WebGL = SwiftShader, ~4x slower)
            "csrfToken": CSRF,
            "osdImagesUrl": "/static/vendor/openseadragon/images/",
            "slides": _slide_config(he_size=he_size, ihc_size=ihc_size, ihc_mpp=HE_MPP * IHC_FACTOR),
            "alignment": {"url": ALIGNMENT_URL, **TRUE_ALIGNMENT, "editable": True},
        },
        # IHC without mpp and no saved alignment: default scale 1, no Align button.
        "nompp.html": {
            "drawer": "canvas",
            "csrfToken": CSRF,
            "osdImagesUrl": "/static/vendor/openseadragon/images/",
            "slides": _slide_config(he_size=he_size, ihc_size=ihc_size, ihc_mpp=None),
            "alignment": None,
        },
    }
    # The product default: no "drawer" key, OpenSeadragon picks (WebGL here, via SwiftShader).
    pages["default-drawer.html"] = {key: value for key, value in pages["pair.html"].items() if key != "drawer"}
    broken = json.loads(json.dumps(pages["pair.html"]))
    broken["slides"][1]["dzi_url"] = "/slides/missing.dzi"
    pages["broken-ihc.html"] = broken
    pages["bad-config.html"] = {"csrfToken": CSRF, "slides": []}
    single = json.loads(json.dumps(pages["pair.html"]))
    single["slides"], single["alignment"] = single["slides"][:1], None
    pages["single.html"] = single
    for name, config in pages.items():
        (root / name).write_text(_harness_html(config), encoding="utf-8")

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.server_address[1]}", "he_size": he_size, "ihc_size": ihc_size}
    server.shutdown()
    server.server_close()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing: apt-get install -y chromium")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _open(browser, site, page_name: str):
    context = browser.new_context(viewport={"width": 1400, "height": 820})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{site['url']}/{page_name}")
    page.wait_for_function("window.caseViewer !== undefined", timeout=60000)
    page.evaluate("() => window.caseViewer.ready")
    # Every tile of the current view drawn in every viewer.
    page.wait_for_function("window.caseViewer.viewers.every(v => v.world.getItemCount() && v.getFullyLoaded())", timeout=60000)
    _wait_idle(page)
    page.errors = errors
    return page


@pytest.fixture()
def pair_page(browser, site):
    page = _open(browser, site, "pair.html")
    yield page
    assert page.errors == [], f"page errors: {page.errors}"
    page.context.close()


@pytest.fixture()
def nompp_page(browser, site):
    page = _open(browser, site, "nompp.html")
    yield page
    assert page.errors == [], f"page errors: {page.errors}"
    page.context.close()


# ---------------------------------------------------------------------------
# helpers

IDLE_JS = """() => window.caseViewer.viewers.every(v => {
  const vp = v.viewport;
  return vp.centerSpringX.isAtTargetValue() && vp.centerSpringY.isAtTargetValue()
      && vp.zoomSpring.isAtTargetValue() && vp.degreesSpring.isAtTargetValue();
})"""


def _wait_idle(page) -> None:
    page.wait_for_function(IDLE_JS, timeout=30000)
    # Two frames: the followers' echo of the last sync has been seen and ignored.
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def _views(page) -> tuple[dict, dict]:
    return page.evaluate("() => [window.caseViewer.panes[0].getView(), window.caseViewer.panes[1].getView()]")


def _stage_box(page, index: int) -> dict:
    return page.locator(f".cv-pane[data-index='{index}'] .cv-stage").bounding_box()


def _drag(page, *, index: int, start: tuple[float, float], delta: tuple[float, float]) -> None:
    """Mouse drag inside pane `index`, start relative to the stage's top-left corner."""
    box = _stage_box(page, index)
    x0, y0 = box["x"] + start[0], box["y"] + start[1]
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + delta[0], y0 + delta[1], steps=12)
    page.mouse.up()
    _wait_idle(page)


def _apply(alignment: dict, point: dict) -> dict:
    theta = math.radians(alignment["rotation"])
    c, s, k = math.cos(theta), math.sin(theta), alignment["scale"]
    return {"x": k * (c * point["x"] - s * point["y"]) + alignment["offset_x"],
            "y": k * (s * point["x"] + c * point["y"]) + alignment["offset_y"]}


def _assert_linked(he: dict, ihc: dict, alignment: dict, *, tolerance_screen_px: float = 0.5) -> None:
    expected = _apply(alignment, he["center"])
    error_px = math.hypot(ihc["center"]["x"] - expected["x"], ihc["center"]["y"] - expected["y"]) * ihc["zoom"]
    assert error_px < tolerance_screen_px, f"IHC centre {ihc['center']} != T(H&E centre) {expected}"
    assert ihc["zoom"] == pytest.approx(he["zoom"] / alignment["scale"], rel=1e-6)
    assert (ihc["rotation"] - (he["rotation"] - alignment["rotation"])) % 360 == pytest.approx(0, abs=1e-6)


def _non_background_fraction(png: bytes) -> tuple[float, float]:
    """Fraction of pixels away from the stage background, and the largest channel stddev."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    differs = np.abs(pixels - np.array(BACKGROUND_RGB, dtype=np.int16)).max(axis=2) > 12
    return float(differs.mean()), float(pixels.reshape(-1, 3).std(axis=0).max())


# ---------------------------------------------------------------------------
# tests


def test_both_viewers_paint_tiles(pair_page):
    for index in (0, 1):
        box = _stage_box(pair_page, index)
        # Left part of the stage, away from the navigator (bottom right) and scale bar.
        clip = {"x": box["x"] + box["width"] * 0.2, "y": box["y"] + 20, "width": box["width"] * 0.5, "height": box["height"] * 0.5}
        fraction, spread = _non_background_fraction(pair_page.screenshot(clip=clip))
        assert fraction > 0.5, f"viewer {index}: only {fraction:.0%} of pixels differ from the background"
        assert spread > 8, f"viewer {index}: flat image (stddev {spread:.1f}), no tissue drawn"
    # Toolbars name stain and slide.
    assert pair_page.locator(".cv-pane[data-index='0'] .cv-stain").inner_text() == "H&E"
    assert pair_page.locator(".cv-pane[data-index='1'] .cv-slide-name").inner_text() == "CMU-1 crop, half size"


@pytest.mark.slow
def test_default_drawer_paints_tiles(browser, site):
    """OpenSeadragon's own drawer choice (WebGL when available) also paints both slides."""
    page = _open(browser, site, "default-drawer.html")
    try:
        drawers = page.evaluate("() => window.caseViewer.viewers.map(v => v.drawer.getType())")
        for index in (0, 1):
            box = _stage_box(page, index)
            clip = {"x": box["x"] + box["width"] * 0.2, "y": box["y"] + 20, "width": box["width"] * 0.5, "height": box["height"] * 0.5}
            fraction, spread = _non_background_fraction(page.screenshot(clip=clip))
            assert fraction > 0.5 and spread > 8, f"viewer {index} ({drawers[index]} drawer) drew no tissue"
        he, ihc = _views(page)
        _assert_linked(he, ihc, TRUE_ALIGNMENT)
        assert page.errors == []
    finally:
        page.context.close()


def test_initial_views_are_linked_through_saved_alignment(pair_page):
    he, ihc = _views(pair_page)
    _assert_linked(he, ihc, TRUE_ALIGNMENT)
    # Same physical scale: um per screen pixel equal on both sides.
    assert HE_MPP / he["zoom"] == pytest.approx(HE_MPP * IHC_FACTOR / ihc["zoom"], rel=1e-6)


def test_panning_he_moves_ihc_by_aligned_amount_and_back(pair_page):
    he0, ihc0 = _views(pair_page)
    _drag(pair_page, index=0, start=(300, 250), delta=(-200, -120))
    he1, ihc1 = _views(pair_page)
    # The H&E centre moved by the drag in H&E px; the IHC by half of it (scale 0.5).
    moved_he = (he1["center"]["x"] - he0["center"]["x"], he1["center"]["y"] - he0["center"]["y"])
    assert moved_he[0] == pytest.approx(200 / he0["zoom"], rel=0.03)
    assert moved_he[1] == pytest.approx(120 / he0["zoom"], rel=0.03)
    moved_ihc = (ihc1["center"]["x"] - ihc0["center"]["x"], ihc1["center"]["y"] - ihc0["center"]["y"])
    assert moved_ihc[0] == pytest.approx(0.5 * moved_he[0], rel=1e-4)
    assert moved_ihc[1] == pytest.approx(0.5 * moved_he[1], rel=1e-4)
    _assert_linked(he1, ihc1, TRUE_ALIGNMENT)

    # Both ways: dragging the IHC moves the H&E through the inverse transform.
    _drag(pair_page, index=1, start=(300, 250), delta=(150, 60))
    he2, ihc2 = _views(pair_page)
    assert he2["center"]["x"] < he1["center"]["x"]
    _assert_linked(he2, ihc2, TRUE_ALIGNMENT)

    # Wheel zoom on the IHC (animated, about the pointer): the H&E follows every frame.
    box = _stage_box(pair_page, 1)
    pair_page.mouse.move(box["x"] + 200, box["y"] + 150)
    pair_page.mouse.wheel(0, -240)
    _wait_idle(pair_page)
    he3, ihc3 = _views(pair_page)
    assert he3["zoom"] > he2["zoom"] * 1.1
    _assert_linked(he3, ihc3, TRUE_ALIGNMENT)


def test_zoom_and_rotation_follow_through_rotated_alignment(pair_page):
    rotated = {"offset_x": 900.0, "offset_y": -250.0, "rotation": 30.0, "scale": 0.5}
    pair_page.evaluate("a => window.caseViewer.setAlignment(a)", rotated)
    pair_page.keyboard.press("+")
    _wait_idle(pair_page)
    pair_page.keyboard.press("r")
    _wait_idle(pair_page)
    he, ihc = _views(pair_page)
    assert he["rotation"] % 360 == pytest.approx(90)
    _assert_linked(he, ihc, rotated)
    state = pair_page.evaluate("() => window.caseViewer.getState()")
    assert state["rotation"] == pytest.approx(he["rotation"])


def test_sync_toggle_decouples_viewers(pair_page):
    pair_page.keyboard.press("s")
    assert pair_page.locator(".cv-sync").get_attribute("aria-pressed") == "false"
    _, ihc0 = _views(pair_page)
    _drag(pair_page, index=0, start=(300, 250), delta=(-150, 0))
    he1, ihc1 = _views(pair_page)
    assert ihc1["center"] == ihc0["center"]
    pair_page.keyboard.press("s")  # on again: the IHC snaps back onto the H&E
    _wait_idle(pair_page)
    he2, ihc2 = _views(pair_page)
    _assert_linked(he2, ihc2, TRUE_ALIGNMENT)


def test_set_state_round_trips_and_fires_change_event(pair_page):
    pair_page.evaluate("""() => {
      window.__events = [];
      document.addEventListener('caseviewer:change', e => window.__events.push(e.detail));
      window.__callbacks = 0;
      window.caseViewer.onChange(() => { window.__callbacks += 1; });
    }""")
    target = {"center": {"x": 1000.0, "y": 1500.0}, "zoom": 0.8, "rotation": 45.0}
    pair_page.evaluate("s => window.caseViewer.setState(s)", target)
    _wait_idle(pair_page)
    state = pair_page.evaluate("() => window.caseViewer.getState()")
    assert state["center"]["x"] == pytest.approx(1000, abs=1e-6)
    assert state["center"]["y"] == pytest.approx(1500, abs=1e-6)
    assert state["zoom"] == pytest.approx(0.8)
    assert state["rotation"] == pytest.approx(45)
    events = pair_page.evaluate("() => window.__events")
    assert events and events[-1]["center"]["x"] == pytest.approx(1000, abs=1e-6)
    assert pair_page.evaluate("() => window.__callbacks") >= 1
    he, ihc = _views(pair_page)
    _assert_linked(he, ihc, TRUE_ALIGNMENT)


def test_scale_bar_picks_round_length_and_changes_with_zoom(pair_page):
    bar = pair_page.locator(".cv-pane[data-index='0'] .cv-scalebar")

    def read() -> tuple[str, float, float]:
        label = bar.locator(".cv-scalebar-label").inner_text()
        width = bar.locator(".cv-scalebar-bar").bounding_box()["width"]
        return label, float(bar.get_attribute("data-length-um")), width

    pair_page.evaluate("() => window.caseViewer.setState({center: {x: 1100, y: 1500}, zoom: 0.25, rotation: 0})")
    _wait_idle(pair_page)
    label_out, length_out, width_out = read()
    pair_page.evaluate("() => window.caseViewer.setState({center: {x: 1100, y: 1500}, zoom: 2, rotation: 0})")
    _wait_idle(pair_page)
    label_in, length_in, width_in = read()
    assert label_out != label_in
    assert length_in < length_out
    # 0.499 um/px at zoom 2 -> 0.2495 um per screen px: the longest round length
    # under 150 px is 20 um (80 px); at zoom 0.25, 1.996 um/px -> 200 um (100 px).
    assert label_in == "20 \u00b5m" and label_out == "200 \u00b5m"
    assert width_in == pytest.approx(20 / (HE_MPP / 2), abs=0.5)
    # The IHC bar shows the same physical scale (same length).
    assert pair_page.locator(".cv-pane[data-index='1'] .cv-scalebar-label").inner_text() == "20 \u00b5m"


def test_ruler_measures_in_micrometres_and_escape_clears(pair_page):
    zoom = pair_page.evaluate("() => window.caseViewer.getState().zoom")
    pair_page.keyboard.press("m")
    assert pair_page.locator(".cv-ruler").get_attribute("aria-pressed") == "true"
    he_before, _ = _views(pair_page)
    box = _stage_box(pair_page, 0)
    x0, y0 = box["x"] + 150, box["y"] + 200
    pair_page.mouse.move(x0, y0)
    pair_page.mouse.down()
    pair_page.mouse.move(x0 + 300, y0 + 400, steps=10)
    pair_page.mouse.up()
    _wait_idle(pair_page)
    he_after, _ = _views(pair_page)
    assert he_after["center"] == he_before["center"], "measuring must not pan"
    label = pair_page.locator(".cv-pane[data-index='0'] .cv-ruler-label")
    text = label.text_content()
    measured = pair_page.evaluate("() => window.caseViewer.panes[0].getMeasurement()")
    expected_um = 500 / zoom * HE_MPP   # a 300-400-500 triangle on screen
    assert measured["micrometres"] == pytest.approx(expected_um, rel=0.01)
    assert text.endswith("\u00b5m") or text.endswith("mm")
    value = float(text.split()[0]) * (1000 if text.endswith("mm") else 1)
    assert value == pytest.approx(expected_um, rel=0.01)
    pair_page.keyboard.press("Escape")
    assert label.count() == 0


def test_align_mode_drag_and_save_puts_new_offset(pair_page):
    requests = []

    def handle(route):
        requests.append({"method": route.request.method, "body": route.request.post_data_json,
                         "csrf": route.request.headers.get("x-csrftoken")})
        route.fulfill(status=200, content_type="application/json", body=json.dumps(route.request.post_data_json))

    pair_page.route(f"**{ALIGNMENT_URL}", handle)
    he0, ihc0 = _views(pair_page)
    pair_page.keyboard.press("a")
    assert pair_page.locator(".cv-align").get_attribute("aria-pressed") == "true"
    _drag(pair_page, index=1, start=(300, 250), delta=(100, 50))
    he1, ihc1 = _views(pair_page)
    assert he1["center"] == pytest.approx(he0["center"]), "align mode must move only the IHC"
    pair_page.locator(".cv-align-save").click()
    pair_page.wait_for_function("document.querySelector('.cv-align').getAttribute('aria-pressed') === 'false'")
    assert len(requests) == 1
    sent = requests[0]
    assert sent["method"] == "PUT" and sent["csrf"] == CSRF
    assert set(sent["body"]) == {"offset_x", "offset_y", "rotation", "scale"}
    # Dragging the IHC image by (+100, +50) screen px moves its centre by -(100, 50)/zoom.
    assert sent["body"]["offset_x"] == pytest.approx(TRUE_ALIGNMENT["offset_x"] - 100 / ihc0["zoom"], abs=0.05 / ihc0["zoom"] + 2)
    assert sent["body"]["offset_y"] == pytest.approx(TRUE_ALIGNMENT["offset_y"] - 50 / ihc0["zoom"], abs=0.05 / ihc0["zoom"] + 2)
    assert sent["body"]["scale"] == pytest.approx(0.5, rel=1e-6)
    assert sent["body"]["rotation"] == pytest.approx(0, abs=1e-6)
    assert pair_page.evaluate("() => window.caseViewer.alignment")["offset_x"] == pytest.approx(sent["body"]["offset_x"])
    # After saving, sync uses the new alignment.
    _drag(pair_page, index=0, start=(300, 250), delta=(-80, 40))
    he2, ihc2 = _views(pair_page)
    _assert_linked(he2, ihc2, sent["body"])


def test_failed_save_shows_error_and_stays_in_align_mode(pair_page):
    pair_page.route(f"**{ALIGNMENT_URL}", lambda route: route.fulfill(status=403, body="CSRF verification failed"))
    pair_page.keyboard.press("a")
    pair_page.keyboard.press("ArrowRight")  # nudge the IHC
    _wait_idle(pair_page)
    pair_page.keyboard.press("a")           # leave -> save -> 403
    alert = pair_page.locator(".cv-toast-error")
    alert.wait_for(timeout=5000)
    assert "403" in alert.inner_text()
    assert pair_page.locator(".cv-align").get_attribute("aria-pressed") == "true"


def test_align_rotation_then_reset_to_default_from_mpp(pair_page):
    he0, _ = _views(pair_page)
    pair_page.keyboard.press("a")
    pair_page.keyboard.press("r")  # align mode: turn the IHC 1 degree clockwise
    _wait_idle(pair_page)
    he1, ihc1 = _views(pair_page)
    assert he1 == he0, "rotating in align mode must leave the H&E alone"
    # The IHC viewport turned +1 deg, so the IHC->H&E rotation is -1 deg.
    assert pair_page.evaluate("() => window.caseViewer.alignment.rotation") == pytest.approx(-1, abs=1e-9)
    assert ihc1["rotation"] == pytest.approx(1)
    pair_page.locator(".cv-align-reset").click()
    _wait_idle(pair_page)
    assert pair_page.evaluate("() => window.caseViewer.alignment") == {
        "offset_x": 0, "offset_y": 0, "rotation": 0, "scale": pytest.approx(0.5)}
    he, ihc = _views(pair_page)
    _assert_linked(he, ihc, {"offset_x": 0, "offset_y": 0, "rotation": 0, "scale": 0.5})


def test_help_overlay_full_screen_and_accessible_controls(pair_page):
    help_overlay = pair_page.locator(".cv-help-overlay")
    assert help_overlay.is_hidden()
    pair_page.keyboard.press("?")
    assert help_overlay.is_visible()
    assert "Sync navigation" in help_overlay.inner_text()
    pair_page.keyboard.press("Escape")
    assert help_overlay.is_hidden()
    pair_page.keyboard.press("f")
    pair_page.wait_for_function("document.fullscreenElement === document.getElementById('case-viewer')", timeout=5000)
    # the button follows on the 'fullscreenchange' event, which may come just after the element is set
    pair_page.wait_for_function(
        "document.querySelector('.cv-fullscreen').getAttribute('aria-pressed') === 'true'", timeout=5000)
    pair_page.keyboard.press("f")
    pair_page.wait_for_function("document.fullscreenElement === null", timeout=5000)
    pair_page.wait_for_function(
        "document.querySelector('.cv-fullscreen').getAttribute('aria-pressed') === 'false'", timeout=5000)
    for control in pair_page.locator(".cv-toolbar button, .cv-toolbar input").all():
        assert control.get_attribute("aria-label"), control.evaluate("e => e.outerHTML")
        if control.evaluate("e => e.tagName") == "BUTTON":
            assert control.get_attribute("title")


def test_unknown_mpp_says_so_and_defaults_to_scale_one(nompp_page):
    assert nompp_page.locator(".cv-pane[data-index='1'] .cv-scalebar-label").inner_text() == "mpp unknown"
    assert nompp_page.locator(".cv-pane[data-index='0'] .cv-scalebar-label").inner_text().endswith("m")
    assert nompp_page.locator(".cv-align").count() == 0, "no alignment url: no Align button"
    alignment = nompp_page.evaluate("() => window.caseViewer.alignment")
    assert alignment == {"offset_x": 0, "offset_y": 0, "rotation": 0, "scale": 1}
    nompp_page.keyboard.press("m")
    box = _stage_box(nompp_page, 1)
    nompp_page.mouse.move(box["x"] + 100, box["y"] + 100)
    nompp_page.mouse.down()
    nompp_page.mouse.move(box["x"] + 300, box["y"] + 100, steps=5)
    nompp_page.mouse.up()
    assert nompp_page.locator(".cv-pane[data-index='1'] .cv-ruler-label").text_content().endswith(" px")


def test_alignment_and_measure_modules(pair_page):
    """The pure functions, run in the browser as the viewer runs them."""
    result = pair_page.evaluate("""async () => {
      const A = await import('/static/viewer/alignment.js');
      const M = await import('/static/viewer/measure.js');
      const a = {offset_x: 12.5, offset_y: -40, rotation: 33, scale: 0.8};
      const p = {x: 321, y: 654};
      const back = A.invertAlignmentPoint(a, A.applyAlignment(a, p));
      const view = {center: {x: 500, y: 700}, zoom: 0.3, rotation: 10};
      const derived = A.alignmentFromViews(view, A.movingViewFromReference(a, view));
      let error = null;
      try { A.normaliseAlignment({offset_x: 0, offset_y: 0, rotation: 0, scale: 0}); } catch (e) { error = e.name + ': ' + e.message; }
      return {
        back, derived, error,
        quarter: A.applyAlignment({offset_x: 0, offset_y: 0, rotation: 90, scale: 1}, {x: 1, y: 0}),
        def: A.defaultAlignment({mppReference: 0.25, mppMoving: 0.5}),
        defUnknown: A.defaultAlignment({mppReference: 0.25, mppMoving: null}),
        bars: [1, 0.5, 3, 10, 0.01].map(u => M.chooseScaleBar({umPerScreenPixel: u}).label),
        none: M.chooseScaleBar({umPerScreenPixel: NaN}),
        distances: [M.formatDistance({distancePx: 100, mpp: 0.5}), M.formatDistance({distancePx: 1000, mpp: 0.5}),
                    M.formatDistance({distancePx: 5000, mpp: 0.5}), M.formatDistance({distancePx: 123.4, mpp: null})],
      };
    }""")
    assert result["back"]["x"] == pytest.approx(321) and result["back"]["y"] == pytest.approx(654)
    for key, value in {"offset_x": 12.5, "offset_y": -40, "rotation": 33, "scale": 0.8}.items():
        assert result["derived"][key] == pytest.approx(value, abs=1e-9)
    assert result["error"].startswith("AlignmentError: alignment scale must be > 0")
    # Clockwise on screen (y down): +x turns to +y.
    assert result["quarter"]["x"] == pytest.approx(0, abs=1e-12) and result["quarter"]["y"] == pytest.approx(1)
    assert result["def"]["scale"] == pytest.approx(0.5)
    assert result["defUnknown"]["scale"] == 1
    assert result["bars"] == ["100 \u00b5m", "50 \u00b5m", "200 \u00b5m", "1 mm", "1 \u00b5m"]
    assert result["none"] is None
    assert result["distances"] == ["50.0 \u00b5m", "500 \u00b5m", "2.50 mm", "123 px"]


def test_single_slide_has_no_pairing_controls(browser, site):
    page = _open(browser, site, "single.html")
    try:
        assert len(page.evaluate("() => window.caseViewer.viewers")) == 1
        assert page.locator(".cv-sync").count() == 0 and page.locator(".cv-align").count() == 0
        assert page.evaluate("() => window.caseViewer.alignment") is None
        page.keyboard.press("r")
        _wait_idle(page)
        assert page.evaluate("() => window.caseViewer.getState().rotation") == pytest.approx(90)
        assert page.locator(".cv-scalebar-label").inner_text().endswith("m")
        assert page.errors == []
    finally:
        page.context.close()


def test_broken_slide_and_bad_config_fail_readably(browser, site):
    context = browser.new_context(viewport={"width": 1200, "height": 700})
    try:
        page = context.new_page()
        page.goto(f"{site['url']}/broken-ihc.html")
        page.wait_for_function("window.caseViewer !== undefined", timeout=60000)
        page.evaluate("() => window.caseViewer.ready")
        error = page.locator(".cv-pane[data-index='1'] .cv-pane-error")
        error.wait_for(timeout=30000)
        assert "Could not open HER2 IHC" in error.inner_text()
        # The H&E still works.
        page.wait_for_function("window.caseViewer.viewers[0].getFullyLoaded()", timeout=60000)
        assert page.evaluate("() => window.caseViewer.getState()")["zoom"] > 0

        page.goto(f"{site['url']}/bad-config.html")
        fatal = page.locator("#case-viewer .cv-fatal")
        fatal.wait_for(timeout=30000)
        assert fatal.inner_text() == "config.slides must list at least one slide"
    finally:
        context.close()
