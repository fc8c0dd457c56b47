"""Plotly figures of a model card and a score, as plain dicts (the page draws them)."""
from __future__ import annotations

import math
from typing import Any, Mapping

from analysis.core.model.training import Score


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


def feature_importance_figure(*, importance: Mapping[str, float], top: int = 20,
                              title: str = "Feature importance (mean |SHAP| on P(pCR))",
                              labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Horizontal bars of the largest importances. ``labels`` maps an input's raw name to the name
    shown on the axis (plain words and unit); the raw name stays in the hover."""
    items = sorted(importance.items(), key=lambda kv: -kv[1])[:top][::-1]
    names = [k for k, _ in items]
    return {
        "data": [{"type": "bar", "orientation": "h", "x": [v for _, v in items],
                  "y": [(labels or {}).get(k, k) for k in names], "customdata": names,
                  "hovertemplate": "%{y}<br>%{customdata}<br>mean |SHAP| %{x:.3g}<extra></extra>",
                  "marker": {"color": "#0072B2"}}],
        # one labelled row per bar (a fixed height made Plotly label every second one); the
        # axis takes the room its names need
        "layout": {"title": {"text": title}, "xaxis": {"title": {"text": "mean |SHAP value|"}},
                   "yaxis": {"automargin": True, "dtick": 1}, "margin": {"l": 10},
                   "height": max(340, 22 * len(items) + 110)},
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
