"""Annotations API: create, permissions, revisions and revert, QuPath GeoJSON export/import."""
from __future__ import annotations

import pytest

from cases.models import AuditEvent
from viewer.review.models import Annotation, AnnotationLabel

pytestmark = pytest.mark.django_db

SQUARE = {"type": "Polygon", "coordinates": [[[100, 100], [400, 100], [400, 300], [100, 300], [100, 100]]]}


def feature(geometry=SQUARE, label="artefact", comment="", **extra):
    return {"type": "Feature", "geometry": geometry, "properties": {"label": label, "comment": comment, **extra}}


def create(api, slide, **kwargs):
    response = api.post(f"/api/slides/{slide.pk}/annotations/", feature(**kwargs))
    assert response.status_code == 201, response.content
    return response.json()


def test_labels_are_seeded_and_editable():
    names = list(AnnotationLabel.objects.values_list("name", flat=True))
    assert names == ["misclassified cells", "missed tumour region", "HER2 grade wrong", "artefact"]


def test_create_returns_the_annotation_and_lists_it(slides, pathologist, api):
    he, _ = slides
    api.login(pathologist)
    open_ring = {"type": "Polygon", "coordinates": [[[10, 10], [50.123456, 10], [50, 40]]]}
    body = create(api, he, geometry=open_ring, label="Missed tumour region", comment="here")
    assert set(body) >= {"id", "geometry", "label", "comment", "author", "created_at"}
    assert body["label"] == "missed tumour region" and body["author"] == "path1" and body["comment"] == "here"
    # closed by the server, rounded to 0.001 px
    assert body["geometry"]["coordinates"][0] == [[10, 10], [50.123, 10], [50, 40], [10, 10]]
    assert body["shape"] == "polygon" and body["can_edit"] is True
    point = create(api, he, geometry={"type": "Point", "coordinates": [5, 6]}, label="artefact")
    assert point["shape"] == "point"
    listed = api.get(f"/api/slides/{he.pk}/annotations/").json()
    assert [a["id"] for a in listed] == [body["id"], point["id"]]
    assert AuditEvent.objects.filter(action="annotation.create", slide=he).count() == 2


@pytest.mark.parametrize("bad, message", [
    ({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, "not supported"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]}, "3 distinct"),
    ({"type": "Polygon", "coordinates": [[[0, 0], ["a", 1], [2, 2]]]}, "finite numbers"),
    ({"type": "Point", "coordinates": [1e9, 0]}, "outside the slide"),
    (None, "geometry"),
])
def test_bad_geometry_is_a_400_with_a_reason(slides, pathologist, api, bad, message):
    api.login(pathologist)
    response = api.post(f"/api/slides/{slides[0].pk}/annotations/", feature(geometry=bad))
    assert response.status_code == 400
    assert message in str(response.json())
    assert not Annotation.objects.exists()


def test_unknown_label_is_a_400(slides, pathologist, api):
    api.login(pathologist)
    response = api.post(f"/api/slides/{slides[0].pk}/annotations/", feature(label="nonsense"))
    assert response.status_code == 400 and "unknown label" in str(response.json())


def test_only_the_author_or_an_admin_edits(slides, pathologist, presenter, make_user, admin_user_role, api):
    he, _ = slides
    api.login(pathologist)
    mine = create(api, he, comment="mine")
    item = f"/api/annotations/{mine['id']}/"
    other = make_user("path2", "pathologist")
    api.login(other)
    assert api.get(item).json()["can_edit"] is False
    assert api.patch(item, {"comment": "hijack"}).status_code == 403
    assert api.delete(item).status_code == 403
    assert api.post(f"{item}revert/", {"revision": 1}).status_code == 403
    api.login(presenter)
    assert api.get(f"/api/slides/{he.pk}/annotations/").status_code == 200
    assert api.patch(item, {"comment": "hijack"}).status_code == 403
    assert api.post(f"/api/slides/{he.pk}/annotations/", feature()).status_code == 403
    api.logout()
    assert api.get(f"/api/slides/{he.pk}/annotations/").status_code in (401, 403)
    assert api.get(f"/api/slides/{he.pk}/annotations.geojson").status_code in (401, 403)
    assert api.patch(item, {"comment": "anon"}).status_code in (401, 403)
    assert Annotation.objects.get().comment == "mine"
    api.login(admin_user_role)
    assert api.patch(item, {"comment": "fixed by admin"}).status_code == 200
    assert Annotation.objects.get().comment == "fixed by admin"


def test_every_change_is_a_revision_and_revert_brings_it_back(slides, pathologist, api):
    he, _ = slides
    api.login(pathologist)
    created = create(api, he, comment="first")
    item = f"/api/annotations/{created['id']}/"
    moved = {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 0]]]}
    response = api.patch(item, feature(geometry=moved, label="HER2 grade wrong", comment="second"))
    assert response.status_code == 200, response.content
    assert response.json()["version"] == 2
    # a stale version is refused
    assert api.patch(item, {"comment": "stale", "version": 1}).status_code == 409
    assert api.delete(item).status_code == 204
    assert api.get(f"/api/slides/{he.pk}/annotations/").json() == []
    history = api.get(f"{item}history/").json()["revisions"]
    assert [(r["revision"], r["action"], r["comment"], r["deleted"]) for r in history] == [
        (1, "create", "first", False), (2, "update", "second", False), (3, "delete", "second", True)]
    assert history[0]["geometry"] == SQUARE and history[0]["label"] == "artefact" and history[0]["user"] == "path1"
    response = api.post(f"{item}revert/", {"revision": 1})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["geometry"] == SQUARE and body["comment"] == "first" and body["label"] == "artefact"
    assert not body["deleted"] and body["version"] == 4
    assert [a["id"] for a in api.get(f"/api/slides/{he.pk}/annotations/").json()] == [created["id"]]
    assert api.get(f"{item}history/").json()["revisions"][-1]["action"] == "revert"
    assert api.post(f"{item}revert/", {"revision": 99}).status_code == 400
    actions = set(AuditEvent.objects.filter(slide=he).values_list("action", flat=True))
    assert {"annotation.create", "annotation.update", "annotation.delete", "annotation.revert"} <= actions


