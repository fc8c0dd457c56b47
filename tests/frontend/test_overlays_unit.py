"""Overlay front end (static/viewer/overlays.js, overlay_data.js, overlay_gl.js) in headless Chromium.

Against a small fake of the overlay server (docs/overlays-frontend.md, the overlay contract):
a harness page rendered like the case page (viewer config, score card with an attribution
table, templates/viewer/_overlays.html's two tags), two synthetic 4096 x 4096 slides, and
a synthetic run of 16,384 cells on a jittered grid with known classes, HER2 grades and
edges. The fake answers the slide JSON with its layers, palette-PNG overlay tiles,
the binary viewport records (HTTP 413 above VIEWPORT_CAP, so both the PNG and the WebGL
path run), the cell inspector and the feature sources (from the real schema file).

The pure functions (record parsing, grid index, masks, palette, record budget) are imported
as ES modules into the page and checked against Python references.
"""
from __future__ import annotations

import io
import json
import math
import os
import re
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STATIC_DIR = PROJECT_ROOT / "static"
SCHEMA = PROJECT_ROOT / "analysis" / "core" / "graph" / "feature_schema_v1.json"
CHROMIUM = Path(os.environ.get("LADDER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

pytestmark = pytest.mark.e2e
sync_api = pytest.importorskip("playwright.sync_api")

SIZE = 4096
MPP = 0.5
SPACING = 32
VIEWPORT_CAP = 4000  # the fake's cap (the real one is 500,000): the home view is refused
CLASSES = ["tumour", "stroma", "lymphocyte", "neutrophil", "macrophage", "other"]
LABELS = {"tumour": "Tumour", "stroma": "Stroma", "lymphocyte": "Lymphocyte", "neutrophil": "Neutrophil",
          "macrophage": "Macrophage", "other": "Other"}
COLOURS = ["#D55E00", "#009E73", "#0072B2", "#CC79A7", "#E69F00", "#999999"]
HER2 = ["strong_complete", "strong_incomplete", "weak_complete", "weak_incomplete", "null_complete", "null_incomplete"]
HER2_COLOURS = ["#8B2500", "#D55E00", "#E69F00", "#F0E442", "#56B4E9", "#0072B2"]
TYPE_LETTER = {"tumour": "T", "stroma": "S", "lymphocyte": "L", "neutrophil": "N"}
PAIRS = ["T-T", "T-S", "T-L", "T-N", "S-S", "S-L", "S-N", "L-L", "L-N", "N-N"]
PAIR_COLOURS = ["#D55E00", "#E69F00", "#CC79A7", "#F0E442", "#009E73", "#56B4E9", "#999999", "#0072B2", "#000000",
                "#882255"]


# ---------------------------------------------------------------------------
# synthetic run


def _make_run(seed: int, *, ihc: bool) -> dict:
    rng = np.random.default_rng(seed)
    n_side = SIZE // SPACING
    gx, gy = np.meshgrid(np.arange(n_side), np.arange(n_side))
    x = (gx.ravel() * SPACING + SPACING / 2 + rng.uniform(-6, 6, gx.size)).astype(np.float32)
    y = (gy.ravel() * SPACING + SPACING / 2 + rng.uniform(-6, 6, gx.size)).astype(np.float32)
    # Classes in blocks of 8 x 8 grid cells (256 px): a tumour nest in the middle.
    block = (gx.ravel() // 8 + 3 * (gy.ravel() // 8)) % 5
    cls = np.where((np.abs(gx.ravel() - n_side / 2) < 24) & (np.abs(gy.ravel() - n_side / 2) < 24), 0, block).astype(np.int64)
    cls[rng.random(cls.size) < 0.03] = 5
    her2 = np.full(cls.size, 15, dtype=np.int64)
    if ihc:
        tumour = cls == 0
        her2[tumour] = rng.integers(0, 6, int(tumour.sum()))
    ids = np.arange(1, cls.size + 1, dtype=np.int64)
    # Edges: right and lower neighbours between graph types.
    index = np.arange(cls.size).reshape(n_side, n_side)
    pairs = np.concatenate([np.stack([index[:, :-1].ravel(), index[:, 1:].ravel()], 1),
                            np.stack([index[:-1, :].ravel(), index[1:, :].ravel()], 1)])
    letters = np.array([TYPE_LETTER.get(CLASSES[c], "") for c in cls])
    edge_codes = []
    keep = []
    for k, (a, b) in enumerate(pairs):
        la, lb = letters[a], letters[b]
        if not la or not lb:
            continue
        for key in (f"{la}-{lb}", f"{lb}-{la}"):
            if key in PAIRS:
                edge_codes.append(PAIRS.index(key))
                keep.append(k)
                break
    pairs = pairs[keep]
    return {"x": x, "y": y, "cls": cls, "her2": her2, "id": ids, "edges": pairs, "edge_code": np.array(edge_codes)}


def _layers(slide_id: int, run: dict, *, ihc: bool) -> list[dict]:
    def layer(name, label, kind, legend, record_bytes=None):
        out = {"name": name, "label": label, "kind": kind, "legend": legend,
               "dzi_url": f"/slides/{slide_id}/overlays/{name}.dzi", "run": 10 + slide_id, "approximate": True,
               "segmenter": "classical"}
        if record_bytes:
            out["viewport_url"] = f"/api/slides/{slide_id}/overlays/{name}/viewport"
            out["record_bytes"] = record_bytes
        return out

    counts = np.bincount(run["cls"], minlength=6)
    layers = [layer("cells", "Cell classes", "cells", [
        {"key": c, "label": LABELS[c], "color": COLOURS[i], "code": i, "count": int(counts[i])} for i, c in enumerate(CLASSES)], 12)]
    if ihc:
        h = np.bincount(run["her2"][run["her2"] < 15], minlength=6)
        layers.append(layer("her2", "HER2 membrane", "her2", [
            {"key": k, "label": k.replace("_", " "), "color": HER2_COLOURS[i], "code": i, "count": int(h[i])}
            for i, k in enumerate(HER2)], 12))
    e = np.bincount(run["edge_code"], minlength=len(PAIRS))
    layers.append(layer("edges", "Graph edges", "edges", [
        {"key": p, "label": p, "color": PAIR_COLOURS[i], "code": i, "count": int(e[i])} for i, p in enumerate(PAIRS)], 20))
    layers.append(layer("density-tumour", "Tumour density", "density", [
        {"key": "tumour", "label": "Tumour cells / mm²", "color": "#D55E00", "code": 0, "count": int(counts[0])}]))
    return layers


def _dzi(fmt: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><Image xmlns="http://schemas.microsoft.com/deepzoom/2008" '
            f'Format="{fmt}" Overlap="0" TileSize="256"><Size Width="{SIZE}" Height="{SIZE}"/></Image>').encode()


MAX_LEVEL = math.ceil(math.log2(SIZE))


def _slide_tile(level: int, col: int, row: int, ihc: bool) -> bytes:
    from PIL import Image

    scale = 2 ** (MAX_LEVEL - level)
    rng = np.random.default_rng(level * 10000 + col * 100 + row)
    base = np.array([232, 214, 224] if not ihc else [226, 222, 214], dtype=np.float32)
    pixels = base + rng.normal(0, 6, (256, 256, 3))
    size = max(1, min(256, math.ceil(SIZE / scale) - col * 256)), max(1, min(256, math.ceil(SIZE / scale) - row * 256))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).crop((0, 0, *size))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=70)
    return out.getvalue()


def _overlay_tile(run: dict, name: str, level: int, col: int, row: int) -> bytes:
    """Palette PNG, transparent background: a dot per cell (or per edge midpoint)."""
    from PIL import Image, ImageDraw

    scale = 2 ** (MAX_LEVEL - level)
    x0, y0 = col * 256 * scale, row * 256 * scale
    w = max(1, min(256, math.ceil(SIZE / scale) - col * 256))
    h = max(1, min(256, math.ceil(SIZE / scale) - row * 256))
    image = Image.new("P", (w, h), 0)
    palette = [0, 0, 0]
    colours = COLOURS if name in ("cells", "density-tumour") else HER2_COLOURS if name == "her2" else PAIR_COLOURS
    for c in colours:
        palette += [int(c[i:i + 2], 16) for i in (1, 3, 5)]
    image.putpalette(palette + [0] * (768 - len(palette)))
    draw = ImageDraw.Draw(image)
    if name == "edges":
        a, b = run["edges"][:, 0], run["edges"][:, 1]
        xs, ys, codes = (run["x"][a] + run["x"][b]) / 2, (run["y"][a] + run["y"][b]) / 2, run["edge_code"]
    elif name == "her2":
        ok = run["her2"] < 15
        xs, ys, codes = run["x"][ok], run["y"][ok], run["her2"][ok]
    elif name == "density-tumour":
        ok = run["cls"] == 0
        xs, ys, codes = run["x"][ok], run["y"][ok], run["cls"][ok]
    else:
        xs, ys, codes = run["x"], run["y"], run["cls"]
    inside = (xs >= x0) & (xs < x0 + 256 * scale) & (ys >= y0) & (ys < y0 + 256 * scale)
    radius = max(1.0, 8 / scale)
    for px, py, code in zip((xs[inside] - x0) / scale, (ys[inside] - y0) / scale, codes[inside]):
        draw.ellipse((px - radius, py - radius, px + radius, py + radius), fill=int(code) + 1)
    out = io.BytesIO()
    image.save(out, "PNG", transparency=0)
    return out.getvalue()


def _cell_json(run: dict, slide_id: int, cell_id: int) -> dict | None:
    i = cell_id - 1
    if not 0 <= i < run["id"].size:
        return None
    x, y = float(run["x"][i]), float(run["y"][i])
    cls = CLASSES[int(run["cls"][i])]
    her2 = int(run["her2"][i])
    return {
        "id": cell_id, "x": x, "y": y, "cls": cls, "prob": round(0.5 + (cell_id % 50) / 100, 2),
        "area_um2": round(30 + cell_id % 17 * 1.5, 2),
        "contour": [[x - 5, y - 4], [x + 5, y - 4], [x + 6, y + 3], [x - 4, y + 5]],
        "morphology": {"Area": 120 + cell_id % 9, "Eccentricity": 0.42, "Solidity": 0.91},
        "her2": {"class": HER2[her2], "od": 0.31, "completeness": 0.75} if her2 < 15 else None,
        "graph": {"T-T": {"minEdgeLength": 12.5, "meanEdgeLength": 20.25, "Nsubgraph": 41, "Degrees": 3}} if cls == "tumour" else {},
    }


class FakeState:
    def __init__(self):
        self.runs = {1: _make_run(1, ihc=False), 2: _make_run(2, ihc=True)}
        self.layers = {1: _layers(1, self.runs[1], ihc=False), 2: _layers(2, self.runs[2], ihc=True)}
        self.features = {f["name"]: f for f in json.loads(SCHEMA.read_text())["features"]}
        self.features["age"] = {"name": "age", "group": "clinical", "definition": "Age at diagnosis", "unit": "years",
                                "source_cells": None}
        self.requests: list[str] = []
        self.pages: dict[str, str] = {}


def _handler(state: FakeState):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status, body: bytes, ctype: str, headers: dict | None = None):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status, obj):
            self._send(status, json.dumps(obj).encode(), "application/json")

        def do_GET(self):  # noqa: C901 - a router
            url = urlparse(self.path)
            path = url.path
            state.requests.append(self.path)
            if path.lstrip("/") in state.pages:
                return self._send(200, state.pages[path.lstrip("/")].encode(), "text/html; charset=utf-8")
            if path.startswith("/static/"):
                file = STATIC_DIR / path[len("/static/"):]
                if not file.is_file():
                    return self._send(404, b"", "text/plain")
                ctype = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}.get(file.suffix, "application/octet-stream")
                return self._send(200, file.read_bytes(), ctype)
            if m := re.fullmatch(r"/slides/(\d)\.dzi", path):
                return self._send(200, _dzi("jpeg"), "application/xml")
            if m := re.fullmatch(r"/slides/(\d)_files/(\d+)/(\d+)_(\d+)\.jpeg", path):
                s, level, col, row = map(int, m.groups())
                return self._send(200, _slide_tile(level, col, row, s == 2), "image/jpeg")
            if m := re.fullmatch(r"/slides/(\d)/overlays/([\w-]+)\.dzi", path):
                return self._send(200, _dzi("png"), "application/xml")
            if m := re.fullmatch(r"/slides/(\d)/overlays/([\w-]+)_files/(\d+)/(\d+)_(\d+)\.png", path):
                s, name, level, col, row = int(m[1]), m[2], int(m[3]), int(m[4]), int(m[5])
                body = _overlay_tile(state.runs[s], name, level, col, row)
                hide = parse_qs(url.query).get("hide")
                if hide:  # as the server does: the codes' palette entries made transparent (index = code + 1)
                    from analysis.core.overlay import png_palette_hide

                    body = png_palette_hide(body, [1 + int(c) for c in hide[0].split(",")])
                return self._send(200, body, "image/png")
            if m := re.fullmatch(r"/api/slides/(\d)/", path):
                s = int(m[1])
                return self._json(200, {"id": s, "width": SIZE, "height": SIZE, "overlays": state.layers[s]})
            if m := re.fullmatch(r"/api/slides/(\d)/overlays/([\w-]+)/viewport", path):
                return self._viewport(int(m[1]), m[2], parse_qs(url.query))
            if m := re.fullmatch(r"/api/slides/(\d)/cells/(\d+)/", path):
                cell = _cell_json(state.runs[int(m[1])], int(m[1]), int(m[2]))
                return self._json(200, cell) if cell else self._json(404, {"detail": "no such cell"})
            if m := re.fullmatch(r"/api/features/([\w-]+)/", path):
                f = state.features.get(m[1])
                if not f:
                    return self._json(404, {"detail": "unknown feature"})
                return self._json(200, {k: f.get(k) for k in ("name", "group", "definition", "unit", "source_cells")})
            return self._send(404, b"not found", "text/plain")

        def _viewport(self, s: int, name: str, query: dict):
            run = state.runs[s]
            x, y = float(query["x"][0]), float(query["y"][0])
            w, h = float(query["width"][0]), float(query["height"][0])
            if name == "edges":
                a, b = run["edges"][:, 0], run["edges"][:, 1]
                mx, my = (run["x"][a] + run["x"][b]) / 2, (run["y"][a] + run["y"][b]) / 2
                inside = np.flatnonzero((mx >= x) & (mx < x + w) & (my >= y) & (my < y + h))
                if inside.size > VIEWPORT_CAP:
                    return self._json(413, {"detail": "zoom in"})
                rec = np.zeros(inside.size, dtype=[("x1", "<f4"), ("y1", "<f4"), ("x2", "<f4"), ("y2", "<f4"), ("c", "<u4")])
                rec["x1"], rec["y1"] = run["x"][a[inside]], run["y"][a[inside]]
                rec["x2"], rec["y2"] = run["x"][b[inside]], run["y"][b[inside]]
                rec["c"] = run["edge_code"][inside]
                return self._send(200, rec.tobytes(), "application/octet-stream", {"X-Edge-Count": str(inside.size)})
            inside = (run["x"] >= x) & (run["x"] < x + w) & (run["y"] >= y) & (run["y"] < y + h)
            if name == "her2":
                inside &= run["her2"] < 15
            idx = np.flatnonzero(inside)
            if idx.size > VIEWPORT_CAP:
                return self._json(413, {"detail": "zoom in"})
            rec = np.zeros(idx.size, dtype=[("x", "<f4"), ("y", "<f4"), ("p", "<u4")])
            rec["x"], rec["y"] = run["x"][idx], run["y"][idx]
            rec["p"] = (run["id"][idx] << 8) | (run["her2"][idx] << 4) | run["cls"][idx]
            return self._send(200, rec.tobytes(), "application/octet-stream", {"X-Cell-Count": str(idx.size)})

    return Handler


