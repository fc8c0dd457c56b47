"""Benchmark: statistics of a drawn region on a 1,000,000-cell IHC table (analysis.core.cells.region).

What GET /api/annotations/<id>/statistics/ computes (viewer.review.statistics), timed without
HTTP: read the row groups under the polygon's bounding box (the table's Morton index), decide
each cell inside / outside (raster lookup, exact test near the outline), count classes and HER2
grades, score. Synthetic table: 1M cells uniformly over a 40,000 x 40,000 px slide, 5 classes,
HER2 classes on tumour cells. Regions: a 2,000 px rectangle (a field of view), a 500-vertex
freehand loop 10,000 px across, and a polygon over the whole slide. Median of REPEATS (warm:
the table's footer index is parsed once per process, as in the server).
Writes benchmarks/results/region_statistics.json.
Run: .venv/bin/python benchmarks/region_statistics.py
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from analysis.core.cells.region import region_statistics  # noqa: E402
from analysis.core.cells.table import CellTableWriter  # noqa: E402

N, SIDE, REPEATS = 1_000_000, 40_000, 5
CLASSES = np.array(["tumour", "stroma", "lymphocyte", "macrophage", "other"], dtype=object)
HER2 = np.array(["strong_complete", "strong_incomplete", "weak_complete", "weak_incomplete", "null_complete",
                 "null_incomplete"], dtype=object)


def synthetic(rng, n, start):
    x, y = rng.uniform(0, SIDE, n), rng.uniform(0, SIDE, n)
    cls = CLASSES[rng.choice(5, n, p=[0.5, 0.25, 0.15, 0.05, 0.05])]
    her2 = np.where(cls == "tumour", HER2[rng.integers(0, 6, n)], None)
    tri = np.array([[-4, -4], [4, -4], [0, 4]], np.int32)
    return pd.DataFrame({"id": np.arange(start, start + n), "x": x, "y": y,
                         "contour": [tri + [int(a), int(b)] for a, b in zip(x, y)], "cls": cls, "prob": 1.0,
                         "area": 60.0, "her2_od": 0.1, "her2_stained_od": 0.1, "her2_completeness": 1.0,
                         "her2_class": her2})


def regions():
    square = [[19_000, 19_000], [21_000, 19_000], [21_000, 21_000], [19_000, 21_000], [19_000, 19_000]]
    t = np.linspace(0, 2 * np.pi, 500, endpoint=False)
    loop = np.c_[20_000 + 5_000 * np.cos(t) * (1 + 0.15 * np.sin(7 * t)), 20_000 + 5_000 * np.sin(t)].tolist()
    whole = [[0, 0], [SIDE, 0], [SIDE, SIDE], [0, SIDE], [0, 0]]
    return {"rectangle 2000 px": square, "freehand 500 vertices, 10000 px": loop, "whole slide": whole}


def main() -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cells.parquet"
        t0 = time.perf_counter()
        with CellTableWriter(path=path, slide_width=SIDE, slide_height=SIDE) as writer:
            for start in range(0, N, 200_000):
                writer.add(synthetic(rng, 200_000, start))
            writer.finish()
        build_s = time.perf_counter() - t0
        results = {}
        for name, ring in regions().items():
            geometry = {"type": "Polygon", "coordinates": [ring]}
            region_statistics(cells_path=path, geometry=geometry, mpp_x=0.25, stain="ihc")  # warm the footer index
            times, stats = [], None
            for _ in range(REPEATS):
                t = time.perf_counter()
                stats = region_statistics(cells_path=path, geometry=geometry, mpp_x=0.25, stain="ihc")
                times.append((time.perf_counter() - t) * 1000)
            results[name] = {"median_ms": round(float(np.median(times)), 1), "max_ms": round(max(times), 1),
                             "cells_inside": stats.n_cells, "asco_cap": stats.asco_cap,
                             "area_mm2": round(stats.area_mm2, 3)}
            print(name, results[name], flush=True)
    out = {"n_cells": N, "slide_px": SIDE, "repeats": REPEATS, "table_build_s": round(build_s, 1),
           "machine": "2 shared CPU cores (the dev box), timings include Parquet reads", "regions": results}
    target = Path(__file__).resolve().parent / "results" / "region_statistics.json"
    target.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
