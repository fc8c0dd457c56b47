"""What follows when a slide becomes ready to view (imported ready, or converted by its job):
its analysis starts (LADDER_AUTO_ANALYSE) and a completed H&E / IHC pair gets its alignment row
and its automatic registration (LADDER_AUTO_REGISTER). Called by the import service
(viewer.cases.services.slides) and by the conversion job (analysis.handlers)."""
from __future__ import annotations

from django.conf import settings

from analysis.models import Job, JobKind, JobStatus
from analysis.registration import alignment_ensure_default, case_pair, registration_enqueue
from analysis.services import analysis_enqueue
from cases.models import Case, Slide, SlideAlignment, SlideStatus


def slide_ready(*, slide: Slide, user=None, automatic: bool = True) -> None:
    """A slide became ready to view (imported, or its conversion job finished): its analysis starts
    (LADDER_AUTO_ANALYSE; the score follows the analyses) and a completed H&E/IHC pair is paired
    and registered. `automatic=False` (the demo, which queues its own): only the alignment row."""
    if not automatic:
        alignment_ensure_default(case=slide.case)
        return
    slide_auto_analyse(slide=slide, user=user)
    slide_pair_check(case=slide.case, user=user)


def slide_auto_analyse(*, slide: Slide, user=None):
    """Queue the analysis of a ready slide never analysed before, with LADDER_AUTO_ANALYSE; a slide
    whose resolution is unknown waits until a user sets it (slide_set_mpp calls this again)."""
    if not settings.LADDER_AUTO_ANALYSE or slide.status != SlideStatus.READY or not slide.mpp_x:
        return None
    if slide.runs.exists() or Job.objects.filter(slide=slide, kind=JobKind.ANALYZE_SLIDE).exists():
        return None  # analysed, or being analysed, or a user's analysis failed: theirs to restart
    return analysis_enqueue(slide=slide, user=user)


def slide_pair_check(*, case: Case, user=None) -> SlideAlignment | None:
    """A slide of the case became ready (imported, or its conversion job finished): once both the
    H&E and the IHC are ready the pair gets its alignment row (the viewer's Align mode needs it),
    and a pair complete for the first time is registered in the background."""
    had_pair = SlideAlignment.objects.filter(case=case).exists()
    alignment = alignment_ensure_default(case=case)
    if alignment is not None and not had_pair and settings.LADDER_AUTO_REGISTER:
        # the job runs after this commits
        registration_enqueue(case=case, user=user, reason="the case got its second slide")
    return alignment


def registration_after_resolution(*, case: Case, user=None) -> Job | None:
    """The automatic registration that failed for want of a resolution runs again once both
    slides have one (a user set it in the Slides list)."""
    fixed, moving = case_pair(case)
    if not (settings.LADDER_AUTO_REGISTER and fixed and moving and fixed.mpp_x and moving.mpp_x):
        return None
    last = Job.objects.filter(case=case, kind=JobKind.REGISTER_PAIR).order_by("-created_at").first()
    if last is None or last.status != JobStatus.FAILED or "no known resolution" not in last.error:
        return None
    return registration_enqueue(case=case, user=user, reason="the slides' resolution was set")
