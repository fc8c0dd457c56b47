"""The HER2-LADDER model: training, cross-validation, risk groups, scoring, Shapley attributions.

Method (DESIGN.md 2.5, after the HER2-LADDER study's "multi-model ensemble voting"):

* Inputs: the clinical columns of the cohort format (ordinal/binary encoded, see
  :mod:`analysis.core.cohort`) plus the slide features of the groups a :class:`ModelSpec`
  names (``he``, ``ihc``).
* One scikit-learn Pipeline, fitted inside every cross-validation fold so that nothing
  learns from the held-out cases: median (continuous) / most-frequent (ordinal, binary)
  imputation, standard scaling, and for slide features a univariate selection of the
  ``n_selected_features`` best by the ANOVA F-test (``SelectKBest(f_classif)``); clinical
  columns are always kept. Then a soft-voting ensemble (mean of predicted probabilities)
  of L2 logistic regression, random forest, gradient boosting and an RBF SVM with Platt
  probabilities (``SVC(probability=True)``).
* Validation: repeated stratified k-fold cross-validation (default 5 folds x 10 repeats).
  For each repeat the out-of-fold probabilities of all cases give one AUC with a DeLong
  95 % CI (DeLong et al. 1988, fast algorithm of Sun & Xu 2014, as pROC computes it);
  the reported AUC and CI bounds are the means over repeats (``auc_sd`` is the spread
  across repeats). ROC points, calibration curve (quantile bins), Brier score and the
  cut-off metrics use each case's out-of-fold probability averaged over repeats.
* Score: HER2-LADDER score = 100 x (1 - P(pCR)), 0-100, higher = more likely residual
  disease (non-pCR). Risk groups Low / Medium / High by two cut-offs on that score,
  frozen at training: by default the tertiles of the out-of-fold scores. Low = score <
  low cut-off, High = score >= high cut-off. Cut-off metrics treat residual disease as
  the positive class ("test positive" = score >= cut-off): sensitivity = share of
  non-pCR cases at or above the cut-off, specificity = share of pCR cases below it,
  PPV = P(non-pCR | at or above), NPV = P(pCR | below).
* Attributions: interventional Shapley values of P(pCR) over the raw inputs (the cohort
  column names), with a background sample of the training cohort as the reference
  distribution (what shap's ``Independent`` masker does). A raw input the fitted pipeline
  never reads (a slide feature not selected) has exactly zero effect, so it gets 0
  (Shapley's dummy axiom) and only the K inputs that matter are explained: all 2^K
  coalitions are enumerated when K <= ``exact_shapley_max_features`` (exact Shapley
  values; tests match shap's ``ExactExplainer``), otherwise antithetic permutation
  sampling (as shap's ``PermutationExplainer``). Both satisfy
  sum(attributions) = P(pCR | case) - base value exactly (up to float rounding), base
  value = mean P(pCR) over the background.
"""
from __future__ import annotations

import json
import math
import os
import platform
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import joblib
import numpy as np
import pandas as pd
import scipy.stats
import sklearn
from sklearn.calibration import calibration_curve
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier, VotingClassifier
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_curve
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from analysis.core.cohort import (
    CLINICAL_COLUMNS,
    CaseValueError,
    Cohort,
    FeatureGroup,
    encode_clinical_value,
)

MODEL_FILE = "model.joblib"
CARD_FILE = "model_card.json"
DISTRIBUTIONS_FILE = "training_distributions.json"
FORMAT_VERSION = 1


class ModelError(ValueError):
    """A model cannot be trained, loaded or applied as asked."""


class MissingInputGroupError(ModelError):
    """A case lacks every input of a group the model needs."""

    def __init__(self, missing: dict[str, list[str]]):
        self.missing = missing
        parts = [f"{group} ({len(cols)} inputs: {', '.join(cols[:10])}{', ...' if len(cols) > 10 else ''})" for group, cols in missing.items()]
        super().__init__("the case has no values for whole input group(s) the model needs: " + "; ".join(parts))


class RiskGroup(str, Enum):
    LOW = "Low"  # likely pCR: candidates for de-escalation
    MEDIUM = "Medium"
    HIGH = "High"  # likely residual disease: candidates for escalation


# Okabe & Ito colour-blind-safe colours, as in analysis.core.classes.
RISK_GROUP_COLOURS = {RiskGroup.LOW: "#0072B2", RiskGroup.MEDIUM: "#E69F00", RiskGroup.HIGH: "#D55E00"}


