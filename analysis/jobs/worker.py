"""The embedded worker: polls the job table, runs jobs one at a time, reaps dead ones."""
from __future__ import annotations

import logging
import os
import signal
import threading
import time

from django.db import close_old_connections

from analysis.jobs.runner import job_claim, job_execute, jobs_reap_stale, worker_name
from analysis.jobs.sweep import SWEEP_EVERY_S, sweep_orphans_safely

logger = logging.getLogger(__name__)


def embedded_worker_lock(*, wait_message=None, poll_seconds: float = 1.0):
    """Hold the data folder's embedded-worker lock (an flock, released by the kernel when the
    process dies, however it dies); wait while another process holds it. -> the open lock file,
    to be kept for the life of the process. A restarted `serve` thus never runs a second worker
    beside one that outlived the previous server."""
    import fcntl

    from django.conf import settings

    path = os.path.join(settings.LADDER_DATA_DIR, "embedded-worker.lock")
    handle = open(path, "a+")
    told = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if not told and wait_message:
                wait_message()
            told = True
            time.sleep(poll_seconds)
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def worker_loop(*, poll_seconds: float = 0.5, stop: threading.Event | None = None, once: bool = False) -> int:
    """Run queued jobs until `stop` is set (or, with once=True, until the queue is empty)."""
    stop = stop or threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        return _worker_loop(stop=stop, poll_seconds=poll_seconds, once=once)
    finally:
        # Put the handlers back: a process that ran the loop in-process (a command, a test) and
        # later forks must not hand children a SIGTERM that only sets an event.
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _worker_loop(*, stop: threading.Event, poll_seconds: float, once: bool) -> int:
    name = worker_name()
    ran = 0
    last_reap = 0.0
    last_sweep = -SWEEP_EVERY_S  # at start-up first: what a killed worker or server left
    logger.info("embedded worker %s started", name)
    while not stop.is_set():
        try:
            if time.monotonic() - last_reap > 5:
                jobs_reap_stale()
                last_reap = time.monotonic()
            if time.monotonic() - last_sweep > SWEEP_EVERY_S:
                sweep_orphans_safely()
                last_sweep = time.monotonic()
            job = job_claim(worker=name)
            if job is None:
                if once:
                    break
                stop.wait(poll_seconds)
                continue
            job_execute(job)
            ran += 1
        except Exception:  # keep the worker alive through database hiccups
            logger.exception("worker loop error")
            stop.wait(2)
        finally:
            close_old_connections()
    return ran
