"""Benchmark: our HER2 slide score on real breast HER2 IHC (BCI patches) against the given scores.

Data: ../shared/data/ihc/her2-bci/IHC and IHC_unpaired (BCI, Liu et al., CVPR Workshops 2022;
1024 x 1024 px; see SOURCES.md there). The score in each file name is the WHOLE SLIDE's
pathologist score (0, 1+, 2+, 3+), not the patch's: a 3+ slide's patch may show little tumour,
so agreement is bounded by how representative each patch is. BCI states no resolution; the
patches are 20x crops, taken here as --mpp 0.5 um/px (the nucleus model works at 0.5).

Per image: the default segmenter (the trained nucleus model, or --segmenter classical), the
image's H-DAB vectors (Macenko with fallback: her2.grading.estimate_hdab), membrane sectors of
every nucleus (measured once), then for each threshold set: classes, grades kept for tumour
cells only (keep_tumour_grades), the ASCO/CAP score and H-score. "all cells" repeats the score
with every nucleus graded (the behaviour before grading was restricted to tumour cells).

Writes benchmarks/results/her2_bci.json (per image, per threshold set, confusion tables).
Run: .venv/bin/python benchmarks/her2_bci.py [--limit N] [--segmenter nucleus-model|classical]
Small on purpose (9 patches, ~1 min per patch on one core with the nucleus model).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from analysis.core.cells.classes import CellClass  # noqa: E402
from analysis.core.her2.grading import (  # noqa: E402
    Her2Params,
    NoTumourCellsError,
    estimate_hdab,
    h_score,
    her2_slide_score,
    keep_tumour_grades,
    membrane_sectors,
    summarize_sectors,
)

DATA = ROOT.parent.parent / "shared" / "data" / "ihc" / "her2-bci"
SCORES = ("0", "1+", "2+", "3+")
DEFAULT = Her2Params()
# Threshold sets compared: the shipped defaults (set on the phantoms) and the same shape scaled,
# to see whether real DAB sits where the phantom's does.
def _scaled(factor: float) -> Her2Params:
    return replace(DEFAULT, faint_od=DEFAULT.faint_od * factor, weak_od=DEFAULT.weak_od * factor,
                   strong_od=DEFAULT.strong_od * factor)


PARAM_SETS = {"default": DEFAULT, **{f"x{f:g}": _scaled(f) for f in (0.5, 1.5, 2.0, 2.5, 3.0, 4.0)}}


def images(limit: int | None) -> list[tuple[Path, str]]:
    paths = sorted((DATA / "IHC").glob("*.png")) + sorted((DATA / "IHC_unpaired").glob("*.png"))
    out = [(p, p.stem.rsplit("_", 1)[-1]) for p in paths]
    return out[:limit] if limit else out


def segmenter_for(name: str):
    if name == "classical":
        from analysis.core.her2.grading import IhcNucleusSegmenter

        return IhcNucleusSegmenter()
    from analysis.core.cells.segmentation.nucleus_model.segmenter import NucleusModelSegmenter

    return NucleusModelSegmenter(threads=1)


def score_of(her2_class) -> tuple[str | None, float | None, int]:
    klass = pd.Series(list(her2_class), dtype=object)
    n = int(klass.notna().sum())
    try:
        score = her2_slide_score(her2_class=klass).score
    except NoTumourCellsError:
        score = None
    return score, h_score(her2_class=klass), n


def confusion(rows: list[dict], key: str) -> dict:
    table = {truth: {pred: 0 for pred in (*SCORES, "none")} for truth in SCORES}
    for row in rows:
        table[row["given"]][row[key] or "none"] += 1
    agree = sum(table[s][s] for s in SCORES)
    within_one = sum(table[t][p] for t in SCORES for p in SCORES if abs(SCORES.index(t) - SCORES.index(p)) <= 1)
    return {"table": table, "exact": agree, "within_one_step": within_one, "n": len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--mpp", type=float, default=0.5)
    parser.add_argument("--segmenter", default="nucleus-model", choices=("nucleus-model", "classical"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "her2_bci.json"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # shared machine
    segmenter = segmenter_for(args.segmenter)
    rows = []
    for path, given in images(args.limit):
        started = time.perf_counter()
        rgb = np.asarray(Image.open(path).convert("RGB"))
        estimate = estimate_hdab(rgb=rgb)
        seg = segmenter.for_stain_matrix(estimate.matrix) if hasattr(segmenter, "for_stain_matrix") else segmenter
        nuclei = seg.segment(rgb=rgb, mpp=args.mpp).reset_index(drop=True)
        row = {"image": path.name, "given": given, "n_nuclei": len(nuclei),
               "class_counts": {str(k): int(v) for k, v in nuclei["cls"].value_counts().items()},
               "stain_estimate": estimate.reason}
        sectors = membrane_sectors(rgb=rgb, mpp=args.mpp, nuclei=nuclei, stain_matrix=estimate.matrix,
                                   params=DEFAULT)
        for name, params in PARAM_SETS.items():
            graded = pd.concat([nuclei, summarize_sectors(sectors=sectors, params=params)], axis=1)
            tumour = keep_tumour_grades(graded)
            row[name], row[f"{name}_h_score"], row[f"{name}_n_tumour"] = score_of(tumour["her2_class"])
            if name == "default":
                row["default_all_cells"], row["default_all_cells_h_score"], _ = score_of(graded["her2_class"])
                t = tumour[tumour["cls"] == CellClass.TUMOUR.value]
                row["tumour_stained_od_quantiles"] = [round(float(q), 4) for q in
                                                      np.nanquantile(t["her2_stained_od"], [0.1, 0.5, 0.9])] if len(t) else None
                row["tumour_completeness_median"] = float(np.nanmedian(t["her2_completeness"])) if len(t) else None
        row["seconds"] = round(time.perf_counter() - started, 1)
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("image", "given", "n_nuclei", "default", "default_all_cells",
                                              "default_h_score", *PARAM_SETS, "seconds")}), flush=True)
    result = {
        "data": "BCI HER2 IHC patches (../shared/data/ihc/her2-bci); given = whole-slide score in the file name",
        "mpp_assumed": args.mpp,
        "segmenter": getattr(segmenter, "info", None) and asdict(segmenter.info),
        "param_sets": {k: asdict(v) for k, v in PARAM_SETS.items()},
        "confusion": {key: confusion(rows, key) for key in (*PARAM_SETS, "default_all_cells")},
        "images": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result["confusion"], indent=1))


if __name__ == "__main__":
    main()
