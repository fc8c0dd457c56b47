"""Benchmark: peak memory of the streamed whole-slide runner on a 50,000 x 50,000 slide.

Target (issue): peak resident memory under 4 GB for a 50,000 x 50,000 px slide.

What runs: analysis.core.pipeline.analyze_slide end to end (thumbnail, tissue
detection, 2,401 tiles of 512 um with 32 um overlap, seam filtering, level-0 mapping,
CellTableWriter partitions, external sort, atomic publish) on a procedural slide that is
tissue almost everywhere. Pixel segmentation of 2.5 gigapixels would take over an hour
on 2 cores, so the segmenter here is a stand-in that returns a dense hexagonal lattice
of nuclei (24 px apart, octagon contours: ~1,800 cells per tile, ~4 M cells in all)
without looking at the pixels; the segmenters' own per-tile memory is
measured separately on one real-size tile (`one_tile_classical`, `one_tile_nucleus_model`). Peak RSS is sampled
every 50 ms from /proc/self/status and cross-checked with getrusage's ru_maxrss.

Run: .venv/bin/python benchmarks/wsi_memory.py   (writes benchmarks/results/wsi_memory.json;
     --tiles-only re-measures only the per-tile segmenter figures)
"""
from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from wsi_throughput import PeakSampler, rss_bytes  # noqa: E402  (one memory sampler for the benchmarks)
from analysis.core.cells.segmentation.base import SegmenterInfo  # noqa: E402
from analysis.core.pipeline import analyze_slide  # noqa: E402

SIDE = 50_000
TARGET_GB = 4.0
TISSUE_RGB = (205, 150, 195)


class ProceduralSlide:
    """50k x 50k slide: tissue in an ellipse covering most of it, glass outside."""

    dimensions = (SIDE, SIDE)
    level_downsamples = [1.0]

    def _tissue(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        return ((xs - SIDE / 2) / (0.48 * SIDE)) ** 2 + ((ys - SIDE / 2) / (0.45 * SIDE)) ** 2 <= 1

    def read_region(self, *, x, y, width, height, level=0):
        corners_x = np.array([x, x + width, x, x + width])
        corners_y = np.array([y, y, y + height, y + height])
        if self._tissue(corners_x, corners_y).all():  # fast path: the tile is all tissue
            return np.broadcast_to(np.array(TISSUE_RGB, np.uint8), (height, width, 3)).copy()
        yy, xx = np.mgrid[y:y + height:16, x:x + width:16]
        coarse = self._tissue(xx, yy)
        mask = np.repeat(np.repeat(coarse, 16, axis=0), 16, axis=1)[:height, :width]
        out = np.full((height, width, 3), 245, np.uint8)
        out[mask] = TISSUE_RGB
        return out

    def thumbnail(self, max_size):
        step = SIDE / max_size
        yy, xx = np.mgrid[0:max_size, 0:max_size] * step
        out = np.full((max_size, max_size, 3), 245, np.uint8)
        out[self._tissue(xx, yy)] = TISSUE_RGB
        return out


class LatticeSegmenter:
    """Stand-in segmenter: a hexagonal lattice of octagonal nuclei over tissue pixels."""

    target_mpp = 0.5
    info = SegmenterInfo(name="lattice-benchmark", version="1", approximate=True)
    spacing = 24.0
    _octagon = np.rint(np.stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], 1) * 6).astype(np.int32)

    def segment(self, *, rgb, mpp):
        h, w = rgb.shape[:2]
        ys = np.arange(6, h - 6, self.spacing * np.sqrt(3) / 2)
        xs = np.arange(6, w - 6, self.spacing)
        gy, gx = np.meshgrid(ys, xs, indexing="ij")
        gx = gx + (np.arange(len(ys))[:, None] % 2) * self.spacing / 2
        x, y = gx.ravel(), gy.ravel()
        keep = (x < w - 6) & (rgb[y.astype(int), x.astype(int), 1] < 200)  # on tissue
        x, y = x[keep], y[keep]
        return pd.DataFrame({
            "x": x, "y": y,
            "contour": [self._octagon + [int(a), int(b)] for a, b in zip(x, y)],
            "cls": "tumour", "prob": np.ones(len(x), np.float32), "area_px": np.full(len(x), 113.0, np.float32),
        })


