"""Model registry pages: list, model card with Plotly figures, activation (admins only)."""
from __future__ import annotations

from pathlib import Path

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from analysis.models import ModelVersion
from analysis.scoring import model_activate
from cases.roles import user_is_admin


def model_list(request):
    return render(request, "viewer/models.html", {"models": ModelVersion.objects.all()})


def model_figures(card: dict) -> dict:
    """Plotly figure dicts of a model card (built by analysis.core, drawn by plotly.js)."""
    from analysis.core.model.figures import calibration_figure, feature_importance_figure, roc_figure
    from analysis.core.model.survival import km_figure

    metrics = card.get("metrics") or {}
    figures = {}
    if metrics.get("roc"):
        figures["roc"] = roc_figure(report=metrics)
    if metrics.get("calibration"):
        figures["calibration"] = calibration_figure(report=metrics)
    if card.get("survival"):
        figures["survival"] = km_figure(survival=card["survival"])
    if card.get("feature_importance"):
        from viewer.cases.feature_labels import feature_label

        # plain names with units on the axis, as on the case page; the raw name in the hover.
        # Last: the page gives it a whole row, for those long names.
        labels = {name: feature_label(name)["text"] for name in card["feature_importance"]}
        figures["importance"] = feature_importance_figure(importance=card["feature_importance"], labels=labels)
    return figures


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def model_card_display(model: ModelVersion) -> dict:
    """What the card page says in words: cut-offs as percentiles and score bands (not raw
    quantile floats), when it was trained (local time), and the model's folder name only:
    the server's file system is not the reader's business."""
    from datetime import datetime

    from django.utils import timezone

    card = model.card or {}
    cutoffs = card.get("cutoffs") or []
    quantiles = (card.get("spec") or {}).get("risk_quantiles") or []
    display = {"folder": Path(model.directory).name}
    if len(quantiles) == 2:
        display["cutoff_method"] = (f"the {_ordinal(round(100 * quantiles[0]))} and "
                                    f"{_ordinal(round(100 * quantiles[1]))} percentiles of the out-of-fold scores")
    else:
        display["cutoff_method"] = (card.get("risk_groups") or {}).get("cutoff_method", "")
    if len(cutoffs) == 2:
        low, high = cutoffs
        display["bands"] = f"Low: score below {low:.1f} · Medium: {low:.1f} to below {high:.1f} · High: {high:.1f} and above"
    trained = card.get("trained_at")
    try:
        display["trained_at"] = f"{timezone.localtime(datetime.fromisoformat(trained)):%Y-%m-%d %H:%M %Z}"
    except (TypeError, ValueError):
        display["trained_at"] = trained or ""
    seconds = card.get("training_seconds")
    display["training_time"] = (f"{seconds / 60:.1f} min" if isinstance(seconds, (int, float)) and seconds >= 120
                                else f"{seconds:.0f} s" if isinstance(seconds, (int, float)) else "")
    return display


def cox_rows(survival: dict | None) -> list[dict]:
    """The Cox hazard ratios in words ("Medium vs Low risk group", "each step up in risk group"),
    with the model's covariate name for the hover, or the reason a model did not fit."""
    rows = []
    for model_name, terms in ((survival or {}).get("cox") or {}).items():
        if "error" in terms:
            rows.append({"label": "Cox model by group" if model_name == "by_group" else "Cox trend model",
                         "error": terms["error"]})
            continue
        for raw, hr in terms.items():
            if raw == "risk_step":
                label = "Each step up in risk group (Low → Medium → High)"
            elif "_vs_" in raw:
                group, reference = raw.split("_vs_", 1)
                label = f"{group} vs {reference} risk group"
            else:
                label = raw.replace("_", " ")
            rows.append({"label": label, "raw": raw, **hr})
    return rows


def model_detail(request, pk: int):
    model = get_object_or_404(ModelVersion, pk=pk)
    card = model.card
    metrics = card.get("metrics") or {}
    return render(request, "viewer/model_detail.html", {
        "model": model,
        "card": card,
        "shown": model_card_display(model),
        "metrics": metrics,
        "cutoff_metrics": metrics.get("cutoff_metrics"),
        "figures": model_figures(card),
        "survival": card.get("survival"),
        "cox_rows": cox_rows(card.get("survival")),
    })


@require_POST
def model_activate_view(request, pk: int):
    if not user_is_admin(request.user):
        raise PermissionDenied("Only admins can activate a model.")
    model = get_object_or_404(ModelVersion, pk=pk)
    model_activate(model=model, user=request.user)
    messages.success(request, f"{model} is now active; every case is being re-scored.")
    return redirect("model-detail", pk=model.pk)
