"""analysis.slide_ready: a slide that becomes ready is analysed unasked (LADDER_AUTO_ANALYSE), and its case
scored after: imported with a resolution, converted from an upload, or once a user sets an unknown
resolution. The real embedded worker runs the jobs. (Pairing: tests/viewer/cases/test_conversion_job.py.)"""
from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from analysis.jobs.worker import worker_loop
from analysis.models import Job, JobKind, JobStatus
from cases.models import Slide
from viewer.cases.services.slides import slide_import, slide_set_mpp

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def auto_analyse(settings):
    settings.LADDER_AUTO_ANALYSE = True
    return settings


def _analyses(slide) -> list[Job]:
    return list(Job.objects.filter(kind=JobKind.ANALYZE_SLIDE, slide=slide))


def test_an_imported_slide_with_a_resolution_is_analysed(auto_analyse, case, shared_file):
    slide = slide_import(case=case, stain="he", path=shared_file("slides/CMU-1-Small-Region.svs"))
    (job,) = _analyses(slide)
    assert job.status == JobStatus.QUEUED
    # importing it again (a duplicate) or asking again queues nothing more
    from analysis.slide_ready import slide_auto_analyse

    assert slide_auto_analyse(slide=slide) is None and len(_analyses(slide)) == 1


def test_off_means_off(settings, case, shared_file):
    settings.LADDER_AUTO_ANALYSE = False
    slide = slide_import(case=case, stain="he", path=shared_file("slides/CMU-1-Small-Region.svs"))
    assert _analyses(slide) == []


def test_an_upload_without_resolution_waits_for_it(auto_analyse, client_for, pathologist, case):
    """A PNG carries no µm/px: converted, then nothing to analyse until a user sets it."""
    pixels = np.random.default_rng(3).integers(120, 250, (300, 400, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    client = client_for(pathologist)
    response = client.post("/api/slides/", {"case": case.pk, "stain": "he",
                                            "file": SimpleUploadedFile("he.png", buffer.getvalue())})
    assert response.status_code == 202, response.content
    worker_loop(once=True, poll_seconds=0.1)  # the conversion
    slide = Slide.objects.get()
    assert slide.status == "ready" and slide.mpp_x is None and _analyses(slide) == []
    page = client.post(f"/slides/{slide.pk}/mpp/", {"mpp": "0.5"}, follow=True)
    assert "Its analysis has started" in page.content.decode()
    (job,) = _analyses(slide)
    assert job.status == JobStatus.QUEUED and job.created_by == pathologist


def test_a_registration_that_waited_for_the_resolution_runs_again(settings, client_for, pathologist, case):
    """Two PNGs (no µm/px): the automatic registration fails saying so; once a user sets both
    resolutions it is queued again by itself."""
    settings.LADDER_AUTO_REGISTER = True
    client = client_for(pathologist)
    for stain, seed in (("he", 4), ("ihc", 5)):
        pixels = np.random.default_rng(seed).integers(120, 250, (300, 400, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        response = client.post("/api/slides/", {"case": case.pk, "stain": stain,
                                                "file": SimpleUploadedFile(f"{stain}.png", buffer.getvalue())})
        assert response.status_code == 202, response.content
    worker_loop(once=True, poll_seconds=0.1)  # both conversions, then the registration, which fails
    (failed,) = Job.objects.filter(kind=JobKind.REGISTER_PAIR)
    assert failed.status == JobStatus.FAILED and "no known resolution" in failed.error
    he, ihc = Slide.objects.order_by("id")
    slide_set_mpp(slide=he, mpp=0.5)
    assert Job.objects.filter(kind=JobKind.REGISTER_PAIR).count() == 1  # the IHC still has none
    slide_set_mpp(slide=ihc, mpp=0.5)
    again = Job.objects.filter(kind=JobKind.REGISTER_PAIR).order_by("-created_at").first()
    assert again.pk != failed.pk and again.status == JobStatus.QUEUED
    assert again.params["reason"] == "the slides' resolution was set"
