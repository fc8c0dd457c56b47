"""Claim and run jobs; progress, logs, cancellation and the dead-worker reaper."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from analysis.case_status import case_status_sync_after
from analysis.jobs.registry import HANDLERS
from analysis.models import Job, JobKind, JobStatus

logger = logging.getLogger(__name__)

MAX_LOG_CHARS = 200_000


class JobCancelled(Exception):
    """Raised inside a handler when the user asked to cancel."""


class JobFailure(Exception):
    """A handler's readable failure: the message is shown to the user as it is."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


@dataclass
class JobContext:
    """What a handler uses to talk back: progress, log lines, cancellation."""

    job_id: int
    on_progress: object = None  # optional callable(fraction, message), e.g. a terminal progress bar
    started: float = field(default_factory=time.monotonic)
    _last_write: float = 0.0
    _log_buffer: list[str] = field(default_factory=list)

    def log(self, line: str) -> None:
        stamp = timezone.now().strftime("%H:%M:%S")
        self._log_buffer.append(f"{stamp} {line}")
        logger.info("job %s: %s", self.job_id, line)
        self._flush(force=False)

    def progress(self, done: float, total: float, message: str = "", *, raise_on_cancel: bool = True) -> None:
        """Report progress (written at most ~2x/s); raises JobCancelled if the user cancelled."""
        fraction = 0.0 if total <= 0 else max(0.0, min(1.0, done / total))
        if self.on_progress:
            self.on_progress(fraction, message)
        now = time.monotonic()
        if now - self._last_write < 0.5 and fraction < 1.0:
            return
        elapsed = now - self.started
        eta = elapsed * (1 - fraction) / fraction if fraction > 0.01 else None
        self._flush(force=True, progress=fraction, message=message[:255], eta_seconds=eta)
        if raise_on_cancel:
            self.check_cancel()

    def cancel_requested(self) -> bool:
        return Job.objects.filter(pk=self.job_id, cancel_requested=True).exists()

    def check_cancel(self) -> None:
        if self.cancel_requested():
            raise JobCancelled()

    def _flush(self, *, force: bool, **fields) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < 0.5:
            return
        self._last_write = now
        updates = {"heartbeat_at": timezone.now(), **fields}
        if self._log_buffer:
            text = "\n".join(self._log_buffer) + "\n"
            self._log_buffer.clear()
            job = Job.objects.only("log").get(pk=self.job_id)
            updates["log"] = (job.log + text)[-MAX_LOG_CHARS:]
        Job.objects.filter(pk=self.job_id).update(**updates)

    def flush(self) -> None:
        self._flush(force=True)


def job_claim(*, job_id: int | None = None, worker: str) -> Job | None:
    """Atomically move one queued job (the given one, or the oldest) to running; None if none."""
    with transaction.atomic():
        queued = Job.objects.filter(status=JobStatus.QUEUED)
        if job_id is not None:
            queued = queued.filter(pk=job_id)
        candidate = queued.order_by("created_at").values_list("pk", flat=True).first()
        if candidate is None:
            return None
        claimed = Job.objects.filter(pk=candidate, status=JobStatus.QUEUED).update(
            status=JobStatus.RUNNING,
            worker=worker,
            attempts=F("attempts") + 1,
            started_at=timezone.now(),
            heartbeat_at=timezone.now(),
            progress=0.0,
            eta_seconds=None,
            error="",
        )
    return Job.objects.get(pk=candidate) if claimed else None


def _heartbeat_loop(job_id: int, stop: threading.Event, interval: float) -> None:
    """Keep the heartbeat fresh while a handler is busy in one long step."""
    try:
        while not stop.wait(interval):
            Job.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(heartbeat_at=timezone.now())
    finally:
        close_old_connections()


