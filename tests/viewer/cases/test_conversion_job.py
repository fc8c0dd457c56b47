"""Issue 15, defect 4: an upload request only stores the file; plain images are converted by a
job, at most LADDER_MAX_CONVERSIONS at once; the pixel cap stays."""
from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from analysis.jobs.worker import worker_loop
from analysis.models import Job, JobKind, JobStatus
from cases.models import Slide, SlideAlignment, SlideStatus

pytestmark = pytest.mark.django_db(transaction=True)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _tissue_png(width=2400, height=1800) -> bytes:
    rng = np.random.default_rng(7)
    pixels = rng.integers(120, 250, size=(height // 8, width // 8, 3), dtype=np.uint8)
    return _png(Image.fromarray(pixels).resize((width, height)))


def _upload(client, case, name, data):
    return client.post("/api/slides/", {"case": case.pk, "stain": "he", "file": SimpleUploadedFile(name, data)})


def test_a_decompression_bomb_upload_is_only_stored(client_for, pathologist, case, settings):
    """The issue's 51 KB 16,000² 1-bit PNG: the request returns at once without decoding it."""
    import analysis.core.slides.convert  # noqa: F401 - warm imports: time the request, not module loading

    bomb = _png(Image.new("1", (16_000, 16_000)))
    assert len(bomb) < 100_000
    client = client_for(pathologist)
    client.get("/api/slides/")
    started = time.monotonic()
    response = _upload(client, case, "bomb.png", bomb)
    elapsed = time.monotonic() - started
    assert response.status_code == 202, response.content
    assert elapsed < 3.0, f"the request took {elapsed:.1f} s"  # converting it took 8.7 s
    slide = Slide.objects.get()
    assert slide.status == SlideStatus.CONVERTING and response.json()["status"] == "converting"
    job = Job.objects.get(kind=JobKind.CONVERT_SLIDE)
    assert job.slide_id == slide.pk and job.status == JobStatus.QUEUED
    assert not (settings.LADDER_UPLOAD_DIR / "converted" / f"{slide.checksum}.tiff").exists()
    # no pixels of a slide that is not ready
    assert client_for(pathologist).get(f"/slides/{slide.pk}_files/0/0_0.jpeg").status_code == 404


def test_the_conversion_job_makes_the_slide_ready(client_for, pathologist, case):
    client = client_for(pathologist)
    response = _upload(client, case, "section.png", _tissue_png())
    assert response.status_code == 202, response.content
    assert worker_loop(once=True, poll_seconds=0.1) == 1  # the real embedded worker loop, in-process
    slide = Slide.objects.get()
    job = Job.objects.get(kind=JobKind.CONVERT_SLIDE)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert slide.status == SlideStatus.READY and (slide.width, slide.height) == (2400, 1800)
    assert slide.converted and slide.level_count > 1 and slide.name == "section.png"
    tile = client.get(f"/slides/{slide.pk}_files/{slide.level_count + 9}/0_0.jpeg")
    assert client.get(f"/slides/{slide.pk}.dzi").status_code == 200
    assert tile.status_code in (200, 404)


def test_a_converted_pair_gets_its_alignment_and_registration(client_for, pathologist, case, settings):
    """Uploaded plain images are paired when their conversion ends, as imported slides are: the
    alignment row (the viewer's Align mode needs it) and, with LADDER_AUTO_REGISTER, the registration."""
    settings.LADDER_AUTO_REGISTER = True
    client = client_for(pathologist)
    for stain, seed in (("he", 1), ("ihc", 2)):
        data = _png(Image.fromarray(np.random.default_rng(seed).integers(120, 250, (300, 400, 3), dtype=np.uint8)))
        response = client.post("/api/slides/", {"case": case.pk, "stain": stain,
                                                "file": SimpleUploadedFile(f"{stain}.png", data)})
        assert response.status_code == 202, response.content
    assert not SlideAlignment.objects.filter(case=case).exists()  # nothing to align while converting
    assert client.get(f"/api/cases/{case.pk}/alignment/").status_code == 404
    # the real worker runs both conversions, then the registration the second one queued
    assert worker_loop(once=True, poll_seconds=0.1) == 3
    alignment = SlideAlignment.objects.get(case=case)
    assert {alignment.fixed.stain, alignment.moving.stain} == {"he", "ihc"}
    assert client.get(f"/api/cases/{case.pk}/alignment/").status_code == 200
    job = Job.objects.get(kind=JobKind.REGISTER_PAIR)
    assert job.case_id == case.pk and job.params["reason"] == "the case got its second slide"
    assert job.status == JobStatus.FAILED and "no known resolution" in job.error  # PNGs carry no mpp


def test_a_broken_image_fails_its_job_and_says_why(client_for, pathologist, case, settings):
    truncated = _tissue_png()[:4000]
    response = _upload(client_for(pathologist), case, "broken.png", truncated)
    assert response.status_code == 202, response.content
    worker_loop(once=True, poll_seconds=0.1)
    slide = Slide.objects.get()
    job = Job.objects.get(kind=JobKind.CONVERT_SLIDE)
    assert job.status == JobStatus.FAILED and job.error
    assert slide.status == SlideStatus.FAILED and slide.error
    assert not (settings.LADDER_UPLOAD_DIR / "converted" / f"{slide.checksum}.tiff").exists()


def test_not_an_image_is_refused_in_the_request(client_for, pathologist, case):
    response = _upload(client_for(pathologist), case, "notes.png", b"just text, not a PNG" * 20)
    assert response.status_code == 400 and "not a JPEG, PNG or TIFF" in response.json()["detail"]
    assert not Slide.objects.exists() and not Job.objects.exists()


def test_concurrent_conversions_are_bounded(client_for, pathologist, case, settings):
    from analysis.conversion import conversion_slot

    settings.LADDER_MAX_CONVERSIONS = 1
    response = _upload(client_for(pathologist), case, "queued.png", _tissue_png(1200, 900))
    assert response.status_code == 202
    with conversion_slot():  # another conversion holds the only slot
        worker = threading.Thread(target=worker_loop, kwargs={"once": True, "poll_seconds": 0.1})
        worker.start()
        time.sleep(2.0)
        job = Job.objects.get(kind=JobKind.CONVERT_SLIDE)
        assert job.status == JobStatus.RUNNING and "waiting for a free conversion slot" in job.message
        assert Slide.objects.get().status == SlideStatus.CONVERTING
    worker.join(timeout=60)
    assert Job.objects.get(kind=JobKind.CONVERT_SLIDE).status == JobStatus.SUCCEEDED
    assert Slide.objects.get().status == SlideStatus.READY
