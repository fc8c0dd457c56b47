"""Benchmark (on demand): a whole slide pair from import to score, per stage, on this machine.

Target (issue 16): a 40,000 x 40,000 px real-tissue H&E + HER2-IHC pair in under 10 minutes on
2 cores, peak memory under 4 GB.

What runs, exactly as the product runs it (real database, real job handlers, no stand-ins):
  1. build (cached in ../bench-cache/wsi): an Aperio-style SVS from the her2st section with
     ../shared/tools/make_svs_like.py (240-px JPEG tiles, levels 1/4/16x, 0.499 um/px), and an
     IHC twin from the same section restained HER2-like (hematoxylin kept, DAB on membranes in
     tumour-like regions: benchmarks/registration.py's restain_ihc);
  2. import: slide_import of each SVS into a fresh data folder (SQLite, migrated);
  3. cells + features: the ANALYZE_SLIDE job of each slide through job_claim/job_execute, its
     progress messages splitting segmentation ("cells") from graphs + slide features ("features");
  4. score: the SCORE_CASE job with the synthetic demo model.
Seconds and Mpx/s (level-0 pixels per second) per stage and stain; peak RSS of this process and
of its worker children (ru_maxrss), sampled every 50 ms.

    .venv/bin/python benchmarks/wsi_throughput.py [--size 40000] [--segmenter auto|nucleus-model|classical]
        # writes benchmarks/results/wsi_throughput[-SIZE][-classical].json (the 40,000 run: wsi_throughput.json)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
DATA = Path(os.environ.get("LADDER_TEST_DATA", ROOT.parent / "shared" / "data"))
TOOLS = DATA.parent / "tools"
CACHE = ROOT.parent / "bench-cache" / "wsi"
SECTION = DATA / "slides" / "her2st-C2-HE.jpg"
SECTION_MPP = 0.7
TARGET_SECONDS = 600
TARGET_GB = 4.0


def build(size: int) -> dict[str, Path]:
    """The H&E SVS and its IHC twin (made once per size, cached outside the repository)."""
    import cv2
    import numpy as np
    from PIL import Image

    from registration import restain_ihc

    CACHE.mkdir(parents=True, exist_ok=True)
    ihc_section = CACHE / "her2st-C2-IHC-like.jpg"
    if not ihc_section.exists():
        Image.MAX_IMAGE_PIXELS = None
        rgb = np.asarray(Image.open(SECTION).convert("RGB"))
        small = cv2.resize(rgb, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)  # restain at 4x less, then
        ihc = restain_ihc(small, rng=np.random.default_rng(16), mpp=SECTION_MPP * 4)  # upsample: fine for timing
        ihc = cv2.resize(ihc, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
        Image.fromarray(ihc).save(ihc_section, quality=90)
    out = {}
    for stain, source in (("he", SECTION), ("ihc", ihc_section)):
        path = CACHE / f"{stain}-{size}.svs"
        if not path.exists():
            subprocess.run([sys.executable, str(TOOLS / "make_svs_like.py"), str(source), str(path), str(size)],
                           check=True)
        out[stain] = path
    return out


def rss_bytes() -> int:
    """Resident memory of this process now (VmRSS)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakSampler(threading.Thread):
    """Resident memory of this process every 50 ms: the peak overall and per stage (`mark`)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak = 0
        self.stage, self.stage_peaks = "start", {}
        self.stop = threading.Event()

    def mark(self, stage: str) -> None:
        self.stage = stage

    def run(self):
        while not self.stop.is_set():
            rss = rss_bytes()
            self.peak = max(self.peak, rss)
            self.stage_peaks[self.stage] = max(self.stage_peaks.get(self.stage, 0), rss)
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=40_000)
    parser.add_argument("--segmenter", default="auto", choices=["auto", "nucleus-model", "classical"])
    args = parser.parse_args()
    slides = build(args.size)

    data_dir = tempfile.mkdtemp(prefix="ladder-wsi-")
    os.environ.update(LADDER_DATA_DIR=data_dir, LADDER_SLIDE_ROOTS=str(CACHE), LADDER_SEGMENTER=args.segmenter,
                      DJANGO_SETTINGS_MODULE="config.settings",
                      # the benchmark runs its own jobs; nothing else queued beside them
                      LADDER_AUTO_ANALYSE="0", LADDER_AUTO_REGISTER="0")
    import django

    django.setup()
    from django.core.management import call_command

    from analysis.core.demo.synthetic_cohort import train_demo_model
    from analysis.jobs.runner import job_claim, job_execute
    from analysis.models import JobKind, JobStatus
    from analysis.scoring import model_register, models_dir
    from analysis.services import job_enqueue
    from cases.models import Case
    from viewer.cases.services.slides import slide_import

    call_command("migrate", verbosity=0)
    directory = models_dir() / "demo-synthetic"
    train_demo_model(directory=directory)
    model_register(directory=directory, activate=True)
    case = Case.objects.create(case_id="WSI-BENCH", age=50, clinical_t="T2", clinical_n="N1", clinical_stage="II",
                               er_status="negative", pr_status="negative", hr_status="negative")

    sampler = PeakSampler()
    sampler.start()
    stages: dict[str, dict] = {}
    started_all = time.perf_counter()
    for stain, path in slides.items():
        t0 = time.perf_counter()
        slide = slide_import(case=case, stain=stain, path=path, name=path.name)
        imported = time.perf_counter() - t0
        marks: dict[str, float] = {}

        def on_progress(fraction: float, message: str) -> None:
            if "cell graphs" in message and "cells_done" not in marks:
                marks["cells_done"] = time.perf_counter()
                sampler.mark(f"{stain} features")

        sampler.mark(f"{stain} cells")

        t1 = time.perf_counter()
        job = job_execute(job_claim(job_id=job_enqueue(kind=JobKind.ANALYZE_SLIDE, slide=slide, max_attempts=1).pk,
                                    worker="benchmark"), on_progress=on_progress)
        t2 = time.perf_counter()
        if job.status != JobStatus.SUCCEEDED:
            raise SystemExit(f"{stain} analysis {job.status}: {job.error}")
        megapixels = slide.width * slide.height / 1e6
        cells_s = marks.get("cells_done", t2) - t1
        stages[stain] = {
            "slide": path.name, "megapixels": round(megapixels), "cells": job.result["cells"],
            "import_s": round(imported, 2), "cells_s": round(cells_s, 1), "features_s": round(t2 - t1 - cells_s, 1),
            "cells_megapixels_per_s": round(megapixels / cells_s, 2), "segmenter": job.log.split("segmenter ", 1)[-1].split("\n")[0],
        }
        print(json.dumps({stain: stages[stain]}), flush=True)
    # The analysis jobs queued a score; run it here, timed.
    from analysis.models import Job

    sampler.mark("score")
    t3 = time.perf_counter()
    for job in Job.objects.filter(kind=JobKind.SCORE_CASE, status=JobStatus.QUEUED):
        scored = job_execute(job_claim(job_id=job.pk, worker="benchmark"))
    score_s = time.perf_counter() - t3
    total = time.perf_counter() - started_all
    sampler.stop.set()
    sampler.join()
    children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    own_peak = max(sampler.peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    result = {
        "size_px": [args.size, args.size], "segmenter_choice": args.segmenter,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg_at_end": os.getloadavg()},
        "stages": stages, "score_s": round(score_s, 2), "score_status": scored.status if 'scored' in dir() else None,
        "total_s": round(total, 1), "target_s": TARGET_SECONDS, "pass_time": total < TARGET_SECONDS,
        "peak_rss_mb": round(own_peak / 1e6), "peak_rss_children_mb": round(children_peak / 1e6),
        "peak_rss_mb_by_stage": {k: round(v / 1e6) for k, v in sampler.stage_peaks.items()},
        "target_gb": TARGET_GB, "pass_memory": max(own_peak, children_peak) / 1e9 < TARGET_GB,
    }
    name = "wsi_throughput.json" if args.size == 40_000 else f"wsi_throughput-{args.size}.json"
    if args.segmenter == "classical":  # the labelled fallback: its own file beside the default's
        name = name.replace(".json", "-classical.json")
    dest = ROOT / "benchmarks" / "results" / name
    dest.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
