"""Reads: what pages and the API show."""
from __future__ import annotations

from django.db.models import Count, Q, QuerySet
from django.urls import reverse

from analysis.models import ACTIVE_STATUSES, Job
from analysis.registration import alignment_field_active
from cases.models import Case, Slide, SlideAlignment, SlideStatus, Stain


def case_list(*, query: str = "", status: str = "", her2: str = "", has_slides: str = "") -> QuerySet[Case]:
    cases = Case.objects.annotate(
        slide_count=Count("slides", distinct=True),
        active_jobs=Count("jobs", filter=Q(jobs__status__in=ACTIVE_STATUSES), distinct=True),
    )
    if query:
        cases = cases.filter(Q(case_id__icontains=query) | Q(regimen__icontains=query) | Q(notes__icontains=query))
    if status:
        cases = cases.filter(status=status)
    if her2:
        cases = cases.filter(her2_ihc=her2)
    if has_slides == "paired":
        cases = cases.filter(slides__stain=Stain.HE).filter(slides__stain=Stain.IHC).distinct()
    elif has_slides == "none":
        cases = cases.filter(slide_count=0)
    return cases.order_by("case_id")


def slide_dzi_url(slide: Slide) -> str:
    return reverse("slide-dzi", args=[slide.pk])


def slide_thumbnail_url(slide: Slide) -> str:
    return reverse("slide-thumbnail", args=[slide.pk])


def case_alignment(case: Case) -> SlideAlignment | None:
    fixed, moving = case.slide_for(Stain.HE), case.slide_for(Stain.IHC)
    if fixed is None or moving is None:
        return None
    return SlideAlignment.objects.filter(fixed=fixed, moving=moving).first()


def alignment_field_url(alignment: SlideAlignment | None) -> str | None:
    """The non-rigid field's URL while it applies (automatic source with a field), else None."""
    if not alignment_field_active(alignment):
        return None
    # The checksum in the URL: a new registration is a new URL, so the browser may cache the old one.
    return f"{reverse('api-case-alignment-field', args=[alignment.case_id])}?v={alignment.field_checksum[:12]}"


def case_viewer_config(*, case: Case, can_edit: bool, csrf_token: str) -> dict:
    """The JSON the paired viewer (static/viewer/case_viewer.js) starts from."""
    shown = [s for s in (case.slide_for(Stain.HE), case.slide_for(Stain.IHC)) if s is not None]
    slides = [
        {
            "id": slide.pk,
            "stain": slide.stain,
            "label": slide.get_stain_display(),
            "name": slide.name,
            "dzi_url": slide_dzi_url(slide),
            "width": slide.width,
            "height": slide.height,
            "mpp": slide.mpp_x,
        }
        for slide in shown
        if slide.status == SlideStatus.READY
    ]
    alignment = case_alignment(case)
    return {
        "csrfToken": csrf_token,
        "osdImagesUrl": "/static/vendor/openseadragon/images/",
        "caseId": case.pk,
        "slides": slides,
        "alignment": None if alignment is None else {
            "url": reverse("api-case-alignment", args=[case.pk]),
            "offset_x": alignment.offset_x,
            "offset_y": alignment.offset_y,
            "rotation": alignment.rotation,
            "scale": alignment.scale,
            "source": alignment.source,
            "field_url": alignment_field_url(alignment),
            "auto_url": reverse("api-case-alignment-auto", args=[case.pk]),
            "has_automatic": bool(alignment.automatic),
            "editable": can_edit,
        },
    }


def case_jobs(case: Case, *, limit: int = 20) -> QuerySet[Job]:
    return case.jobs.select_related("slide").order_by("-created_at")[:limit]


def slide_latest_run(slide: Slide):
    return slide.runs.order_by("-created_at").first()


def slide_latest_features(slide: Slide):
    return slide.features.order_by("-computed_at").first()


def feature_rows(features) -> list[dict]:
    """Schema rows (name, definition, unit) with this slide's value, in schema order."""
    from analysis.core.graph.slide_features import load_schema

    if features is None or not features.values:
        return []
    schema = {entry["name"]: entry for entry in load_schema()["features"]}
    return [
        {"name": name, "value": value, "unit": schema.get(name, {}).get("unit", ""),
         "definition": schema.get(name, {}).get("definition", "")}
        for name, value in features.values.items()
    ]


def case_slide_panels(case: Case) -> list[dict]:
    """Each slide with its latest analysis run, features and failed-analysis message."""
    panels = []
    for slide in case.slides.all():
        run = slide_latest_run(slide)
        features = slide_latest_features(slide)
        last_job = slide.jobs.order_by("-created_at").first()
        panels.append({
            "slide": slide,
            "run": run,
            "features": features,
            "feature_rows": feature_rows(features),
            "last_job": last_job,
        })
    return panels


RISK_IMPLICATIONS = {  # what the study attached to each group; shown as research use, not advice
    "Low": "De-escalation candidate (likely pCR)",
    "Medium": "Standard dual HER2 blockade",
    "High": "Escalation candidate, e.g. next-generation ADC (likely residual disease)",
}


def attribution_waterfall(*, score, top: int = 12) -> dict:
    """Plotly waterfall of the largest attributions on the HER2-LADDER score scale."""
    rows = score.attributions[:top]
    rest = sum(-100.0 * r["attribution"] for r in score.attributions[top:])
    base = 100.0 * (1.0 - score.base_value)
    labels = ["average case"] + [r["feature"] for r in rows] + (["other inputs"] if len(score.attributions) > top else [])
    values = [base] + [-100.0 * r["attribution"] for r in rows] + ([rest] if len(score.attributions) > top else [])
    measures = ["absolute"] + ["relative"] * (len(values) - 1)
    return {
        "data": [{"type": "waterfall", "orientation": "h", "y": labels + ["this case"], "x": values + [score.score],
                  "measure": measures + ["total"], "increasing": {"marker": {"color": "#D55E00"}},
                  "decreasing": {"marker": {"color": "#0072B2"}}, "totals": {"marker": {"color": "#555555"}},
                  "connector": {"line": {"color": "#bbbbbb"}}}],
        "layout": {"title": {"text": "What moved the score"},
                   "yaxis": {"autorange": "reversed", "automargin": True}, "xaxis": {"title": {"text": "HER2-LADDER score"}},
                   "showlegend": False},
    }


def case_score_panel(case: Case) -> dict | None:
    from analysis.scoring import case_latest_score

    score = case_latest_score(case)
    if score is None:
        return None
    panel = {"score": score, "model": score.model, "implication": RISK_IMPLICATIONS.get(score.risk_group, "")}
    if score.status == "scored":
        panel["attributions"] = [
            {**row, "score_attribution": -100.0 * row["attribution"]} for row in score.attributions[:10]
        ]
        panel["waterfall"] = attribution_waterfall(score=score)
    return panel
