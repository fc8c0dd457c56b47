"""Benchmark: frame time of the overlay front end while panning over 1M cells and 3M edges.

The run is benchmarks/overlays.py's synthetic run (the reference case's nuclei tiled to
1,000,000 cells over ~51,000 x 57,000 px at 0.499 um/px; 3,000,000 graph edges). A small
stand-in server answers exactly the overlay contract's formats from numpy arrays (the real
server's speed is benchmarks/overlays.py's subject): the slide JSON with its layers, the
binary viewport records (cells 12 B, edges 20 B; 413 above 500,000), PNG overlay tiles,
and a plain slide pyramid. Headless Chromium (Debian's, via Playwright) opens a page built
like the case page (case_viewer.js + overlays.js, both panes), turns on the cell and
edge layers, and pans the H&E continuously for a few seconds with requestAnimationFrame
(the IHC follows through the sync). Frame times are the intervals between animation
frames; `draw_ms` is the CPU time of one overlay redraw (uniform update + draw calls).

Scenarios: no overlay (baseline: OpenSeadragon alone), zoom 0.5 (a typical zoomed-in view)
with cells + edges, and zoomed out until the fetched edges are near the client's budget
(~240k edges + ~80k cells in the GPU buffers).

Note: this machine has no GPU; Chromium renders WebGL with SwiftShader (CPU), so the
numbers are an upper bound of what a workstation GPU gives.

    .venv/bin/python benchmarks/overlays_frames.py   # -> benchmarks/results/overlays_frames.json
"""
from __future__ import annotations

import argparse
import io
import json
import math
import platform
import re
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
STATIC = ROOT / "static"
OUT = ROOT / "benchmarks" / "results" / "overlays_frames.json"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
CAP = 500_000
CLASSES = ["tumour", "stroma", "lymphocyte", "neutrophil", "macrophage", "other"]
COLOURS = ["#D55E00", "#009E73", "#0072B2", "#CC79A7", "#E69F00", "#999999"]


class Run:
    def __init__(self, n_cells: int, n_edges: int):
        from benchmarks.overlays import MPP, synthetic_run

        cells, edges, self.width, self.height = synthetic_run(n_cells=n_cells, n_edges=n_edges)
        self.mpp = MPP
        self.x = cells["x"].to_numpy(np.float32)
        self.y = cells["y"].to_numpy(np.float32)
        code = {c: i for i, c in enumerate(CLASSES)}
        cls = cells["cls"].map(code).to_numpy(np.uint32)
        ids = np.arange(1, len(cells) + 1, dtype=np.uint32)
        self.packed = (ids << 8) | (np.uint32(15) << 4) | cls
        self.pairs = sorted(edges["pair_type"].unique())
        a, b = edges["source"].to_numpy(), edges["target"].to_numpy()
        self.ex1, self.ey1, self.ex2, self.ey2 = self.x[a], self.y[a], self.x[b], self.y[b]
        self.ecode = edges["pair_type"].map({p: i for i, p in enumerate(self.pairs)}).to_numpy(np.uint32)
        self.cls_counts = np.bincount(cls, minlength=6)
        self.pair_counts = np.bincount(self.ecode, minlength=len(self.pairs))
        self.n_cells, self.n_edges = len(self.x), len(self.ex1)

    def layers(self) -> list[dict]:
        palette = ["#D55E00", "#E69F00", "#CC79A7", "#F0E442", "#009E73", "#56B4E9", "#0072B2", "#999999", "#000000",
                   "#882255", "#44AA99", "#117733", "#332288", "#DDCC77", "#AA4499"]
        return [
            {"name": "cells", "label": "Cell classes", "kind": "cells", "record_bytes": 12,
             "legend": [{"key": c, "label": c, "color": COLOURS[i], "code": i, "count": int(self.cls_counts[i])}
                        for i, c in enumerate(CLASSES)],
             "dzi_url": "/slides/1/overlays/cells.dzi", "viewport_url": "/api/slides/1/overlays/cells/viewport"},
            {"name": "edges", "label": "Graph edges", "kind": "edges", "record_bytes": 20,
             "legend": [{"key": p, "label": p, "color": palette[i % len(palette)], "code": i, "count": int(self.pair_counts[i])}
                        for i, p in enumerate(self.pairs)],
             "dzi_url": "/slides/1/overlays/edges.dzi", "viewport_url": "/api/slides/1/overlays/edges/viewport"},
        ]


def _tiles():
    from PIL import Image

    rng = np.random.default_rng(0)
    slide = Image.fromarray(np.clip(np.array([232, 214, 224]) + rng.normal(0, 6, (256, 256, 3)), 0, 255).astype(np.uint8))
    out = io.BytesIO()
    slide.save(out, "JPEG", quality=70)
    overlay = Image.new("P", (256, 256), 0)
    overlay.putpalette([0, 0, 0, 213, 94, 0] + [0] * 762)
    for k in range(0, 256, 16):
        overlay.paste(1, (k, k, k + 6, k + 6))
    png = io.BytesIO()
    overlay.save(png, "PNG", transparency=0)
    return out.getvalue(), png.getvalue()


