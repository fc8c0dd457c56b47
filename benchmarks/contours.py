"""Benchmark: nucleus outlines at high zoom (issue 14 item 2): contour records vs outline PNG tiles.

Cells: the real HoVer-Net nuclei of CMU-1-Small-Region (../shared/data/scmtop/cmu-1-small-region,
2,394 nuclei with their HoVer-Net contours, 2220 x 2967 px at 0.499 um/px), tiled `--copies`
times edge to edge in a square (default 4 x 4 = 38,304 nuclei over 8,880 x 11,868 px), written
with analysis.core.cells.table.write_cells (the product's cell table and its spatial index).

What is measured, for viewports that the outline zoom fetches (the client fetches the view
grown by half its size on each side; outlines from about 20x, so a 1920 x 1080 screen at 20x
(0.5 um per screen px) asks for 3840 x 2160 screen px = 3840 x 2160 level-0 px at 0.5 um/px;
1280 x 800 asks for 2560 x 1600):

- contour records: viewer.overlays.contours.contour_records, what the API runs (row groups
  read, collinear vertices dropped, packed): time, bytes, bytes per nucleus, vertices kept;
- the alternative, server tiles of outlines: analysis.core.overlay.render_tile_png of the
  cells layer at full resolution (scale 1, where the tiles draw contours) for the 256 px tiles
  covering the same rectangle, with the product's contour source (cells_in_rect): time, bytes.

    .venv/bin/python benchmarks/contours.py      # writes benchmarks/results/contours.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.core import overlay as ov  # noqa: E402
from analysis.core.cells.interchange import read_hovernet_json  # noqa: E402
from analysis.core.cells.table import cells_in_rect, write_cells  # noqa: E402
from viewer.overlays.contours import contour_records  # noqa: E402

SOURCE = ROOT.parent.parent / "shared" / "data" / "scmtop" / "cmu-1-small-region" / "cmu-1-small-region.json"
WIDTH, HEIGHT = 2220, 2967


def build(copies: int, folder: Path) -> tuple[Path, pd.DataFrame, int, int]:
    cells = read_hovernet_json(path=SOURCE).cells
    side = int(round(np.sqrt(copies)))
    frames = []
    for k in range(side * side):
        dx, dy = (k % side) * WIDTH, (k // side) * HEIGHT
        part = cells.copy()
        part["id"] = part["id"] + k * 100_000
        part["x"] = part["x"] + dx
        part["y"] = part["y"] + dy
        part["contour"] = [np.asarray(c) + (dx, dy) for c in part["contour"]]
        frames.append(part)
    many = pd.concat(frames, ignore_index=True)
    path = folder / "cells.parquet"
    write_cells(path=path, cells=many[["id", "x", "y", "contour", "cls", "prob"]])
    return path, many, side * WIDTH, side * HEIGHT


def percentile(values, q):
    return round(float(np.percentile(values, q)), 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "contours.json")
    args = parser.parse_args()
    rng = np.random.default_rng(14)
    with tempfile.TemporaryDirectory() as tmp:
        path, cells, width, height = build(args.copies, Path(tmp))
        run = ov.run_overlay_build(cells=cells[["id", "x", "y", "cls"]], edges=None, stain="he", width=width, height=height)
        stored_vertices = float(np.mean([len(c) for c in cells["contour"]]))

        def source(x0, y0, x1, y1):
            found = cells_in_rect(path=path, x0=x0, y0=y0, x1=x1, y1=y1, columns=["x", "y", "contour", "cls"])
            return list(found["contour"]), ov.class_codes(found["cls"].to_numpy())

        results = {}
        for name, (vw, vh) in {"1280x800": (2560, 1600), "1920x1080": (3840, 2160)}.items():
            rec_ms, rec_bytes, rec_cells, rec_vertices, tile_ms, tile_bytes, tiles_n = [], [], [], [], [], [], []
            for _ in range(args.repeats):
                x0 = float(rng.uniform(0, max(1, width - vw)))
                y0 = float(rng.uniform(0, max(1, height - vh)))
                started = time.perf_counter()
                body, count, vertices = contour_records(cells_path=path, x0=x0, y0=y0, x1=x0 + vw, y1=y0 + vh)
                rec_ms.append((time.perf_counter() - started) * 1000)
                rec_bytes.append(len(body)); rec_cells.append(count); rec_vertices.append(vertices)
                # the same rectangle as full-resolution outline tiles (256 px, scale 1)
                started = time.perf_counter()
                total = 0; n = 0
                for ty in range(int(y0 // 256), int((y0 + vh) // 256) + 1):
                    for tx in range(int(x0 // 256), int((x0 + vw) // 256) + 1):
                        png, _ = ov.render_tile_png(run, "cells", x0=tx * 256, y0=ty * 256, w0=256, h0=256, out_w=256,
                                                    out_h=256, contour_source=source, scale=1.0)
                        total += len(png); n += 1
                tile_ms.append((time.perf_counter() - started) * 1000)
                tile_bytes.append(total); tiles_n.append(n)
            results[name] = {
                "fetch_rect_level0_px": [vw, vh],
                "nuclei_per_fetch_mean": round(float(np.mean(rec_cells)), 1),
                "contour_records": {
                    "ms_p50": percentile(rec_ms, 50), "ms_p95": percentile(rec_ms, 95),
                    "bytes_mean": int(np.mean(rec_bytes)),
                    "bytes_per_nucleus": round(float(np.sum(rec_bytes) / max(1, np.sum(rec_cells))), 1),
                    "vertices_per_nucleus_sent": round(float(np.sum(rec_vertices) / max(1, np.sum(rec_cells))), 1),
                },
                "outline_png_tiles": {
                    "tiles_per_fetch": int(np.mean(tiles_n)),
                    "ms_p50": percentile(tile_ms, 50), "ms_p95": percentile(tile_ms, 95),
                    "bytes_mean": int(np.mean(tile_bytes)),
                },
            }
    out = {
        "benchmark": "contours",
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["benchmarks/contours.py", *sys.argv[1:]]),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpu_note": "2 shared cores"},
        "cells": {"source": "HoVer-Net nuclei of CMU-1-Small-Region (sc-MTOP reference input)", "copies": args.copies,
                  "nuclei": int(len(cells)), "slide_px": [width, height],
                  "stored_vertices_per_nucleus": round(stored_vertices, 1)},
        "viewports": results,
        "choice": "contour records (WebGL outlines; hover, highlight, fill and hidden classes stay client-side)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
