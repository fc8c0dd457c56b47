"""Benchmark: viewport query on a 1,000,000-cell table (analysis.core.cells.table).

Target (issue): a 2000 x 2000 px viewport query answers in well under 50 ms.
Synthetic table: 1M cells uniformly over a 40,000 x 40,000 px slide (~2,500 cells per
viewport), 24-point contours. Writes benchmarks/results/cells_query.json.
Run: .venv/bin/python benchmarks/cells_query.py
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
from analysis.core.cells.table import CellTableWriter, cells_in_rect  # noqa: E402

N, SIDE, VIEW, REPEATS = 1_000_000, 40_000, 2_000, 50
TARGET_MS = 50.0


def synthetic_cells(rng: np.random.Generator, n: int, start_id: int) -> pd.DataFrame:
    x = rng.uniform(0, SIDE, n)
    y = rng.uniform(0, SIDE, n)
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    ring = np.stack([np.cos(angles), np.sin(angles)], axis=1) * 7
    contours = [np.rint(ring + [a, b]).astype(np.int32) for a, b in zip(x, y)]
    return pd.DataFrame({"id": np.arange(start_id, start_id + n), "x": x, "y": y, "contour": contours,
                         "cls": "tumour", "prob": 1.0, "area": 150.0})


def main() -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cells.parquet"
        t0 = time.perf_counter()
        writer = CellTableWriter(path=path, slide_width=SIDE, slide_height=SIDE)
        for start in range(0, N, 100_000):
            writer.add(synthetic_cells(rng, 100_000, start))
        writer.finish()
        write_s = time.perf_counter() - t0
        size_mb = path.stat().st_size / 1e6
        results = {}
        for label, columns in (("all columns", None), ("id,x,y,cls", ["id", "x", "y", "cls"])):
            cells_in_rect(path=path, x0=0, y0=0, x1=VIEW, y1=VIEW, columns=columns)  # warm the index cache
            times, counts = [], []
            for _ in range(REPEATS):
                x0, y0 = rng.uniform(0, SIDE - VIEW, 2)
                t = time.perf_counter()
                got = cells_in_rect(path=path, x0=x0, y0=y0, x1=x0 + VIEW, y1=y0 + VIEW, columns=columns)
                times.append((time.perf_counter() - t) * 1000)
                counts.append(len(got))
            results[label] = {"median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95)),
                              "max_ms": float(np.max(times)), "mean_cells": float(np.mean(counts))}
    out = {"cells": N, "slide_px": SIDE, "viewport_px": VIEW, "repeats": REPEATS, "target_ms": TARGET_MS,
           "write_s": write_s, "file_mb": size_mb, "query": results,
           "pass": all(r["p95_ms"] < TARGET_MS for r in results.values())}
    dest = Path(__file__).resolve().parent / "results" / "cells_query.json"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
