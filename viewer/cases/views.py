"""HTML pages: worklist and case page. Thin: selectors read, services write."""
from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from analysis.models import ACTIVE_STATUSES, JobKind, JobStatus
from viewer.cases import selectors
from cases.models import Case, CaseStatus, Her2Score, Slide, SlideStatus, Stain
from cases.roles import user_can_edit_cases
from viewer.cases.clinical import derivation_rules
from viewer.cases.forms import CLINICAL_FORM_FIELDS, CaseForm, clinical_provenance
from viewer.cases.services.cases import case_create, case_update_clinical
from viewer.cases.services.slides import SlideAlreadyThere, SlideImportError, slide_set_mpp, slide_upload
from analysis.scoring import case_score_blockers, join_and
from analysis.services import JobStateError, analysis_enqueue


def worklist(request):
    filters = {
        "query": request.GET.get("q", "").strip(),
        "status": request.GET.get("status", ""),
        "her2": request.GET.get("her2", ""),
        "has_slides": request.GET.get("slides", ""),
    }
    sort = request.GET.get("sort", "")
    cases = list(selectors.case_list(**filters, sort=sort).prefetch_related("slides"))
    for case in cases:
        case.thumbs = selectors.case_thumbnails(case)
    # each sortable header links to its ascending sort, or descending when already ascending
    params = {k: v for k, v in request.GET.items() if k != "sort" and v}
    columns = {}
    for key in selectors.WORKLIST_SORTS:
        target = f"-{key}" if sort == key else key
        columns[key] = {"url": "?" + urlencode({**params, "sort": target}),
                        "aria": "ascending" if sort == key else ("descending" if sort == f"-{key}" else "")}
    return render(request, "viewer/worklist.html", {
        "cases": cases,
        "columns": columns,
        "sort": sort,
        "filters": filters,
        "statuses": CaseStatus.choices,
        "her2_scores": Her2Score.choices,
    })


def case_detail(request, case_id: str):
    case = get_object_or_404(Case, case_id=case_id)
    can_edit = user_can_edit_cases(request.user)
    config = selectors.case_viewer_config(case=case, can_edit=can_edit, csrf_token=get_token(request))
    score_panel = selectors.case_score_panel(case)
    return render(request, "viewer/case.html", {
        "case": case,
        "slide_panels": selectors.case_slide_panels(case),
        "score_panel": score_panel,
        "clinical_shown": clinical_provenance(case),
        # what the score needs now (a stored "not scored" message may predate new slides)
        "score_missing": join_and(case_score_blockers(case))
        if not score_panel or score_panel["score"].status != "scored" else "",
        "viewer_config": config,
        "jobs": selectors.case_jobs(case),
        "stains": Stain.choices,
        "active_job_statuses": [JobStatus.QUEUED, JobStatus.RUNNING],
    })


def _analysis_next_step(slide: Slide) -> str:
    """What happens next to a ready slide's analysis, for the flash message (starts with a space)."""
    job = slide.jobs.filter(kind=JobKind.ANALYZE_SLIDE, status__in=ACTIVE_STATUSES).first()
    if job is not None:
        return f" Its analysis has started (job #{job.pk}); the score follows."
    if not slide.mpp_x:
        return " Its resolution is unknown: set its µm/px below to analyse it."
    return ""


@require_POST
def slide_upload_view(request, case_id: str):
    case = get_object_or_404(Case, case_id=case_id)
    if not user_can_edit_cases(request.user):
        raise PermissionDenied("Only pathologists and admins can add slides.")
    uploaded = request.FILES.get("file")
    stain = request.POST.get("stain", "")
    if uploaded is None:
        messages.error(request, "Choose a slide file to upload.")
    else:
        try:
            slide = slide_upload(case=case, stain=stain, uploaded_file=uploaded, user=request.user)
            if slide.status == SlideStatus.CONVERTING:
                messages.success(request, f"Uploaded {slide.name}; it is being converted to a tiled pyramid "
                                          "(see its job below).")
            else:
                messages.success(request, f"Imported {slide.name} ({slide.width:,} × {slide.height:,} px)."
                                          f"{_analysis_next_step(slide)}")
        except SlideAlreadyThere as exc:  # not a failure: the slide is there, say where
            messages.info(request, str(exc))
        except SlideImportError as exc:
            messages.error(request, f"Import failed: {exc}")
    return redirect("case-detail", case_id=case.case_id)