ATTRIBUTION_ROWS = ["he_T_L_meanEdgeLength", "ihc_prop_strong_complete", "he_prop_L", "age"]


def _harness_html() -> str:
    config = {
        "drawer": "canvas", "csrfToken": "x", "osdImagesUrl": "/static/vendor/openseadragon/images/",
        "slides": [
            {"id": 1, "stain": "he", "label": "H&E", "name": "synthetic H&E", "dzi_url": "/slides/1.dzi",
             "width": SIZE, "height": SIZE, "mpp": MPP},
            {"id": 2, "stain": "ihc", "label": "HER2 IHC", "name": "synthetic IHC", "dzi_url": "/slides/2.dzi",
             "width": SIZE, "height": SIZE, "mpp": MPP},
        ],
        "alignment": None,
    }
    rows = "".join(f'<tr data-feature="{name}"><td>{name}</td><td>1</td><td>50</td><td>+1.0</td></tr>' for name in ATTRIBUTION_ROWS)
    partial = (PROJECT_ROOT / "templates" / "viewer" / "_overlays.html").read_text()
    # The partial's two tags, as Django renders them ({% static %} -> /static/...).
    tags = re.sub(r"\{%\s*static\s+'([^']+)'\s*%\}", r"/static/\1", re.sub(r"\{#.*?#\}|\{%\s*load[^%]*%\}", "", partial))
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>overlay harness</title>
<link rel="stylesheet" href="/static/viewer/case_viewer.css">
<script src="/static/vendor/openseadragon/openseadragon.min.js"></script></head>
<body style="margin:0;display:grid;grid-template-columns:1fr 260px">
<section><div id="case-viewer" style="--case-viewer-height:700px"></div></section>
<aside><div class="card scorecard" id="score-card"><table class="table compact attributions"><tbody>{rows}</tbody></table></div></aside>
<script id="case-viewer-config" type="application/json">{json.dumps(config)}</script>
<script type="module" src="/static/viewer/case_viewer.js"></script>
{tags}
</body></html>"""


@pytest.fixture(scope="module")
def fake_site():
    if not (STATIC_DIR / "vendor" / "openseadragon" / "openseadragon.min.js").is_file():
        pytest.skip("static/vendor/openseadragon missing: run scripts/vendor_static.py")
    state = FakeState()
    state.pages["harness.html"] = _harness_html()
    state.pages["blank.html"] = "<!doctype html><html><body></body></html>"
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"url": f"http://127.0.0.1:{server.server_address[1]}", "state": state}
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _new_page(browser, url):
    context = browser.new_context(viewport={"width": 1400, "height": 760})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.errors = errors
    return page


@pytest.fixture()
def harness(browser, fake_site):
    page = _new_page(browser, f"{fake_site['url']}/harness.html")
    page.wait_for_function("window.caseOverlays !== undefined", timeout=60000)
    page.evaluate("() => window.caseOverlays.ready")
    page.wait_for_function("window.caseViewer.viewers.every(v => v.world.getItemCount() && v.getFullyLoaded())", timeout=60000)
    yield page
    assert page.errors == [], f"page errors: {page.errors}"
    page.context.close()


@pytest.fixture()
def module_page(browser, fake_site):
    page = _new_page(browser, f"{fake_site['url']}/blank.html")
    yield page
    assert page.errors == []
    page.context.close()


# ---------------------------------------------------------------------------
# helpers

# Every tiled image that is drawn has its tiles (an overlay at opacity 0 loads none).
LOADED_JS = "[...Array(v.world.getItemCount()).keys()].map(i => v.world.getItemAt(i)).every(t => t.getOpacity() === 0 || t.getFullyLoaded())"


def _settle(page, timeout=30000):
    """Viewer still, no record fetch pending, every tiled image loaded, two frames drawn."""
    page.wait_for_function("""() => window.caseViewer.viewers.every(v => {
        const vp = v.viewport;
        return vp.centerSpringX.isAtTargetValue() && vp.zoomSpring.isAtTargetValue() && loaded(v); })""".replace("loaded(v)", LOADED_JS),
                           timeout=timeout)
    page.wait_for_timeout(250)  # the debounced refetch
    page.wait_for_function("""() => window.caseOverlays.panes.every(p => p.fetching.size === 0)
        && window.caseViewer.viewers.every(v => LOADED)""".replace("LOADED", LOADED_JS), timeout=timeout)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def _stage_png(page, index: int) -> np.ndarray:
    from PIL import Image

    box = page.locator(f".cv-pane[data-index='{index}'] .cv-stage").bounding_box()
    # the middle of the stage: clear of the layer panel and the navigator
    clip = {"x": box["x"] + box["width"] * 0.3, "y": box["y"] + box["height"] * 0.2,
            "width": box["width"] * 0.4, "height": box["height"] * 0.55}
    return np.asarray(Image.open(io.BytesIO(page.screenshot(clip=clip))).convert("RGB")).astype(np.int16)


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels that changed by more than 24 in some channel."""
    return float((np.abs(a - b).max(axis=2) > 24).mean())


