"""The HER2-LADDER model: training, cross-validation, risk groups, scoring, Shapley attributions.

Method (DESIGN.md 2.5, after the HER2-LADDER study's "multi-model ensemble voting"):

* Inputs: the clinical columns of the cohort format (ordinal/binary encoded, see
  :mod:`analysis.core.model.cohort`) plus the slide features of the groups a :class:`ModelSpec`
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

import math
import platform
import time
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from enum import Enum
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

from analysis.core.model.attributions import shapley_values
from analysis.core.model.cohort import CLINICAL_COLUMNS, Cohort, FeatureGroup

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
    # bands of the score between the frozen cut-offs (tertiles of the out-of-fold scores); a
    # group says where a case ranks, not that pCR is likely (a Low case may have P(pCR) < 0.5)
    LOW = "Low"  # lowest scores: candidates for de-escalation in the study
    MEDIUM = "Medium"
    HIGH = "High"  # highest scores: candidates for escalation in the study


# Okabe & Ito colour-blind-safe colours, as in analysis.core.cells.classes.
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
        from analysis.core.model.survival import survival_by_risk_group

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