@require_http_methods(["POST"])
def slide_mpp_view(request, slide_id: int):
    slide = get_object_or_404(Slide, pk=slide_id)
    if not user_can_edit_cases(request.user):
        raise PermissionDenied("Only pathologists and admins can set a slide's resolution.")
    try:
        slide_set_mpp(slide=slide, mpp=float(request.POST.get("mpp", "")), user=request.user)
        messages.success(request, f"Resolution of {slide.name} set to {slide.mpp_x:g} µm/px.{_analysis_next_step(slide)}")
    except (ValueError, SlideImportError) as exc:
        messages.error(request, f"Could not set the resolution: {exc}")
    return redirect("case-detail", case_id=slide.case.case_id)


@require_POST
def slide_analyze_view(request, slide_id: int):
    slide = get_object_or_404(Slide, pk=slide_id)
    if not user_can_edit_cases(request.user):
        raise PermissionDenied("Only pathologists and admins can start analyses.")
    try:
        job = analysis_enqueue(slide=slide, user=request.user)
        messages.success(request, f"Analysis of {slide.name} queued (job #{job.pk}).", extra_tags=f"job-{job.pk}")
    except JobStateError as exc:
        messages.error(request, str(exc))
    return redirect("case-detail", case_id=slide.case.case_id)


@require_http_methods(["GET", "POST"])
def case_create_view(request):
    """A new case from the page (pathologists, admins): id and clinical data, validated."""
    if not user_can_edit_cases(request.user):
        raise PermissionDenied("Only pathologists and admins can add cases.")
    form = CaseForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        values = {name: form.cleaned_data[name] for name in CLINICAL_FORM_FIELDS}
        values = {k: ("" if v is None and k not in ("age", "grade", "pcr") else v) for k, v in values.items()}
        case = case_create(case_id=form.cleaned_data["case_id"], user=request.user, **values)
        messages.success(request, f"Case {case.case_id} created. Add its H&E and HER2 IHC slides below.")
        return redirect("case-detail", case_id=case.case_id)
    return render(request, "viewer/case_form.html", {"form": form, "case": None, "derivations": derivation_rules()},
                  status=400 if request.method == "POST" else 200)


def _rescore_note(case: Case, changes: dict) -> str:
    """What happens to the score after a clinical change: recomputed, or what it still needs."""
    if not set(changes) - {"notes"}:
        return ""
    blockers = case_score_blockers(case)
    if blockers:
        return f". Not scored yet: the HER2-LADDER score needs {join_and(blockers)}"
    return "; the HER2-LADDER score is being recomputed"


@require_http_methods(["GET", "POST"])
def case_edit_view(request, case_id: str):
    """A case's clinical data (pathologists, admins); a change re-scores the case."""
    case = get_object_or_404(Case, case_id=case_id)
    if not user_can_edit_cases(request.user):
        raise PermissionDenied("Only pathologists and admins can edit clinical data.")
    form = CaseForm(request.POST or None, instance=Case.objects.get(pk=case.pk))
    if request.method == "POST" and form.is_valid():
        changes = {name: form.cleaned_data[name] for name in CLINICAL_FORM_FIELDS
                   if form.cleaned_data[name] != getattr(case, name)}
        if changes:
            case_update_clinical(case=case, user=request.user, **changes)
            messages.success(request, f"Clinical data of {case.case_id} saved{_rescore_note(case, changes)}.")
        else:
            messages.info(request, "Nothing changed.")
        return redirect("case-detail", case_id=case.case_id)
    return render(request, "viewer/case_form.html", {"form": form, "case": case, "derivations": derivation_rules()},
                  status=400 if request.method == "POST" else 200)