def _zoom_to(page, *, index=0, center=(2048, 2048), zoom=1.0):
    page.evaluate("""([index, cx, cy, zoom]) => {
        const pane = window.caseViewer.panes[index];
        if (index === 0) window.caseViewer.setState({center: {x: cx, y: cy}, zoom, rotation: 0});
        else pane.setView({center: {x: cx, y: cy}, zoom, rotation: 0});
    }""", [index, center[0], center[1], zoom])
    _settle(page)


# ---------------------------------------------------------------------------
# pure logic (overlay_data.js)


def test_records_parse_pack_and_grid_index_match_python(module_page, fake_site):
    page = module_page
    rng = np.random.default_rng(5)
    n = 3000
    xs = rng.uniform(0, 5000, n).astype("<f4")
    ys = rng.uniform(0, 3000, n).astype("<f4")
    ids = np.arange(1, n + 1)
    cls = rng.integers(0, 6, n)
    her2 = rng.integers(0, 16, n)
    rec = np.zeros(n, dtype=[("x", "<f4"), ("y", "<f4"), ("p", "<u4")])
    rec["x"], rec["y"], rec["p"] = xs, ys, (ids << 8) | (her2 << 4) | cls
    queries = [(float(qx), float(qy)) for qx, qy in rng.uniform(0, 5000, (40, 2))]
    result = page.evaluate("""async ([bytes, queries]) => {
        const m = await import('/static/viewer/overlay_data.js');
        const buf = new Uint8Array(bytes).buffer;
        const cells = m.parseCells(buf);
        const grid = m.cellGrid(cells);
        let bad = null;
        try { m.parseCells(new ArrayBuffer(13)); } catch (e) { bad = e.constructor.name; }
        const edgesBad = (() => { try { m.parseEdges(new ArrayBuffer(24)); return null; } catch (e) { return e.constructor.name; } })();
        return {
          count: cells.count,
          first: m.cellAt(cells, 0), last: m.cellAt(cells, cells.count - 1),
          nearest: queries.map(([x, y]) => grid.nearest(x, y, 60)),
          packed: m.packCell(123456, 15, 5),
          bad, edgesBad,
        };
    }""", [list(rec.tobytes()), queries])
    assert result["count"] == n
    assert result["first"] == {"x": pytest.approx(float(xs[0])), "y": pytest.approx(float(ys[0])), "id": 1,
                               "her2Code": int(her2[0]), "classCode": int(cls[0])}
    assert result["last"]["id"] == n and result["last"]["classCode"] == int(cls[-1])
    assert result["packed"] == (123456 << 8) | (15 << 4) | 5
    assert result["bad"] == "RecordFormatError" and result["edgesBad"] == "RecordFormatError"
    for (qx, qy), got in zip(queries, result["nearest"]):
        d = np.hypot(xs.astype(float) - qx, ys.astype(float) - qy)
        expected = int(np.argmin(d)) if d.min() <= 60 else -1
        assert got == expected or (got >= 0 and d[got] == pytest.approx(d.min(), abs=1e-3))


