"""A trained model applied: one case's score with its attributions, a feature's percentile in the
training cohort, and external validation on a cohort with the frozen cut-offs."""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from analysis.core.model.cohort import CaseValueError, Cohort, FeatureGroup, encode_clinical_value
from analysis.core.model.training import (
    MissingInputGroupError,
    ModelError,
    Score,
    TrainedModel,
    _explain,
    _p_pcr,
    classification_report,
    risk_group_of,
)


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
        from analysis.core.model.survival import survival_by_risk_group

        report["survival"] = survival_by_risk_group(months=cohort.dfs_months, events=cohort.dfs_event, groups=np.array([r["risk_group"] for r in report["predictions"]]))
    return report