def serve(run: Run, page: str):
    jpeg, png = _tiles()
    dzi = (f'<?xml version="1.0" encoding="UTF-8"?><Image xmlns="http://schemas.microsoft.com/deepzoom/2008" '
           f'Format="{{}}" Overlap="0" TileSize="256"><Size Width="{run.width}" Height="{run.height}"/></Image>')
    stats = {"viewport_ms": [], "records": []}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status, body, ctype):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            url = urlparse(self.path)
            path = url.path
            if path == "/bench.html":
                return self._send(200, page.encode(), "text/html")
            if path.startswith("/static/"):
                f = STATIC / path[8:]
                ctype = "text/javascript" if f.suffix == ".js" else "text/css" if f.suffix == ".css" else "image/png"
                return self._send(200, f.read_bytes(), ctype) if f.is_file() else self._send(404, b"", "text/plain")
            if path == "/slides/1.dzi":
                return self._send(200, dzi.format("jpeg").encode(), "application/xml")
            if re.fullmatch(r"/slides/1_files/\d+/\d+_\d+\.jpeg", path):
                return self._send(200, jpeg, "image/jpeg")
            if re.fullmatch(r"/slides/1/overlays/\w+\.dzi", path):
                return self._send(200, dzi.format("png").encode(), "application/xml")
            if re.fullmatch(r"/slides/1/overlays/\w+_files/\d+/\d+_\d+\.png", path):
                return self._send(200, png, "image/png")
            if path == "/api/slides/1/":
                return self._send(200, json.dumps({"id": 1, "width": run.width, "height": run.height,
                                                   "overlays": run.layers()}).encode(), "application/json")
            if m := re.fullmatch(r"/api/slides/1/overlays/(\w+)/viewport", path):
                q = {k: float(v[0]) for k, v in parse_qs(url.query).items()}
                t = time.perf_counter()
                x0, y0, x1, y1 = q["x"], q["y"], q["x"] + q["width"], q["y"] + q["height"]
                if m[1] == "cells":
                    idx = np.flatnonzero((run.x >= x0) & (run.x < x1) & (run.y >= y0) & (run.y < y1))
                    if idx.size > CAP:
                        return self._send(413, b'{"detail": "zoom in"}', "application/json")
                    rec = np.empty(idx.size, dtype=[("x", "<f4"), ("y", "<f4"), ("p", "<u4")])
                    rec["x"], rec["y"], rec["p"] = run.x[idx], run.y[idx], run.packed[idx]
                else:
                    mx, my = (run.ex1 + run.ex2) / 2, (run.ey1 + run.ey2) / 2
                    idx = np.flatnonzero((mx >= x0) & (mx < x1) & (my >= y0) & (my < y1))
                    if idx.size > CAP:
                        return self._send(413, b'{"detail": "zoom in"}', "application/json")
                    rec = np.empty(idx.size, dtype=[("a", "<f4"), ("b", "<f4"), ("c", "<f4"), ("d", "<f4"), ("p", "<u4")])
                    rec["a"], rec["b"], rec["c"], rec["d"], rec["p"] = run.ex1[idx], run.ey1[idx], run.ex2[idx], run.ey2[idx], run.ecode[idx]
                stats["viewport_ms"].append((time.perf_counter() - t) * 1000)
                stats["records"].append(int(idx.size))
                return self._send(200, rec.tobytes(), "application/octet-stream")
            return self._send(404, b"", "text/plain")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, stats


def page_html(run: Run, drawer: str | None) -> str:
    slide = {"id": 1, "stain": "he", "label": "H&E", "name": "bench 1M cells", "dzi_url": "/slides/1.dzi",
             "width": run.width, "height": run.height, "mpp": run.mpp}
    config = {"csrfToken": "x", "osdImagesUrl": "/static/vendor/openseadragon/images/", "slides": [slide, {**slide, "stain": "ihc", "label": "HER2 IHC"}],
              "alignment": None}
    if drawer:
        config["drawer"] = drawer
    return f"""<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="/static/viewer/case_viewer.css"><link rel="stylesheet" href="/static/viewer/overlays.css">
<script src="/static/vendor/openseadragon/openseadragon.min.js"></script></head><body style="margin:0">
<div id="case-viewer"></div><script id="case-viewer-config" type="application/json">{json.dumps(config)}</script>
<script type="module" src="/static/viewer/case_viewer.js"></script>
<script type="module" src="/static/viewer/overlays.js"></script></body></html>"""


