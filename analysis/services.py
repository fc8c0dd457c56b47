"""Writes on the analysis side: jobs (enqueue, cancel, retry). Views and commands call these."""
from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from analysis.case_status import case_status_sync_after
from analysis.jobs.runner import dispatch
from analysis.models import ACTIVE_STATUSES, Job, JobStatus
from cases.audit import audit_record


class JobStateError(ValueError):
    pass


def job_enqueue(*, kind: str, slide=None, case=None, params: dict | None = None, user=None,
                max_attempts: int = 2) -> Job:
    """Create a queued job and hand it to the executor once the transaction commits."""
    if slide is not None and case is None:
        case = slide.case
    job = Job.objects.create(kind=kind, slide=slide, case=case, params=params or {},
                             created_by=user if getattr(user, "is_authenticated", False) else None,
                             max_attempts=max_attempts)
    audit_record(user=user, action=f"job.enqueue.{kind}", case=case, slide=slide, detail={"job": job.pk})
    case_status_sync_after(job)  # an analysis or scoring queued: the case is being analysed
    transaction.on_commit(lambda: dispatch(job.pk))
    return job


def job_cancel(*, job: Job, user=None) -> Job:
    """Cancel a queued job at once; ask a running one to stop at its next progress report."""
    if job.status not in ACTIVE_STATUSES:
        raise JobStateError(f"job #{job.pk} is {job.status}; only queued or running jobs can be cancelled")
    Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELLED, cancel_requested=True, error="Cancelled by the user.", finished_at=timezone.now())
    Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(cancel_requested=True)
    audit_record(user=user, action="job.cancel", case=job.case, slide=job.slide, detail={"job": job.pk})
    job.refresh_from_db()
    case_status_sync_after(job)  # a queued job cancelled at once; a running one when it stops
    return job


def job_retry(*, job: Job, user=None) -> Job:
    """Run a failed or cancelled job again, as a new job with the same parameters."""
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise JobStateError(f"job #{job.pk} is {job.status}; only failed or cancelled jobs can be retried")
    return job_enqueue(kind=job.kind, slide=job.slide, case=job.case, params=job.params, user=user,
                       max_attempts=job.max_attempts)


def analysis_enqueue(*, slide, user=None) -> Job:
    """Queue a slide's cell analysis, unless one is already queued or running."""
    from analysis.models import JobKind

    if not slide.is_ready:
        raise JobStateError(f"{slide.name} is {slide.status}; only ready slides can be analysed")
    if not slide.mpp_x:
        raise JobStateError(f"{slide.name}: set the slide's resolution (µm per pixel) before analysing it")
    running = Job.objects.filter(slide=slide, kind=JobKind.ANALYZE_SLIDE, status__in=ACTIVE_STATUSES).first()
    if running:
        raise JobStateError(f"{slide.name} is already being analysed (job #{running.pk})")
    return job_enqueue(kind=JobKind.ANALYZE_SLIDE, slide=slide, user=user)
