"""Cross-validation figures pooled over folds: by hand."""
from __future__ import annotations

import pytest

from analysis.core.cells.segmentation.nucleus_model.evaluation import pool_fold_scores


def test_folds_pool_counts_not_per_fold_figures():
    # Fold A: 8 tp, 2 fp, 0 fn on 1 tile; fold B: 2 tp, 0 fp, 8 fn on 3 tiles.
    # Per-fold F1 0.889 and 0.333 average 0.611; pooled counts give 20 / (20 + 10) = 0.667.
    a = {"tiles": 1, "tp": 8, "fp": 2, "fn": 0, "aji": 0.8, "dice": 0.9, "pq": 0.7,
         "tumour_matched": 10, "tumour_correct": 9, "non_tumour_matched": 2, "non_tumour_correct": 0}
    b = {"tiles": 3, "tp": 2, "fp": 0, "fn": 8, "aji": 0.4, "dice": 0.5, "pq": 0.3,
         "tumour_matched": 2, "tumour_correct": 1, "non_tumour_matched": 10, "non_tumour_correct": 10}
    pooled = pool_fold_scores([a, b])
    assert pooled["f1"] == pytest.approx(2 * 10 / (2 * 10 + 2 + 8), abs=1e-4)
    assert pooled["aji"] == pytest.approx((0.8 * 1 + 0.4 * 3) / 4)
    assert pooled["tiles"] == 4
    # sensitivity 10 / 12, specificity 10 / 12 over both folds (not the mean of per-fold accuracies)
    assert pooled["tumour_balanced_accuracy"] == pytest.approx(10 / 12, abs=1e-4)


def test_unlabelled_sets_have_no_tumour_accuracy():
    row = {"tiles": 2, "tp": 5, "fp": 1, "fn": 1, "aji": 0.6, "dice": 0.7, "pq": 0.5}
    assert "tumour_balanced_accuracy" not in pool_fold_scores([row])
