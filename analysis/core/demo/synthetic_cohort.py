"""A synthetic HER2+ cohort with a planted signal, for the demo model and for tests.

NOT patient data. Each case gets the clinical columns of the cohort format, 69 H&E and
70 IHC slide features (names from ``feature_schema_v1.json`` when it exists, else the
built-in names below), a pCR outcome and disease-free survival.

Planted signal (log-odds of pCR, drawn per case then pCR ~ Bernoulli):

    logit P(pCR) = -0.2 - 1.0 * [HR positive] - 0.4 * (stage - 2)
                   + 0.9 * z_TIL + 0.8 * z_HER2

* z_TIL ~ N(0, 1) (tumour-infiltrating lymphocytes) raises the H&E lymphocyte proportion
  (``SIGNAL_FEATURES["til_proportion"]``) and shortens the tumour-to-lymphocyte mean
  edge length (``SIGNAL_FEATURES["tumour_lymphocyte_distance"]``): more TILs -> pCR
  (as in the HER2-LADDER and sc-MTOP papers).
* z_HER2 ~ N(0, 1) + 0.5 for IHC 3+ raises the proportion of strong-complete HER2
  membranes (``SIGNAL_FEATURES["her2_strong_complete"]``): more HER2 addiction -> pCR.
* HR-positive and higher clinical stage -> less pCR (known clinical effects).
* Every other slide feature is noise (log-normal / Dirichlet), independent of outcome.
* pCR rate ~ 40 %. The Bayes AUC (true log-odds as the score) is ~ 0.80 (computed by
  :func:`expected_auc`); a model trained on 300 cases reaches ~ 0.71 in CV (seed 0: 0.712),
  because the latents are only seen through noisy features.
* DFS: exponential times, hazard 0.004/month after pCR and 0.012/month with residual
  disease, administrative censoring uniform on 24-96 months.
* Missing values: 5 % of ``grade`` and of ``pr_status`` are left empty (imputation path).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.core.cells.classes import Her2Class
from analysis.core.model.cohort import FeatureGroup, cohort_from_frame, load_feature_schema

_HE_TYPES = ("T", "S", "L", "N")
_IHC_TYPES = ("Tstrong", "Tweak", "Tnull", "nonT")
_STATS = ("minEdgeLength", "meanEdgeLength", "Nsubgraph", "Degrees")


def builtin_feature_names() -> tuple[list[str], list[str]]:
    """(69 H&E, 70 IHC) names as schema v1 spells them; used only if the schema file is absent."""
    he = [f"he_prop_{t}" for t in (*_HE_TYPES, "M")] + [f"he_{a}_{b}_{stat}" for a in _HE_TYPES for b in _HE_TYPES for stat in _STATS]
    ihc = [f"ihc_prop_{c.value}" for c in Her2Class] + [f"ihc_{a}_{b}_{stat}" for a in _IHC_TYPES for b in _IHC_TYPES for stat in _STATS]
    return he, ihc


def feature_names() -> tuple[list[str], list[str]]:
    """H&E and IHC feature names: the schema's when it exists, else the built-in ones."""
    schema = load_feature_schema()
    if schema:
        he = [n for n, g in schema.items() if g is FeatureGroup.HE]
        ihc = [n for n, g in schema.items() if g is FeatureGroup.IHC]
        if he and ihc:
            return he, ihc
    return builtin_feature_names()


def _pick(names: list[str], candidates: tuple[str, ...], *, fallback: int) -> str:
    for candidate in candidates:
        if candidate in names:
            return candidate
    lowered = [n.lower() for n in names]
    for candidate in candidates:
        for name, low in zip(names, lowered):
            if candidate.lower() in low:
                return name
    return names[fallback]


