"""Reads: what pages and the API show."""
from __future__ import annotations

from django.db.models import Count, Q, QuerySet
from django.urls import reverse

from analysis.models import ACTIVE_STATUSES, Job, JobStatus
from analysis.registration import alignment_field_active
from cases.models import Case, Slide, SlideAlignment, SlideStatus, Stain


# Worklist columns that sort: ?sort=<key> ascending, ?sort=-<key> descending.
WORKLIST_SORTS = {
    "case": ("case_id",),
    "age": ("age",),
    "stage": ("stage_order", "clinical_t", "clinical_n"),  # the group, then T and N within it
    "hr": ("hr_order",),
    "score": ("latest_score",),
    "risk": ("risk_order",),
    "her2": ("her2_order",),
    "review": ("review_order", "reviews_submitted"),
    "status": ("status",),
}
HER2_ORDER = {"0": 0, "1+": 1, "2+": 2, "3+": 3}


def case_list(*, query: str = "", status: str = "", her2: str = "", has_slides: str = "",
              sort: str = "") -> QuerySet[Case]:
    """The worklist: cases with their slide count, running jobs, latest HER2-LADDER score and
    risk group, the automated HER2 score of the latest IHC analysis, and review counts.

    `her2` ("0", "1+", "2+", "3+") keeps the cases with that HER2 IHC score from either source:
    the clinical record or the automated (ASCO/CAP) score of the case's latest IHC analysis."""
    from django.db.models import Case as When_, IntegerField, OuterRef, Subquery, Value, When
    from django.db.models.fields.json import KeyTextTransform

    from analysis.models import AnalysisRun, CaseScore

    latest = CaseScore.objects.filter(case=OuterRef("pk")).order_by("-created_at")
    latest_ihc_run = AnalysisRun.objects.filter(slide__case=OuterRef("pk"), slide__stain=Stain.IHC).order_by("-created_at")
    cases = Case.objects.annotate(
        slide_count=Count("slides", distinct=True),
        active_jobs=Count("jobs", filter=Q(jobs__status__in=ACTIVE_STATUSES), distinct=True),
        latest_score=Subquery(latest.values("score")[:1]),
        latest_risk=Subquery(latest.values("risk_group")[:1]),
        auto_her2=Subquery(latest_ihc_run.annotate(s=KeyTextTransform("score", "her2")).values("s")[:1]),
        reviews_submitted=Count("reviews", filter=Q(reviews__submitted=True), distinct=True),
        reviews_draft=Count("reviews", filter=Q(reviews__submitted=False), distinct=True),
        disagreements=Count("reviews", filter=Q(reviews__is_disagreement=True, reviews__submitted=True),
                            distinct=True),
    ).annotate(
        risk_order=When_(*[When(latest_risk=g, then=Value(i)) for i, g in enumerate(("Low", "Medium", "High"))],
                         default=Value(None), output_field=IntegerField()),
        her2_order=When_(*[When(her2_ihc=v, then=Value(i)) for v, i in HER2_ORDER.items()],
                         *[When(auto_her2=v, then=Value(i)) for v, i in HER2_ORDER.items()],
                         default=Value(None), output_field=IntegerField()),
        # unknown ('') stage and HR status sort last, like a missing age or score
        stage_order=When_(*[When(clinical_stage=g, then=Value(i)) for i, g in enumerate(("I", "II", "III"))],
                          default=Value(None), output_field=IntegerField()),
        hr_order=When_(When(hr_status="negative", then=Value(0)), When(hr_status="positive", then=Value(1)),
                       default=Value(None), output_field=IntegerField()),
        # not reviewed < drafts only < reviewed < disagreement (what needs attention sorts last ascending)
        review_order=When_(When(disagreements__gt=0, then=Value(3)), When(reviews_submitted__gt=0, then=Value(2)),
                           When(reviews_draft__gt=0, then=Value(1)), default=Value(0), output_field=IntegerField()),
    )
    if query:
        cases = cases.filter(Q(case_id__icontains=query) | Q(regimen__icontains=query) | Q(notes__icontains=query))
    if status:
        cases = cases.filter(status=status)
    if her2:  # either source: the clinical record's score or the latest IHC analysis' automated one
        cases = cases.filter(Q(her2_ihc=her2) | Q(auto_her2=her2))
    if has_slides == "paired":
        cases = cases.filter(slides__stain=Stain.HE).filter(slides__stain=Stain.IHC).distinct()
    elif has_slides == "none":
        cases = cases.filter(slide_count=0)
    key = sort.lstrip("-")
    if key in WORKLIST_SORTS:
        from django.db.models import F

        descending = sort.startswith("-")
        order = [(F(f).desc(nulls_last=True) if descending else F(f).asc(nulls_last=True)) for f in WORKLIST_SORTS[key]]
        return cases.order_by(*order, "case_id")
    return cases.order_by("case_id")