def test_masks_palette_and_record_budget(module_page, fake_site):
    page = module_page
    layers = fake_site["state"].layers[2]
    features = fake_site["state"].features
    tstrong = next(f for f in features.values() if (f["source_cells"] or {}).get("pair_type") == "Tstrong-nonT")
    result = page.evaluate("""async ([layers, f1, f2, f3, f4, f5]) => {
        const m = await import('/static/viewer/overlay_data.js');
        const pal = m.legendPalette(layers[0].legend, new Set(['stroma']));
        return {
          edges: m.highlightMasks(f1, layers), her2: m.highlightMasks(f2, layers), prop: m.highlightMasks(f3, layers),
          clinical: m.highlightMasks(f4, layers), tstrong: m.highlightMasks(f5, layers),
          tumour: Array.from(pal.slice(0, 4)), stroma: Array.from(pal.slice(4, 8)),
          same: [m.samePair('T-L', 'L-T'), m.samePair('T-L', 'T-L'), m.samePair('T-L', 'T-S')],
          budget: [
            m.wantRecords({layer: layers[0], rect: {x: 0, y: 0, width: 4096, height: 4096}, slideWidth: 4096, slideHeight: 4096}),
            m.wantRecords({layer: {legend: [{count: 1e6}]}, rect: {x: 0, y: 0, width: 4096, height: 4096}, slideWidth: 4096, slideHeight: 4096}),
            m.wantRecords({layer: {legend: [{count: 1e6}]}, rect: {x: 0, y: 0, width: 1000, height: 1000}, slideWidth: 4096, slideHeight: 4096}),
            m.wantRecords({layer: layers[0], rect: {x: 0, y: 0, width: 1000, height: 1000}, slideWidth: 4096, slideHeight: 4096, refusedArea: 5e5}),
          ],
          size: [m.pointSizePx({zoom: 1, mpp: 0.25}), m.pointSizePx({zoom: 0.01, mpp: 0.25}), m.pointSizePx({zoom: 0.5, mpp: 0.5})],
        };
    }""", [layers, features["he_T_L_meanEdgeLength"], features["ihc_prop_strong_complete"], features["he_prop_L"],
           {"name": "age", "group": "clinical", "source_cells": None}, tstrong])
    # T-L edges: tumour and lymphocyte cells (source + partners), the T-L pair code, cells + edges layers.
    assert result["edges"]["pane"] == "he"
    assert result["edges"]["classMask"] == 1 << 0 and result["edges"]["partnerClassMask"] == 1 << 2
    assert result["edges"]["pairMask"] == 1 << PAIRS.index("T-L")
    assert result["edges"]["layers"] == ["cells", "edges"]
    assert result["her2"]["her2Mask"] == 1 and result["her2"]["classMask"] == 1
    assert result["her2"]["layers"] == ["cells", "her2"]
    assert result["prop"]["classMask"] == 1 << 2 and result["prop"]["pairMask"] == 0 and result["prop"]["layers"] == ["cells"]
    assert result["clinical"]["empty"] is True and result["clinical"]["pane"] is None
    # Strongly stained tumour cells and their non-tumour partners: two selectors.
    t = result["tstrong"]
    # nonT partners: stroma, lymphocyte, neutrophil, macrophage and "other" (issue 14 item 4)
    assert (t["pane"], t["classMask"], t["her2Mask"], t["partnerClassMask"], t["partnerHer2Mask"]) == ("ihc", 1, 0b11, 0b111110, 0)
    assert t["layers"] == ["cells", "her2"]
    assert result["tumour"] == pytest.approx([0xD5 / 255, 0x5E / 255, 0, 1])
    assert result["stroma"][3] == 0  # hidden in the legend
    assert result["same"] == [True, True, False]
    assert result["budget"] == [True, False, True, False]
    assert result["size"] == pytest.approx([36, 2, 9])


