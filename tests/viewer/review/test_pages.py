"""Pages: review panel on the case page, disagreement queue + CSV, admin-only audit log."""
from __future__ import annotations

import csv
import io
import re

import pytest

from viewer.review.services import annotation_create, review_save

pytestmark = pytest.mark.django_db

FULL = {"agrees": False, "expected_response": "residual", "her2_score": "2+", "confidence": 3,
        "comment": "=HYPERLINK(1)", "submitted": True}


def test_case_page_shows_the_review_and_annotation_panels(case, slides, scored, pathologist, presenter, client):
    client.force_login(pathologist)
    html = client.get(f"/cases/{case.case_id}/").content.decode()
    assert 'id="review-form"' in html and 'id="annotation-card"' in html and 'data-tool="polygon"' in html
    assert "annotorious-openseadragon.js" in html and "/review/disagreements/" in html
    assert "Low" in html
    client.force_login(presenter)
    html = client.get(f"/cases/{case.case_id}/").content.decode()
    assert 'id="review-form"' not in html and 'data-tool="polygon"' not in html and 'id="an-list"' in html


def test_disagreement_queue_and_csv(case, slides, scored, pathologist, make_user, client):
    from cases.models import Case

    agreeing = Case.objects.create(case_id="CASE-2", her2_ihc="3+")
    review_save(case=case, user=pathologist, data=FULL, version=0)
    review_save(case=agreeing, user=pathologist, data={"her2_score": "3+"}, version=0)
    annotation_create(slide=slides[0], user=pathologist, label="artefact",
                      geometry={"type": "Point", "coordinates": [1, 1]})
    client.force_login(make_user("someone"))
    html = client.get("/review/disagreements/").content.decode()
    assert 'data-case="CASE-1"' in html and 'data-case="CASE-2"' not in html
    assert f"/api/slides/{slides[0].pk}/annotations.geojson" in html
    response = client.get("/review/disagreements.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 1
    row = rows[0]
    assert (row["case_id"], row["reviewer"], row["agrees_with_risk_group"], row["model_risk_group"]) == \
        ("CASE-1", "path1", "no", "Low")
    assert (row["reviewer_her2"], row["automated_her2"], row["automated_her2_source"]) == ("2+", "3+", "clinical")
    assert row["expected_response"] == "residual" and row["confidence"] == "3"
    assert row["comment"] == "'=HYPERLINK(1)"  # no spreadsheet formula
    assert row["he_annotations"] == "1" and row["ihc_annotations"] == "0"


def test_audit_log_is_for_admins_and_filters(case, scored, pathologist, presenter, admin_user_role, client):
    from cases.models import AuditEvent

    review_save(case=case, user=pathologist, data=FULL, version=0)
    client.force_login(pathologist)
    assert client.get("/audit/").status_code == 403
    client.force_login(presenter)
    assert client.get("/audit/").status_code == 403
    client.logout()
    assert client.get("/audit/").status_code == 302  # to the login page
    client.force_login(admin_user_role)
    html = client.get("/audit/").content.decode()
    assert "review.submit" in html and "case.status" in html
    html = client.get("/audit/?action=review.submit&user=path1&case=CASE-1").content.decode()
    assert html.count('class="audit-row"') == 1
    assert client.get("/audit/?user=admin1").content.decode().count('class="audit-row"') == 0
    today = AuditEvent.objects.first().at.date().isoformat()
    assert client.get(f"/audit/?date_from={today}&date_to={today}").content.decode().count('class="audit-row"') >= 2
    assert client.get("/audit/?date_to=2000-01-01").content.decode().count('class="audit-row"') == 0
    assert client.get("/audit/?date_from=not-a-date").status_code == 200


def test_labels_are_editable_in_the_admin(client, django_user_model):
    superuser = django_user_model.objects.create_superuser("root", password="a-Long-test-passw0rd")
    client.force_login(superuser)
    assert client.get("/admin/review/annotationlabel/").status_code == 200
    response = client.get("/admin/review/annotation/")
    assert response.status_code == 200


def _cells(row_html: str) -> list[str]:
    """A table row's cells as text: tags out, white space collapsed."""
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", cell)).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row_html, re.S)]


def test_disagreement_queue_names_both_risk_groups_and_the_ish_result(case, slides, scored, pathologist, make_user,
                                                                      client):
    from analysis.models import CaseScore
    from cases.models import Case

    other = Case.objects.create(case_id="CASE-3", her2_ihc="3+")
    CaseScore.objects.create(case=other, model=scored.model, schema_version="1", probability_pcr=0.5, score=50.0,
                             base_value=0.5, risk_group="Medium")
    review_save(case=case, user=pathologist, version=0, data={
        **FULL, "risk_group": "High", "ish_result": "amplified"})
    review_save(case=other, user=pathologist, version=0, data={"agrees": False, "her2_score": "3+"})
    client.force_login(make_user("someone"))
    html = client.get("/review/disagreements/").content.decode()
    assert "<th>ISH</th>" in html
    row = re.search(r'<tr data-case="CASE-1">(.*?)</tr>', html, re.S).group(1)
    cells = _cells(row)
    assert "model: Low · reviewer: High" in cells and "Amplified" in cells
    assert "disagrees" not in " ".join(cells)  # the reviewer's group, not just "Low → disagrees"
    # disagreeing without naming a group, and no ISH done
    row = re.search(r'<tr data-case="CASE-3">(.*?)</tr>', html, re.S).group(1)
    cells = _cells(row)
    assert "model: Medium · reviewer: disagrees (no group given)" in cells and cells[7] == "–"  # the ISH column
    exported = client.get("/review/disagreements.csv").content.decode()
    rows = {r["case_id"]: r for r in csv.DictReader(io.StringIO(exported))}
    assert (rows["CASE-1"]["reviewer_risk_group"], rows["CASE-1"]["ish_result"]) == ("High", "amplified")
    assert (rows["CASE-3"]["reviewer_risk_group"], rows["CASE-3"]["ish_result"]) == ("", "")
