"""Issue 15, defect 3: a GeoJSON import has a stated limit (413 naming it), writes in bulk, runs
as a job with progress when big, and never holds the database's write lock for seconds."""
from __future__ import annotations

import json
import threading
import time

import pytest
from django.test import Client

from analysis.jobs.worker import worker_loop
from analysis.models import Job, JobKind, JobStatus
from viewer.review.models import Annotation, AnnotationRevision

pytestmark = pytest.mark.django_db(transaction=True)


def _points(count: int) -> dict:
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [10 + i % 5000, 10 + i // 5000]},
         "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}}} for i in range(count)]}


def _post(client, slide, body):
    return client.post(f"/api/slides/{slide.pk}/annotations/import/", json.dumps(body), content_type="application/json")


def test_beyond_the_limit_is_413_naming_it(client_for, pathologist, slides, settings):
    settings.LADDER_GEOJSON_MAX_FEATURES = 100
    response = _post(client_for(pathologist), slides[0], _points(101))
    assert response.status_code == 413
    assert "at most 100" in response.json()["detail"] and response.json()["limit"] == 100
    assert not Annotation.objects.exists() and not Job.objects.exists()


def test_multipoint_parts_count_against_the_limit(client_for, pathologist, slides, settings):
    settings.LADDER_GEOJSON_MAX_FEATURES = 10
    many = {"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": [[i, i] for i in range(1, 12)]},
            "properties": {"classification": {"name": "Tumor"}}}
    response = _post(client_for(pathologist), slides[0], {"type": "FeatureCollection", "features": [many]})
    assert response.status_code == 400 and "at most 10 annotations" in response.json()["errors"][0]["error"]
    assert not Annotation.objects.exists()


def test_small_import_answers_at_once_in_bulk(client_for, pathologist, slides, settings,
                                              django_assert_max_num_queries):
    settings.LADDER_GEOJSON_SYNC_FEATURES = 500
    client = client_for(pathologist)
    with django_assert_max_num_queries(500):  # 400 one at a time took ~1,200 queries
        response = _post(client, slides[0], _points(400))
    assert response.status_code == 201, response.content
    assert len(response.json()["created"]) == 400
    assert Annotation.objects.count() == 400 == AnnotationRevision.objects.filter(action="import").count()


def test_big_import_is_a_job_with_progress_and_others_keep_writing(client_for, pathologist, make_user, slides,
                                                                   settings):
    settings.LADDER_GEOJSON_SYNC_FEATURES = 500
    client = client_for(pathologist)
    response = _post(client, slides[0], _points(6000))
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["job"])
    assert job.kind == JobKind.IMPORT_ANNOTATIONS and response.json()["features"] == 6000

    from viewer.review.models import AnnotationLabel

    AnnotationLabel.objects.get_or_create(name="artefact")  # a transactional test may have flushed the seeded ones
    other = Client()
    other.force_login(make_user("other", "pathologist"))
    worker = threading.Thread(target=worker_loop, kwargs={"once": True, "poll_seconds": 0.1}, daemon=True)
    worker.start()
    waits = []
    drawn = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [100, 100]},
             "properties": {"label": "artefact"}}
    while worker.is_alive():
        started = time.monotonic()
        answer = other.post(f"/api/slides/{slides[0].pk}/annotations/", json.dumps(drawn),
                            content_type="application/json")
        waits.append(time.monotonic() - started)
        if answer.status_code != 201:
            worker.join(timeout=120)
            pytest.fail(f"another user's annotation failed during the import: {answer.content!r}")
        time.sleep(0.05)
    worker.join()
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["created"] == 6000 and job.progress == 1.0
    assert "6000 of 6000 features" in job.message or job.message
    assert Annotation.objects.filter(source="imported").count() == 6000
    print(f"other user's annotation POSTs during the import: {len(waits)}, slowest {max(waits):.2f} s")
    assert waits and max(waits) < 3.0, f"another user's annotation waited {max(waits):.1f} s"
    assert not any((settings.LADDER_DATA_DIR / "imports").iterdir())  # the document is removed