def one_tile_classical() -> dict:
    from analysis.core.cells.segmentation.classical import ClassicalSegmenter
    import openslide

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "slides" / "CMU-1-Small-Region.svs"
    if not path.exists():
        return {"skipped": f"missing {path}"}
    slide = openslide.OpenSlide(str(path))
    tile = np.asarray(slide.read_region((900, 1200), 0, (1090, 1090)).convert("RGB"))
    before = rss_bytes()
    sampler = PeakSampler()
    sampler.start()
    cells = ClassicalSegmenter().segment(rgb=tile, mpp=0.499)
    sampler.stop.set()
    sampler.join()
    return {"tile_px": 1090, "cells": len(cells), "rss_before_mb": before / 1e6,
            "peak_rss_mb": max(sampler.peak, rss_bytes()) / 1e6}


def one_tile_nucleus_model() -> dict:
    """Peak memory of the shipped nucleus model on one pipeline tile of a 40x slide: 512 um + 2 x 32 um
    overlap at 0.25 um/px = 2,304 px, read from the her2st section (real tissue)."""
    from PIL import Image

    from analysis.core.cells.segmentation.nucleus_model.segmenter import SHIPPED_WEIGHTS, NucleusModelSegmenter

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "slides" / "her2st-C2-HE.jpg"
    if not path.exists():
        return {"skipped": f"missing {path}"}
    Image.MAX_IMAGE_PIXELS = None
    with Image.open(path) as image:
        tile = np.asarray(image.convert("RGB").crop((3000, 3000, 3000 + 2304, 3000 + 2304)))
    segmenter = NucleusModelSegmenter(weights=SHIPPED_WEIGHTS)
    before = rss_bytes()
    sampler = PeakSampler()
    sampler.start()
    started = time.perf_counter()
    cells = segmenter.segment(rgb=tile, mpp=0.25)
    elapsed = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    return {"tile_px": 2304, "mpp": 0.25, "cells": len(cells), "seconds": round(elapsed, 2),
            "rss_before_mb": before / 1e6, "peak_rss_mb": max(sampler.peak, rss_bytes()) / 1e6}


def main() -> None:
    dest = Path(__file__).resolve().parent / "results" / "wsi_memory.json"
    if "--tiles-only" in sys.argv:  # re-measure the per-tile segmenter figures, keep the slide run's
        result = json.loads(dest.read_text())
        result["one_tile_classical"] = one_tile_classical()
        result["one_tile_nucleus_model"] = one_tile_nucleus_model()
        dest.write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
        return
    baseline = rss_bytes()
    sampler = PeakSampler()
    sampler.start()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        summary = analyze_slide(reader=ProceduralSlide(), stain="he", segmenter=LatticeSegmenter(),
                                out_dir=Path(tmp) / "run", mpp=0.5)
        size_mb = (Path(tmp) / "run" / "cells.parquet").stat().st_size / 1e6
    elapsed = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    peak = max(sampler.peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    result = {
        "slide_px": [SIDE, SIDE], "tiles": summary.n_tiles, "cells": summary.n_cells,
        "cells_parquet_mb": size_mb, "elapsed_s": elapsed,
        "baseline_rss_mb": baseline / 1e6, "peak_rss_mb": peak / 1e6, "target_gb": TARGET_GB,
        "pass": peak / 1e9 < TARGET_GB,
        "one_tile_classical": one_tile_classical(),
        "one_tile_nucleus_model": one_tile_nucleus_model(),
    }
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
