"""Conversion of plain images (JPEG, PNG, flat TIFF) into tiled pyramidal TIFFs, as a job.

Issue 15, defect 4: a 51 KB 16,000² 1-bit PNG decodes to ~0.76 GB and took 8.7 s inside the
upload request; three at once took the server from 1.96 to 4.89 GB. The upload request now only
stores the file and queues a `convert_slide` job; the conversion runs in a worker, at most
LADDER_MAX_CONVERSIONS at a time per machine (slots are flocks on files in the data folder, so a
killed worker frees its slot), and the pixel cap of analysis.core.slides.convert stays.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Callable, Iterator

from django.conf import settings
from django.db import transaction

from cases.models import MppSource, Slide, SlideStatus

logger = logging.getLogger(__name__)


def converted_path(checksum: str) -> Path:
    """One converted file per content, shared by every slide with these bytes."""
    return Path(settings.LADDER_UPLOAD_DIR) / "converted" / f"{checksum}.tiff"


@contextlib.contextmanager
def conversion_slot(*, waiting: Callable[[], None] | None = None, poll_seconds: float = 0.5) -> Iterator[int]:
    """Hold one of LADDER_MAX_CONVERSIONS slots (per data folder) while converting; `waiting` is
    called while all are taken (it may raise, e.g. when the job is cancelled)."""
    folder = Path(settings.LADDER_DATA_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    slots = max(1, int(settings.LADDER_MAX_CONVERSIONS))
    while True:
        for index in range(slots):
            handle = open(folder / f"conversion-slot-{index}.lock", "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield index
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        if waiting:
            waiting()
        time.sleep(poll_seconds)


def convert_plain_image(source: Path, checksum: str) -> Path:
    """Convert once (the target is shared by content); partial output never stays."""
    from analysis.core.slides.convert import convert_to_pyramidal_tiff

    target = converted_path(checksum)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        convert_to_pyramidal_tiff(src=source, dst=target)
    return target


def slide_fill_metadata(slide: Slide, served: Path, metadata, *, converted: bool) -> None:
    """Record what the served file says about itself (sizes, pyramid, resolution)."""
    slide.file_path = str(served)
    slide.vendor = metadata.vendor if not converted else f"converted {Path(slide.source_path).suffix.lower().lstrip('.')}"
    slide.width, slide.height = metadata.width, metadata.height
    slide.level_count = metadata.level_count
    slide.level_dimensions = [list(d) for d in metadata.level_dimensions]
    slide.level_downsamples = metadata.level_downsamples
    slide.mpp_x = metadata.mpp_x
    slide.mpp_y = metadata.mpp_y or metadata.mpp_x
    slide.mpp_source = MppSource.METADATA if metadata.mpp_x else MppSource.UNKNOWN
    slide.objective_power = metadata.objective_power
    slide.converted = converted
    slide.properties = metadata.properties


def slide_convert(*, slide: Slide, waiting: Callable[[], None] | None = None,
                  log: Callable[[str], None] = logger.info) -> Slide:
    """Convert a CONVERTING slide's source and make it READY; on failure it is FAILED with the
    reason (raised as ValueError/OSError for the job's message) and no converted file stays."""
    from analysis.core.slides.reader import SlideError, read_slide_metadata

    source = Path(slide.source_path)
    try:
        with conversion_slot(waiting=waiting):
            log(f"converting {slide.name} to a tiled pyramidal TIFF")
            served = convert_plain_image(source, slide.checksum)
        metadata = read_slide_metadata(served)
    except BaseException as exc:  # failed, cancelled or stopped: the slide says so, nothing half-made stays
        if not Slide.objects.filter(checksum=slide.checksum, status=SlideStatus.READY).exists():
            converted_path(slide.checksum).unlink(missing_ok=True)
        reason = str(exc) if isinstance(exc, (SlideError, ValueError, OSError)) else "the conversion was stopped"
        Slide.objects.filter(pk=slide.pk).update(status=SlideStatus.FAILED, error=reason[:2000])
        raise
    with transaction.atomic():
        slide.refresh_from_db()
        slide_fill_metadata(slide, served, metadata, converted=True)
        slide.status, slide.error = SlideStatus.READY, ""
        slide.save()
    log(f"ready: {slide.width} × {slide.height} px, {slide.level_count} levels")
    return slide


