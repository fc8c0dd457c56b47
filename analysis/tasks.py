"""Celery tasks (scale-out). Thin: the job system does the work."""
from __future__ import annotations

from celery import shared_task

from analysis.jobs.runner import job_run, jobs_reap_stale
from analysis.jobs.sweep import sweep_orphans_safely


@shared_task(name="analysis.run_job", acks_late=True, reject_on_worker_lost=True)
def run_job(job_id: int) -> str:
    jobs_reap_stale()
    job = job_run(job_id)
    return job.status if job else "not-claimable"


@shared_task(name="analysis.reap_stale_jobs")
def reap_stale_jobs() -> list[int]:
    reaped = jobs_reap_stale()
    sweep_orphans_safely()  # temporary outputs of jobs that are no longer running
    return reaped