# ---------------------------------------------------------------------------
# the layers on the harness page


def test_layer_panels_list_layers_with_legends_and_counts(harness, fake_site):
    page = harness
    state = fake_site["state"]
    names = page.evaluate("() => [0, 1].map(i => window.caseOverlays.layers(i).map(l => l.name))")
    assert names == [["cells", "edges", "density-tumour"], ["cells", "her2", "edges", "density-tumour"]]
    page.click(".cv-pane[data-index='1'] .ov-panel-toggle")
    page.check(".cv-pane[data-index='1'] input[data-layer='her2']")
    legend = page.locator(".cv-pane[data-index='1'] .ov-layer[data-layer='her2'] .ov-legend li")
    assert legend.count() == 6
    expected = state.layers[2][1]["legend"][0]
    first = legend.nth(0)
    assert expected["label"] in first.inner_text()
    assert first.locator(".ov-count").inner_text() == f"{expected['count']:,}"
    assert "--c:#8B2500" in first.locator(".ov-swatch").get_attribute("style")
    assert page.evaluate("() => window.caseOverlays.getState().panes[1].her2.visible") is True
    assert page.locator(".cv-pane[data-index='1'] .ov-run").inner_text().startswith("Run 12 · classical")


HINT_IN_SIGHT_JS = """(index) => {
  const panel = document.querySelector(`.cv-pane[data-index="${index}"] .ov-panel`);
  const hint = panel.querySelector('.ov-hint');
  const p = panel.getBoundingClientRect(), h = hint.getBoundingClientRect();
  return {inside: h.top >= p.top - 0.5 && h.bottom <= p.bottom + 0.5 && h.left >= p.left - 0.5 && h.right <= p.right + 0.5,
          wraps: hint.scrollWidth <= hint.clientWidth, scrolls: panel.scrollHeight > panel.clientHeight,
          panel: [p.top, p.bottom], hint: [h.top, h.bottom]};
}"""


