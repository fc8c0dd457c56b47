"""The annotation-import job: a large GeoJSON import runs in the worker, with progress, instead of
inside the request (viewer.review.services.annotations_import writes it in short bulk batches)."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

from django.conf import settings

from analysis.jobs.registry import job_handler
from analysis.jobs.runner import JobFailure
from analysis.models import Job, JobKind
from analysis.services import job_enqueue
from viewer.review import services


def _imports_dir() -> Path:
    folder = Path(settings.LADDER_DATA_DIR) / "imports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def annotations_import_enqueue(*, slide, user, data, features: int) -> Job:
    """Keep the document in a file (not in the job row) and queue its import."""
    path = _imports_dir() / f"{uuid.uuid4().hex}.geojson"
    path.write_text(json.dumps(data, allow_nan=False), encoding="utf-8")
    return job_enqueue(kind=JobKind.IMPORT_ANNOTATIONS, slide=slide, user=user, max_attempts=1,
                       params={"file": path.name, "features": features})


@job_handler(JobKind.IMPORT_ANNOTATIONS)
def import_annotations(job, context) -> dict:
    path = _imports_dir() / Path(str(job.params.get("file", ""))).name
    try:
        if job.slide is None or job.created_by is None:
            raise JobFailure("the slide or the user of this import no longer exists")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise JobFailure("the uploaded document is gone; import it again") from None
        created, errors = services.annotations_import(
            slide=job.slide, user=job.created_by, data=data,
            progress=lambda done, total: context.progress(done, total, f"{done} of {total} features"))
    except services.ValidationError as exc:
        raise JobFailure("; ".join(exc.messages)) from None
    except services.PermissionDenied as exc:
        raise JobFailure(str(exc) or "not allowed") from None
    finally:
        path.unlink(missing_ok=True)
    context.log(f"{len(created)} annotations imported, {len(errors)} features refused")
    return {"created": len(created), "errors": errors[:100], "error_count": len(errors)}
