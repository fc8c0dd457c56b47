"""Synthetic demo cohort: format, determinism, planted signal."""
from __future__ import annotations

import warnings

import pytest
from sklearn.metrics import roc_auc_score

from analysis.core.model.cohort import FeatureGroup, cohort_from_frame, read_cohort
from analysis.core.model.persistence import load_model
from analysis.core.model.scoring import score_case
from analysis.core.demo.synthetic_cohort import (
    expected_auc,
    make_synthetic_cohort,
    signal_features,
    train_demo_model,
    write_synthetic_cohort,
)


def _read(frame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return cohort_from_frame(frame=frame)


def test_cohort_has_the_format_and_139_slide_features(tmp_path):
    path = write_synthetic_cohort(path=tmp_path / "syn.csv", n_cases=60, seed=3)
    cohort = read_cohort(path=path)
    assert cohort.n == 60 and cohort.has_survival
    assert len(cohort.columns_of(groups=(FeatureGroup.HE,))) == 69
    assert len(cohort.columns_of(groups=(FeatureGroup.IHC,))) == 70
    assert len(cohort.columns_of(groups=(FeatureGroup.CLINICAL,))) == 9
    assert not cohort.ignored_columns and not cohort.dropped_columns


def test_same_seed_same_cohort_other_seed_other_cohort():
    a, b, c = (make_synthetic_cohort(n_cases=40, seed=s) for s in (1, 1, 2))
    assert a.equals(b) and not a.equals(c)
    with pytest.raises(ValueError, match="at least 20"):
        make_synthetic_cohort(n_cases=5)


def test_planted_signal_has_the_documented_directions():
    cohort = _read(make_synthetic_cohort(n_cases=3000, seed=0, with_survival=True))
    x, y = cohort.inputs, cohort.pcr
    signal = signal_features()
    assert 0.3 < y.mean() < 0.5
    assert roc_auc_score(y, x[signal["til_proportion"]]) > 0.6  # more TILs -> pCR
    assert roc_auc_score(y, x[signal["her2_strong_complete"]]) > 0.6
    assert roc_auc_score(y, -x[signal["tumour_lymphocyte_distance"]]) > 0.6  # closer lymphocytes -> pCR
    assert roc_auc_score(y, -x["hr_status"]) > 0.55
    noise = [c for c in x.columns if c.startswith("he_") and c not in signal.values() and "prop" not in c]
    assert all(abs(roc_auc_score(y, x[c]) - 0.5) < 0.06 for c in noise[:20])
    events = cohort.dfs_event.astype(bool)
    assert events[y == 0].mean() > events[y == 1].mean()  # residual disease relapses more
    assert 0.77 < expected_auc(n_cases=50_000) < 0.82


def test_demo_model_is_saved_and_says_synthetic(tmp_path):
    # Quick settings here; benchmarks/scoring.py times the real set-up training.
    train_demo_model(directory=tmp_path / "demo", n_cases=120, seed=0, spec_overrides={"n_repeats": 1, "n_trees": 30, "importance_cases": 2})
    model = load_model(tmp_path / "demo")
    assert model.synthetic and model.card["synthetic"] is True
    assert "NOT FOR CLINICAL USE" in model.card["intended_use"]
    assert model.card["synthetic_signal"]["features"] == signal_features()
    row = make_synthetic_cohort(n_cases=20, seed=9).iloc[0].to_dict()
    score = score_case(model=model, values=row)
    assert sum(score.attributions.values()) == pytest.approx(score.probability_pcr - score.base_value, abs=1e-6)


def test_builtin_names_match_the_feature_schema():
    from analysis.core.model.cohort import load_feature_schema
    from analysis.core.demo.synthetic_cohort import builtin_feature_names

    schema = load_feature_schema()
    if not schema:
        pytest.skip("analysis/core/graph/feature_schema_v1.json not written yet")
    he, ihc = builtin_feature_names()
    assert he == [n for n, g in schema.items() if g is FeatureGroup.HE]
    assert ihc == [n for n, g in schema.items() if g is FeatureGroup.IHC]
