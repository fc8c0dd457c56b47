"""Automatic registration of a case's slide pair as a job, and the stored result (Django side).

The science is `analysis.core.slides.registration` (Django-free). This module queues the job,
runs it (through `analysis.handlers`), writes the similarity into the case's `SlideAlignment`
and the non-rigid displacement field into a JSON file under LADDER_DATA_DIR/registration,
referenced from the alignment row with its SHA-256. A failed registration writes nothing: the
old alignment stays.

Rules a pathologist relies on:
- The automatic result is kept on the row (`automatic`) even when someone adjusts by hand, so
  "reset to automatic" restores it (similarity and field).
- The field is used only while the alignment's source is automatic: a hand-adjusted similarity
  no longer matches the field, so the viewer then follows the similarity alone.
- A job does not overwrite an alignment that was changed after it was queued (someone set it by
  hand meanwhile); it stores its result for "reset to automatic" and says so in its log.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from analysis.core.files import atomic_write_bytes
from analysis.jobs.runner import JobFailure
from analysis.models import ACTIVE_STATUSES, Job, JobKind
from analysis.services import JobStateError, job_enqueue
from cases.audit import audit_record
from cases.models import AlignmentSource, Case, Slide, SlideAlignment, SlideStatus, Stain

ALIGNMENT_FIELDS = ("offset_x", "offset_y", "rotation", "scale")


class FieldIntegrityError(ValueError):
    """The stored field file is missing or does not match its checksum."""


def registration_dir() -> Path:
    return settings.LADDER_DATA_DIR / "registration"


def case_pair(case: Case) -> tuple[Slide | None, Slide | None]:
    return case.slide_for(Stain.HE), case.slide_for(Stain.IHC)


def _snapshot(alignment: SlideAlignment) -> dict:
    return {**{k: float(getattr(alignment, k)) for k in ALIGNMENT_FIELDS}, "source": alignment.source}


def alignment_default_scale(fixed: Slide, moving: Slide) -> float:
    if fixed.mpp_x and moving.mpp_x:
        return fixed.mpp_x / moving.mpp_x
    return 1.0


def alignment_ensure_default(*, case: Case) -> SlideAlignment | None:
    """Make sure the case's H&E/IHC pair has an alignment row (identity at physical scale) once
    both slides are ready (a slide still converting has no size or resolution yet)."""
    fixed, moving = case_pair(case)
    if fixed is None or moving is None or fixed.status != SlideStatus.READY or moving.status != SlideStatus.READY:
        return None
    alignment, _ = SlideAlignment.objects.get_or_create(
        case=case, fixed=fixed, moving=moving, defaults={"scale": alignment_default_scale(fixed, moving)}
    )
    return alignment


def registration_enqueue(*, case: Case, user=None, reason: str = "requested") -> Job:
    """Queue the automatic registration of the case's H&E / IHC pair (or return the one queued/running).

    Raises ValueError (JobStateError) with a readable message when there is no pair to register.
    """
    fixed, moving = case_pair(case)
    if fixed is None or moving is None:
        raise JobStateError("the case needs one H&E and one HER2 IHC slide before they can be registered")
    for slide in (fixed, moving):
        if slide.status != SlideStatus.READY:
            raise JobStateError(f"{slide.name} is {slide.status}; only ready slides can be registered")
    running = Job.objects.filter(case=case, kind=JobKind.REGISTER_PAIR, status__in=ACTIVE_STATUSES).first()
    if running is not None:
        return running
    alignment = alignment_ensure_default(case=case)
    params = {"alignment": alignment.pk, "fixed": fixed.pk, "moving": moving.pk, "reason": reason,
              "alignment_when_queued": _snapshot(alignment)}
    return job_enqueue(kind=JobKind.REGISTER_PAIR, case=case, params=params, user=user, max_attempts=1)


def slide_source(slide: Slide):
    """The slide as `register_slides` reads it: exact scaled regions from the pyramid."""
    import cv2

    from analysis.core.slides.reader import SlideReader
    from analysis.core.slides.registration import SlideSource

    reader = SlideReader(Path(slide.file_path))
    width, height = reader.dimensions

    def read(*, x, y, width, height, out_width, out_height):
        # The pyramid level at or finer than the request, the integer box around it, then the exact
        # affine resampling (read_scaled rounds the box, which shifts the image by up to a pixel).
        sx, sy = width / out_width, height / out_height
        level = reader.best_level_for_downsample(max(min(sx, sy), 1.0))
        ds = reader.level_downsamples[level]
        lx0, ly0 = math.floor(x / ds) - 2, math.floor(y / ds) - 2
        lx1, ly1 = math.ceil((x + width) / ds) + 2, math.ceil((y + height) / ds) + 2
        region = reader.read_region(x=int(round(lx0 * ds)), y=int(round(ly0 * ds)), width=lx1 - lx0,
                                    height=ly1 - ly0, level=level)
        ax, ay = sx / ds, sy / ds
        if ax > 1.5 or ay > 1.5:  # anti-alias the remaining reduction
            region = cv2.GaussianBlur(region, (0, 0), sigmaX=max(0.5 * math.sqrt(max(ax * ax - 1, 0)), 0.01),
                                      sigmaY=max(0.5 * math.sqrt(max(ay * ay - 1, 0)), 0.01))
        bx, by = (0.5 * sx + x) / ds - 0.5 - lx0, (0.5 * sy + y) / ds - 0.5 - ly0
        matrix = np.array([[ax, 0, bx], [0, ay, by]], np.float64)
        return cv2.warpAffine(np.ascontiguousarray(region), matrix, (out_width, out_height),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=(255, 255, 255))

    return SlideSource(read=read, width=int(width), height=int(height), mpp=slide.mpp_x, name=slide.name)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def registration_run(job: Job, context) -> dict:
    """The job: register, then store the result (see the module docstring). Failures raise JobFailure."""
    from analysis.core.slides.reader import SlideError
    from analysis.core.slides.registration import RegistrationError, register_slides

    params = job.params or {}
    alignment = SlideAlignment.objects.filter(pk=params.get("alignment")).select_related("fixed", "moving").first()
    if alignment is None:
        raise JobFailure("the slide pair of this job no longer exists (a slide was removed)")
    fixed, moving = alignment.fixed, alignment.moving
    context.log(f"registering {moving.name} (IHC, moving) onto {fixed.name} (H&E, fixed); the current alignment "
                "stays until this succeeds")
    stage_names = {"tissue": "tissue masks on thumbnails", "similarity": "similarity (coarse search)",
                   "refinement": "similarity refined", "done": "non-rigid field"}
    clock = {"t": time.monotonic()}

    def progress(stage: str, fraction: float) -> None:
        now = time.monotonic()
        context.log(f"stage {stage_names.get(stage, stage)}: done in {now - clock['t']:.1f} s")
        clock["t"] = now
        context.progress(0.9 * fraction, 1.0, stage_names.get(stage, stage))

    context.progress(0.01, 1.0, "reading the slides")
    try:
        sources = [slide_source(fixed), slide_source(moving)]
    except SlideError as exc:
        raise JobFailure(f"cannot read a slide: {exc}") from exc
    try:
        result = register_slides(fixed=sources[0], moving=sources[1], progress=progress)
    except RegistrationError as exc:
        context.log(f"stage failed after {time.monotonic() - clock['t']:.1f} s: {exc}")
        raise JobFailure(f"registration failed: {exc}. The previous alignment is kept.") from exc
    except SlideError as exc:
        raise JobFailure(f"registration failed while reading a slide: {exc}. The previous alignment is kept.") from exc
    for line in result.log:
        context.log(line)
    for stage in result.stages:
        context.log(f"stage {stage.stage}: tissue Dice {_fmt(stage.dice)}, hematoxylin NCC {_fmt(stage.ncc)}, "
                    f"{stage.seconds:.1f} s")
    context.progress(0.95, 1.0, "saving")
    applied = alignment_store_automatic(alignment_id=alignment.pk, job=job, result=result,
                                        queued=params.get("alignment_when_queued"))
    if applied:
        context.log("the automatic alignment is now the case's alignment")
    else:
        context.log("the alignment was changed by hand after this job was queued: it is kept; the automatic "
                    "result is stored, and 'Reset to automatic' in Align mode applies it")
    summary = result.summary()
    return {"applied": applied, "similarity": summary["similarity"], "field": summary["field"],
            "stages": summary["stages"], "seconds": summary["seconds"]}


def _field_bytes(field, similarity) -> bytes:
    data = field.to_dict()
    data["similarity"] = similarity.as_alignment()
    return json.dumps(data, separators=(",", ":")).encode("ascii")


def alignment_store_automatic(*, alignment_id: int, job: Job, result, queued: dict | None) -> bool:
    """Write the field file (atomically), then the row; True when the result became the alignment."""
    field_path, checksum = "", ""
    if result.field is not None:
        registration_dir().mkdir(parents=True, exist_ok=True)
        name = f"alignment-{alignment_id}-job-{job.pk}.json"
        payload = _field_bytes(result.field, result.similarity)
        atomic_write_bytes(registration_dir() / name, payload)
        field_path, checksum = f"registration/{name}", hashlib.sha256(payload).hexdigest()
    similarity = result.similarity.as_alignment()
    summary = result.summary()
    with transaction.atomic():
        alignment = SlideAlignment.objects.select_for_update().get(pk=alignment_id)
        old_path = alignment.field_path
        unchanged = queued is None or _snapshot(alignment) == queued
        alignment.automatic = {
            "similarity": similarity, "job": job.pk, "at": timezone.now().isoformat(),
            "stages": summary["stages"], "seconds": summary["seconds"], "field": summary["field"],
            "field_path": field_path, "field_checksum": checksum,
        }
        alignment.field_path, alignment.field_checksum = field_path, checksum
        if unchanged:
            for key, value in similarity.items():
                setattr(alignment, key, value)
            alignment.source = AlignmentSource.AUTOMATIC
            alignment.updated_by = None
        alignment.save()
        audit_record(user=job.created_by, action="alignment.automatic", case=alignment.case,
                     detail={"job": job.pk, "applied": unchanged, "similarity": similarity,
                             "field": field_path or None})
    if old_path and old_path != field_path:
        transaction.on_commit(lambda: (settings.LADDER_DATA_DIR / old_path).unlink(missing_ok=True))
    return unchanged


def alignment_restore_automatic(*, alignment: SlideAlignment, user=None) -> SlideAlignment:
    """'Reset to automatic': the last automatic similarity, and its field, become the alignment again."""
    auto = alignment.automatic or {}
    if not auto.get("similarity"):
        raise ValueError("this pair has no automatic registration yet: run one first")
    before = _snapshot(alignment)
    for key in ALIGNMENT_FIELDS:
        setattr(alignment, key, float(auto["similarity"][key]))
    alignment.field_path = auto.get("field_path", "")
    alignment.field_checksum = auto.get("field_checksum", "")
    alignment.source = AlignmentSource.AUTOMATIC
    alignment.updated_by = user if getattr(user, "is_authenticated", False) else None
    alignment.save()
    audit_record(user=user, action="alignment.restore_automatic", case=alignment.case,
                 detail={"before": before, "after": _snapshot(alignment), "job": auto.get("job")})
    return alignment


def alignment_field_active(alignment: SlideAlignment | None) -> bool:
    return bool(alignment is not None and alignment.source == AlignmentSource.AUTOMATIC and alignment.field_path)


def alignment_field_bytes(alignment: SlideAlignment) -> bytes:
    """The stored field file (JSON), checked against its SHA-256. Raises FieldIntegrityError."""
    path = settings.LADDER_DATA_DIR / alignment.field_path
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FieldIntegrityError(f"the registration field file is missing ({alignment.field_path})") from exc
    if hashlib.sha256(data).hexdigest() != alignment.field_checksum:
        raise FieldIntegrityError("the registration field file does not match its checksum; run the "
                                  "registration again")
    return data


def alignment_transform(alignment: SlideAlignment):
    """(Similarity, DisplacementField or None) the viewer uses for this alignment right now."""
    from analysis.core.slides.registration import DisplacementField, Similarity

    similarity = Similarity(**{k: float(getattr(alignment, k)) for k in ALIGNMENT_FIELDS})
    field = None
    if alignment_field_active(alignment):
        field = DisplacementField.from_dict(json.loads(alignment_field_bytes(alignment)))
    return similarity, field
