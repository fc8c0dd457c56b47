"""Reviews: saving, case status, disagreement logic, optimistic concurrency, permissions."""
from __future__ import annotations

import threading

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from cases.models import AuditEvent, Case
from viewer.review.models import Review
from viewer.review.services import ConflictError, case_automated_her2, case_mark_discussed, review_save

pytestmark = pytest.mark.django_db

FULL = {"agrees": True, "expected_response": "pcr", "her2_score": "3+", "confidence": 4, "comment": "fine",
        "submitted": True}


def url(case):
    return f"/api/cases/{case.pk}/reviews/mine/"


def test_automated_her2_prefers_the_latest_ihc_run_over_the_clinical_record(case, slides, ihc_run):
    assert case.her2_ihc == "3+"
    assert case_automated_her2(case) == ("2+", "analysis")
    ihc_run.delete()
    assert case_automated_her2(case) == ("3+", "clinical")
    Case.objects.filter(pk=case.pk).update(her2_ihc="")
    case.refresh_from_db()
    assert case_automated_her2(case) == ("", "")


def test_draft_then_submit_moves_the_case_status_and_is_audited(case, scored, pathologist, api):
    api.login(pathologist)
    empty = api.get(url(case)).json()
    assert empty["version"] == 0 and empty["current"]["model_risk_group"] == "Low"
    response = api.put(url(case), {"version": 0, "agrees": True, "comment": "looking"})
    assert response.status_code == 200, response.content
    assert response.json()["version"] == 1
    case.refresh_from_db()
    assert case.status == "in_review"
    response = api.put(url(case), {**FULL, "version": 1, "her2_score": "3+"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["version"] == 2 and body["submitted"] and body["is_disagreement"] is False
    assert body["saved_with"] == {"model_risk_group": "Low", "automated_her2": "3+", "automated_her2_source": "clinical"}
    case.refresh_from_db()
    assert case.status == "reviewed"
    # A later draft does not take the case back to 'in review'.
    assert api.put(url(case), {**FULL, "version": 2, "submitted": False}).status_code == 200
    case.refresh_from_db()
    assert case.status == "reviewed"
    actions = list(AuditEvent.objects.filter(case=case).values_list("action", flat=True))
    assert actions.count("review.save") == 2 and actions.count("review.submit") == 1
    assert "case.status" in actions


def test_discussed_is_set_by_the_service_and_kept(case, scored, pathologist, presenter):
    case_mark_discussed(case=case, user=presenter)
    case.refresh_from_db()
    assert case.status == "discussed"
    review_save(case=case, user=pathologist, data=FULL, version=0)
    case.refresh_from_db()
    assert case.status == "discussed"
    assert AuditEvent.objects.filter(action="case.discussed", case=case, user=presenter).exists()


@pytest.mark.parametrize("data, expected", [
    ({"agrees": True, "her2_score": "2+"}, False),
    ({"agrees": False, "her2_score": "2+"}, True),          # disagrees with the risk group
    ({"agrees": True, "her2_score": "1+"}, True),           # HER2 differs from the automated 2+
    ({"agrees": True, "her2_score": ""}, False),
    ({"agrees": None, "her2_score": "2+"}, False),
])
def test_disagreement_logic(case, scored, slides, ihc_run, pathologist, data, expected):
    review = review_save(case=case, user=pathologist, data=data, version=0)  # the IHC run says 2+
    assert review.is_disagreement is expected
    assert review.automated_her2 == "2+" and review.automated_her2_source == "analysis"


def test_agreement_needs_a_risk_group(case, pathologist):
    with pytest.raises(ValidationError):
        review_save(case=case, user=pathologist, data={"agrees": True}, version=0)
    # Without a score a HER2-only review is fine (and can be a disagreement).
    review = review_save(case=case, user=pathologist, data={"her2_score": "1+"}, version=0)
    assert review.is_disagreement and review.model_risk_group == ""


def test_submitted_review_must_be_complete_and_values_are_checked(case, scored, pathologist, api):
    api.login(pathologist)
    response = api.put(url(case), {"version": 0, "agrees": True, "submitted": True})
    assert response.status_code == 400 and "submitted" in response.json()
    response = api.put(url(case), {"version": 0, "confidence": 9, "her2_score": "4+"})
    assert response.status_code == 400 and {"confidence", "her2_score"} <= set(response.json())
    assert api.put(url(case), {"agrees": True}).status_code == 400  # no version
    assert not Review.objects.exists()


def test_stale_version_gets_409_and_loses_nothing(case, scored, pathologist, api):
    api.login(pathologist)
    assert api.put(url(case), {**FULL, "version": 0, "comment": "tab A"}).status_code == 200
    # Tab B opened the empty review too, and saves after A: conflict, A's text is kept.
    response = api.put(url(case), {**FULL, "version": 0, "comment": "tab B"})
    assert response.status_code == 409 and response.json()["current_version"] == 1
    assert api.put(url(case), {**FULL, "version": 1, "comment": "A again"}).status_code == 200
    response = api.put(url(case), {**FULL, "version": 1, "comment": "B on stale v1"})
    assert response.status_code == 409 and response.json()["current_version"] == 2
    assert Review.objects.get().comment == "A again"


@pytest.mark.django_db(transaction=True)
def test_concurrent_saves_of_the_same_version_one_wins_one_conflicts(case, scored, pathologist):
    review_save(case=case, user=pathologist, data=FULL, version=0)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def save(text):
        from django.db import connection
        try:
            barrier.wait()
            review_save(case=case, user=pathologist, data={**FULL, "comment": text}, version=1)
            outcomes.append("saved:" + text)
        except ConflictError:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=save, args=(t,)) for t in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(o.split(":")[0] for o in outcomes) == ["conflict", "saved"]
    review = Review.objects.get()
    assert review.version == 2
    assert "saved:" + review.comment in outcomes


def test_two_reviewers_keep_their_own_reviews(case, scored, pathologist, make_user, api):
    other = make_user("path2", "pathologist")
    review_save(case=case, user=pathologist, data=FULL, version=0)
    review_save(case=case, user=other, data={**FULL, "agrees": False}, version=0)
    assert Review.objects.count() == 2
    api.login(other)
    listing = api.get(f"/api/cases/{case.pk}/reviews/").json()
    assert {r["reviewer"] for r in listing} == {"path1", "path2"}


def test_presenter_and_anonymous_cannot_review(case, scored, presenter, api):
    assert api.put(url(case), {**FULL, "version": 0}).status_code in (401, 403)
    assert api.get(url(case)).status_code in (401, 403)
    api.login(presenter)
    assert api.get(url(case)).status_code == 200
    assert api.put(url(case), {**FULL, "version": 0}).status_code == 403
    with pytest.raises(PermissionDenied):
        review_save(case=case, user=presenter, data=FULL, version=0)


def test_only_known_roles_mark_a_case_discussed(case, make_user):
    with pytest.raises(PermissionDenied):
        case_mark_discussed(case=case, user=make_user("nobody"))
    case.refresh_from_db()
    assert case.status == "new"


def test_review_text_summarises_the_call(case, scored, pathologist):
    review = review_save(case=case, user=pathologist, data={**FULL, "agrees": False, "her2_score": "1+"}, version=0)
    assert review.text == ("path1: disagrees with risk group Low; expects pCR; HER2 1+ (automated 3+); "
                           "confidence 4/5; fine")
