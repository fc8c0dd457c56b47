"""Slide import (by path from configured roots, or upload), mpp edits, and alignment."""
from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

from django.conf import settings
from django.utils import timezone
from django.db import transaction

from analysis.conversion import convert_plain_image, converted_path
from analysis.registration import alignment_default_scale
from analysis.slide_ready import (
    registration_after_resolution,
    slide_auto_analyse,
    slide_ready,
)
from analysis.core.slides.reader import SlideError, UnsupportedSlideError, file_checksum, read_slide_metadata
from analysis.models import JobKind
from analysis.services import job_enqueue
from cases.models import AlignmentSource, Case, MppSource, Slide, SlideAlignment, SlideStatus, Stain
from cases.audit import audit_record

logger = logging.getLogger(__name__)

PLAIN_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff"}


class _Deferred(Exception):
    """A plain image whose conversion goes to a job."""


class SlideImportError(ValueError):
    """Import refused or failed; the message is for the user. Nothing was created."""


class SlideAlreadyThere(SlideImportError):
    """The same file (by SHA-256) is already a slide of this case: nothing new to import."""

    def __init__(self, message: str, *, slide: Slide):
        super().__init__(message)
        self.slide = slide


def slide_roots() -> list[Path]:
    return [Path(root) for root in settings.LADDER_SLIDE_ROOTS]


def _inside_roots(path: Path) -> bool:
    return any(path.is_relative_to(root) for root in slide_roots())


def slide_path_resolve(path: str | os.PathLike) -> Path:
    """Resolve `path` (symlinks and '..' included) and require it inside a configured root.

    The root is checked before anything about the file is looked at, and again after symlinks are
    followed, so every path outside the roots gets the same answer whether it exists, is a folder
    or is unreadable (no file-existence oracle)."""
    raw = Path(path).expanduser()
    outside = SlideImportError(
        f"{raw}: outside the configured slide folders (LADDER_SLIDE_ROOTS); "
        "ask an admin to add its folder, or upload the file"
    )
    lexical = Path(os.path.normpath(os.path.abspath(raw)))  # no filesystem access: '..' removed by text
    if not _inside_roots(lexical):
        raise outside
    try:
        resolved = raw.resolve(strict=False)  # symlinks followed, existence not required
    except (OSError, RuntimeError):
        raise outside from None
    if not _inside_roots(resolved):
        raise outside
    if not resolved.exists():
        raise SlideImportError(f"{raw}: no such file")
    if not resolved.is_file():
        raise SlideImportError(f"{raw}: not a file")
    return resolved


def _converted_path(checksum: str) -> Path:
    return converted_path(checksum)


def _convert_plain_image(source: Path, checksum: str) -> Path:
    return convert_plain_image(source, checksum)


def _slide_queue_conversion(*, case, stain, source: Path, checksum: str, user, name) -> Slide:
    """The slide row (status converting) and its conversion job; the request returns at once."""
    from analysis.core.slides.convert import sniff_image_format

    if sniff_image_format(path=source) is None:
        raise SlideImportError(f"{source.name}: not a JPEG, PNG or TIFF image (damaged or truncated?)")
    with transaction.atomic():
        slide = Slide.objects.create(
            case=case, stain=stain, name=name or source.name, source_path=str(source),
            file_path=str(converted_path(checksum)), checksum=checksum, converted=True,
            status=SlideStatus.CONVERTING,
            imported_by=user if getattr(user, "is_authenticated", False) else None)
        audit_record(user=user, action="slide.import", case=case, slide=slide,
                     detail={"source": str(source), "checksum": checksum, "converted": "queued"})
        job_enqueue(kind=JobKind.CONVERT_SLIDE, slide=slide, user=user, max_attempts=1)
    return slide


def slide_import(*, case: Case, stain: str, path: str | os.PathLike, user=None, name: str | None = None,
                 defer_conversion: bool = False, automatic: bool = True) -> Slide:
    """Import one slide file into a case: checks, metadata, conversion of plain images.

    Either the slide is created ready to view, or SlideImportError is raised and nothing
    is left behind (no row, no converted file). With `defer_conversion` (web requests), a plain
    image not converted before is created with status "converting" and a conversion job
    (analysis.conversion): the request never decodes the image. `automatic=False` keeps the slide
    out of the automatic analysis and registration (the demo queues its own analyses, with the
    phantom's segmenter, and sets the phantom's true alignment).
    """
    if stain not in Stain.values:
        raise SlideImportError(f"unknown stain '{stain}': use one of {', '.join(Stain.values)}")
    source = slide_path_resolve(path)
    checksum = file_checksum(source)
    duplicate = case.slides.filter(checksum=checksum).first()
    if duplicate:
        raise SlideAlreadyThere(
            f"{source.name} is already there (already imported): case {case.case_id}, "
            f"{duplicate.get_stain_display()} slide '{duplicate.name}' (#{duplicate.pk}), added "
            f"{timezone.localtime(duplicate.created_at):%Y-%m-%d %H:%M}; nothing new was imported.",
            slide=duplicate)
    converted = deferred = False
    try:
        served = source
        try:
            metadata = read_slide_metadata(source)
        except UnsupportedSlideError:
            if source.suffix.lower() not in PLAIN_IMAGE_SUFFIXES:
                raise
            if defer_conversion and not _converted_path(checksum).exists():
                deferred = True
                raise _Deferred()
            served = _convert_plain_image(source, checksum)
            converted = True
            metadata = read_slide_metadata(served)
    except _Deferred:
        pass
    except (SlideError, ValueError, OSError) as exc:
        if converted or _converted_path(checksum).exists():
            _converted_path(checksum).unlink(missing_ok=True)
        raise SlideImportError(str(exc)) from exc
    if deferred:
        return _slide_queue_conversion(case=case, stain=stain, source=source, checksum=checksum, user=user,
                                       name=name)
    # Slow work (checksum, conversion) is done; the database writes are short and all-or-nothing.
    with transaction.atomic():
        return _slide_create(case=case, stain=stain, source=source, served=served, checksum=checksum,
                             metadata=metadata, converted=converted, user=user, name=name, automatic=automatic)


