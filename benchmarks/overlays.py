"""Benchmark: overlay tiles and viewport records of a 1M-cell, 3M-edge run.

Targets (issue 6): cold overlay tile p95 < 100 ms, viewport query p95 < 100 ms (a typical
zoomed-in viewport of 2000 x 1200 level-0 px), 12 bytes per cell.

Run: the reference case's real nucleus layout (../shared/data/scmtop/cmu-1-small-region,
2,394 nuclei in 2220 x 2967 px at 0.499 um/px) tiled edge to edge with 2 um Gaussian
jitter (as benchmarks/features.py) to 1,000,000 cells over a ~51,000 x 57,000 px slide;
classes T/S as in the reference, inflammatory cells 80 % lymphocytes, 10 % neutrophils,
10 % macrophages; 8-point nucleus contours. Edges: each cell's 7 nearest neighbours within
25 um, deduplicated, the first 3,000,000 (pair type from the two classes). Written with
analysis.core.cells.table.write_cells / write_edges, registered as a run of a slide in a fresh
data folder (SQLite), then:

- tiles: cold (tile cache cleared first) through the fast path function
  `viewer.tiles.asgi.tile_request`, exactly what the server runs on its tile threads: 40
  random tiles with tissue per deep-zoom level from the full-resolution level down to
  the level where the slide is one tile, for the layers cells, edges and density-tumour;
- viewports: 200 random 2000 x 1200 px rectangles in tissue through the Django test
  client (middleware, DRF authentication, the view), cells and edges layers;
- the run's first load into memory (once per process) is reported apart.

    .venv/bin/python benchmarks/overlays.py      # writes benchmarks/results/overlays.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("LADDER_TEST_DATA", ROOT.parent / "shared" / "data"))
CASE = DATA / "scmtop" / "cmu-1-small-region" / "cmu-1-small-region.json"
MPP = 0.499
OUT = ROOT / "benchmarks" / "results" / "overlays.json"


def synthetic_run(*, n_cells: int, n_edges: int, seed: int = 0):
    import pandas as pd
    from scipy.spatial import cKDTree

    from analysis.core.cells.classes import CellClass
    from analysis.core.graph.scmtop import load_hovernet_json

    nuclei = load_hovernet_json(path=CASE)
    keep = np.isin(nuclei.types, (1, 2, 3))
    base = nuclei.xy[keep].astype(np.float64)
    base_types = nuclei.types[keep]
    width, height = base.max(axis=0) + 1.0
    n_tiles = int(np.ceil(n_cells / len(base)))
    columns = 23
    tiles = np.arange(n_tiles)
    offsets = np.column_stack([(tiles % columns) * width, (tiles // columns) * height])
    rng = np.random.default_rng(seed)
    xy = (base[None] + offsets[:, None]).reshape(-1, 2)[:n_cells] + rng.normal(0, 2.0 / MPP, (n_cells, 2))
    xy = np.clip(xy, 0, None)
    types = np.tile(base_types, n_tiles)[:n_cells]
    cls = np.where(types == 1, CellClass.TUMOUR.value, CellClass.STROMA.value).astype(object)
    immune = np.flatnonzero(types == 2)
    cls[immune] = rng.choice([CellClass.LYMPHOCYTE.value, CellClass.NEUTROPHIL.value, CellClass.MACROPHAGE.value],
                             size=immune.size, p=[0.8, 0.1, 0.1])
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    radius = rng.uniform(4, 8, n_cells)
    contours = np.stack([xy[:, 0:1] + radius[:, None] * np.cos(angles), xy[:, 1:2] + radius[:, None] * np.sin(angles)],
                        axis=2)
    cells = pd.DataFrame({"id": np.arange(n_cells), "x": xy[:, 0], "y": xy[:, 1], "cls": cls,
                          "area": np.pi * radius ** 2, "contour": list(np.rint(contours))})
    tree = cKDTree(xy)
    _, nn = tree.query(xy, k=8, distance_upper_bound=25 / MPP, workers=2)
    src = np.repeat(np.arange(n_cells), 7)
    dst = nn[:, 1:].ravel()
    ok = dst < n_cells
    a, b = np.minimum(src[ok], dst[ok]), np.maximum(src[ok], dst[ok])
    pairs = np.unique(a.astype(np.int64) * n_cells + b)[:n_edges]
    a, b = pairs // n_cells, pairs % n_cells
    letter = {"tumour": "T", "stroma": "S", "lymphocyte": "L", "neutrophil": "N", "macrophage": "M"}
    rank = {"T": 0, "S": 1, "L": 2, "N": 3, "M": 4}
    la = pd.Series(cls[a]).map(letter).to_numpy()
    lb = pd.Series(cls[b]).map(letter).to_numpy()
    swap = pd.Series(la).map(rank).to_numpy() > pd.Series(lb).map(rank).to_numpy()
    first, second = np.where(swap, lb, la), np.where(swap, la, lb)
    edges = pd.DataFrame({"source": a, "target": b, "pair_type": pd.Series(first) + "-" + pd.Series(second),
                          "length": np.hypot(*(xy[a] - xy[b]).T) * MPP})
    slide_w = int(np.ceil(xy[:, 0].max())) + 1
    slide_h = int(np.ceil(xy[:, 1].max())) + 1
    return cells, edges, slide_w, slide_h


def percentiles(values: list[float]) -> dict:
    arr = np.asarray(values) * 1000
    return {"n": len(arr), "p50_ms": round(float(np.percentile(arr, 50)), 2),
            "p95_ms": round(float(np.percentile(arr, 95)), 2), "max_ms": round(float(arr.max()), 2),
            "mean_ms": round(float(arr.mean()), 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--edges", type=int, default=3_000_000)
    parser.add_argument("--tiles-per-level", type=int, default=40)
    parser.add_argument("--viewports", type=int, default=200)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ladder-bench-overlays-"))
    os.environ["LADDER_DATA_DIR"] = str(work)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.cache import caches
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.contrib.auth.models import User
    from django.test import Client

    from analysis.core.cells.table import write_cells, write_edges
    from analysis.models import AnalysisRun
    from analysis.results import runs_root
    from viewer.overlays import selectors as overlay_selectors
    from viewer.overlays import services as overlays
    from viewer.tiles import asgi as tile_app
    from cases.models import Case, Slide, SlideStatus

    started = time.perf_counter()
    cells, edges, slide_w, slide_h = synthetic_run(n_cells=args.cells, n_edges=args.edges)
    generate_s = time.perf_counter() - started
    folder = runs_root() / "slide-1" / "run-bench"
    folder.mkdir(parents=True)
    started = time.perf_counter()
    write_cells(path=folder / "cells.parquet", cells=cells)
    write_edges(path=folder / "edges.parquet", edges=edges, cells=cells, metadata={"length_unit": "um"})
    write_s = time.perf_counter() - started
    print(f"{len(cells):,} cells, {len(edges):,} edges over {slide_w} x {slide_h} px: generated in {generate_s:.1f} s, "
          f"written in {write_s:.1f} s", flush=True)

    case = Case.objects.create(case_id="BENCH-1")
    slide = Slide.objects.create(case=case, stain="he", name="bench", source_path="/dev/null", file_path="/dev/null",
                                 checksum="0" * 64, width=slide_w, height=slide_h, mpp_x=MPP, mpp_y=MPP,
                                 status=SlideStatus.READY)
    run = AnalysisRun.objects.create(slide=slide, run_dir="slide-1/run-bench", segmenter="synthetic",
                                     n_cells=len(cells))
    user = User.objects.create_user("bench", password="x" * 20)
    client = Client()
    client.force_login(user)

    started = time.perf_counter()
    layers = overlay_selectors.slide_overlay_layers(slide)
    summary_s = time.perf_counter() - started
    started = time.perf_counter()
    data = overlays.run_overlay_get(overlays.overlay_run_info(slide.pk))
    load_s = time.perf_counter() - started
    print(f"layer list (first, uncached) {summary_s:.2f} s; run loaded in memory in {load_s:.2f} s "
          f"({data.nbytes / 1e6:.0f} MB)", flush=True)

    geometry = tile_app.tiles.tile_source_get(slide.pk).geometry
    rng = np.random.default_rng(1)
    tissue = cells[["x", "y"]].to_numpy()
    caches["tiles"].clear()
    tile_times: dict[str, dict[int, list[float]]] = {}
    sizes: list[int] = []
    for layer in ("cells", "edges", "density-tumour"):
        tile_times[layer] = {}
        for level in range(geometry.max_level, -1, -1):
            cols, rows = geometry.tile_count(level)
            scale = geometry.level_scale(level)
            picks = tissue[rng.integers(0, len(tissue), args.tiles_per_level)]
            addresses = {(min(int(x // (256 * scale)), cols - 1), min(int(y // (256 * scale)), rows - 1))
                         for x, y in picks}
            times = []
            for col, row in addresses:
                path = f"/slides/{slide.pk}/overlays/{layer}_files/{level}/{col}_{row}.png"
                match = tile_app.TILE_PATH.match(path)
                t = time.perf_counter()
                status, _, body = tile_app.tile_request(match, authorised=True, if_none_match=None)
                times.append(time.perf_counter() - t)
                assert status == 200, (path, status, body[:200])
                sizes.append(len(body))
            tile_times[layer][level] = times
            if cols == 1 and rows == 1:
                break
    all_tiles = [t for layer in tile_times.values() for times in layer.values() for t in times]
    by_level = {layer: {str(level): percentiles(times) for level, times in levels.items()}
                for layer, levels in tile_times.items()}
    print("cold tiles:", percentiles(all_tiles), flush=True)

    viewport = {}
    client.get(f"/api/slides/{slide.pk}/overlays/cells/viewport", {"x": 0, "y": 0, "width": 10, "height": 10})  # warm-up
    for layer in ("cells", "edges"):
        times, counts, nbytes = [], [], []
        url = f"/api/slides/{slide.pk}/overlays/{layer}/viewport"
        for x, y in tissue[rng.integers(0, len(tissue), args.viewports)]:
            params = {"x": float(x) - 1000, "y": float(y) - 600, "width": 2000, "height": 1200}
            t = time.perf_counter()
            response = client.get(url, params)
            times.append(time.perf_counter() - t)
            assert response.status_code == 200, response.content[:200]
            count = int(response["X-Cell-Count" if layer == "cells" else "X-Edge-Count"])
            counts.append(count)
            nbytes.append(len(response.content))
        viewport[layer] = {**percentiles(times), "mean_records": round(float(np.mean(counts)), 1),
                           "max_records": int(np.max(counts)),
                           "bytes_per_record": round(float(np.sum(nbytes) / max(np.sum(counts), 1)), 3)}
        print(f"viewport {layer}:", viewport[layer], flush=True)
    t = time.perf_counter()
    whole = client.get(f"/api/slides/{slide.pk}/overlays/cells/viewport",
                       {"x": 0, "y": 0, "width": slide_w, "height": slide_h})
    whole_s = time.perf_counter() - t
    assert whole.status_code == (413 if len(cells) > overlay_selectors.overlay_max_records() else 200)

    result = {
        "benchmark": "overlays",
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": ".venv/bin/python benchmarks/overlays.py",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_1min": round(os.getloadavg()[0], 2)},
        "run": {"cells": len(cells), "edges": len(edges), "slide_width": slide_w, "slide_height": slide_h, "mpp": MPP,
                "cells_parquet_mb": round((folder / "cells.parquet").stat().st_size / 1e6, 1),
                "edges_parquet_mb": round((folder / "edges.parquet").stat().st_size / 1e6, 1),
                "layers": [layer["name"] for layer in layers]},
        "first_layer_list_s": round(summary_s, 2),
        "run_load_s": round(load_s, 2),
        "run_memory_mb": round(data.nbytes / 1e6, 1),
        "cold_tile": {**percentiles(all_tiles), "mean_png_bytes": int(np.mean(sizes)), "target_p95_ms": 100},
        "cold_tile_by_layer_level": by_level,
        "viewport_2000x1200": viewport,
        "viewport_target_p95_ms": 100,
        "whole_slide_viewport_ms": round(whole_s * 1000, 1),
        "whole_slide_viewport_status": whole.status_code,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    import shutil

    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
