"""Survival by risk group: product-limit estimate, log-rank statistic, Cox hazard ratios, figure."""
from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import pytest
import scipy.stats

from analysis.core.model.survival import SurvivalDataError, km_figure, survival_by_risk_group


def test_kaplan_meier_matches_the_product_limit_by_hand():
    months = [1, 2, 2, 3, 4, 5, 1, 6]
    events = [1, 1, 0, 1, 0, 1, 0, 1]
    groups = ["Low"] * 6 + ["High"] * 2
    result = survival_by_risk_group(months=months, events=events, groups=groups)
    low = result["curves"][0]
    assert low["group"] == "Low" and low["n"] == 6 and low["events"] == 4
    survival = dict(zip(low["time"], low["survival"]))
    # S(1) = 5/6; S(2) = 5/6 * 4/5; S(3) = S(2) * 2/3; S(4) unchanged (censored); S(5) = 0.
    assert survival[1] == pytest.approx(5 / 6)
    assert survival[2] == pytest.approx(4 / 6)
    assert survival[3] == pytest.approx(4 / 6 * 2 / 3)
    assert survival[4] == pytest.approx(4 / 6 * 2 / 3)
    assert survival[5] == pytest.approx(0.0)
    assert low["median_months"] == 3
    assert [c["group"] for c in result["curves"]] == ["Low", "High"]


def _logrank_by_hand(t, e, in_group):
    observed = expected = variance = 0.0
    for time in np.unique(t[e == 1]):
        at_risk = t >= time
        n, n1 = at_risk.sum(), (at_risk & in_group).sum()
        d = ((t == time) & (e == 1)).sum()
        d1 = ((t == time) & (e == 1) & in_group).sum()
        observed += d1
        expected += d * n1 / n
        if n > 1:
            variance += n1 * (n - n1) * d * (n - d) / (n**2 * (n - 1))
    return (observed - expected) ** 2 / variance


def test_logrank_and_cox_on_separated_groups():
    rng = np.random.default_rng(0)
    n = 90
    groups = np.array(["Low", "Medium", "High"] * (n // 3))
    hazard = np.select([groups == "Low", groups == "Medium"], [0.01, 0.03], 0.08)
    t = rng.exponential(1 / hazard)
    censor = rng.uniform(20, 60, n)
    months, events = np.minimum(t, censor), (t <= censor).astype(int)
    result = survival_by_risk_group(months=months, events=events, groups=groups)
    assert result["logrank"]["df"] == 2 and result["logrank"]["p_value"] < 0.01
    assert result["cox"]["by_group"]["High_vs_Low"]["hazard_ratio"] > 2
    assert result["cox"]["trend"]["risk_step"]["hazard_ratio"] > 1
    assert result["cox_reference_group"] == "Low"
    # Two groups: the statistic equals the textbook (O - E)^2 / V.
    two = groups != "Medium"
    pair = survival_by_risk_group(months=months[two], events=events[two], groups=groups[two])
    by_hand = _logrank_by_hand(months[two], events[two], groups[two] == "High")
    assert pair["logrank"]["statistic"] == pytest.approx(by_hand, rel=1e-9)
    assert pair["logrank"]["p_value"] == pytest.approx(scipy.stats.chi2.sf(by_hand, 1), rel=1e-9)
    json.dumps(result)


def test_missing_survival_rows_are_left_out_and_bad_input_raises():
    result = survival_by_risk_group(months=[5, np.nan, 7, 9], events=[1, np.nan, 0, 1], groups=["Low", "High", "High", "Low"])
    assert result["n"] == 3 and result["n_excluded"] == 1
    with pytest.raises(SurvivalDataError, match="unknown risk group"):
        survival_by_risk_group(months=[1, 2], events=[1, 0], groups=["Low", "Highest"])
    with pytest.raises(SurvivalDataError, match="events 0"):
        survival_by_risk_group(months=[1, 2], events=[1, 2], groups=["Low", "High"])
    with pytest.raises(SurvivalDataError, match="differ in length"):
        survival_by_risk_group(months=[1, 2], events=[1], groups=["Low", "High"])


def test_km_figure_is_valid_plotly():
    result = survival_by_risk_group(months=[1, 2, 3, 4, 5, 6], events=[1, 0, 1, 1, 0, 1], groups=["Low", "Low", "Medium", "High", "High", "Medium"])
    figure = km_figure(survival=result)
    go.Figure(figure)
    assert "log-rank p" in figure["layout"]["title"]["text"]
    assert sum(1 for trace in figure["data"] if trace.get("showlegend", True)) == 3