@dataclass(frozen=True)
class ModelSpec:
    """What to train: input groups, ensemble size, validation scheme, attribution budget."""

    groups: tuple[FeatureGroup, ...] = (FeatureGroup.CLINICAL, FeatureGroup.HE, FeatureGroup.IHC)
    clinical_columns: tuple[str, ...] | None = None  # None: every clinical column the cohort has
    n_selected_features: int = 20  # slide features kept per fit (univariate F-test)
    n_splits: int = 5
    n_repeats: int = 10
    n_trees: int = 200  # random forest trees; gradient boosting uses half as many stages
    risk_quantiles: tuple[float, float] = (1 / 3, 2 / 3)  # of the out-of-fold score
    background_size: int = 50
    exact_shapley_max_features: int = 10
    n_permutations: int = 10  # antithetic pairs count as two
    importance_cases: int = 20  # training cases whose mean |SHAP| gives global importance
    random_state: int = 0
    n_jobs: int = 1  # parallel CV fits; keep 1 on shared machines
    name: str = "her2-ladder"
    synthetic: bool = False

    def __post_init__(self) -> None:
        groups = tuple(FeatureGroup(g) for g in self.groups)
        object.__setattr__(self, "groups", groups)
        if not groups:
            raise ModelError("a model spec needs at least one input group")
        if self.clinical_columns is not None:
            unknown = [c for c in self.clinical_columns if c not in CLINICAL_COLUMNS]
            if unknown:
                raise ModelError(f"unknown clinical column(s) {unknown}; known: {sorted(CLINICAL_COLUMNS)}")
            object.__setattr__(self, "clinical_columns", tuple(self.clinical_columns))
        if self.n_splits < 2 or self.n_repeats < 1:
            raise ModelError("cross-validation needs n_splits >= 2 and n_repeats >= 1")
        low, high = self.risk_quantiles
        if not 0 < low < high < 1:
            raise ModelError(f"risk_quantiles must satisfy 0 < low < high < 1, got {self.risk_quantiles}")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["groups"] = [g.value for g in self.groups]
        data["clinical_columns"] = list(self.clinical_columns) if self.clinical_columns is not None else None
        data["risk_quantiles"] = list(self.risk_quantiles)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ModelSpec":
        data = dict(data)
        data["groups"] = tuple(data["groups"])
        data["risk_quantiles"] = tuple(data["risk_quantiles"])
        if data.get("clinical_columns") is not None:
            data["clinical_columns"] = tuple(data["clinical_columns"])
        return cls(**data)


@dataclass
class TrainedModel:
    """A fitted pipeline with everything scoring needs (frozen at training)."""

    pipeline: Pipeline
    spec: ModelSpec
    columns: list[str]  # raw input columns, in pipeline order
    groups: dict[str, FeatureGroup]
    cutoffs: tuple[float, float]  # on the HER2-LADDER score (0-100)
    background: np.ndarray  # raw inputs (NaN = missing) of a training sample, shape (B, len(columns))
    active_columns: list[str]  # inputs the fitted pipeline reads (clinical + selected slide features)
    card: dict[str, Any]
    distributions: dict[str, dict[str, Any]]
    cv_predictions: pd.DataFrame | None = None  # case_id, pcr, oof p_pcr (mean over repeats), score, risk group

    @property
    def synthetic(self) -> bool:
        return bool(self.card.get("synthetic"))


@dataclass
class Score:
    """A scored case. Attributions are on the P(pCR) scale and add up to probability_pcr - base_value."""

    probability_pcr: float
    score: float  # HER2-LADDER score, 100 x (1 - P(pCR))
    risk_group: RiskGroup
    base_value: float  # mean P(pCR) over the training background
    attributions: dict[str, float]  # every raw input column -> Shapley value on P(pCR)
    inputs: dict[str, float]  # encoded value the model saw (NaN = imputed)
    imputed: list[str]
    attribution_method: str  # "exact" or "permutation"
    cutoffs: tuple[float, float]

    @property
    def score_attributions(self) -> dict[str, float]:
        """Attributions on the HER2-LADDER score scale (they add up to score - base score)."""
        return {k: -100.0 * v for k, v in self.attributions.items()}

    @property
    def base_score(self) -> float:
        return 100.0 * (1.0 - self.base_value)

    def to_json(self) -> dict[str, Any]:
        return {
            "probability_pcr": self.probability_pcr,
            "score": self.score,
            "risk_group": self.risk_group.value,
            "base_value": self.base_value,
            "base_score": self.base_score,
            "attributions": self.attributions,
            "inputs": {k: (None if math.isnan(v) else v) for k, v in self.inputs.items()},
            "imputed": self.imputed,
            "attribution_method": self.attribution_method,
            "cutoffs": list(self.cutoffs),
        }


# ---------------------------------------------------------------------------- statistics
def delong_auc_ci(*, labels: np.ndarray, scores: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """AUC of ``scores`` for ``labels == 1`` with its DeLong CI: (auc, low, high).

    DeLong, DeLong & Clarke-Pearson 1988 variance via the placement values of
    Sun & Xu 2014 (midranks, ties counted 1/2), normal approximation clipped to [0, 1].
    """
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=float)
    pos, neg = scores[labels == 1], scores[labels == 0]
    m, n = len(pos), len(neg)
    if m < 2 or n < 2:
        raise ModelError(f"an AUC CI needs at least 2 cases of each class, got {m} and {n}")
    all_ranks = scipy.stats.rankdata(np.concatenate([pos, neg]))
    pos_ranks, neg_ranks = scipy.stats.rankdata(pos), scipy.stats.rankdata(neg)
    auc = (all_ranks[:m].sum() - m * (m + 1) / 2) / (m * n)
    v10 = (all_ranks[:m] - pos_ranks) / n  # placement of each positive among negatives
    v01 = 1.0 - (all_ranks[m:] - neg_ranks) / m
    variance = np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n
    z = scipy.stats.norm.ppf(0.5 + level / 2)
    half = z * math.sqrt(max(variance, 0.0))
    return float(auc), float(max(0.0, auc - half)), float(min(1.0, auc + half))