def job_execute(job: Job, *, on_progress=None) -> Job:
    """Run a claimed job's handler and record how it ended."""
    handler = HANDLERS.get(job.kind)
    context = JobContext(job_id=job.pk, on_progress=on_progress)
    stop = threading.Event()
    interval = max(1.0, settings.LADDER_JOB_HEARTBEAT_TIMEOUT / 4)
    beat = threading.Thread(target=_heartbeat_loop, args=(job.pk, stop, interval), daemon=True)
    beat.start()
    status, error, result = JobStatus.SUCCEEDED, "", {}
    try:
        if handler is None:
            raise JobFailure(f"no handler for job kind '{job.kind}'")
        context.log(f"started on {job.worker} (attempt {job.attempts} of {job.max_attempts})")
        result = handler(job, context) or {}
        context.log("finished")
    except JobCancelled:
        status, error = JobStatus.CANCELLED, "Cancelled by the user."
        context.log("cancelled")
    except (JobFailure, ValueError, OSError) as exc:
        # ValueError covers our SlideError / input errors: their messages are meant for users.
        status, error = JobStatus.FAILED, str(exc) or exc.__class__.__name__
        context.log(f"failed: {error}")
    except Exception as exc:  # a bug: keep the traceback in the log, a short message for the user
        status, error = JobStatus.FAILED, f"Internal error ({exc.__class__.__name__}: {exc})"
        context.log(traceback.format_exc())
    finally:
        stop.set()
        beat.join(timeout=5)
    context.flush()
    Job.objects.filter(pk=job.pk).update(
        status=status,
        error=error,
        result=result,
        finished_at=timezone.now(),
        progress=1.0 if status == JobStatus.SUCCEEDED else F("progress"),
        # a finished job says how it ended, not its last progress line ("tile 4/6: 553 cells")
        message=_final_message(status, result),
        eta_seconds=None,
        heartbeat_at=timezone.now(),
    )
    job.refresh_from_db()
    case_status_sync_after(job)  # analysed and scored: the case is ready for review
    return job


def _final_message(status: str, result) -> str:
    if status == JobStatus.SUCCEEDED:
        text = result.get("message") if isinstance(result, dict) else ""
        return str(text or "Finished")[:255]
    if status == JobStatus.CANCELLED:
        return "Cancelled"
    return "Failed"


def job_run(job_id: int) -> Job | None:
    """Claim and run one specific job (the Celery entry point). Returns None if not claimable."""
    job = job_claim(job_id=job_id, worker=worker_name())
    return job_execute(job) if job else None


def jobs_reap_stale() -> list[int]:
    """Running jobs whose worker stopped reporting: retry if attempts remain, else fail them.

    A killed worker never leaves a job 'running' forever. Outputs are written atomically by
    the handlers, so a retried job starts from nothing and a failed one leaves nothing.
    """
    deadline = timezone.now() - timedelta(seconds=settings.LADDER_JOB_HEARTBEAT_TIMEOUT)
    stale = Job.objects.filter(status=JobStatus.RUNNING).filter(Q(heartbeat_at__lt=deadline) | Q(heartbeat_at=None))
    reaped = []
    for job in stale:
        note = f"{timezone.now():%H:%M:%S} worker {job.worker} stopped responding\n"
        if job.cancel_requested:
            changed = Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
                status=JobStatus.CANCELLED, error="Cancelled by the user.", finished_at=timezone.now(),
                log=job.log + note)
        elif job.attempts < job.max_attempts:
            changed = Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
                status=JobStatus.QUEUED, worker="", log=job.log + note + "  retrying\n")
            if changed:
                transaction.on_commit(lambda pk=job.pk: dispatch(pk))
        else:
            changed = Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
                status=JobStatus.FAILED,
                error="The worker running this job stopped (crashed or was killed) and no attempts are left; "
                      "no partial output was kept. Retry to run it again.",
                finished_at=timezone.now(), log=job.log + note)
        if changed:
            reaped.append(job.pk)
            case_status_sync_after(job)  # a dead analysis leaves the case analysing no longer
    return reaped


RUN_JOB_TASK = "analysis.run_job"  # the Celery task of analysis/tasks.py, sent by name (no import cycle)


def dispatch(job_id: int) -> None:
    """Hand a queued job to the configured executor (cell analyses may go to a GPU queue)."""
    if settings.LADDER_JOB_BACKEND == "celery":
        from celery import current_app

        kind = Job.objects.filter(pk=job_id).values_list("kind", flat=True).first()
        queue = settings.LADDER_ANALYSIS_QUEUE if kind == JobKind.ANALYZE_SLIDE else settings.CELERY_TASK_DEFAULT_QUEUE
        current_app.send_task(RUN_JOB_TASK, args=[job_id], queue=queue)
    # embedded: the worker polls the table; nothing to send.