def test_layer_panel_help_text_stays_in_sight(harness):
    """With every layer and legend open the list scrolls (panes of a 1280 x 800 window, or shorter);
    the help text stays whole at the panel's bottom, wrapped to its width (it was cut off at the
    panel's bottom edge at 1280 px)."""
    page = harness
    page.set_viewport_size({"width": 1280, "height": 800})
    page.evaluate("() => document.getElementById('case-viewer').style.setProperty('--case-viewer-height', '480px')")
    for index in (0, 1):
        page.click(f".cv-pane[data-index='{index}'] .ov-panel-toggle")
        for box in page.locator(f".cv-pane[data-index='{index}'] input[data-layer]").all():
            box.check()
        got = page.evaluate(HINT_IN_SIGHT_JS, index)
        assert got["scrolls"], got  # the case this is about: more layers than the panel shows
        assert got["inside"] and got["wraps"], got
        page.locator(f".cv-pane[data-index='{index}'] .ov-panel").evaluate("e => { e.scrollTop = e.scrollHeight; }")
        assert page.evaluate(HINT_IN_SIGHT_JS, index)["inside"]
        for box in page.locator(f".cv-pane[data-index='{index}'] input[data-layer]").all():
            box.uncheck()
        page.click(f".cv-pane[data-index='{index}'] .ov-panel-toggle")


def test_zoomed_out_png_tiles_then_zoomed_in_webgl_records(harness, fake_site):
    page = harness
    state = fake_site["state"]
    _settle(page)
    blank = _stage_png(page, 0)
    page.evaluate("() => window.caseOverlays.setVisible(0, 'cells', true)")
    _settle(page)
    status = page.evaluate("() => window.caseOverlays.status(0)")
    # The whole slide holds 16,384 cells > the fake's cap: 413, PNG tiles.
    assert status["layers"]["cells"]["mode"] == "tiles" and status["layers"]["cells"]["tiles"] == "loaded"
    assert any("/overlays/cells_files/" in r for r in state.requests)
    assert any("/api/slides/1/overlays/cells/viewport" in r for r in state.requests)
    tiles = _stage_png(page, 0)
    assert _diff(blank, tiles) > 0.02, "the PNG tiles did not change the picture"
    # Opacity 0 hides them again.
    page.evaluate("() => window.caseOverlays.setOpacity(0, 'cells', 0)")
    _settle(page)
    assert _diff(blank, _stage_png(page, 0)) < 0.005
    page.evaluate("() => window.caseOverlays.setOpacity(0, 'cells', 0.85)")
    # Zoom in: the view holds a few hundred cells, the client asks for the records.
    _zoom_to(page, center=(1000, 1000), zoom=1.0)
    status = page.evaluate("() => window.caseOverlays.status(0)")
    cells = status["layers"]["cells"]
    assert cells["mode"] == "records", status
    run = state.runs[1]
    r = cells["rect"]
    expected = int(((run["x"] >= r["x"]) & (run["x"] < r["x"] + r["width"]) & (run["y"] >= r["y"]) & (run["y"] < r["y"] + r["height"])).sum())
    assert cells["records"] == expected > 100
    drawn = _stage_png(page, 0)
    page.evaluate("() => window.caseOverlays.setVisible(0, 'cells', false)")
    _settle(page)
    hidden = _stage_png(page, 0)
    assert _diff(hidden, drawn) > 0.02, "the WebGL cells did not change the picture"
    # A class toggle in the legend hides that class's cells only.
    page.evaluate("() => window.caseOverlays.setVisible(0, 'cells', true)")
    _settle(page)
    all_classes = _stage_png(page, 0)
    page.evaluate("() => ['stroma','lymphocyte','neutrophil','macrophage','other'].forEach(k => window.caseOverlays.setHidden(0, 'cells', k, true))")
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    only_tumour = _stage_png(page, 0)
    assert _diff(all_classes, only_tumour) > 0.01
    # Tumour colour (#D55E00) present, lymphocyte blue (#0072B2) gone.
    def has(img, rgb):
        return bool((np.abs(img - np.array(rgb)).max(axis=2) < 45).sum() > 20)
    assert has(all_classes, (0x00, 0x72, 0xB2)) and not has(only_tumour, (0x00, 0x72, 0xB2))


def test_legend_toggles_filter_the_zoomed_out_tiles_too(harness, fake_site):
    page = harness
    state = fake_site["state"]
    page.evaluate("() => window.caseOverlays.setVisible(0, 'cells', true)")
    _settle(page)
    status = page.evaluate("() => window.caseOverlays.status(0).layers.cells")
    assert status["mode"] == "tiles" and status["tileUrl"].endswith("/overlays/cells.dzi")
    blue = (0x00, 0x72, 0xB2)  # lymphocytes

    def has(img, rgb):
        return bool((np.abs(img - np.array(rgb)).max(axis=2) < 45).sum() > 20)

    assert has(_stage_png(page, 0), blue)
    page.evaluate("() => window.caseOverlays.setHidden(0, 'cells', 'lymphocyte', true)")
    page.wait_for_function("() => { const s = window.caseOverlays.status(0).layers.cells;"
                           " return s.tileUrl && s.tileUrl.endsWith('?hide=2'); }", timeout=15000)
    _settle(page)
    assert any(re.search(r"/overlays/cells_files/\d+/\d+_\d+\.png\?hide=2$", r) for r in state.requests)
    filtered = _stage_png(page, 0)
    assert not has(filtered, blue) and has(filtered, (0xD5, 0x5E, 0x00)), "lymphocytes still drawn, or tumour gone"
    page.evaluate("() => window.caseOverlays.setHidden(0, 'cells', 'lymphocyte', false)")
    page.wait_for_function("() => { const s = window.caseOverlays.status(0).layers.cells;"
                           " return s.tileUrl && s.tileUrl.endsWith('/overlays/cells.dzi'); }",
                           timeout=15000)
    _settle(page)
    assert has(_stage_png(page, 0), blue)
    page.evaluate("() => window.caseOverlays.setVisible(0, 'cells', false)")
    _settle(page)