def test_annotations_never_modify_analysis_results(slides, ihc_run, pathologist, api):
    _, ihc = slides
    api.login(pathologist)
    before = (ihc_run.her2, ihc_run.n_cells, ihc_run.class_counts)
    create(api, ihc, label="HER2 grade wrong")
    ihc_run.refresh_from_db()
    assert (ihc_run.her2, ihc_run.n_cells, ihc_run.class_counts) == before


def check_qupath_feature_collection(data):
    assert data["type"] == "FeatureCollection"
    for feature in data["features"]:
        assert feature["type"] == "Feature"
        geometry = feature["geometry"]
        assert geometry["type"] in ("Polygon", "Point")
        if geometry["type"] == "Polygon":
            for ring in geometry["coordinates"]:
                assert len(ring) >= 4 and ring[0] == ring[-1]
                assert all(len(p) == 2 and all(isinstance(v, (int, float)) for v in p) for p in ring)
        properties = feature["properties"]
        assert properties["objectType"] == "annotation"
        assert isinstance(properties["classification"]["name"], str)
        assert len(properties["classification"]["color"]) == 3


def test_geojson_round_trip(slides, pathologist, make_user, api):
    he, ihc = slides
    api.login(pathologist)
    rectangle = {"type": "Polygon", "coordinates": [[[0, 0], [200, 0], [200, 100], [0, 100], [0, 0]]]}
    create(api, he, comment="a square\nsecond line")
    create(api, he, geometry=rectangle, label="missed tumour region", shape="rectangle")
    create(api, he, geometry={"type": "Point", "coordinates": [12.5, 7.25]}, label="misclassified cells")
    response = api.get(f"/api/slides/{he.pk}/annotations.geojson")
    assert response.status_code == 200 and response["Content-Type"] == "application/geo+json"
    exported = response.json()
    check_qupath_feature_collection(exported)
    first = exported["features"][0]["properties"]
    assert first["classification"] == {"name": "artefact", "color": [0x56, 0xB4, 0xE9]}
    assert first["name"] == "a square" and first["comment"] == "a square\nsecond line" and first["author"] == "path1"
    # import into the other slide as someone else: same geometry, label, comment, shape
    api.login(make_user("path2", "pathologist"))
    response = api.post(f"/api/slides/{ihc.pk}/annotations/import/", exported)
    assert response.status_code == 201, response.content
    assert response.json()["errors"] == []
    again = api.get(f"/api/slides/{ihc.pk}/annotations.geojson").json()

    def essence(collection):
        return [(f["geometry"], f["properties"]["classification"], f["properties"]["comment"],
                 f["properties"]["shape"]) for f in collection["features"]]

    assert essence(again) == essence(exported)
    assert {f["properties"]["author"] for f in again["features"]} == {"path2"}
    assert AuditEvent.objects.filter(action="annotation.import", slide=ihc).count() == 1


def test_import_qupath_variants_and_per_feature_errors(slides, pathologist, api):
    he, _ = slides
    api.login(pathologist)
    features = [
        {"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [
            [[[0, 0], [10, 0], [10, 10], [0, 0]]], [[[20, 20], [30, 20], [30, 30], [20, 20]]]]},
         "properties": {"objectType": "annotation", "classification": {"name": "Tumor", "color": [200, 0, 0]}}},
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 0], [5, 5]]},
         "properties": {"objectType": "annotation", "classification": {"name": "artefact"}}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]},
         "properties": {"objectType": "detection", "classification": {"name": "Tumor"}}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}, "properties": {"objectType": "annotation"}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [3, 4]},
         "properties": {"classification": {"name": "ARTEFACT"}, "name": "dust"}},
    ]
    response = api.post(f"/api/slides/{he.pk}/annotations/import/", features)  # a bare list works too
    assert response.status_code == 201, response.content
    body = response.json()
    assert [c["label"] for c in body["created"]] == ["Tumor", "Tumor", "artefact"]
    assert body["created"][2]["comment"] == "dust"
    errors = {e["feature"]: e["error"] for e in body["errors"]}
    assert set(errors) == {1, 2, 3}
    assert "open lines" in errors[1] and "only annotations" in errors[2] and "classification" in errors[3]
    assert AnnotationLabel.objects.get(name="Tumor").color == "#C80000"
    # nothing importable: 400
    response = api.post(f"/api/slides/{he.pk}/annotations/import/", {"type": "FeatureCollection", "features": [features[1]]})
    assert response.status_code == 400 and response.json()["errors"][0]["feature"] == 0
    assert api.post(f"/api/slides/{he.pk}/annotations/import/", {"hello": 1}).status_code == 400


def test_import_as_file_upload(slides, pathologist, client):
    import io
    import json

    he, _ = slides
    client.force_login(pathologist)
    data = json.dumps({"type": "FeatureCollection", "features": [feature()]}).encode()
    upload = io.BytesIO(data)
    upload.name = "a.geojson"
    response = client.post(f"/api/slides/{he.pk}/annotations/import/", {"file": upload})
    assert response.status_code == 201, response.content
    assert Annotation.objects.filter(slide=he, source="imported").count() == 1
