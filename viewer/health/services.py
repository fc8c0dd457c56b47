"""Is this deployment able to work? One check per part an operator runs: database (and its
migrations), cache, channel layer, job queue and workers, the data folder, the slide roots.

Used by `python manage.py health` (container health checks: exit status 1 when a check fails)
and by the admins' `GET /api/health/`. Each check is real: it writes and reads back.
"""
from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings

OK, WARN, FAIL = "ok", "warn", "fail"
# Below this much free space in the data folder, runs and uploads may fail: warn before they do.
LOW_DISK_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    ms: float


def _timed(name: str, probe) -> Check:
    started = time.perf_counter()
    try:
        status, detail = probe()
    except Exception as exc:  # a failing part is the answer, not an error of the check
        status, detail = FAIL, f"{type(exc).__name__}: {exc}".strip()[:300]
    return Check(name=name, status=status, detail=detail, ms=round((time.perf_counter() - started) * 1000, 1))


def _database() -> tuple[str, str]:
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.migrations.executor import MigrationExecutor

    connection = connections[DEFAULT_DB_ALIAS]
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    engine = connection.vendor
    pool = getattr(connection, "pool", None)
    pooled = f", pool {pool.get_stats().get('pool_size', 0)}/{pool.max_size}" if pool is not None else ""
    if pending:
        return FAIL, f"{engine}: {len(pending)} migration(s) not applied: run `python manage.py migrate`"
    return OK, f"{engine}{pooled}, migrations applied"


def _cache() -> tuple[str, str]:
    from django.core.cache import caches

    key, value = f"health:{uuid.uuid4().hex}", uuid.uuid4().hex
    cache = caches["default"]
    cache.set(key, value, timeout=30)
    read = cache.get(key)
    cache.delete(key)
    if read != value:
        return FAIL, "a value written to the cache did not read back"
    return OK, type(cache).__name__


def _channel_layer() -> tuple[str, str]:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return FAIL, "no channel layer configured: websockets (jobs, tumour board) cannot work"

    async def round_trip():
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "health.ping"})
        return await layer.receive(channel)

    message = async_to_sync(round_trip)()
    if message.get("type") != "health.ping":
        return FAIL, "a message sent on the channel layer did not come back"
    detail = type(layer).__name__
    if detail == "InMemoryChannelLayer":
        detail += " (one process: websockets only reach clients of this process)"
    return OK, detail


def _jobs() -> tuple[str, str]:
    from django.utils import timezone

    from analysis.models import Job, JobStatus

    queued = Job.objects.filter(status=JobStatus.QUEUED)
    oldest = queued.order_by("created_at").values_list("created_at", flat=True).first()
    stale_after = timedelta(seconds=settings.LADDER_JOB_HEARTBEAT_TIMEOUT)
    stale = Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=timezone.now() - stale_after).count()
    waiting = f"{queued.count()} queued" + (
        f", oldest {int((timezone.now() - oldest).total_seconds())} s" if oldest else "")
    parts = [f"backend {settings.LADDER_JOB_BACKEND}", waiting]
    status = OK
    if stale:
        status = WARN
        parts.append(f"{stale} running job(s) without a heartbeat for {stale_after.seconds} s (the reaper will fail them)")
    if settings.LADDER_JOB_BACKEND == "celery":
        from celery import current_app as app  # the project's app (config/celery.py, loaded with the settings)

        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
        replies = app.control.ping(timeout=1.5) or []
        parts.append(f"broker reachable, {len(replies)} worker(s) answered")
        if not replies:
            status = WARN
            parts.append("no Celery worker: jobs wait until one starts")
    return status, "; ".join(parts)


def _data_dir() -> tuple[str, str]:
    root = settings.LADDER_DATA_DIR
    if root.exists() and not root.is_dir():
        return FAIL, f"{root} is not a folder (LADDER_DATA_DIR)"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".health-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        return FAIL, f"{root}: cannot write ({exc.strerror or exc})"
    free = shutil.disk_usage(root).free
    detail = f"{root}: writable, {free / 1024**3:.1f} GB free"
    return (WARN, detail + " (low: runs and uploads may fail)") if free < LOW_DISK_BYTES else (OK, detail)


def _slide_roots() -> tuple[str, str]:
    # The upload and demo folders are the product's own, made when first needed: only the
    # operator's LADDER_SLIDE_ROOTS are checked.
    own = {Path(settings.LADDER_UPLOAD_DIR).resolve(), Path(settings.LADDER_DEMO_DIR).resolve()}
    roots = [root for root in settings.LADDER_SLIDE_ROOTS if Path(root).resolve() not in own]
    if not roots:
        return OK, "none configured (import by path is off; uploads still work)"
    unreadable = [str(root) for root in roots if not (root.is_dir() and os.access(root, os.R_OK | os.X_OK))]
    if unreadable:
        return WARN, "not readable: " + ", ".join(unreadable)
    return OK, f"{len(roots)} readable"


CHECKS = {
    "database": _database,
    "cache": _cache,
    "channels": _channel_layer,
    "jobs": _jobs,
    "data_dir": _data_dir,
    "slide_roots": _slide_roots,
}


def health_report(only: list[str] | None = None) -> list[Check]:
    """Run the checks (all, or those named) in order; the jobs check needs the database."""
    unknown = set(only or []) - set(CHECKS)
    if unknown:
        raise ValueError(f"unknown check(s): {', '.join(sorted(unknown))}; known: {', '.join(CHECKS)}")
    names = [name for name in CHECKS if not only or name in only]
    return [_timed(name, CHECKS[name]) for name in names]


def health_overall(checks: list[Check]) -> str:
    statuses = {check.status for check in checks}
    return FAIL if FAIL in statuses else WARN if WARN in statuses else OK


def health_as_dict(checks: list[Check]) -> dict:
    return {"status": health_overall(checks), "checks": [asdict(check) for check in checks]}
