"""A database migrated before the cases app existed migrates forward with its rows intact.

Case, Slide, SlideAlignment and AuditEvent moved from the viewer app to the cases app, keeping
their tables. This builds a database at the old schema (the leaf migrations of main before the
move), fills it through the historical models, migrates forward and reads the rows back through
the new models: same rows, same keys, foreign keys from the other apps still resolve, and the
content types (so permissions) followed the models.
"""
from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

OLD_LEAVES = [
    ("cases", None),  # the app did not exist
    ("viewer", "0001_initial"),
    ("analysis", "0003_alter_job_kind_modelversion_casescore_and_more"),
    ("review", "0002_seed_labels"),
    ("board", "0001_initial"),
]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor


def _old_nodes(executor) -> list[tuple[str, str]]:
    """The old leaves of our apps plus today's leaves of Django's own apps (auth, contenttypes...)."""
    ours = {app for app, _ in OLD_LEAVES}
    return [n for n in executor.loader.graph.leaf_nodes() if n[0] not in ours] + OLD_LEAVES[1:]


@pytest.mark.django_db(transaction=True)
def test_old_schema_migrates_forward_with_rows_intact():
    executor = _migrate(OLD_LEAVES)
    old = executor.loader.project_state(_old_nodes(executor)).apps
    assert "case" in old.all_models["viewer"] and "cases" not in old.all_models

    # content types as the old code left them
    ContentType = old.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label="cases").delete()
    old_ct = ContentType.objects.get_or_create(app_label="viewer", model="case")[0]

    User = old.get_model("auth", "User")
    user = User.objects.create(username="old-schema-user")
    Case = old.get_model("viewer", "Case")
    Slide = old.get_model("viewer", "Slide")
    SlideAlignment = old.get_model("viewer", "SlideAlignment")
    AuditEvent = old.get_model("viewer", "AuditEvent")
    case = Case.objects.create(case_id="OLD-001", age=51, hr_status="positive", her2_ihc="3+")
    he = Slide.objects.create(case=case, stain="he", name="he.svs", source_path="/x/he.svs", width=10, height=20,
                              mpp_x=0.25, mpp_y=0.25, status="ready", imported_by=user)
    ihc = Slide.objects.create(case=case, stain="ihc", name="ihc.svs", source_path="/x/ihc.svs", status="ready")
    SlideAlignment.objects.create(case=case, fixed=he, moving=ihc, offset_x=12.5, rotation=3.0, updated_by=user)
    AuditEvent.objects.create(user=user, action="slide.import", case=case, slide=he, detail={"n": 1})
    Job = old.get_model("analysis", "Job")
    job = Job.objects.create(kind="analyze_slide", case=case, slide=he, status="succeeded")
    Annotation = old.get_model("review", "Annotation")
    AnnotationLabel = old.get_model("review", "AnnotationLabel")
    # seeded by review 0002 (an earlier transactional test may have flushed it)
    label = AnnotationLabel.objects.get_or_create(name="Old-schema label")[0]
    Annotation.objects.create(slide=he, author=user, label=label, shape="point",
                              geometry={"type": "Point", "coordinates": [1, 2]})
    BoardSession = old.get_model("board", "BoardSession")
    BoardItem = old.get_model("board", "BoardItem")
    session = BoardSession.objects.create(title="old board", presenter=user, driver=user)
    BoardItem.objects.create(session=session, case=case, position=0)

    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    from django.contrib.contenttypes.models import ContentType as CurrentContentType

    from analysis.models import Job as NewJob
    from cases.models import AuditEvent as NewAuditEvent
    from cases.models import Case as NewCase
    from cases.models import SlideAlignment as NewAlignment
    from viewer.board.models import BoardItem as NewBoardItem
    from viewer.review.models import Annotation as NewAnnotation

    new_case = NewCase.objects.get(case_id="OLD-001")
    assert new_case.pk == case.pk and new_case.age == 51 and new_case.her2_ihc == "3+"
    slides = {s.stain: s for s in new_case.slides.all()}
    assert slides["he"].pk == he.pk and slides["he"].mpp == 0.25 and slides["he"].imported_by.username == user.username
    assert slides["ihc"].pk == ihc.pk
    alignment = NewAlignment.objects.get(case=new_case)
    assert (alignment.fixed_id, alignment.moving_id, alignment.offset_x, alignment.rotation) == (he.pk, ihc.pk, 12.5, 3.0)
    event = NewAuditEvent.objects.get(action="slide.import")
    assert (event.case_id, event.slide_id, event.detail) == (case.pk, he.pk, {"n": 1})
    new_job = NewJob.objects.get(pk=job.pk)
    assert new_job.case == new_case and new_job.slide_id == he.pk
    assert NewAnnotation.objects.get(slide_id=he.pk).slide.case == new_case
    assert NewBoardItem.objects.get(session_id=session.pk).case == new_case
    # the content type moved with the model (same row, so permissions and admin log entries follow)
    moved = CurrentContentType.objects.get(pk=old_ct.pk)
    assert (moved.app_label, moved.model) == ("cases", "case")
    assert not CurrentContentType.objects.filter(app_label="viewer", model="case").exists()
    # new rows go to the same tables
    assert NewCase._meta.db_table == "viewer_case"
    NewCase.objects.create(case_id="NEW-002")
    assert NewCase.objects.count() == 2
