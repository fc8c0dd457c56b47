"""The nucleus model in bfloat16 against float32: the same nuclei, how much faster.

Run on demand (not in CI), from the project root, on a CPU with native bfloat16
(AVX512-BF16 or AMX; the script says if this one has none):
    .venv/bin/python benchmarks/nucleus_bf16.py [--speed-only]
Writes benchmarks/results/nucleus_bf16.json.

What it measures, float32 PyTorch (`torch`) against bfloat16 autocast (`torch-bf16`), same
weights, same tiles:
- accuracy on every annotated set in shared/data/nuclei (pooled F1 at IoU >= 0.5, AJI, Dice,
  PQ, tumour balanced accuracy: evaluation.score_tiles), for both precisions;
- agreement: bfloat16's nuclei scored against float32's as if they were the truth (F1 at
  IoU >= 0.5) and the share of matched nuclei with the same class, on the annotated tiles, on
  her2st H&E crops and on real HER2 IHC (her2-bci);
- speed: her2st H&E 4 x 1024² crops at 0.7 um/px, whole segmenter (network + post-processing),
  1 and 2 threads, and the network alone on one 1,200 px window.

Target (issue 16, to use bfloat16 by default): pooled F1 and tumour balanced accuracy within
0.005 of float32 on every set, agreement F1 >= 0.98, and faster.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("LADDER_TEST_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "benchmarks" / "results" / "nucleus_bf16.json"
RUNTIMES = ("torch", "torch-bf16")


def _segmenters(threads: int):
    import torch

    from analysis.core.cells.segmentation.nucleus_model.segmenter import NucleusModelSegmenter

    torch.set_num_threads(threads)
    return {r: NucleusModelSegmenter(runtime=r) for r in RUNTIMES}


def _label_image(cells, shape):
    from analysis.core.cells.segmentation import metrics

    return metrics.polygons_to_label_image(polygons=list(cells["contour"]), shape=shape)


def _agreement(images, segmenters) -> dict:
    """bfloat16 scored against float32 on the same images."""
    from analysis.core.cells.segmentation import metrics
    from analysis.core.cells.segmentation.nucleus_model.evaluation import matched_pairs

    tp = fp = fn = same = 0
    for rgb, mpp in images:
        ref = segmenters["torch"].segment(rgb=rgb, mpp=mpp)
        new = segmenters["torch-bf16"].segment(rgb=rgb, mpp=mpp)
        truth, pred = _label_image(ref, rgb.shape[:2]), _label_image(new, rgb.shape[:2])
        s = metrics.detection_scores(truth=truth, pred=pred)
        tp, fp, fn = tp + s.true_positives, fp + s.false_positives, fn + s.false_negatives
        ti, pi = matched_pairs(truth, pred)
        ref_cls, new_cls = np.asarray(ref["cls"]), np.asarray(new["cls"])
        same += int(np.sum(ref_cls[ti - 1] == new_cls[pi - 1]))  # labels are row order + 1
    return {"images": len(images), "float32_nuclei": tp + fn, "bfloat16_nuclei": tp + fp,
            "f1_vs_float32": round(2 * tp / max(2 * tp + fp + fn, 1), 4),
            "same_class_of_matched": round(same / max(tp, 1), 4)}


def _her2st_crops():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from segmentation import HER2ST_MPP, _her2st_crops as crops

    return [(c, HER2ST_MPP) for c in crops()]


def _ihc_images(limit: int = 6):
    from PIL import Image

    paths = sorted((DATA / "ihc" / "her2-bci" / "IHC").glob("*.png"))
    images = []
    for path in paths[:limit]:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        images.append((np.ascontiguousarray(rgb[:1024, :1024]), 0.5))
    return images


def accuracy_and_agreement() -> dict:
    from analysis.core.cells.classes import CellClass
    from analysis.core.cells.segmentation.nucleus_model.data import MODEL_CLASSES, load_tiles
    from analysis.core.cells.segmentation.nucleus_model.evaluation import score_tiles

    segmenters = _segmenters(threads=2)
    tiles = load_tiles(root=DATA / "nuclei")
    index = {c.value: i for i, c in enumerate([CellClass.TUMOUR, CellClass.STROMA, CellClass.LYMPHOCYTE, CellClass.OTHER])}
    accuracy = {}
    for runtime, segmenter in segmenters.items():
        def segment(rgb, mpp, segmenter=segmenter):
            cells = segmenter.segment(rgb=rgb, mpp=mpp)
            cls = np.array([-1] + [index.get(c, MODEL_CLASSES.index("other")) for c in cells["cls"]])
            return _label_image(cells, rgb.shape[:2]), cls
        accuracy[runtime] = score_tiles(tiles=tiles, segment=segment)
    differences = {
        dataset: {k: round(accuracy["torch-bf16"][dataset][k] - row[k], 4)
                  for k in ("f1", "aji", "dice", "pq", "tumour_balanced_accuracy") if k in row}
        for dataset, row in accuracy["torch"].items()
    }
    agreement = {
        "annotated_tiles": _agreement([(t.rgb, t.mpp) for t in tiles], segmenters),
        "her2st_he_crops": _agreement(_her2st_crops(), segmenters),
        "her2_bci_ihc": _agreement(_ihc_images(), segmenters),
    }
    return {"accuracy": accuracy, "bfloat16_minus_float32": differences, "agreement": agreement,
            "runtimes": {r: s.model.runtime for r, s in segmenters.items()}}


def speed() -> dict:
    """Both runtimes timed alternately, crop by crop and window by window, so that load from
    elsewhere on the machine falls on both alike (the ratio is the robust figure)."""
    import torch

    from analysis.core.cells.segmentation.nucleus_model.inference import predict_maps

    crops = _her2st_crops()
    megapixels = sum(c.shape[0] * c.shape[1] for c, _ in crops) / 1e6
    window = np.ascontiguousarray(np.tile(crops[0][0], (2, 2, 1))[:1200, :1200])
    out = {}
    for threads in (1, 2):
        segmenters = _segmenters(threads)
        seconds = {r: 0.0 for r in RUNTIMES}
        cells = {r: 0 for r in RUNTIMES}
        network = {r: [] for r in RUNTIMES}
        for segmenter in segmenters.values():
            segmenter.segment(rgb=crops[0][0][:256, :256], mpp=crops[0][1])  # warm
        for rgb, mpp in crops:
            for runtime, segmenter in segmenters.items():
                start = time.perf_counter()
                cells[runtime] += len(segmenter.segment(rgb=rgb, mpp=mpp))
                seconds[runtime] += time.perf_counter() - start
        for _ in range(3):
            for runtime, segmenter in segmenters.items():
                start = time.perf_counter()
                predict_maps(loaded=segmenter.model, rgb=window)
                network[runtime].append(time.perf_counter() - start)
        for runtime, segmenter in segmenters.items():
            out[f"{runtime}_threads_{threads}"] = {
                "runtime": segmenter.model.runtime, "threads": torch.get_num_threads(),
                "segment_wall_s": round(seconds[runtime], 2), "megapixels_per_s": round(megapixels / seconds[runtime], 3),
                "nuclei_per_s": round(cells[runtime] / seconds[runtime], 1), "cells": cells[runtime],
                "network_1200px_window_s": round(float(np.median(network[runtime])), 3)}
        out[f"speedup_threads_{threads}"] = {
            "segment": round(seconds["torch"] / seconds["torch-bf16"], 2),
            "network": round(float(np.median(network["torch"]) / np.median(network["torch-bf16"])), 2)}
    return out


def main() -> None:
    import argparse

    from analysis.core.cells.segmentation.nucleus_model.inference import cpu_has_native_bfloat16

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed-only", action="store_true", help="re-measure speed; keep the accuracy figures on file")
    args = parser.parse_args()
    if not cpu_has_native_bfloat16():
        sys.exit("this CPU has no native bfloat16 (AVX512-BF16 or AMX): nothing to measure")
    results = json.loads(RESULTS.read_text()) if args.speed_only and RESULTS.exists() else {}
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "cpu": platform.processor() or platform.machine(),
                          "load_average_at_start": os.getloadavg()}
    if not args.speed_only:
        results.update(accuracy_and_agreement())
    results["speed"] = speed()
    results["machine"]["load_average_at_end"] = os.getloadavg()
    worst_f1 = min(d.get("f1", 0) for d in results["bfloat16_minus_float32"].values())
    worst_ba = min(d.get("tumour_balanced_accuracy", 0) for d in results["bfloat16_minus_float32"].values())
    worst_agreement = min(a["f1_vs_float32"] for a in results["agreement"].values())
    results["target"] = "F1 and tumour BA within 0.005 of float32 on every set; agreement F1 >= 0.98; faster"
    results["meets_target"] = bool(worst_f1 >= -0.005 and worst_ba >= -0.005 and worst_agreement >= 0.98
                                   and results["speed"]["speedup_threads_2"]["segment"] > 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(json.dumps({k: results[k] for k in ("bfloat16_minus_float32", "agreement", "speed", "meets_target")}, indent=2))


if __name__ == "__main__":
    main()
