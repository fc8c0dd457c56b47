"""HTML pages: worklist and case page. Thin: selectors read, services write."""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from analysis.models import JobStatus
from viewer.cases import selectors
from cases.models import Case, CaseStatus, Her2Score, Slide, SlideStatus, Stain
from cases.roles import user_can_edit_cases
from viewer.cases.services.slides import SlideImportError, slide_set_mpp, slide_upload
from analysis.services import JobStateError, analysis_enqueue


def worklist(request):
    filters = {
        "query": request.GET.get("q", "").strip(),
        "status": request.GET.get("status", ""),
        "her2": request.GET.get("her2", ""),
        "has_slides": request.GET.get("slides", ""),
    }
    cases = selectors.case_list(**filters)
    return render(request, "viewer/worklist.html", {
        "cases": cases,
        "filters": filters,
        "statuses": CaseStatus.choices,
        "her2_scores": Her2Score.choices,
    })


def case_detail(request, case_id: str):
    case = get_object_or_404(Case, case_id=case_id)
    can_edit = user_can_edit_cases(request.user)
    config = selectors.case_viewer_config(case=case, can_edit=can_edit, csrf_token=get_token(request))
    return render(request, "viewer/case.html", {
        "case": case,
        "slide_panels": selectors.case_slide_panels(case),
        "score_panel": selectors.case_score_panel(case),
        "viewer_config": config,
        "jobs": selectors.case_jobs(case),
        "stains": Stain.choices,
        "active_job_statuses": [JobStatus.QUEUED, JobStatus.RUNNING],
    })


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
                messages.success(request, f"Imported {slide.name} ({slide.width:,} × {slide.height:,} px).")
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
        messages.success(request, f"Resolution of {slide.name} set to {slide.mpp_x:g} µm/px.")
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
        messages.success(request, f"Analysis of {slide.name} queued (job #{job.pk}).")
    except JobStateError as exc:
        messages.error(request, str(exc))
    return redirect("case-detail", case_id=slide.case.case_id)
