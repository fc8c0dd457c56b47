"""Disease-free survival by HER2-LADDER risk group: Kaplan-Meier, log-rank, Cox.

Uses lifelines (Davidson-Pilon, JOSS 2019): ``KaplanMeierFitter`` (product-limit estimate,
Greenwood / exponential CI, lifelines' default), ``multivariate_logrank_test`` (log-rank
test across all groups present), ``CoxPHFitter`` (Efron ties) for hazard ratios of
Medium and High against Low (dummy coding) and per risk-group step (trend, groups coded
0/1/2). Everything returned is plain JSON-able data; :func:`km_figure` turns it into a
Plotly figure dict.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd

RISK_ORDER = ("Low", "Medium", "High")
_COLOURS = {"Low": "#0072B2", "Medium": "#E69F00", "High": "#D55E00"}


class SurvivalDataError(ValueError):
    """Survival inputs are inconsistent or too few to analyse."""


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def survival_by_risk_group(*, months: Sequence[float], events: Sequence[float], groups: Sequence[str]) -> dict[str, Any]:
    """Kaplan-Meier curves per risk group, a log-rank test and Cox hazard ratios.

    Cases with missing time or event are left out (counted in ``n_excluded``).
    """
    from lifelines import CoxPHFitter, KaplanMeierFitter
    from lifelines.exceptions import ConvergenceError
    from lifelines.statistics import multivariate_logrank_test

    months = np.asarray(months, dtype=float)
    events = np.asarray(events, dtype=float)
    groups = np.asarray(groups, dtype=object)
    if not (len(months) == len(events) == len(groups)):
        raise SurvivalDataError(f"months, events and groups differ in length: {len(months)}, {len(events)}, {len(groups)}")
    unknown = sorted(set(groups.tolist()) - set(RISK_ORDER))
    if unknown:
        raise SurvivalDataError(f"unknown risk group(s) {unknown}; expected {RISK_ORDER}")
    keep = ~(np.isnan(months) | np.isnan(events))
    if np.any(months[keep] < 0) or not set(np.unique(events[keep])) <= {0.0, 1.0}:
        raise SurvivalDataError("months must be >= 0 and events 0 (censored) or 1 (event)")
    t, e, g = months[keep], events[keep].astype(int), groups[keep]
    if len(t) < 2:
        raise SurvivalDataError("fewer than 2 cases with survival data")

    curves = []
    for name in RISK_ORDER:
        inside = g == name
        if not inside.any():
            continue
        km = KaplanMeierFitter().fit(t[inside], e[inside], label=name)
        ci = km.confidence_interval_survival_function_
        curves.append({
            "group": name, "n": int(inside.sum()), "events": int(e[inside].sum()),
            "time": km.survival_function_.index.tolist(),
            "survival": km.survival_function_[name].tolist(),
            "ci_lower": ci.iloc[:, 0].tolist(), "ci_upper": ci.iloc[:, 1].tolist(),
            "median_months": _finite(km.median_survival_time_),
        })
    result: dict[str, Any] = {"n": int(len(t)), "n_events": int(e.sum()), "n_excluded": int((~keep).sum()), "curves": curves,
                              "logrank": None, "cox": None}
    present = [c["group"] for c in curves]
    if len(present) >= 2 and e.sum() > 0:
        test = multivariate_logrank_test(t, g, e)
        result["logrank"] = {"statistic": float(test.test_statistic), "df": int(test.degrees_of_freedom), "p_value": float(test.p_value)}

    frame = pd.DataFrame({"months": t, "event": e})
    reference = present[0] if present else None
    for name in present[1:]:
        frame[f"{name}_vs_{reference}"] = (g == name).astype(float)
    frame["risk_step"] = np.array([RISK_ORDER.index(x) for x in g], dtype=float)
    cox: dict[str, Any] = {}
    for label, covariates in (("by_group", [c for c in frame.columns if c.endswith(f"_vs_{reference}")]), ("trend", ["risk_step"])):
        if not covariates or e.sum() == 0:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fitter = CoxPHFitter().fit(frame[["months", "event", *covariates]], duration_col="months", event_col="event")
        except (ConvergenceError, np.linalg.LinAlgError, ValueError) as error:
            cox[label] = {"error": f"Cox model did not converge: {error}"}
            continue
        summary = fitter.summary
        cox[label] = {
            name: {
                "hazard_ratio": _finite(summary.loc[name, "exp(coef)"]),
                "ci": [_finite(summary.loc[name, "exp(coef) lower 95%"]), _finite(summary.loc[name, "exp(coef) upper 95%"])],
                "p_value": _finite(summary.loc[name, "p"]),
            }
            for name in covariates
        }
    result["cox"] = cox or None
    result["cox_reference_group"] = reference
    return result


def km_figure(*, survival: dict[str, Any], title: str = "Disease-free survival by risk group") -> dict[str, Any]:
    """Plotly figure dict: step curves with shaded 95% CI, log-rank p in the title."""
    data = []
    for curve in survival["curves"]:
        colour = _COLOURS[curve["group"]]
        data.append({"type": "scatter", "mode": "lines", "x": curve["time"], "y": curve["ci_upper"], "line": {"width": 0, "shape": "hv", "color": colour}, "showlegend": False, "hoverinfo": "skip"})
        data.append({"type": "scatter", "mode": "lines", "x": curve["time"], "y": curve["ci_lower"], "line": {"width": 0, "shape": "hv", "color": colour}, "fill": "tonexty", "opacity": 0.2, "showlegend": False, "hoverinfo": "skip"})
        data.append({"type": "scatter", "mode": "lines", "x": curve["time"], "y": curve["survival"], "name": f"{curve['group']} (n={curve['n']}, events={curve['events']})", "line": {"shape": "hv", "color": colour}})
    if survival.get("logrank"):
        title = f"{title} (log-rank p = {survival['logrank']['p_value']:.3g})"
    return {"data": data, "layout": {"title": {"text": title}, "xaxis": {"title": {"text": "months"}}, "yaxis": {"title": {"text": "disease-free survival"}, "range": [0, 1.02]}}}
