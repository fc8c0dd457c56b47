"""Scoring a segmenter on hand-annotated tiles: pooled detection F1 at IoU >= 0.5, AJI, Dice,
PQ per dataset, and tumour vs non-tumour balanced accuracy on matched, labelled nuclei."""
from __future__ import annotations

import numpy as np

from analysis.core.cells.segmentation.nucleus_model.data import MODEL_CLASSES, AnnotatedTile, class_bits

TUMOUR_BIT = class_bits({"tumour"})


def _metrics():
    from analysis.core.cells.segmentation import metrics

    return metrics


def matched_pairs(truth: np.ndarray, pred: np.ndarray):
    """(true id, pred id) pairs with IoU >= 0.5."""
    t = truth.ravel().astype(np.int64)
    p = pred.ravel().astype(np.int64)
    both = (t > 0) & (p > 0)
    width = int(p.max()) + 1
    codes, inter = np.unique(t[both] * width + p[both], return_counts=True)
    ta = np.bincount(t, minlength=int(t.max()) + 1)
    pa = np.bincount(p, minlength=width)
    ti, pi = codes // width, codes % width
    iou = inter / (ta[ti] + pa[pi] - inter)
    keep = iou >= 0.5
    return ti[keep], pi[keep]


def score_tiles(*, tiles: list[AnnotatedTile], segment) -> dict:
    """segment(rgb, mpp) -> (labels at input resolution, class index per label or None).

    Returns per dataset: tiles, nuclei, tp/fp/fn, pooled precision/recall/F1, mean AJI, Dice, PQ,
    and, where the set has classes, tumour vs non-tumour balanced accuracy over matched nuclei."""
    m = _metrics()
    out: dict[str, dict] = {}
    per = {}
    for tile in tiles:
        labels, cls = segment(tile.rgb, tile.mpp)
        s = m.detection_scores(truth=tile.labels, pred=labels)
        row = per.setdefault(tile.dataset, {"tiles": 0, "nuclei": 0, "tp": 0, "fp": 0, "fn": 0, "aji": [], "dice": [], "pq": [], "sq_num": 0.0,
                                             "tumour": [0, 0], "non_tumour": [0, 0]})
        row["tiles"] += 1
        row["nuclei"] += int(len(np.unique(tile.labels)) - 1)
        row["tp"] += s.true_positives
        row["fp"] += s.false_positives
        row["fn"] += s.false_negatives
        row["aji"].append(m.aggregated_jaccard_index(truth=tile.labels, pred=labels))
        row["dice"].append(m.dice_coefficient(truth=tile.labels, pred=labels))
        row["pq"].append(s.panoptic_quality)
        if s.true_positives:
            row["sq_num"] += s.segmentation_quality * s.true_positives
        if tile.allowed and cls is not None:
            ti, pi = matched_pairs(tile.labels, labels)
            for t_id, p_id in zip(ti, pi):
                bits = tile.allowed.get(int(t_id), 0)
                if not bits:
                    continue
                truth_tumour = bits == TUMOUR_BIT
                pred_tumour = MODEL_CLASSES[int(cls[p_id])] == "tumour"
                key = "tumour" if truth_tumour else "non_tumour"
                row[key][0] += int(pred_tumour == truth_tumour)
                row[key][1] += 1
    for dataset, row in per.items():
        tp, fp, fn = row["tp"], row["fp"], row["fn"]
        result = {
            "tiles": row["tiles"], "nuclei": row["nuclei"], "tp": tp, "fp": fp, "fn": fn,
            "precision": round(tp / max(tp + fp, 1), 4), "recall": round(tp / max(tp + fn, 1), 4),
            "f1": round(2 * tp / max(2 * tp + fp + fn, 1), 4),
            "aji": round(float(np.mean(row["aji"])), 4), "dice": round(float(np.mean(row["dice"])), 4),
            "pq": round(float(np.mean(row["pq"])), 4),
        }
        if row["tumour"][1] and row["non_tumour"][1]:
            sens = row["tumour"][0] / row["tumour"][1]
            spec = row["non_tumour"][0] / row["non_tumour"][1]
            result["tumour_balanced_accuracy"] = round((sens + spec) / 2, 4)
            result["tumour_matched"] = row["tumour"][1]
            result["non_tumour_matched"] = row["non_tumour"][1]
            result["tumour_correct"] = row["tumour"][0]  # kept so folds can be pooled exactly
            result["non_tumour_correct"] = row["non_tumour"][0]
        out[dataset] = result
    return out


def pool_fold_scores(rows: list[dict]) -> dict:
    """One dataset's cross-validation figures from its per-fold `score_tiles` rows.

    F1 pooled over every held-out nucleus (2 tp / (2 tp + fp + fn) of the summed counts);
    AJI, Dice and PQ as tile-weighted means of the folds' per-tile means; tumour balanced
    accuracy from the summed matched counts (sensitivity and specificity over all folds).
    """
    tiles = sum(r["tiles"] for r in rows)
    pooled = {
        "f1": round(2 * sum(r["tp"] for r in rows) / max(1, sum(2 * r["tp"] + r["fp"] + r["fn"] for r in rows)), 4),
        **{k: round(sum(r[k] * r["tiles"] for r in rows) / max(tiles, 1), 4) for k in ("aji", "dice", "pq")},
        "tiles": tiles,
    }
    labelled = [r for r in rows if "tumour_correct" in r]
    if labelled:
        pooled["tumour_balanced_accuracy"] = pooled_balanced_accuracy(labelled)
    return pooled


def pooled_balanced_accuracy(rows: list[dict]) -> float:
    """Tumour balanced accuracy from the summed matched counts of several folds."""
    sensitivity = sum(r["tumour_correct"] for r in rows) / sum(r["tumour_matched"] for r in rows)
    specificity = sum(r["non_tumour_correct"] for r in rows) / sum(r["non_tumour_matched"] for r in rows)
    return round((sensitivity + specificity) / 2, 4)