def test_edges_and_density_and_her2_layers_change_pixels(harness):
    page = harness
    _zoom_to(page, center=(1500, 1500), zoom=1.0)
    for index, name in ((0, "edges"), (1, "her2"), (0, "density-tumour"), (1, "edges")):
        if name == "her2":
            _zoom_to(page, center=(2048, 2048), zoom=1.0)  # the tumour nest
        before = _stage_png(page, index)
        page.evaluate("([i, n]) => window.caseOverlays.setVisible(i, n, true)", [index, name])
        _settle(page)
        after = _stage_png(page, index)
        assert _diff(before, after) > 0.005, f"{name} on pane {index} did not change the picture"
        mode = page.evaluate("([i, n]) => window.caseOverlays.status(i).layers[n].mode", [index, name])
        assert mode == ("tiles" if name.startswith("density") else "records")
        page.evaluate("([i, n]) => window.caseOverlays.setVisible(i, n, false)", [index, name])
        _settle(page)
    # Per pair-type toggle of the edges.
    page.evaluate("() => window.caseOverlays.setVisible(0, 'edges', true)")
    _settle(page)
    before = _stage_png(page, 0)
    page.click(".cv-pane[data-index='0'] .ov-panel-toggle")
    for box in page.locator(".cv-pane[data-index='0'] .ov-layer[data-layer='edges'] ul input[data-key]").all():
        box.uncheck()
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    assert page.evaluate("() => window.caseOverlays.getState().panes[0].edges.hidden.length") == len(PAIRS)
    assert _diff(before, _stage_png(page, 0)) > 0.005


def test_hover_and_click_open_the_inspector_with_the_cell_values(harness, fake_site):
    page = harness
    page.evaluate("() => window.caseOverlays.setVisible(1, 'cells', true)")
    _zoom_to(page, index=0, center=(2048, 2048), zoom=2.0)  # IHC follows (no alignment: identity)
    status = page.evaluate("() => window.caseOverlays.status(1)")
    assert status["layers"]["cells"]["mode"] == "records"
    # A tumour cell near the middle of the IHC view.
    run = fake_site["state"].runs[2]
    i = int(np.argmin(np.hypot(run["x"] - 2048, run["y"] - 2048) + (run["cls"] != 0) * 1e6))
    cell_id = int(run["id"][i])
    point = page.evaluate("(id) => window.caseOverlays.recordScreenPoint(1, 'cells', {id})", cell_id)
    assert point is not None
    page.mouse.move(point["x"] + 2, point["y"] + 1)
    page.wait_for_function(f"() => window.caseOverlays.status(1).hover === {cell_id}", timeout=5000)
    assert f"#{cell_id}" in page.inner_text(".cv-pane[data-index='1'] .ov-tooltip")
    page.mouse.click(point["x"] + 2, point["y"] + 1)
    page.wait_for_function(f"() => window.caseOverlays.status(1).inspected === {cell_id}", timeout=10000)
    inspector = page.locator(".cv-pane[data-index='1'] .ov-inspector")
    expected = _cell_json(run, 2, cell_id)
    assert inspector.get_attribute("data-cell-id") == str(cell_id)
    assert inspector.locator("[data-field='cls']").inner_text().lower() == expected["cls"]
    assert float(inspector.locator("[data-field='prob']").inner_text()) == pytest.approx(expected["prob"])
    assert float(inspector.locator("[data-field='area_um2']").inner_text()) == pytest.approx(expected["area_um2"])
    assert inspector.locator("[data-field='her2_class']").inner_text() == expected["her2"]["class"].replace("_", " ")
    assert inspector.locator("td[data-pair='T-T'][data-metric='meanEdgeLength']").inner_text() == "20.25"
    assert inspector.locator("[data-field='morph-Area']").text_content() == str(expected["morphology"]["Area"])
    # The contour is drawn; the inspector does not cover the cell (it opens on the other side,
    # and where the pane is too narrow for that the slide pans the cell into the free part).
    assert page.locator(".cv-pane[data-index='1'] .ov-contour polygon").count() == 1
    _settle(page)
    now = page.evaluate("(id) => window.caseOverlays.recordScreenPoint(1, 'cells', {id})", cell_id)
    box = inspector.bounding_box()
    assert not (box["x"] <= now["x"] <= box["x"] + box["width"] and box["y"] <= now["y"] <= box["y"] + box["height"])
    view = page.evaluate("() => window.caseViewer.panes[1].getView()")
    assert view["center"]["y"] == pytest.approx(2048, abs=1)  # a sideways pan at most
    page.click(".cv-pane[data-index='1'] .ov-close")
    assert inspector.is_hidden()


