"""Review form: the risk group the reviewer thinks right, HER2-ultralow and the ISH result, and
errors said in the form's words (no internal field names)."""
from __future__ import annotations

import pytest

from viewer.review.models import Review

pytestmark = pytest.mark.django_db


def url(case):
    return f"/api/cases/{case.pk}/reviews/mine/"


def test_risk_group_ultralow_and_ish_are_saved(case, scored, pathologist, api):
    api.login(pathologist)
    body = {"version": 0, "agrees": False, "risk_group": "High", "expected_response": "residual",
            "her2_score": "ultralow", "ish_result": "not_amplified", "confidence": 3, "submitted": True}
    response = api.put(url(case), body)
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["risk_group"] == "High" and data["her2_score"] == "ultralow" and data["ish_result"] == "not_amplified"
    review = Review.objects.get(case=case, reviewer=pathologist)
    assert review.is_disagreement and "thinks High risk is right" in review.text and "0 (HER2-ultralow)" in review.text
    page = api.get(f"/cases/{case.case_id}/").content.decode()
    assert 'value="ultralow"' in page and 'value="equivocal"' in page and 'name="risk_group"' in page


def test_ultralow_agrees_with_an_automated_zero(case, scored, pathologist, api):
    from cases.models import Case

    Case.objects.filter(pk=case.pk).update(her2_ihc="0")
    api.login(pathologist)
    response = api.put(url(case), {"version": 0, "agrees": True, "risk_group": "Low", "expected_response": "pcr",
                                   "her2_score": "ultralow", "submitted": True})
    assert response.status_code == 200, response.content
    assert response.json()["is_disagreement"] is False


def test_errors_are_said_in_the_forms_words(case, scored, pathologist, api):
    api.login(pathologist)
    reply = api.put(url(case), {"version": 0, "submitted": True}).json()
    text = " ".join(m for v in reply.values() for m in v)
    assert text == ("To submit the review, choose agree or disagree with the risk group, the expected response "
                    "and your HER2 IHC score; or save it as a draft.")
    for internal in ("agrees", "expected_response", "her2_score", "submitted:"):
        assert internal not in text
    contradiction = api.put(url(case), {"version": 0, "agrees": True, "risk_group": "High"})
    assert contradiction.status_code == 400
    assert "You agree with the model's Low risk group but chose High" in contradiction.json()["risk_group"][0]
    assert api.put(url(case), {"version": 0, "ish_result": "maybe"}).status_code == 400