def case_thumbnails(case: Case, *, size: int = 96) -> list[dict]:
    """The worklist's thumbnails of a case: its shown H&E and IHC slides, when ready."""
    thumbs = []
    for stain in (Stain.HE, Stain.IHC):
        slide = next((s for s in case.slides.all() if s.stain == stain and s.status == SlideStatus.READY), None)
        if slide is not None:
            thumbs.append({"url": f"{slide_thumbnail_url(slide)}?size={size}", "label": slide.get_stain_display(),
                           "name": slide.name})
    return thumbs


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
    from viewer.cases.feature_labels import feature_labels_json

    return {
        "csrfToken": csrf_token,
        # plain names with units of every model input and graph metric, for the page's scripts
        "featureLabels": feature_labels_json(),
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


def case_jobs(case: Case, *, limit: int = 20) -> list[Job]:
    """The case's latest jobs, newest first; a failed, cancelled or not-scored job that a later job of
    the same kind on the same slide has since done is marked `superseded` (static/js/jobs.js does
    the same for the live list)."""
    jobs = list(case.jobs.select_related("slide").order_by("-created_at")[:limit])
    done: set[tuple] = set()
    for job in jobs:
        key = (job.kind, job.slide_id)
        job.superseded = key in done and job.outcome in SUPERSEDABLE_OUTCOMES
        if job.outcome == JobStatus.SUCCEEDED:
            done.add(key)
    return jobs


SUPERSEDABLE_OUTCOMES = {"failed", "cancelled", "not_scored"}


def slide_latest_run(slide: Slide):
    return slide.runs.order_by("-created_at").first()


def slide_latest_features(slide: Slide):
    return slide.features.order_by("-computed_at").first()


def feature_rows(features) -> list[dict]:
    """Schema rows (name, definition, unit) with this slide's value, in schema order."""
    from analysis.core.graph.slide_features import load_schema

    if features is None or not features.values:
        return []
    from viewer.cases.feature_labels import feature_label

    schema = {entry["name"]: entry for entry in load_schema()["features"]}
    return [
        {"name": name, "value": value, "unit": feature_label(name)["unit"], "label": feature_label(name)["label"],
         "definition": schema.get(name, {}).get("definition", "")}
        for name, value in features.values.items()
    ]


def run_cell_counts(run, *, stain: str) -> list[tuple[str, int]]:
    """A run's cells per class for the slide panel, classes with no cell left out. An IHC run whose
    segmenter calls only tumour vs the rest (the classical IHC rules) says "non-tumour", not
    "other": sc-MTOP's IHC graph pairs HER2-graded tumour cells with non-tumour cells."""
    counts = [(name, int(n)) for name, n in (run.class_counts or {}).items() if n]
    if stain == Stain.IHC and {name for name, _ in counts} <= {"tumour", "other"}:
        counts = [("non-tumour" if name == "other" else name, n) for name, n in counts]
    return counts


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
            "cell_counts": run_cell_counts(run, stain=slide.stain) if run else [],
            "features": features,
            "feature_rows": feature_rows(features),
            "last_job": last_job,
        })
    return panels


# What the study attached to each group; shown as research use, not advice. No "likely pCR":
# a group is a band of scores between the model's cut-offs (tertiles of its training scores),
# and a Low-group case may well have P(pCR) below 0.5 (risk_group_basis says the band).
RISK_IMPLICATIONS = {
    "Low": "De-escalation candidate",
    "Medium": "Standard dual HER2 blockade",
    "High": "Escalation candidate, e.g. next-generation ADC",
}


def risk_group_basis(score) -> str:
    """The case's risk group as the model's cut-offs define it, in score and P(pCR) (score =
    100 x (1 - P(pCR))), with the group's observed pCR rate in the model's cross-validation,
    e.g. "Low risk group: score below 56.9 (P(pCR) above 0.43); 59% of this group's training
    cases reached pCR (cross-validated)."."""
    cutoffs = (score.detail or {}).get("cutoffs") or (score.model.card or {}).get("cutoffs") or []
    if len(cutoffs) != 2:
        return ""
    low, high = cutoffs

    def p(cut: float) -> str:  # P(pCR) at a score cut-off
        return f"{1 - cut / 100:.2f}"

    bands = {
        "Low": f"score below {low:.1f} (P(pCR) above {p(low)})",
        "Medium": f"score {low:.1f} to below {high:.1f} (P(pCR) {p(high)} to {p(low)})",
        "High": f"score {high:.1f} or above (P(pCR) {p(high)} or below)",
    }
    if score.risk_group not in bands:
        return ""
    text = f"{score.risk_group} risk group: {bands[score.risk_group]}"
    observed = (((score.model.card or {}).get("metrics") or {}).get("risk_groups") or {}).get(score.risk_group) or {}
    if observed.get("pcr_rate") is not None and observed.get("n"):
        text += (f"; {observed['pcr_rate']:.0%} of this group's {observed['n']} training cases reached pCR "
                 "(cross-validated)")
    return text + "."