def _slide_create(*, case, stain, source, served, checksum, metadata, converted, user, name, automatic) -> Slide:
    slide = Slide.objects.create(
        case=case,
        stain=stain,
        name=name or source.name,
        source_path=str(source),
        file_path=str(served),
        checksum=checksum,
        vendor=metadata.vendor if not converted else f"converted {source.suffix.lower().lstrip('.')}",
        width=metadata.width,
        height=metadata.height,
        level_count=metadata.level_count,
        level_dimensions=[list(d) for d in metadata.level_dimensions],
        level_downsamples=metadata.level_downsamples,
        mpp_x=metadata.mpp_x,
        mpp_y=metadata.mpp_y or metadata.mpp_x,
        mpp_source=MppSource.METADATA if metadata.mpp_x else MppSource.UNKNOWN,
        objective_power=metadata.objective_power,
        converted=converted,
        status=SlideStatus.READY,
        properties=metadata.properties,
        imported_by=user if getattr(user, "is_authenticated", False) else None,
    )
    audit_record(user=user, action="slide.import", case=case, slide=slide,
                 detail={"source": str(source), "checksum": checksum, "converted": converted})
    slide_ready(slide=slide, user=user, automatic=automatic)
    return slide


def _upload_names(original: str) -> tuple[str, str]:
    """(name kept as data, short safe file name). The file on disk is `slide<suffix>`: a client's
    name (200 multi-byte characters gave ENAMETOOLONG, a 500) never becomes a path; the suffix
    (ASCII letters and digits, at most 10) is kept because formats are told apart by it."""
    base = Path(str(original).replace("\\", "/")).name
    kept = "".join(ch for ch in base if ch.isprintable())[:255] or "upload"
    suffix = Path(kept).suffix.lower()
    if not (2 <= len(suffix) <= 11 and suffix[1:].isascii() and suffix[1:].isalnum()):
        suffix = ""
    return kept, f"slide{suffix}"


def slide_upload(*, case: Case, stain: str, uploaded_file, user=None, defer_conversion: bool = True) -> Slide:
    """Store an uploaded file under the upload folder (a fresh folder, a short safe name), then
    import it like a path. On any failure the folder is removed: nothing is left behind."""
    limit = settings.LADDER_MAX_UPLOAD_MB * 1024 * 1024
    original, short = _upload_names(uploaded_file.name or "")
    if uploaded_file.size > limit:
        raise SlideImportError(f"{original}: larger than the {settings.LADDER_MAX_UPLOAD_MB} MB upload limit")
    folder = settings.LADDER_UPLOAD_DIR / "uploads" / uuid.uuid4().hex
    target = folder / short
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as handle:
            for chunk in uploaded_file.chunks():
                handle.write(chunk)
        return slide_import(case=case, stain=stain, path=target, user=user, name=original,
                            defer_conversion=defer_conversion)
    except SlideImportError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        message = str(exc).replace(str(target), original).replace(short, original)
        raise SlideImportError(message) from None
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        logger.exception("storing upload %r failed", original)
        raise SlideImportError(f"{original}: the upload could not be stored ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def slide_set_mpp(*, slide: Slide, mpp: float, user=None) -> Slide:
    """Record a user-supplied resolution for a slide whose file has none (or a wrong one)."""
    if not (0.01 <= mpp <= 100):
        raise SlideImportError(f"{mpp} µm/px is not a plausible resolution (0.01 to 100)")
    before = slide.mpp_x
    slide.mpp_x = slide.mpp_y = float(mpp)
    slide.mpp_source = MppSource.USER
    slide.save(update_fields=["mpp_x", "mpp_y", "mpp_source", "updated_at"])
    audit_record(user=user, action="slide.set_mpp", case=slide.case, slide=slide,
                 detail={"before": before, "after": slide.mpp_x})
    slide_auto_analyse(slide=slide, user=user)  # its resolution was what they waited for
    registration_after_resolution(case=slide.case, user=user)
    return slide


def alignment_update(*, alignment: SlideAlignment, offset_x: float, offset_y: float, rotation: float,
                     scale: float, user=None, source: str = AlignmentSource.MANUAL) -> SlideAlignment:
    """Set the similarity by hand (Align mode). The automatic non-rigid field no longer applies to it
    (it stays stored for 'reset to automatic')."""
    if not (1e-3 <= scale <= 1e3):
        raise ValueError("scale must be between 0.001 and 1000")
    before = {k: getattr(alignment, k) for k in ("offset_x", "offset_y", "rotation", "scale")}
    alignment.offset_x, alignment.offset_y = float(offset_x), float(offset_y)
    alignment.rotation = float(rotation) % 360.0
    alignment.scale = float(scale)
    alignment.source = source
    alignment.updated_by = user if getattr(user, "is_authenticated", False) else None
    alignment.save()
    audit_record(user=user, action="alignment.update", case=alignment.case, detail={"before": before, "after": {
        "offset_x": alignment.offset_x, "offset_y": alignment.offset_y, "rotation": alignment.rotation,
        "scale": alignment.scale}})
    return alignment


def alignment_reset(*, alignment: SlideAlignment, user=None) -> SlideAlignment:
    return alignment_update(alignment=alignment, offset_x=0, offset_y=0, rotation=0,
                            scale=alignment_default_scale(alignment.fixed, alignment.moving), user=user,
                            source=AlignmentSource.DEFAULT)
