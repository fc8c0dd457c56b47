"""Remove what killed workers and servers leave behind (issue 15, defects 8 and 9).

Outputs are built under temporary names and renamed when complete, so a process killed with
SIGKILL leaves only temporary names: run folders `runs/slide-<n>/run-*.tmp-<uuid>/` (with
`.cells.parquet.parts-*` inside) or `run-*.tmp/`, conversion files `slides/converted/.<sha>.tiff.*`,
GeoJSON documents of annotation imports no job will read (`imports/`), and upload folders `slides/uploads/<uuid>/` that no slide row refers to. The worker sweeps at
start-up and then every SWEEP_EVERY_S; the Celery reaper task does too.

A temporary name is removed only when no job that could be writing it is running (a run folder:
no running job of its slide; a conversion file: no running conversion job) and nothing in it
changed for LADDER_JOB_HEARTBEAT_TIMEOUT seconds (a job claimed while the sweep runs, or a
conversion run by `manage.py import_slides`, is left alone).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path

from django.conf import settings

from analysis.models import Job, JobKind, JobStatus

logger = logging.getLogger(__name__)

SWEEP_EVERY_S = 60.0
RUN_TMP = re.compile(r"^run-[0-9a-f]+\.tmp(?:-[0-9a-f]+)?$")
SLIDE_DIR = re.compile(r"^slide-(\d+)$")
CONVERT_KIND = "convert_slide"  # JobKind.CONVERT_SLIDE where it exists


def _newest_mtime(path: Path) -> float:
    """The latest change in `path` or anything under it (a file being written keeps it fresh)."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for folder, dirs, files in os.walk(path):
            for name in dirs + files:
                try:
                    newest = max(newest, os.lstat(os.path.join(folder, name)).st_mtime)
                except OSError:
                    pass
    return newest


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return False
    except OSError:
        logger.warning("sweep: could not remove %s", path, exc_info=True)
        return False
    logger.info("sweep: removed %s (left by a stopped job or server)", path)
    return True


def _stale(path: Path, grace: float) -> bool:
    try:
        return time.time() - _newest_mtime(path) > grace
    except FileNotFoundError:
        return False


def sweep_orphans(*, grace_seconds: float | None = None) -> list[Path]:
    """Remove temporary outputs of jobs and uploads that are no longer running. -> what was removed."""
    from cases.models import Slide

    grace = settings.LADDER_JOB_HEARTBEAT_TIMEOUT if grace_seconds is None else grace_seconds
    running = Job.objects.filter(status=JobStatus.RUNNING)
    busy_slides = set(running.exclude(slide=None).values_list("slide_id", flat=True))
    converting = running.filter(kind=CONVERT_KIND).exists()
    removed: list[Path] = []

    runs = Path(settings.LADDER_RUNS_DIR)
    if runs.is_dir():
        for slide_dir in runs.iterdir():
            match = SLIDE_DIR.match(slide_dir.name)
            if not match or int(match[1]) in busy_slides or not slide_dir.is_dir():
                continue
            for entry in slide_dir.iterdir():
                if RUN_TMP.match(entry.name) and _stale(entry, grace) and _remove(entry):
                    removed.append(entry)

    converted = Path(settings.LADDER_UPLOAD_DIR) / "converted"
    if converted.is_dir() and not converting:
        for entry in converted.iterdir():
            if entry.name.startswith(".") and ".tif" in entry.name and _stale(entry, grace) and _remove(entry):
                removed.append(entry)

    imports = Path(settings.LADDER_DATA_DIR) / "imports"  # GeoJSON documents of annotation-import jobs
    if imports.is_dir():
        from analysis.models import ACTIVE_STATUSES

        wanted = {str((job.params or {}).get("file")) for job in Job.objects.filter(
            kind="import_annotations", status__in=ACTIVE_STATUSES).only("params")}
        for entry in imports.iterdir():
            if entry.name not in wanted and _stale(entry, grace) and _remove(entry):
                removed.append(entry)

    uploads = Path(settings.LADDER_UPLOAD_DIR) / "uploads"
    if uploads.is_dir():
        for folder in uploads.iterdir():
            if not folder.is_dir() or not _stale(folder, grace):
                continue
            if not Slide.objects.filter(source_path__startswith=f"{folder}{os.sep}").exists() and _remove(folder):
                removed.append(folder)
    return removed


def sweep_orphans_safely(**kwargs) -> list[Path]:
    """sweep_orphans that logs instead of raising (the worker must keep running)."""
    try:
        return sweep_orphans(**kwargs)
    except Exception:  # noqa: BLE001 - housekeeping: never stop the worker
        logger.exception("sweep of orphaned temporary outputs failed")
        return []
