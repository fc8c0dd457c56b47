"""The job system with a real worker process: progress, failure, cancel, retry, dead workers."""
from __future__ import annotations

import os
import signal
import time

import pytest

from analysis.models import Job, JobKind, JobStatus
from analysis.services import JobStateError, job_cancel, job_enqueue, job_retry


def wait_for(predicate, *, timeout: float = 30.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


def job_status(job: Job) -> str:
    job.refresh_from_db()
    return job.status


def test_job_runs_with_progress_and_log(live_worker, case):
    live_worker()
    job = job_enqueue(kind=JobKind.SELFTEST, case=case, params={"seconds": 1.0})
    wait_for(lambda: job_status(job) == JobStatus.SUCCEEDED)
    assert job.progress == 1.0 and job.result == {"steps": 10}
    assert "started on" in job.log and "finished" in job.log
    assert job.started_at and job.finished_at and job.attempts == 1


def test_failure_is_readable(live_worker, case):
    live_worker()
    job = job_enqueue(kind=JobKind.SELFTEST, case=case, params={"seconds": 0.2, "fail": "no tissue found"})
    wait_for(lambda: job_status(job) == JobStatus.FAILED)
    assert job.error == "no tissue found"


def test_cancel_running_job_and_retry(live_worker, case):
    live_worker()
    job = job_enqueue(kind=JobKind.SELFTEST, case=case, params={"seconds": 30})
    wait_for(lambda: job_status(job) == JobStatus.RUNNING and job.progress > 0)
    job_cancel(job=job)
    wait_for(lambda: job_status(job) == JobStatus.CANCELLED, timeout=10)
    with pytest.raises(JobStateError):
        job_cancel(job=job)
    again = job_retry(job=job)
    assert again.pk != job.pk and again.params == job.params and again.status == JobStatus.QUEUED
    job_cancel(job=again)  # queued: cancelled at once
    assert job_status(again) == JobStatus.CANCELLED


def test_killed_worker_job_is_retried_then_failed(live_worker, case, settings):
    """A worker killed mid-job: the job is retried once, then fails with a message; never 'running' forever."""
    worker = live_worker()
    job = job_enqueue(kind=JobKind.SELFTEST, case=case, params={"seconds": 60}, max_attempts=2)
    wait_for(lambda: job_status(job) == JobStatus.RUNNING)
    os.killpg(worker.pid, signal.SIGKILL)  # the worker and its children die at once
    worker.wait()
    second = live_worker()  # reaps after LADDER_JOB_HEARTBEAT_TIMEOUT and re-runs the job
    wait_for(lambda: job_status(job) == JobStatus.RUNNING and job.attempts == 2, timeout=settings.LADDER_JOB_HEARTBEAT_TIMEOUT + 30)
    assert "stopped responding" in job.log and "retrying" in job.log
    os.killpg(second.pid, signal.SIGKILL)
    second.wait()
    live_worker()
    wait_for(lambda: job_status(job) == JobStatus.FAILED, timeout=settings.LADDER_JOB_HEARTBEAT_TIMEOUT + 30)
    assert "stopped" in job.error and "no partial output" in job.error
