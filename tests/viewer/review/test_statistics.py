"""GET /api/annotations/<id>/statistics/ on a really analysed phantom IHC slide: the numbers equal a
count done directly from the run's cell table, for every shape; access; OpenAPI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from analysis.core.cells.region import points_in_rings
from analysis.core.cells.table import read_cells
from analysis.core.her2.grading import h_score, her2_slide_score
from analysis.jobs.runner import job_claim, job_execute
from analysis.models import JobStatus
from analysis.results import run_path
from analysis.services import analysis_enqueue
from cases.models import Stain

pytestmark = pytest.mark.django_db(transaction=True)
CLASSES = ("tumour", "stroma", "lymphocyte", "neutrophil", "macrophage", "other")


def draw(client, slide, geometry, shape=None):
    props = {"label": "artefact"} | ({"shape": shape} if shape else {})
    response = client.post(f"/api/slides/{slide.pk}/annotations/", json.dumps(
        {"type": "Feature", "geometry": geometry, "properties": props}), content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()


def direct_count(cells, rings, mpp):
    inside = points_in_rings(x=cells["x"].to_numpy(), y=cells["y"].to_numpy(), rings=[np.asarray(r, float) for r in rings])
    truth = cells[inside]
    graded = truth.loc[truth["cls"] == "tumour", "her2_class"].dropna()
    return truth, graded


def test_statistics_match_the_cell_table(phantom_case, client_for, pathologist, presenter, client):
    from viewer.review.models import AnnotationLabel

    AnnotationLabel.objects.get_or_create(name="artefact")  # a transactional test before may have flushed the seeds
    slide = phantom_case.slide_for(Stain.IHC)
    api = client_for(pathologist)
    # before any analysis: the area, no cells
    w, h = slide.width, slide.height
    rect = {"type": "Polygon", "coordinates": [[[w * 0.1, h * 0.1], [w * 0.7, h * 0.1], [w * 0.7, h * 0.6],
                                                [w * 0.1, h * 0.6], [w * 0.1, h * 0.1]]]}
    early = draw(api, slide, rect, shape="rectangle")
    before = api.get(f"/api/annotations/{early['id']}/statistics/").json()
    assert before["run"] is None and before["cells"] == {} and before["area_mm2"] > 0

    job = job_execute(job_claim(job_id=analysis_enqueue(slide=slide).pk, worker="test"))
    assert job.status == JobStatus.SUCCEEDED, job.error
    run = slide.runs.order_by("-created_at").first()
    cells = read_cells(path=run_path(run) / "cells.parquet", columns=["x", "y", "cls", "her2_class"])
    mpp = slide.mpp_x

    cx, cy = w / 2, h / 2
    angles = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    freehand = [[float(cx + 0.35 * w * np.cos(t) * (1 + 0.2 * np.sin(5 * t))),
                 float(cy + 0.35 * h * np.sin(t))] for t in angles]
    polygon = [[w * 0.05, h * 0.05], [w * 0.9, h * 0.2], [w * 0.5, h * 0.95]]
    for geometry, shape in ((rect, "rectangle"), ({"type": "Polygon", "coordinates": [freehand]}, "freehand"),
                            ({"type": "Polygon", "coordinates": [polygon]}, "polygon")):
        annotation = draw(api, slide, geometry, shape=shape)
        response = api.get(f"/api/annotations/{annotation['id']}/statistics/")
        assert response.status_code == 200, response.content
        stats = response.json()
        rings = annotation["geometry"]["coordinates"]
        truth, graded = direct_count(cells, rings, mpp)
        assert stats["run"] == run.pk and stats["stain"] == "ihc" and stats["annotation"] == annotation["id"]
        assert stats["n_cells"] == len(truth) > 50
        assert stats["cells"] == {c: int((truth["cls"] == c).sum()) for c in CLASSES}
        assert stats["her2"] == {k: int((graded == k).sum()) for k in stats["her2"]}
        assert sum(stats["her2"].values()) == len(graded)
        assert stats["asco_cap"] == her2_slide_score(her2_class=graded).score
        assert stats["h_score"] == pytest.approx(h_score(her2_class=graded))
        ring = np.asarray(rings[0], float)
        area = 0.5 * abs(np.dot(ring[:, 0], np.roll(ring[:, 1], -1)) - np.dot(ring[:, 1], np.roll(ring[:, 0], -1)))
        assert stats["area_mm2"] == pytest.approx(area * mpp * (slide.mpp_y or mpp) / 1e6)

    point = draw(api, slide, {"type": "Point", "coordinates": [cx, cy]})
    stats = api.get(f"/api/annotations/{point['id']}/statistics/").json()
    assert stats["area_mm2"] is None and stats["cells"] == {} and stats["asco_cap"] is None

    # any logged-in user who may read the annotation may read its statistics; anonymous users may not
    assert client_for(presenter).get(f"/api/annotations/{point['id']}/statistics/").status_code == 200
    client.logout()
    assert client.get(f"/api/annotations/{point['id']}/statistics/").status_code in (401, 403)
    assert client_for(pathologist).get("/api/annotations/999999/statistics/").status_code == 404


def test_openapi_types_the_statistics(client_for, pathologist):
    schema = client_for(pathologist).get("/api/schema/", {"format": "json"})
    text = schema.content.decode()
    assert "/api/annotations/{id}/statistics/" in text
    assert "AnnotationStatistics" in text and "asco_cap" in text and "h_score" in text