PAN_JS = """async ([seconds, speed]) => {
  const viewer = window.caseViewer.viewers[0];
  const pane = window.caseOverlays.panes[0];
  const draws = [];
  const original = pane.renderer.draw.bind(pane.renderer);
  pane.renderer.draw = (t, d) => { const s = performance.now(); original(t, d); draws.push(performance.now() - s); };
  const frames = [];
  let last = performance.now();
  const end = last + seconds * 1000;
  let dir = 1;
  await new Promise((resolve) => {
    const step = (now) => {
      frames.push(now - last); last = now;
      const vp = viewer.viewport;
      const b = vp.getBounds(true);
      vp.panBy(new OpenSeadragon.Point(dir * b.width * speed, b.height * speed * 0.3), true);
      if (frames.length % 240 === 0) dir = -dir;
      if (now < end) requestAnimationFrame(step); else resolve();
    };
    requestAnimationFrame(step);
  });
  pane.renderer.draw = original;
  const st = window.caseOverlays.status(0);
  return {frames: frames.slice(2), draws, records: {cells: st.layers.cells.records, edges: st.layers.edges.records}, fetches: st.fetches};
  // (fetches counts every records answer since the page opened)
}"""


def summary(values):
    a = np.asarray(values, dtype=float)
    if not a.size:
        return None
    return {"n": int(a.size), "p50_ms": round(float(np.percentile(a, 50)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2),
            "max_ms": round(float(a.max()), 2), "mean_ms": round(float(a.mean()), 2),
            "fps": round(1000 / float(a.mean()), 1), "over_33ms": round(float((a > 33.4).mean()), 3)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--edges", type=int, default=3_000_000)
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    t = time.perf_counter()
    run = Run(args.cells, args.edges)
    print(f"{run.n_cells:,} cells, {run.n_edges:,} edges over {run.width} x {run.height} px in {time.perf_counter() - t:.1f} s",
          flush=True)
    from playwright.sync_api import sync_playwright

    results = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for drawer in ("canvas",):
            server, stats = serve(run, page_html(run, drawer))
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/bench.html")
            page.wait_for_function("window.caseOverlays !== undefined", timeout=60000)
            page.evaluate("() => window.caseOverlays.ready")
            renderer = page.evaluate("""() => { const gl = window.caseOverlays.panes[0].renderer.gl;
                const ext = gl.getExtension('WEBGL_debug_renderer_info');
                return ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER); }""")
            cx, cy = float(np.median(run.x)), float(np.median(run.y))
            for label, zoom, layers in (("baseline_no_overlay_0.5", 0.5, []), ("zoomed_in_0.5", 0.5, ["cells", "edges"]),
                                        ("near_budget", None, ["cells", "edges"])):
                if zoom is None:
                    # Zoom so that the fetched rectangle (the view grown 2x each way) holds ~240k edges
                    # (the client's budget is 250k records per layer by estimate): ~80k cells.
                    density = max(run.n_cells, run.n_edges) / (run.width * run.height)
                    view_area = 240_000 / density / 4
                    box = page.evaluate("() => [window.caseViewer.viewers[0].container.clientWidth, window.caseViewer.viewers[0].container.clientHeight]")
                    zoom = math.sqrt(box[0] * box[1] / view_area)
                page.evaluate("([x, y, z, layers]) => { window.caseViewer.setState({center: {x, y}, zoom: z, rotation: 0});"
                              " for (const n of layers) window.caseOverlays.setVisible(0, n, true); }", [cx, cy, zoom, layers])
                page.wait_for_function("""(layers) => { const s = window.caseOverlays.status(0);
                    return layers.every(n => s.layers[n].mode === 'records'); }""", arg=layers, timeout=120000)
                page.wait_for_timeout(500)
                out = page.evaluate(PAN_JS, [args.seconds, 0.004])
                results[f"{drawer}:{label}"] = {"zoom_screen_px_per_level0_px": round(zoom, 4), "records_in_buffers": out["records"],
                                                "refetches_during_pan": out["fetches"], "frame": summary(out["frames"]),
                                                "overlay_draw_cpu": summary(out["draws"])}
                print(label, json.dumps(results[f"{drawer}:{label}"]), flush=True)
                page.evaluate("() => { for (const n of ['cells', 'edges']) window.caseOverlays.setVisible(0, n, false); }")
            page.close()
            server.shutdown()
        browser.close()
    doc = {
        "benchmark": "overlays_frames",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "webgl_renderer": renderer,
                    "note": "no GPU: WebGL via SwiftShader (CPU); 2 cores shared with other work"},
        "run": {"cells": run.n_cells, "edges": run.n_edges, "width": run.width, "height": run.height},
        "viewport": {"window": "1600 x 900, two panes", "pan": "0.4 % of the view per frame, continuous"},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
