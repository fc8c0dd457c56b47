"""Issue 15, defects 8 and 9: temporary outputs of killed workers and servers are removed (run
folders, conversion files, upload folders without a slide), never those of a running job."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from django.conf import settings

OLD = time.time() - 3600


def _age(path: Path) -> Path:
    for folder, dirs, files in os.walk(path, topdown=False):
        for name in dirs + files:
            os.utime(os.path.join(folder, name), (OLD, OLD))
    os.utime(path, (OLD, OLD))
    return path


def _killed_run(slide_pk: int) -> Path:
    """What `kill -9` of a worker in the middle of a cell analysis leaves."""
    tmp = Path(settings.LADDER_RUNS_DIR) / f"slide-{slide_pk}" / "run-0123456789ab.tmp-0123456789abcdef0123456789abcdef"
    parts = tmp / ".cells.parquet.parts-x1y2z3"
    parts.mkdir(parents=True)
    (parts / "part-0000.parquet").write_bytes(b"PAR1 partial")
    return _age(tmp)


@pytest.fixture
def leftovers(he_slide):
    from cases.models import Slide

    import shutil

    for stale in ("slide-999001", "slide-999002", "slide-999003", f"slide-{he_slide.pk}"):
        shutil.rmtree(Path(settings.LADDER_RUNS_DIR) / stale, ignore_errors=True)

    idle = _killed_run(999_001)
    imported = Path(settings.LADDER_RUNS_DIR) / "slide-999002" / "run-abcdefabcdef.tmp"
    imported.mkdir(parents=True)
    _age(imported)
    busy = _killed_run(he_slide.pk)
    fresh = Path(settings.LADDER_RUNS_DIR) / "slide-999003" / "run-fedcbafedcba.tmp-ffff"
    fresh.mkdir(parents=True)  # just created: a job may have been claimed while we looked
    published = Path(settings.LADDER_RUNS_DIR) / "slide-999001" / "run-0123456789ab"
    published.mkdir(parents=True)
    _age(published)
    converted = Path(settings.LADDER_UPLOAD_DIR) / "converted"
    converted.mkdir(parents=True, exist_ok=True)
    conversion = converted / ".3f2a.tiff.k2j3h4"
    conversion.mkdir()
    (conversion / "level-0").write_bytes(b"II*\0partial")
    _age(conversion)
    done = converted / "3f2a.tiff"
    done.write_bytes(b"II*\0")
    _age(done)
    uploads = Path(settings.LADDER_UPLOAD_DIR) / "uploads"
    orphan = uploads / ("0" * 32)
    orphan.mkdir(parents=True)
    (orphan / "slide.png").write_bytes(b"\x89PNG")
    _age(orphan)
    kept_upload = uploads / ("1" * 32)
    kept_upload.mkdir(parents=True)
    (kept_upload / "slide.svs").write_bytes(b"II*\0")
    _age(kept_upload)
    Slide.objects.create(case=he_slide.case, stain="ihc", name="kept.svs", source_path=str(kept_upload / "slide.svs"),
                         file_path=str(kept_upload / "slide.svs"))
    imports = Path(settings.LADDER_DATA_DIR) / "imports"
    imports.mkdir(parents=True, exist_ok=True)
    document = _age(imports / "0123abcd.geojson") if (imports / "0123abcd.geojson").write_text("{}") else None
    made = {"removed": [idle, imported, conversion, orphan, document], "kept": [busy, fresh, published, done, kept_upload]}
    yield made
    import shutil

    for path in made["removed"] + made["kept"]:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


@pytest.mark.django_db
def test_sweep_removes_temporary_outputs_of_jobs_no_longer_running(leftovers, he_slide):
    from analysis.jobs.sweep import sweep_orphans
    from analysis.models import Job, JobKind, JobStatus

    Job.objects.create(kind=JobKind.ANALYZE_SLIDE, slide=he_slide, status=JobStatus.RUNNING)
    removed = sweep_orphans()
    assert sorted(removed) == sorted(leftovers["removed"])
    assert not any(p.exists() for p in leftovers["removed"])
    assert all(p.exists() for p in leftovers["kept"])


def test_the_worker_sweeps_at_start_up(leftovers, live_worker):
    """A real worker process, started after a kill: the leftovers go at once."""
    process = live_worker()
    deadline = time.monotonic() + 60
    while any(p.exists() for p in leftovers["removed"]) and time.monotonic() < deadline:
        assert process.poll() is None
        time.sleep(0.3)
    assert not any(p.exists() for p in leftovers["removed"])
    # no job runs here (and the test grace is short): the run folders all go; the rest stays
    assert all(p.exists() for p in leftovers["kept"][2:])
