"""Annotations carried across the slide pair through the registration (issue 17, POST /api/annotations/<id>/transfer/)."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.core.slides.registration import (
    Similarity,
    map_points_fixed_to_moving,
    map_points_moving_to_fixed,
    map_polygon,
)
from cases.models import SlideAlignment
from viewer.review.models import Annotation, AnnotationLabel

pytestmark = pytest.mark.django_db

SQUARE = {"type": "Polygon", "coordinates": [[[1000, 1000], [4000, 1000], [4000, 3000], [1000, 3000], [1000, 1000]]]}


def create(api, slide, geometry=SQUARE, shape=None, label="missed tumour region", comment="nest"):
    properties = {"label": label, "comment": comment, **({"shape": shape} if shape else {})}
    response = api.post(f"/api/slides/{slide.pk}/annotations/",
                        {"type": "Feature", "geometry": geometry, "properties": properties})
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def aligned(slides):
    """The pair aligned by hand: turned 30 degrees, scale 1.1, shifted (a similarity, no field)."""
    he, ihc = slides
    return SlideAlignment.objects.create(case=he.case, fixed=he, moving=ihc, offset_x=2500.0, offset_y=-300.0,
                                         rotation=30.0, scale=1.1, source="manual")


def test_polygon_goes_to_the_ihc_through_the_similarity(slides, aligned, pathologist, api):
    he, ihc = slides
    api.login(pathologist)
    drawn = create(api, he, shape="rectangle")
    similarity = Similarity(offset_x=2500.0, offset_y=-300.0, rotation=30.0, scale=1.1)

    preview = api.post(f"/api/annotations/{drawn['id']}/transfer/", {"preview": True})
    assert preview.status_code == 200 and preview.json()["slide"] == ihc.pk
    assert Annotation.objects.count() == 1  # a preview saves nothing

    response = api.post(f"/api/annotations/{drawn['id']}/transfer/")
    assert response.status_code == 201, response.content
    copy = response.json()
    assert copy["slide"] == ihc.pk and copy["source"] == "transferred" and copy["transferred_from"] == drawn["id"]
    assert copy["label"] == "missed tumour region" and copy["comment"] == "nest"
    assert copy["shape"] == "polygon"  # a turned rectangle is no longer axis-aligned
    assert copy["transfer"]["nonrigid"] is False and copy["transfer"]["alignment"] == "manual"
    expected = similarity.apply(np.array(SQUARE["coordinates"][0]))
    assert np.allclose(np.array(copy["geometry"]["coordinates"][0]), expected, atol=1e-3)
    assert copy["geometry"] == preview.json()["geometry"]
    # it is an ordinary annotation of the IHC slide (listed there, statistics from the IHC's cells)
    assert Annotation.objects.get(pk=copy["id"]).slide_id == ihc.pk

    again = api.post(f"/api/annotations/{drawn['id']}/transfer/")
    assert again.status_code == 409 and again.json()["annotation"] == copy["id"]


def test_point_goes_back_from_the_ihc_to_the_he(slides, aligned, pathologist, api):
    he, ihc = slides
    api.login(pathologist)
    point = create(api, ihc, geometry={"type": "Point", "coordinates": [5200.5, 3100.25]})
    copy = api.post(f"/api/annotations/{point['id']}/transfer/").json()
    assert copy["slide"] == he.pk and copy["shape"] == "point"
    similarity = Similarity(offset_x=2500.0, offset_y=-300.0, rotation=30.0, scale=1.1)
    expected = map_points_moving_to_fixed(points=np.array([[5200.5, 3100.25]]), similarity=similarity)[0]
    assert np.allclose(copy["geometry"]["coordinates"], expected, atol=1e-3)


def test_transfer_needs_a_pair_and_the_role(slides, pathologist, make_user, api):
    he, _ = slides
    api.login(pathologist)
    drawn = create(api, he)
    response = api.post(f"/api/annotations/{drawn['id']}/transfer/")
    assert response.status_code == 400 and "paired slide" in str(response.json())
    SlideAlignment.objects.create(case=he.case, fixed=he, moving=slides[1])
    api.login(make_user("reader", "presenter"))
    assert api.post(f"/api/annotations/{drawn['id']}/transfer/").status_code == 403
    api.logout()
    assert api.post(f"/api/annotations/{drawn['id']}/transfer/").status_code in (401, 403)


@pytest.mark.django_db(transaction=True)
def test_polygon_follows_the_non_rigid_field_of_a_real_registration(shared_file, pathologist, api, case):
    """her2st C2 -> C3 registered for real (in process): the copy is map_polygon's densified outline."""
    from analysis.core.slides.registration import register_slides
    from analysis.models import Job, JobKind
    from analysis.registration import alignment_store_automatic, alignment_transform, slide_source
    from viewer.cases.services.slides import slide_import, slide_set_mpp

    he = slide_import(case=case, stain="he", path=shared_file("slides/her2st-C2-HE.jpg"))
    ihc = slide_import(case=case, stain="ihc", path=shared_file("slides/her2st-C3-HE.jpg"))
    for slide in (he, ihc):
        slide_set_mpp(slide=slide, mpp=0.7)
    alignment = SlideAlignment.objects.get(case=case)
    result = register_slides(fixed=slide_source(he), moving=slide_source(ihc))
    job = Job.objects.create(kind=JobKind.REGISTER_PAIR, case=case)
    assert alignment_store_automatic(alignment_id=alignment.pk, job=job, result=result, queued=None)
    alignment.refresh_from_db()
    similarity, field = alignment_transform(alignment)
    assert field is not None

    # transactional tests flush the seeded labels when another such test ran before
    AnnotationLabel.objects.get_or_create(name="missed tumour region")
    api.login(pathologist)
    nest = {"type": "Polygon", "coordinates": [[[4000, 5000], [5200, 5000], [5200, 6100], [4000, 6100],
                                                [4000, 5000]]]}
    drawn = create(api, he, geometry=nest)
    copy = api.post(f"/api/annotations/{drawn['id']}/transfer/").json()
    assert copy["transfer"]["nonrigid"] is True and copy["transfer"]["field_checksum"] == alignment.field_checksum
    ring = np.array(copy["geometry"]["coordinates"][0])
    expected = map_polygon(polygon=np.array(nest["coordinates"][0][:-1], float), similarity=similarity, field=field,
                           to_moving=True)
    assert len(ring) - 1 == len(expected) > 4  # densified: the outline bends with the field
    assert np.abs(ring[:-1] - expected).max() < 1e-2
    # the field matters here: the similarity alone would put the corners elsewhere
    corners = np.array(nest["coordinates"][0][:-1], float)
    through_field = map_points_fixed_to_moving(points=corners, similarity=similarity, field=field)
    assert np.hypot(*(through_field - similarity.apply(corners)).T).max() > 1.0
    assert all(np.abs(ring[:-1] - c).sum(1).min() < 1e-2 for c in through_field)  # corners are vertices