def signal_features() -> dict[str, str]:
    """Which slide features carry the planted signal (role -> column name)."""
    he, ihc = feature_names()
    return {
        "til_proportion": _pick(he, ("he_prop_L", "he_prop_lymphocyte", "prop_L", "lymphocyte"), fallback=2),
        "tumour_lymphocyte_distance": _pick(he, ("he_T_L_meanEdgeLength", "T_L_meanEdgeLength"), fallback=min(len(he) - 1, 30)),
        "her2_strong_complete": _pick(ihc, ("ihc_prop_strong_complete", "strong_complete"), fallback=0),
    }


def _logit(*, hr_positive: np.ndarray, stage: np.ndarray, z_til: np.ndarray, z_her2: np.ndarray) -> np.ndarray:
    return -0.2 - 1.0 * hr_positive - 0.4 * (stage - 2) + 0.9 * z_til + 0.8 * z_her2


def _clinical(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    t = rng.choice([1, 2, 3, 4], size=n, p=[0.15, 0.5, 0.25, 0.1])
    nodes = rng.choice([0, 1, 2, 3], size=n, p=[0.4, 0.35, 0.15, 0.1])
    # AJCC 8th anatomic stage, collapsed to I-III.
    stage = np.where((t == 4) | (nodes >= 2) | ((t == 3) & (nodes == 1)), 3, np.where((t == 1) & (nodes == 0), 1, 2))
    er = rng.random(n) < 0.5
    pr = np.where(er, rng.random(n) < 0.7, rng.random(n) < 0.05)
    her2 = rng.choice([2, 3], size=n, p=[0.25, 0.75])
    return {"t": t, "n": nodes, "stage": stage, "er": er, "pr": pr, "hr": er | pr, "her2": her2,
            "age": np.clip(np.round(rng.normal(50, 11, n)), 25, 85), "grade": rng.choice([1, 2, 3], size=n, p=[0.05, 0.4, 0.55])}


def expected_auc(*, n_cases: int = 200_000, seed: int = 1) -> float:
    """AUC of the true log-odds for pCR on a large sample: the best any model can do."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    c = _clinical(rng, n_cases)
    z_til, z_her2 = rng.normal(size=n_cases), rng.normal(size=n_cases) + 0.5 * (c["her2"] == 3)
    logit = _logit(hr_positive=c["hr"].astype(float), stage=c["stage"], z_til=z_til, z_her2=z_her2)
    pcr = rng.random(n_cases) < 1 / (1 + np.exp(-logit))
    return float(roc_auc_score(pcr, logit))


def make_synthetic_cohort(*, n_cases: int = 300, seed: int = 0, with_survival: bool = True) -> pd.DataFrame:
    """A raw cohort table (clinical values as text, as in a CSV) with the planted signal above."""
    if n_cases < 20:
        raise ValueError(f"n_cases must be at least 20, got {n_cases}")
    rng = np.random.default_rng(seed)
    c = _clinical(rng, n_cases)
    z_til = rng.normal(size=n_cases)
    z_her2 = rng.normal(size=n_cases) + 0.5 * (c["her2"] == 3)
    logit = _logit(hr_positive=c["hr"].astype(float), stage=c["stage"], z_til=z_til, z_her2=z_her2)
    pcr = (rng.random(n_cases) < 1 / (1 + np.exp(-logit))).astype(int)

    def status(flags: np.ndarray) -> np.ndarray:
        return np.where(flags, "positive", "negative").astype(object)

    frame = pd.DataFrame({
        "case_id": [f"SYN-{i + 1:04d}" for i in range(n_cases)],
        "age": c["age"].astype(int),
        "clinical_t": [f"T{v}" for v in c["t"]],
        "clinical_n": [f"N{v}" for v in c["n"]],
        "clinical_stage": [("I", "II", "III")[v - 1] for v in c["stage"]],
        "er_status": status(c["er"]), "pr_status": status(c["pr"]), "hr_status": status(c["hr"]),
        "her2_ihc": [f"{v}+" for v in c["her2"]],
        "grade": c["grade"].astype(object),
        "pcr": pcr,
    })
    for column in ("grade", "pr_status"):
        frame.loc[rng.random(n_cases) < 0.05, column] = ""

    he, ihc = feature_names()
    signal = signal_features()
    features: dict[str, np.ndarray] = {}
    # Noise first: positive, skewed like cell-graph statistics.
    for name in he + ihc:
        features[name] = np.exp(rng.normal(np.log(20.0), 0.5, n_cases))
    # Cell-type proportions: a Dirichlet-like composition, lymphocytes driven by z_til.
    he_props = [n for n in he if "prop" in n.lower()] or he[:5]
    weights = np.exp(rng.normal(0, 0.4, (n_cases, len(he_props))))
    if signal["til_proportion"] in he_props:
        weights[:, he_props.index(signal["til_proportion"])] *= np.exp(0.8 * z_til)
    for i, name in enumerate(he_props):
        features[name] = weights[:, i] / weights.sum(axis=1)
    if signal["til_proportion"] not in he_props:
        features[signal["til_proportion"]] = 1 / (1 + np.exp(-(-1.5 + 0.8 * z_til + rng.normal(0, 0.4, n_cases))))
    ihc_props = [n for n in ihc if "prop" in n.lower()] or ihc[:6]
    weights = np.exp(rng.normal(0, 0.4, (n_cases, len(ihc_props))))
    if signal["her2_strong_complete"] in ihc_props:
        weights[:, ihc_props.index(signal["her2_strong_complete"])] *= np.exp(0.8 * z_her2)
    for i, name in enumerate(ihc_props):
        features[name] = weights[:, i] / weights.sum(axis=1)
    if signal["her2_strong_complete"] not in ihc_props:
        features[signal["her2_strong_complete"]] = 1 / (1 + np.exp(-(0.8 * z_her2 + rng.normal(0, 0.4, n_cases))))
    # Closer lymphocytes with more TILs (pixels at 40x).
    features[signal["tumour_lymphocyte_distance"]] = np.exp(np.log(40.0) - 0.3 * z_til + rng.normal(0, 0.15, n_cases))
    frame = pd.concat([frame, pd.DataFrame({k: np.round(v, 6) for k, v in features.items()})[he + ihc]], axis=1)

    if with_survival:
        hazard = np.where(pcr == 1, 0.004, 0.012)
        time = rng.exponential(1 / hazard)
        censor = rng.uniform(24, 96, n_cases)
        frame["dfs_months"] = np.round(np.minimum(time, censor), 2)
        frame["dfs_event"] = (time <= censor).astype(int)
    return frame


def write_synthetic_cohort(*, path: str | Path, n_cases: int = 300, seed: int = 0) -> Path:
    """Write the synthetic cohort as CSV."""
    path = Path(path)
    make_synthetic_cohort(n_cases=n_cases, seed=seed).to_csv(path, index=False)
    return path


def demo_model_spec(**overrides: Any):
    """The spec of the demo model trained at set-up (fast: 5 folds x 3 repeats, 100 trees)."""
    from analysis.core.model.training import ModelSpec

    settings = dict(name="her2-ladder-demo (synthetic)", synthetic=True, n_repeats=3, n_trees=100, importance_cases=10)
    settings.update(overrides)
    return ModelSpec(**settings)


def train_demo_model(*, directory: str | Path, n_cases: int = 300, seed: int = 0, spec_overrides: dict[str, Any] | None = None):
    """Make the synthetic cohort, train the demo model on clinical + H&E + IHC inputs, save it to ``directory``.

    Takes ~20 s on 2 idle cores for 300 cases (benchmarks/scoring.py measures it).
    """
    import warnings

    from analysis.core.model.persistence import save_model
    from analysis.core.model.training import train_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cohort = cohort_from_frame(frame=make_synthetic_cohort(n_cases=n_cases, seed=seed))
    model = train_model(cohort=cohort, spec=demo_model_spec(random_state=seed, **(spec_overrides or {})))
    model.card["synthetic_signal"] = {"features": signal_features(), "expected_bayes_auc": round(expected_auc(n_cases=50_000), 3),
                                      "description": "see analysis/core/demo/synthetic_cohort.py"}
    save_model(model=model, directory=directory)
    return model
