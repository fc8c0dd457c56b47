"""Benchmark (on demand): the whole-slide cell stage with the nucleus model's network overlapped
with post-processing (the product) against one tile after another, back to back.

What it times: `analysis.core.pipeline.analyze_slide` on a real-tissue Aperio-style SVS (the
her2st section through ../shared/tools/make_svs_like.py, cached by benchmarks/wsi_throughput.py),
the nucleus model as the product loads it, three times per round (overlapped; overlapped with the
network on one torch thread; sequential: the same segmenter seen through `segment` only),
alternating so that load drifts hit all alike. Checks that
both give the same cells; reports seconds, Mpx/s (level-0 tissue-tile pixels) and peak RSS growth.

Target: both cores busy during segmentation; the cell tables identical.

    .venv/bin/python benchmarks/pipeline_overlap.py [--size 10000] [--stain he|ihc] [--rounds 2]
        # writes benchmarks/results/pipeline_overlap.json
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
RESULTS = ROOT / "benchmarks" / "results" / "pipeline_overlap.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--stain", default="he", choices=["he", "ihc"])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from wsi_throughput import PeakSampler, build, rss_bytes
    from analysis.core.cells.segmentation.base import OnePhaseView
    from analysis.core.cells.table import read_cells
    from analysis.core.pipeline import analyze_slide
    from analysis.core.slides.reader import SlideReader
    from analysis.core.cells.segmentation.nucleus_model.segmenter import NucleusModelSegmenter

    path = build(args.size)[args.stain]
    import torch

    model = NucleusModelSegmenter()
    default_threads = torch.get_num_threads()
    runs, tables = [], {}
    for round_ in range(args.rounds):
        for variant, segmenter, threads in (("overlapped", model, default_threads),
                                            ("overlapped, network on 1 thread", model, 1),
                                            ("sequential", OnePhaseView(model), default_threads)):
            torch.set_num_threads(threads)
            base, sampler = rss_bytes(), PeakSampler()
            sampler.start()
            with tempfile.TemporaryDirectory() as tmp:
                cpu0, t0 = time.process_time(), time.perf_counter()
                summary = analyze_slide(reader=SlideReader(path), stain=args.stain, segmenter=segmenter,
                                        out_dir=Path(tmp) / "run", mpp=0.499)
                seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
                sampler.stop.set()
                sampler.join()
                cells = read_cells(path=Path(tmp) / "run" / "cells.parquet", columns=["x", "y", "cls"])
                tables.setdefault(variant, cells)
            tile_px = sum(w * h for _, _, w, h in (summary.qc or {}).get("tiles", [])) or None
            torch.set_num_threads(default_threads)
            runs.append({"round": round_, "variant": variant, "torch_threads": threads, "seconds": round(seconds, 1),
                         "cpu_seconds": round(cpu, 1), "cores_busy": round(cpu / seconds, 2),
                         "cells": int(summary.n_cells), "tiles": int(summary.n_tiles),
                         "mpx_per_s": round(tile_px / seconds / 1e6, 3) if tile_px else None,
                         "peak_rss_growth_mb": round((sampler.peak - base) / 2**20), "load_1min": os.getloadavg()[0]})
            print(json.dumps(runs[-1]), flush=True)

    def same(a, b) -> bool:
        return len(a) == len(b) and all((a[c].to_numpy() == b[c].to_numpy()).all() for c in ("x", "y", "cls"))

    identical = all(same(table, tables["sequential"]) for table in tables.values())
    best = {v: min(r["seconds"] for r in runs if r["variant"] == v) for v in dict.fromkeys(r["variant"] for r in runs)}
    result = {
        "benchmark": "pipeline_overlap",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "slide": f"{path.name} ({args.size}² px, {args.stain})",
        "segmenter": model.info.name, "runtime": model.model.runtime,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024},
        "runs": runs,
        "best_seconds": best,
        "speedup": {v: round(best["sequential"] / t, 2) for v, t in best.items()},
        "cells_identical": bool(identical),
        "target": "both cores busy during segmentation; identical cells",
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("best_seconds", "speedup", "cells_identical")}))


if __name__ == "__main__":
    main()