def risk_group_of(*, score: float, cutoffs: tuple[float, float]) -> RiskGroup:
    low, high = cutoffs
    if score < low:
        return RiskGroup.LOW
    if score >= high:
        return RiskGroup.HIGH
    return RiskGroup.MEDIUM


def _rate(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def classification_report(*, pcr: np.ndarray, p_pcr: np.ndarray, cutoffs: tuple[float, float], n_calibration_bins: int = 5) -> dict[str, Any]:
    """AUC + DeLong CI, ROC points, calibration, Brier, cut-off metrics and risk-group table."""
    pcr = np.asarray(pcr).astype(int)
    p_pcr = np.asarray(p_pcr, dtype=float)
    score = 100.0 * (1.0 - p_pcr)
    residual = 1 - pcr
    auc, low, high = delong_auc_ci(labels=residual, scores=score)
    fpr, tpr, thresholds = roc_curve(residual, score)
    observed, predicted = calibration_curve(pcr, p_pcr, n_bins=n_calibration_bins, strategy="quantile")
    at_cutoffs = {}
    for name, cut in zip(("low", "high"), cutoffs):
        flagged = score >= cut
        tp = int(np.sum(flagged & (residual == 1)))
        fp = int(np.sum(flagged & (residual == 0)))
        tn = int(np.sum(~flagged & (residual == 0)))
        fn = int(np.sum(~flagged & (residual == 1)))
        at_cutoffs[name] = {
            "cutoff": float(cut),
            "sensitivity": _rate(tp, tp + fn),
            "specificity": _rate(tn, tn + fp),
            "ppv": _rate(tp, tp + fp),
            "npv": _rate(tn, tn + fn),
            "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        }
    groups = np.array([risk_group_of(score=s, cutoffs=cutoffs).value for s in score])
    table = {}
    for group in RiskGroup:
        inside = groups == group.value
        table[group.value] = {"n": int(inside.sum()), "n_pcr": int(pcr[inside].sum()), "pcr_rate": _rate(int(pcr[inside].sum()), int(inside.sum()))}
    return {
        "n": int(len(pcr)),
        "n_pcr": int(pcr.sum()),
        "auc": auc,
        "auc_ci": [low, high],
        "auc_ci_method": "DeLong 95% (normal approximation)",
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": [float(t) if np.isfinite(t) else 100.0 for t in thresholds], "positive_class": "residual disease (non-pCR)", "score": "HER2-LADDER score"},
        "calibration": {"predicted_p_pcr": predicted.tolist(), "observed_pcr_rate": observed.tolist(), "strategy": f"{n_calibration_bins} quantile bins"},
        "brier": float(brier_score_loss(pcr, p_pcr)),
        "cutoff_metrics": at_cutoffs,
        "risk_groups": table,
    }


# ---------------------------------------------------------------------------- pipeline
def build_pipeline(*, spec: ModelSpec, clinical_columns: Sequence[str], slide_columns: Sequence[str]) -> Pipeline:
    """The unfitted preprocessing + soft-voting ensemble pipeline (raw columns in, P(pCR) out)."""
    continuous = [c for c in clinical_columns if CLINICAL_COLUMNS[c].kind == "continuous"]
    categorical = [c for c in clinical_columns if CLINICAL_COLUMNS[c].kind != "continuous"]
    branches = []
    if continuous:
        branches.append(("clinical_continuous", Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)), ("scale", StandardScaler())]), list(continuous)))
    if categorical:
        branches.append(("clinical_categorical", Pipeline([("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)), ("scale", StandardScaler())]), list(categorical)))
    if slide_columns:
        k = min(spec.n_selected_features, len(slide_columns))
        branches.append(("slide", Pipeline([
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
            ("select", SelectKBest(f_classif, k=k)),
        ]), list(slide_columns)))
    seed = spec.random_state
    ensemble = VotingClassifier(
        estimators=[
            ("logistic", LogisticRegression(C=1.0, max_iter=2000)),
            ("forest", RandomForestClassifier(n_estimators=spec.n_trees, min_samples_leaf=3, max_features="sqrt", random_state=seed, n_jobs=1)),
            ("boosting", GradientBoostingClassifier(n_estimators=max(10, spec.n_trees // 2), max_depth=2, learning_rate=0.05, subsample=0.8, random_state=seed)),
            ("svm", SVC(kernel="rbf", C=1.0, probability=True, random_state=seed)),
        ],
        voting="soft",
    )
    return Pipeline([("prepare", ColumnTransformer(branches, remainder="drop")), ("ensemble", ensemble)])


def _p_pcr(pipeline: Pipeline, rows: pd.DataFrame | np.ndarray) -> np.ndarray:
    classes = list(pipeline.classes_)
    return pipeline.predict_proba(rows)[:, classes.index(1)]


def _active_columns(*, pipeline: Pipeline, clinical_columns: Sequence[str], slide_columns: Sequence[str]) -> list[str]:
    active = list(clinical_columns)
    if slide_columns:
        support = pipeline.named_steps["prepare"].named_transformers_["slide"].named_steps["select"].get_support()
        active += [c for c, keep in zip(slide_columns, support) if keep]
    return active


def _select_columns(*, cohort: Cohort, spec: ModelSpec) -> tuple[list[str], list[str]]:
    present_clinical = cohort.columns_of(groups=(FeatureGroup.CLINICAL,))
    clinical: list[str] = []
    if FeatureGroup.CLINICAL in spec.groups:
        if spec.clinical_columns is None:
            clinical = present_clinical
        else:
            absent = [c for c in spec.clinical_columns if c not in present_clinical]
            if absent:
                raise ModelError(f"the cohort lacks the clinical column(s) the spec names (or they are empty throughout): {absent}")
            clinical = list(spec.clinical_columns)
    slide: list[str] = []
    for group in spec.groups:
        if group is FeatureGroup.CLINICAL:
            continue
        cols = cohort.columns_of(groups=(group,))
        if not cols:
            raise ModelError(f"the spec uses group '{group.value}' but the cohort has no '{group.value}' feature columns")
        slide += cols
    if FeatureGroup.CLINICAL in spec.groups and not clinical:
        raise ModelError("the spec uses group 'clinical' but the cohort has no non-empty clinical column")
    return clinical, slide


# ---------------------------------------------------------------------------- Shapley values
def shapley_values(
    *,
    predict: Callable[[np.ndarray], np.ndarray],
    case: np.ndarray,
    background: np.ndarray,
    active: Sequence[int],
    exact_max_features: int = 10,
    n_permutations: int = 10,
    random_state: int = 0,
) -> tuple[float, np.ndarray, str]:
    """Interventional Shapley values of ``predict`` at ``case`` against ``background``.

    v(S) = mean over background rows b of predict(case on S, b elsewhere). Inputs not in
    ``active`` must not affect ``predict``: they get 0. Returns (base value v(empty),
    values per input, "exact" | "permutation"); values sum to v(all) - v(empty) exactly.
    """
    case = np.asarray(case, dtype=float)
    background = np.asarray(background, dtype=float)
    n_inputs = case.shape[0]
    active = list(active)
    k = len(active)
    values = np.zeros(n_inputs)
    if k == 0:
        base = float(np.mean(predict(background)))
        return base, values, "exact"

    def coalition_values(masks: np.ndarray) -> np.ndarray:
        # masks: (C, k) booleans over the active inputs -> v for each coalition.
        full = np.zeros((len(masks), n_inputs), dtype=bool)
        full[:, active] = masks
        rows = np.where(full[:, None, :], case[None, None, :], background[None, :, :])
        out = predict(rows.reshape(-1, n_inputs)).reshape(len(masks), len(background))
        return out.mean(axis=1)

    if k <= exact_max_features:
        codes = np.arange(2**k)
        masks = ((codes[:, None] >> np.arange(k)) & 1).astype(bool)
        v = coalition_values(masks)
        sizes = masks.sum(axis=1)
        weights = np.array([math.factorial(s) * math.factorial(k - s - 1) / math.factorial(k) for s in range(k)])
        for j in range(k):
            without = codes[~masks[:, j]]
            values[active[j]] = np.sum(weights[sizes[without]] * (v[without | (1 << j)] - v[without]))
        return float(v[0]), values, "exact"

    rng = np.random.default_rng(random_state)
    n_pairs = max(1, n_permutations // 2)
    orders = []
    for _ in range(n_pairs):
        order = rng.permutation(k)
        orders += [order, order[::-1]]  # antithetic pair: lower variance, same cost
    masks = []
    for order in orders:
        prefix = np.zeros(k, dtype=bool)
        masks.append(prefix.copy())
        for j in order:
            prefix[j] = True
            masks.append(prefix.copy())
    v = coalition_values(np.array(masks)).reshape(len(orders), k + 1)
    contributions = np.zeros(k)
    for o, order in enumerate(orders):
        contributions[order] += np.diff(v[o])
    values[active] = contributions / len(orders)
    return float(v[:, 0].mean()), values, "permutation"


# ---------------------------------------------------------------------------- training
def _distributions(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    out = {}
    for column in frame.columns:
        values = frame[column].dropna().to_numpy(dtype=float)
        if len(values) == 0:
            continue
        counts, edges = np.histogram(values, bins=min(20, max(1, len(np.unique(values)))))
        out[column] = {
            "n": int(len(values)),
            "mean": float(values.mean()),
            "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "quantiles": np.quantile(values, np.linspace(0, 1, 101)).tolist(),
            # All values up to 1000 cases, else 1001 quantiles: enough for percentiles.
            "sorted_values": (np.sort(values) if len(values) <= 1000 else np.quantile(values, np.linspace(0, 1, 1001))).tolist(),
            "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
        }
    return out


def _library_versions() -> dict[str, str]:
    import lifelines

    return {"python": platform.python_version(), "scikit-learn": sklearn.__version__, "numpy": np.__version__, "pandas": pd.__version__, "scipy": scipy.__version__, "joblib": joblib.__version__, "lifelines": lifelines.__version__}


def cross_validate(*, cohort: Cohort, spec: ModelSpec, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Repeated stratified CV of ``spec`` on ``cohort``: per-repeat out-of-fold probabilities and AUCs."""
    clinical, slide = _select_columns(cohort=cohort, spec=spec)
    x = cohort.inputs[clinical + slide]
    y = _checked_outcome(cohort=cohort, spec=spec)
    splitter = RepeatedStratifiedKFold(n_splits=spec.n_splits, n_repeats=spec.n_repeats, random_state=spec.random_state)
    splits = list(splitter.split(x, y))

    def fit_fold(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        pipeline = build_pipeline(spec=spec, clinical_columns=clinical, slide_columns=slide)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)  # constant features in a small fold
            warnings.simplefilter("ignore", category=RuntimeWarning)
            pipeline.fit(x.iloc[train], y[train])
            return _p_pcr(pipeline, x.iloc[test])

    if spec.n_jobs == 1:
        predictions = []
        for i, (train, test) in enumerate(splits):
            predictions.append(fit_fold(train, test))
            if progress:
                progress(i + 1, len(splits))
    else:
        predictions = joblib.Parallel(n_jobs=spec.n_jobs)(joblib.delayed(fit_fold)(tr, te) for tr, te in splits)
    oof = np.full((spec.n_repeats, len(y)), np.nan)
    for i, ((_, test), p) in enumerate(zip(splits, predictions)):
        oof[i // spec.n_splits, test] = p
    per_repeat = [delong_auc_ci(labels=1 - y, scores=1 - oof[r]) for r in range(spec.n_repeats)]
    aucs = np.array(per_repeat)
    return {
        "oof_p_pcr": oof,
        "auc": float(aucs[:, 0].mean()),
        "auc_ci": [float(aucs[:, 1].mean()), float(aucs[:, 2].mean())],
        "auc_sd": float(aucs[:, 0].std(ddof=1)) if spec.n_repeats > 1 else 0.0,
        "auc_per_repeat": aucs[:, 0].tolist(),
        "auc_ci_method": f"per repeat: AUC of the pooled out-of-fold predictions with a DeLong 95% CI; mean AUC and mean CI bounds over {spec.n_repeats} repeats of {spec.n_splits}-fold stratified CV",
        "clinical_columns": clinical,
        "slide_columns": slide,
    }


def _checked_outcome(*, cohort: Cohort, spec: ModelSpec) -> np.ndarray:
    if cohort.pcr is None:
        raise ModelError("the cohort has no pCR outcome")
    y = cohort.pcr.astype(int)
    counts = np.bincount(y, minlength=2)
    if counts.min() < spec.n_splits:
        raise ModelError(f"each class needs at least n_splits={spec.n_splits} cases; got {counts[1]} pCR and {counts[0]} residual")
    return y


def train_model(*, cohort: Cohort, spec: ModelSpec, progress: Callable[[int, int], None] | None = None) -> TrainedModel:
    """Cross-validate ``spec`` on ``cohort``, freeze risk cut-offs from the out-of-fold scores, fit on all cases."""
    started = time.perf_counter()
    cv = cross_validate(cohort=cohort, spec=spec, progress=progress)
    clinical, slide = cv["clinical_columns"], cv["slide_columns"]
    columns = clinical + slide
    x = cohort.inputs[columns]
    y = cohort.pcr.astype(int)

    oof_mean = cv["oof_p_pcr"].mean(axis=0)
    oof_score = 100.0 * (1.0 - oof_mean)
    cutoffs = tuple(float(q) for q in np.quantile(oof_score, spec.risk_quantiles))
    if cutoffs[0] >= cutoffs[1]:
        raise ModelError(f"the out-of-fold scores do not separate into three risk groups (cut-offs {cutoffs})")
    report = classification_report(pcr=y, p_pcr=oof_mean, cutoffs=cutoffs)
    # Headline AUC/CI: per-repeat values averaged; the AUC of the repeat-averaged predictions is kept apart.
    report["auc_of_mean_oof_prediction"] = report["auc"]
    report.update({k: cv[k] for k in ("auc", "auc_ci", "auc_sd", "auc_per_repeat", "auc_ci_method")})
    report["curves_from"] = "each case's out-of-fold P(pCR) averaged over repeats (ROC, calibration, Brier, cut-off metrics, risk groups)"

    pipeline = build_pipeline(spec=spec, clinical_columns=clinical, slide_columns=slide)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        pipeline.fit(x, y)
    active = _active_columns(pipeline=pipeline, clinical_columns=clinical, slide_columns=slide)
    rng = np.random.default_rng(spec.random_state)
    pick = rng.choice(len(x), size=min(spec.background_size, len(x)), replace=False)
    background = x.to_numpy(dtype=float)[np.sort(pick)]

    groups = {c: cohort.groups[c] for c in columns}
    predictions = pd.DataFrame({
        "case_id": cohort.case_ids, "pcr": y, "oof_p_pcr": oof_mean, "oof_score": oof_score,
        "risk_group": [risk_group_of(score=s, cutoffs=cutoffs).value for s in oof_score],
    })
    survival = None
    if cohort.has_survival:
        from analysis.core.survival import survival_by_risk_group

        survival = survival_by_risk_group(months=cohort.dfs_months, events=cohort.dfs_event, groups=predictions["risk_group"].to_numpy())
    card = {
        "format_version": FORMAT_VERSION,
        "name": spec.name,
        "synthetic": spec.synthetic,
        "intended_use": ("SYNTHETIC DEMO MODEL - trained on simulated data, NOT FOR CLINICAL USE." if spec.synthetic
                         else "Research use only: predicts pCR after neoadjuvant anti-HER2 therapy in HER2+ breast cancer; not a medical device."),
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "spec": spec.to_json(),
        "inputs": {"columns": columns, "groups": {c: g.value for c, g in groups.items()}, "active_columns": active,
                   "clinical_encoding": {c: CLINICAL_COLUMNS[c].expected for c in clinical}},
        "data": cohort.summary(),
        "metrics": report,
        "cutoffs": list(cutoffs),
        "risk_groups": {"score": "HER2-LADDER score = 100 x (1 - P(pCR)); higher = more likely residual disease",
                        "rule": "Low: score < cutoffs[0]; Medium: cutoffs[0] <= score < cutoffs[1]; High: score >= cutoffs[1]",
                        "cutoff_method": f"quantiles {list(spec.risk_quantiles)} of the out-of-fold scores"},
        "survival": survival,
        "library_versions": _library_versions(),
    }
    model = TrainedModel(pipeline=pipeline, spec=spec, columns=columns, groups=groups, cutoffs=cutoffs, background=background,
                         active_columns=active, card=card, distributions=_distributions(x), cv_predictions=predictions)
    if spec.importance_cases > 0:
        card["feature_importance"] = global_importance(model=model, rows=x.iloc[np.sort(rng.choice(len(x), size=min(spec.importance_cases, len(x)), replace=False))])
    card["training_seconds"] = round(time.perf_counter() - started, 2)
    return model


def global_importance(*, model: TrainedModel, rows: pd.DataFrame) -> dict[str, float]:
    """Mean |Shapley value| on P(pCR) per input over ``rows`` (raw inputs), sorted high to low."""
    total = np.zeros(len(model.columns))
    for _, row in rows.iterrows():
        total += np.abs(_explain(model=model, case=row[model.columns].to_numpy(dtype=float))[1])
    mean = total / max(1, len(rows))
    order = np.argsort(-mean)
    return {model.columns[i]: float(mean[i]) for i in order if mean[i] > 0}


# ---------------------------------------------------------------------------- scoring
def _explain(*, model: TrainedModel, case: np.ndarray) -> tuple[float, np.ndarray, str]:
    columns = model.columns

    def predict(rows: np.ndarray) -> np.ndarray:
        return _p_pcr(model.pipeline, pd.DataFrame(rows, columns=columns))

    active = [columns.index(c) for c in model.active_columns]
    return shapley_values(predict=predict, case=case, background=model.background, active=active,
                          exact_max_features=model.spec.exact_shapley_max_features,
                          n_permutations=model.spec.n_permutations, random_state=model.spec.random_state)


def encode_case(*, model: TrainedModel, values: Mapping[str, Any]) -> dict[str, float]:
    """Raw case values (clinical as in the cohort format, features as numbers) -> encoded inputs (NaN = missing).

    Raises MissingInputGroupError when every input of a group is missing, CaseValueError for bad values.
    """
    encoded: dict[str, float] = {}
    problems: list[str] = []
    for column in model.columns:
        value = values.get(column)
        if model.groups[column] is FeatureGroup.CLINICAL:
            try:
                encoded[column] = encode_clinical_value(column=column, value=value)
            except CaseValueError as error:
                problems.append(str(error))
        else:
            if value is None or (isinstance(value, str) and not value.strip()):
                encoded[column] = float("nan")
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                problems.append(f"feature '{column}': got {value!r}, expected a number")
                continue
            if math.isinf(number):
                problems.append(f"feature '{column}': got {value!r}, expected a finite number")
            encoded[column] = number
    if problems:
        raise CaseValueError("; ".join(problems))
    missing: dict[str, list[str]] = {}
    for group in model.spec.groups:
        cols = [c for c in model.columns if model.groups[c] is group]
        if cols and all(math.isnan(encoded[c]) for c in cols):
            missing[group.value] = cols
    if missing:
        raise MissingInputGroupError(missing)
    return encoded


def score_case(*, model: TrainedModel, values: Mapping[str, Any]) -> Score:
    """Probability of pCR, HER2-LADDER score, risk group and Shapley attributions for one case."""
    encoded = encode_case(model=model, values=values)
    case = np.array([encoded[c] for c in model.columns], dtype=float)
    base, phi, method = _explain(model=model, case=case)
    p = float(_p_pcr(model.pipeline, pd.DataFrame(case[None, :], columns=model.columns))[0])
    score = 100.0 * (1.0 - p)
    return Score(
        probability_pcr=p,
        score=score,
        risk_group=risk_group_of(score=score, cutoffs=model.cutoffs),
        base_value=base,
        attributions={c: float(v) for c, v in zip(model.columns, phi)},
        inputs=encoded,
        imputed=[c for c in model.columns if math.isnan(encoded[c])],
        attribution_method=method,
        cutoffs=model.cutoffs,
    )


def feature_percentile(*, model: TrainedModel, column: str, value: float | None) -> float | None:
    """Mid-rank percentile (0-100) of ``value`` in the training cohort: % below + half the % equal.

    None when the column has no training values or the value is missing.
    """
    dist = model.distributions.get(column)
    if dist is None or value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    reference = np.asarray(dist["sorted_values"], dtype=float)
    below = np.searchsorted(reference, value, side="left")
    at_or_below = np.searchsorted(reference, value, side="right")
    return float(100.0 * (below + at_or_below) / (2 * len(reference)))


def evaluate_model(*, model: TrainedModel, cohort: Cohort) -> dict[str, Any]:
    """Apply a trained model to an external cohort with its frozen cut-offs; metrics as in training."""
    if cohort.pcr is None:
        raise ModelError("the cohort has no pCR outcome to evaluate against")
    absent = [c for c in model.columns if c not in cohort.inputs.columns]
    missing_groups = {}
    for group in model.spec.groups:
        cols = [c for c in model.columns if model.groups[c] is group]
        if cols and all(c in absent for c in cols):
            missing_groups[group.value] = cols
    if missing_groups:
        raise MissingInputGroupError(missing_groups)
    x = cohort.inputs.reindex(columns=model.columns)  # absent columns -> NaN -> imputed in the pipeline
    p = _p_pcr(model.pipeline, x)
    report = classification_report(pcr=cohort.pcr, p_pcr=p, cutoffs=model.cutoffs)
    report["absent_columns_imputed"] = absent
    report["predictions"] = pd.DataFrame({"case_id": cohort.case_ids, "pcr": cohort.pcr, "p_pcr": p, "score": 100 * (1 - p),
                                           "risk_group": [risk_group_of(score=s, cutoffs=model.cutoffs).value for s in 100 * (1 - p)]}).to_dict(orient="records")
    if cohort.has_survival:
        from analysis.core.survival import survival_by_risk_group

        report["survival"] = survival_by_risk_group(months=cohort.dfs_months, events=cohort.dfs_event, groups=np.array([r["risk_group"] for r in report["predictions"]]))
    return report


# ---------------------------------------------------------------------------- persistence
def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        write(Path(temp))
        os.chmod(temp, 0o644)  # mkstemp makes 0600; the web process may run as another user
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _dump_json(data: Any) -> str:
    return json.dumps(_clean(data), indent=1, default=_json_default, allow_nan=False)


def _clean(value: Any) -> Any:
    # JSON has no NaN: write null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def save_model(*, model: TrainedModel, directory: str | Path) -> Path:
    """Write model.joblib, model_card.json and training_distributions.json into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = {"format_version": FORMAT_VERSION, "pipeline": model.pipeline, "spec": model.spec.to_json(), "columns": model.columns,
               "groups": {c: g.value for c, g in model.groups.items()}, "cutoffs": list(model.cutoffs), "background": model.background,
               "active_columns": model.active_columns, "cv_predictions": model.cv_predictions}
    _atomic_write(directory / MODEL_FILE, lambda p: joblib.dump(payload, p, compress=3))
    _atomic_write(directory / DISTRIBUTIONS_FILE, lambda p: p.write_text(_dump_json(model.distributions)))
    _atomic_write(directory / CARD_FILE, lambda p: p.write_text(_dump_json(model.card)))
    return directory


def load_model(directory: str | Path) -> TrainedModel:
    """Load a model folder written by :func:`save_model`."""
    directory = Path(directory)
    for name in (MODEL_FILE, CARD_FILE, DISTRIBUTIONS_FILE):
        if not (directory / name).is_file():
            raise ModelError(f"not a model folder: {directory / name} is missing")
    card = json.loads((directory / CARD_FILE).read_text())
    trained_with = card.get("library_versions", {}).get("scikit-learn")
    if trained_with and trained_with != sklearn.__version__:
        warnings.warn(f"model trained with scikit-learn {trained_with}, loading with {sklearn.__version__}: retrain if scores look wrong", stacklevel=2)
    payload = joblib.load(directory / MODEL_FILE)
    if payload.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"model format {payload.get('format_version')} is not {FORMAT_VERSION}: retrain the model")
    return TrainedModel(
        pipeline=payload["pipeline"], spec=ModelSpec.from_json(payload["spec"]), columns=list(payload["columns"]),
        groups={c: FeatureGroup(g) for c, g in payload["groups"].items()}, cutoffs=tuple(payload["cutoffs"]),
        background=np.asarray(payload["background"], dtype=float), active_columns=list(payload["active_columns"]), card=card,
        distributions=json.loads((directory / DISTRIBUTIONS_FILE).read_text()), cv_predictions=payload.get("cv_predictions"),
    )


# ---------------------------------------------------------------------------- plotly figures (plain dicts)
def roc_figure(*, report: Mapping[str, Any], title: str = "ROC (out-of-fold)") -> dict[str, Any]:
    """Plotly figure dict of a report's ROC curve (residual disease as positive class)."""
    roc = report["roc"]
    lo, hi = report["auc_ci"]
    return {
        "data": [
            {"type": "scatter", "mode": "lines", "x": roc["fpr"], "y": roc["tpr"], "name": f"AUC {report['auc']:.3f} (95% CI {lo:.3f}-{hi:.3f})", "line": {"color": "#0072B2", "shape": "hv"}},
            {"type": "scatter", "mode": "lines", "x": [0, 1], "y": [0, 1], "name": "chance", "line": {"color": "#999999", "dash": "dash"}},
        ],
        "layout": {"title": {"text": title}, "xaxis": {"title": {"text": "1 - specificity"}, "range": [0, 1]}, "yaxis": {"title": {"text": "sensitivity (non-pCR)"}, "range": [0, 1]}, "legend": {"x": 0.4, "y": 0.05}},
    }


def calibration_figure(*, report: Mapping[str, Any], title: str = "Calibration") -> dict[str, Any]:
    cal = report["calibration"]
    return {
        "data": [
            {"type": "scatter", "mode": "lines+markers", "x": cal["predicted_p_pcr"], "y": cal["observed_pcr_rate"], "name": f"model (Brier {report['brier']:.3f})", "line": {"color": "#D55E00"}},
            {"type": "scatter", "mode": "lines", "x": [0, 1], "y": [0, 1], "name": "perfect", "line": {"color": "#999999", "dash": "dash"}},
        ],
        "layout": {"title": {"text": title}, "xaxis": {"title": {"text": "predicted P(pCR)"}, "range": [0, 1]}, "yaxis": {"title": {"text": "observed pCR rate"}, "range": [0, 1]}},
    }


def feature_importance_figure(*, importance: Mapping[str, float], top: int = 20, title: str = "Feature importance (mean |SHAP| on P(pCR))") -> dict[str, Any]:
    items = sorted(importance.items(), key=lambda kv: -kv[1])[:top][::-1]
    return {
        "data": [{"type": "bar", "orientation": "h", "x": [v for _, v in items], "y": [k for k, _ in items], "marker": {"color": "#0072B2"}}],
        "layout": {"title": {"text": title}, "xaxis": {"title": {"text": "mean |SHAP value|"}}, "margin": {"l": 200}},
    }


def shap_waterfall_figure(*, score: Score, top: int = 12, scale: str = "score") -> dict[str, Any]:
    """Waterfall from the base value to the case's value; ``scale`` "score" (0-100) or "probability"."""
    attributions = score.score_attributions if scale == "score" else score.attributions
    base = score.base_score if scale == "score" else score.base_value
    final = score.score if scale == "score" else score.probability_pcr
    items = sorted(attributions.items(), key=lambda kv: -abs(kv[1]))
    shown, rest = items[:top], items[top:]
    names = [f"{k} = {score.inputs[k]:g}" if not math.isnan(score.inputs[k]) else f"{k} (imputed)" for k, _ in shown]
    deltas = [v for _, v in shown]
    if rest:
        names.append(f"{len(rest)} other inputs")
        deltas.append(sum(v for _, v in rest))
    label = "HER2-LADDER score" if scale == "score" else "P(pCR)"
    return {
        "data": [{
            "type": "waterfall", "orientation": "h",
            "measure": ["absolute"] + ["relative"] * len(deltas) + ["total"],
            "y": ["base value"] + names + [label],
            "x": [base] + deltas + [final],
            "increasing": {"marker": {"color": "#D55E00"}}, "decreasing": {"marker": {"color": "#0072B2"}},
            "totals": {"marker": {"color": "#999999"}},
        }],
        "layout": {"title": {"text": f"{label}: {final:.3g} ({score.risk_group.value} risk)"}, "yaxis": {"autorange": "reversed"}, "margin": {"l": 240}},
    }