ATTRIBUTIONS_SHOWN = 12  # the waterfall's bars and the table's rows: the same inputs


def attribution_waterfall(*, score, top: int = ATTRIBUTIONS_SHOWN) -> dict:
    """Plotly waterfall of the largest attributions on the HER2-LADDER score scale."""
    from viewer.cases.feature_labels import feature_label

    rows = score.attributions[:top]
    rest = sum(-100.0 * r["attribution"] for r in score.attributions[top:])
    base = 100.0 * (1.0 - score.base_value)
    more = len(score.attributions) > top
    # plain names on the axis; the raw name in the hover (customdata)
    # short plain names on the narrow panel's axis; the full name with unit and the raw name in the hover
    labels = ["average case"] + [feature_label(r["feature"])["short"] for r in rows] + (["other inputs"] if more else [])
    raw = [""] + [f'{feature_label(r["feature"])["text"]}<br>{r["feature"]}' for r in rows] + ([""] if more else []) + [""]
    values = [base] + [-100.0 * r["attribution"] for r in rows] + ([rest] if len(score.attributions) > top else [])
    measures = ["absolute"] + ["relative"] * (len(values) - 1)
    return {
        "data": [{"type": "waterfall", "orientation": "h", "y": labels + ["this case"], "x": values + [score.score],
                  "measure": measures + ["total"], "increasing": {"marker": {"color": "#D55E00"}},
                  "decreasing": {"marker": {"color": "#0072B2"}}, "totals": {"marker": {"color": "#555555"}},
                  "connector": {"line": {"color": "#bbbbbb"}}, "customdata": raw,
                  "hovertemplate": "%{y}<br>%{customdata}<br>%{x:+.1f}<extra></extra>"}],
        # The axis title is an annotation ending at the plot's right edge: Plotly centres an axis
        # title under the plot area, which the long names push right, so it ran off the panel.
        # The bars' colour key under the title (the chart has no legend: one trace, three colours).
        "layout": {"title": {"text": "What moved the score<br><span style='font-size:11px'>"
                                     "<span style='color:#D55E00'>■</span> raised the score   "
                                     "<span style='color:#0072B2'>■</span> lowered it</span>"},
                   "yaxis": {"autorange": "reversed", "automargin": True},
                   "annotations": [{"text": "HER2-LADDER score", "xref": "paper", "yref": "paper", "x": 1, "y": 0,
                                    "xanchor": "right", "yanchor": "top", "yshift": -20, "showarrow": False,
                                    "name": "x-axis title"}],
                   "margin": {"b": 46}, "showlegend": False},
    }


def attribution_display_value(row: dict) -> str:
    """The input's value as the table shows it: numbers to 3 significant digits, categorical
    inputs (hr_status 'negative', clinical_t 'T2', ...) as they are, imputed ones say so."""
    value = row.get("value")
    if row.get("imputed"):
        return "imputed"
    if value is None or value == "":
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return f"{value:.3g}" if isinstance(value, float) else str(value)
    return str(value)


def attribution_row(row: dict) -> dict:
    """A stored attribution with what the views show: plain name, unit, display value, Δ score."""
    from viewer.cases.feature_labels import feature_label

    label = feature_label(row["feature"])
    return {**row, "score_attribution": -100.0 * row["attribution"], "label": label["label"],
            "unit": label["unit"], "label_text": label["text"], "short": label["short"],
            "display_value": attribution_display_value(row)}


def case_score_panel(case: Case) -> dict | None:
    from analysis.scoring import case_latest_score

    score = case_latest_score(case)
    if score is None:
        return None
    panel = {"score": score, "model": score.model, "implication": RISK_IMPLICATIONS.get(score.risk_group, ""),
             "group_basis": risk_group_basis(score) if score.status == "scored" else ""}
    if score.status == "scored":
        panel["attributions"] = [attribution_row(row) for row in score.attributions[:ATTRIBUTIONS_SHOWN]]
        panel["waterfall"] = attribution_waterfall(score=score)
    return panel