def test_attribution_click_highlights_source_cells_and_clears(harness, fake_site):
    page = harness
    _zoom_to(page, center=(2048 - 700, 2048), zoom=1.0)  # tumour nest edge: T, L and S cells
    before = _stage_png(page, 0)
    page.click("tr[data-feature='he_T_L_meanEdgeLength']")
    page.wait_for_function("() => window.caseOverlays.status(0).highlight !== null", timeout=10000)
    _settle(page)
    status = page.evaluate("() => window.caseOverlays.status(0)")
    assert status["highlight"]["classMask"] == 0b1 and status["highlight"]["partnerClassMask"] == 0b100
    assert status["highlight"]["pairMask"] == 1 << PAIRS.index("T-L")
    assert status["layers"]["cells"]["mode"] == "records" and status["layers"]["edges"]["mode"] == "records"
    assert page.evaluate("() => window.caseOverlays.status(1).highlight") is None
    assert page.get_attribute("tr[data-feature='he_T_L_meanEdgeLength']", "aria-pressed") == "true"
    assert "he_T_L_meanEdgeLength" in page.inner_text(".cv-pane[data-index='0'] .ov-banner")
    highlighted = _stage_png(page, 0)
    assert _diff(before, highlighted) > 0.02
    # Same layers without the highlight look different: the rest is dimmed.
    state = page.evaluate("() => window.caseOverlays.getState()")
    assert state["highlight"] == "he_T_L_meanEdgeLength"
    page.click("tr[data-feature='he_T_L_meanEdgeLength']")  # again: clears
    page.wait_for_function("() => window.caseOverlays.status(0).highlight === null", timeout=5000)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    plain = _stage_png(page, 0)
    assert _diff(plain, highlighted) > 0.01
    assert page.get_attribute("tr[data-feature='he_T_L_meanEdgeLength']", "aria-pressed") == "false"
    # An IHC feature goes to the IHC pane and its HER2 layer.
    page.click("tr[data-feature='ihc_prop_strong_complete']")
    page.wait_for_function("() => window.caseOverlays.status(1).highlight !== null", timeout=10000)
    assert page.evaluate("() => window.caseOverlays.status(1).highlight.layers") == ["cells", "her2"]
    assert page.evaluate("() => window.caseOverlays.getState().panes[1].her2.visible") is True
    # A clinical input: nothing on the slides, a notice.
    page.click("tr[data-feature='age']")
    page.wait_for_function("() => window.caseOverlays.status(1).highlight === null && window.caseOverlays.status(0).highlight === null")
    assert "clinical" in page.inner_text(".cv-pane[data-index='0'] .ov-banner")


def test_get_state_set_state_round_trip(harness):
    page = harness
    state = {"panes": [{"cells": {"visible": True, "opacity": 0.4, "hidden": ["other"]}},
                       {"her2": {"visible": True, "opacity": 0.7}, "edges": {"visible": False, "opacity": 0.2}}],
             "highlight": "he_prop_L"}
    page.evaluate("(s) => window.caseOverlays.setState(s)", state)
    got = page.evaluate("() => window.caseOverlays.getState()")
    assert got["highlight"] == "he_prop_L"
    assert got["panes"][0]["cells"] == {"visible": True, "opacity": 0.4, "hidden": ["other"]}
    assert got["panes"][1]["her2"]["visible"] is True and got["panes"][1]["her2"]["opacity"] == 0.7
    assert got["panes"][1]["edges"] == {"visible": False, "opacity": 0.2, "hidden": []}
    assert got["panes"][0]["edges"]["visible"] is False
    assert page.is_checked(".cv-pane[data-index='0'] input[data-layer='cells']")
    assert page.evaluate("() => window.caseOverlays.status(0).highlight.classMask") == 1 << 2
    page.evaluate("() => window.caseOverlays.setState({panes: [], highlight: null})")
    assert page.evaluate("() => window.caseOverlays.getState().highlight") is None
    # The tumour board's calls never reject (an unknown feature is a 404 here).
    page.evaluate("() => window.caseOverlays.setState({panes: [], highlight: 'no_such_feature'})")
    page.evaluate("() => window.caseOverlays.selectAttribution('he_prop_L')")
    assert page.evaluate("() => window.caseOverlays.getState().highlight") == "he_prop_L"
    page.evaluate("() => window.caseOverlays.selectAttribution(null)")
    assert page.evaluate("() => window.caseOverlays.getState().highlight") is None


def test_contour_records_expand_into_segments(module_page, fake_site):
    """Nucleus outlines: the client's parseContours reads analysis.core.overlay.pack_contours's
    records into one segment per contour edge (closed rings), and outlines start near 20x."""
    from analysis.core import overlay as ov

    page = module_page
    rings = [np.array([[0, 0], [6, 0], [6, 4], [0, 4]]), np.array([[-3, -2], [3, -1], [0, 5]])]
    offsets = np.array([0, 4, 7])
    body = ov.pack_contours(ox=np.array([100.0, 2000.0]), oy=np.array([50.0, 7.0]),
                            packed=np.array([(5 << 8) | 2, (9 << 8) | (3 << 4) | 0]), offsets=offsets,
                            values=np.concatenate(rings))
    result = page.evaluate("""async (bytes) => {
        const m = await import('/static/viewer/overlay_data.js');
        const parsed = m.parseContours(new Uint8Array(bytes).buffer);
        const seg = [];
        for (let k = 0; k < parsed.segments; k++) seg.push([...parsed.f32.slice(7 * k, 7 * k + 6), parsed.u32[7 * k + 6]]);
        let bad = null;
        try { m.parseContours(new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0]).buffer); } catch (e) { bad = e.constructor.name; }
        return {cells: parsed.cells, seg, bad, at20: m.outlineZoom({zoom: 1, mpp: 0.5}), at10: m.outlineZoom({zoom: 0.5, mpp: 0.5})};
    }""", list(body))
    assert result["cells"] == 2 and len(result["seg"]) == 7 and result["bad"] == "RecordFormatError"
    first = result["seg"][:4]
    assert [s[:2] for s in first] == [[100, 50], [106, 50], [106, 54], [100, 54]]
    assert [s[2:4] for s in first] == [[106, 50], [106, 54], [100, 54], [100, 50]]  # closed ring
    assert all(s[4:6] == [100, 50] and s[6] == (5 << 8) | 2 for s in first)
    assert result["seg"][6][:4] == [2000, 12, 1997, 5] and result["seg"][6][6] == (9 << 8) | (3 << 4)
    assert result["at20"] is True and result["at10"] is False
