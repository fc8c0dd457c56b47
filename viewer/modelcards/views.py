"""Model registry pages: list, model card with Plotly figures, activation (admins only)."""
from __future__ import annotations

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
    if card.get("feature_importance"):
        figures["importance"] = feature_importance_figure(importance=card["feature_importance"])
    if card.get("survival"):
        figures["survival"] = km_figure(survival=card["survival"])
    return figures


def model_detail(request, pk: int):
    model = get_object_or_404(ModelVersion, pk=pk)
    card = model.card
    metrics = card.get("metrics") or {}
    return render(request, "viewer/model_detail.html", {
        "model": model,
        "card": card,
        "metrics": metrics,
        "cutoff_metrics": metrics.get("cutoff_metrics"),
        "figures": model_figures(card),
        "survival": card.get("survival"),
    })


@require_POST
def model_activate_view(request, pk: int):
    if not user_is_admin(request.user):
        raise PermissionDenied("Only admins can activate a model.")
    model = get_object_or_404(ModelVersion, pk=pk)
    model_activate(model=model, user=request.user)
    messages.success(request, f"{model} is now active; every case is being re-scored.")
    return redirect("model-detail", pk=model.pk)
