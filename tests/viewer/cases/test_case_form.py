"""Cases entered in the page: AJCC 8th stage table, HR derivation, the form's validation, and a
case whose inputs become complete gets scored (real model, real worker function)."""
from __future__ import annotations

import re

import pytest

from viewer.cases.clinical import anatomic_stage_group, anatomic_substage, hr_status_from


@pytest.mark.parametrize(("t", "n", "substage"), [
    ("T1", "N0", "IA"), ("T1", "N1", "IIA"), ("T2", "N0", "IIA"), ("T2", "N1", "IIB"), ("T3", "N0", "IIB"),
    ("T1", "N2", "IIIA"), ("T2", "N2", "IIIA"), ("T3", "N1", "IIIA"), ("T3", "N2", "IIIA"),
    ("T4", "N0", "IIIB"), ("T4", "N1", "IIIB"), ("T4", "N2", "IIIB"),
    ("T1", "N3", "IIIC"), ("T2", "N3", "IIIC"), ("T3", "N3", "IIIC"), ("T4", "N3", "IIIC"),
    ("", "N0", ""), ("T2", "", ""),
])
def test_ajcc8_anatomic_stage_table(t, n, substage):
    assert anatomic_substage(t, n) == substage
    assert anatomic_stage_group(t, n) == substage.rstrip("ABC")


def test_every_recorded_t_and_n_has_a_stage():
    from cases.models import ClinicalN, ClinicalStage, ClinicalT

    for t in ClinicalT.values:
        for n in ClinicalN.values:
            assert anatomic_stage_group(t, n) in ClinicalStage.values


@pytest.mark.parametrize(("er", "pr", "hr"), [
    ("positive", "negative", "positive"), ("negative", "positive", "positive"), ("positive", "positive", "positive"),
    ("negative", "negative", "negative"), ("negative", "", ""), ("", "", ""), ("", "positive", "positive"),
])
def test_hr_status_from_er_and_pr(er, pr, hr):
    assert hr_status_from(er, pr) == hr


def _post(client, url, **values):
    data = {"age": "", "clinical_t": "", "clinical_n": "", "clinical_stage": "", "er_status": "", "pr_status": "",
            "hr_status": "", "her2_ihc": "", "grade": "", "regimen": "", "pcr": "unknown", "notes": ""}
    data.update(values)
    return client.post(url, data)


@pytest.mark.django_db
def test_pathologist_creates_a_case_with_derived_values(client_for, pathologist):
    from cases.models import AuditEvent, Case

    client = client_for(pathologist)
    assert client.get("/cases/new/").status_code == 200
    response = _post(client, "/cases/new/", case_id="NEW-7", age="48", clinical_t="T2", clinical_n="N1",
                     er_status="negative", pr_status="positive", her2_ihc="3+")
    assert response.status_code == 302 and response["Location"] == "/cases/NEW-7/"
    case = Case.objects.get(case_id="NEW-7")
    assert case.clinical_stage == "II" and case.hr_status == "positive" and case.age == 48 and case.pcr is None
    assert AuditEvent.objects.filter(action="case.create", case=case).exists()


@pytest.mark.django_db
def test_form_refuses_bad_input_with_messages(client_for, pathologist, case):
    client = client_for(pathologist)
    bad = _post(client, "/cases/new/", case_id="John Smith", age="130", er_status="positive", pr_status="negative",
                hr_status="negative")
    assert bad.status_code == 400
    text = bad.content.decode()
    assert "Letters, digits" in text and "less than or equal to 120" in text and "contradicts" in text
    assert "reserved" in _post(client, "/cases/new/", case_id="new").content.decode()
    duplicate = _post(client, "/cases/new/", case_id="CASE-1")
    assert duplicate.status_code == 400 and "already exists" in duplicate.content.decode()


@pytest.mark.django_db
def test_a_stage_that_contradicts_t_and_n_must_be_confirmed(client_for, pathologist, case):
    client = client_for(pathologist)
    values = dict(age="51", clinical_t="T2", clinical_n="N1", clinical_stage="III", er_status="positive",
                  pr_status="negative", her2_ihc="3+")
    refused = _post(client, "/cases/CASE-1/edit/", **values)
    assert refused.status_code == 400
    text = refused.content.decode()
    assert "Stage III contradicts T2 N1, which is stage II (IIB, AJCC 8th anatomic)" in text
    assert 'name="confirm_stage"' in text  # the confirmation appears with the contradiction
    case.refresh_from_db()
    assert case.clinical_stage == "II"
    response = _post(client, "/cases/CASE-1/edit/", **values, confirm_stage="on")
    assert response.status_code == 302
    case.refresh_from_db()
    assert case.clinical_stage == "III" and case.hr_status == "positive"
    # confirmed once: later edits of other fields do not ask again
    assert _post(client, "/cases/CASE-1/edit/", **{**values, "age": "52"}).status_code == 302
    html = client.get("/cases/CASE-1/").content.decode()
    assert "(entered; T2 N1 gives IIB)" in html


@pytest.mark.django_db
def test_the_form_shows_derived_values_as_derived(client_for, pathologist):
    from cases.models import Case

    client = client_for(pathologist)
    assert 'name="confirm_stage"' not in client.get("/cases/new/").content.decode()
    _post(client, "/cases/new/", case_id="DERIVE-0", clinical_t="T2", clinical_n="N1", er_status="positive",
          pr_status="negative")
    case = Case.objects.get(case_id="DERIVE-0")
    assert (case.clinical_stage, case.hr_status) == ("II", "positive")
    html = client.get("/cases/DERIVE-0/edit/").content.decode()
    # not pre-selected as if entered: the blank choice is selected and says what it gives
    stage = re.search(r'<select name="clinical_stage"[^>]*>(.*?)</select>', html, re.S).group(1)
    assert '<option value="" selected>derived: II (IIB)</option>' in stage and 'value="II" selected' not in stage
    hr = re.search(r'<select name="hr_status"[^>]*>(.*?)</select>', html, re.S).group(1)
    assert '<option value="" selected>derived: positive</option>' in hr
    assert "(derived from T2 N1: IIB)" in client.get("/cases/DERIVE-0/").content.decode()


@pytest.mark.django_db
def test_derived_values_follow_their_inputs_but_entered_ones_stay(client_for, pathologist):
    from cases.models import Case

    client = client_for(pathologist)
    _post(client, "/cases/new/", case_id="DERIVE-1", clinical_t="T2", clinical_n="N1", er_status="positive",
          pr_status="negative")
    case = Case.objects.get(case_id="DERIVE-1")
    # derived (left blank, as the form shows them): stage and HR follow new T/N and ER/PR
    _post(client, "/cases/DERIVE-1/edit/", clinical_t="T2", clinical_n="N2", er_status="negative", pr_status="negative")
    case.refresh_from_db()
    assert (case.clinical_stage, case.hr_status) == ("III", "negative")
    # a value chosen by hand is never silently re-derived: II with T3 N1 is a contradiction to confirm
    response = _post(client, "/cases/DERIVE-1/edit/", clinical_t="T3", clinical_n="N1", clinical_stage="II",
                     er_status="negative", pr_status="negative")
    assert response.status_code == 400 and "Stage II contradicts T3 N1" in response.content.decode()
    _post(client, "/cases/DERIVE-1/edit/", clinical_t="T3", clinical_n="N1", clinical_stage="II",
          er_status="negative", pr_status="negative", confirm_stage="on")
    case.refresh_from_db()
    assert case.clinical_stage == "II"
    html = client.get("/cases/DERIVE-1/edit/").content.decode()
    stage = re.search(r'<select name="clinical_stage"[^>]*>(.*?)</select>', html, re.S).group(1)
    assert '<option value="II" selected>II</option>' in stage and "derived: III (IIIA)" in stage
    # new T/N: the entered stage stays, and contradicts them: confirm again
    response = _post(client, "/cases/DERIVE-1/edit/", clinical_t="T4", clinical_n="N1", clinical_stage="II",
                     er_status="negative", pr_status="negative")
    assert response.status_code == 400
    case.refresh_from_db()
    assert (case.clinical_t, case.clinical_stage) == ("T3", "II")


@pytest.mark.django_db
def test_only_editors_use_the_form(client, client_for, presenter, case):
    assert client.get("/cases/new/").status_code in (302, 403)
    client = client_for(presenter)
    assert client.get("/cases/new/").status_code == 403
    assert client.get("/cases/CASE-1/edit/").status_code == 403
    assert _post(client, "/cases/CASE-1/edit/", age="20").status_code == 403


@pytest.mark.django_db
def test_case_whose_inputs_become_complete_gets_scored(client_for, pathologist, phantom_case, small_trained_model):
    from analysis.jobs.runner import job_run
    from analysis.models import Job, JobKind, ScoreStatus
    from analysis.scoring import case_latest_score, case_score_compute, model_register
    from tests.analysis.test_scoring import _give_features

    model_register(directory=small_trained_model, activate=True)
    Job.objects.all().delete()
    _give_features(phantom_case, small_trained_model)
    phantom_case.age = None
    for name in ("clinical_t", "clinical_n", "clinical_stage", "er_status", "pr_status", "hr_status", "her2_ihc"):
        setattr(phantom_case, name, "")
    phantom_case.grade = None
    phantom_case.save()
    assert case_score_compute(case=phantom_case).status == ScoreStatus.MISSING_INPUTS  # no clinical inputs

    client = client_for(pathologist)
    response = _post(client, "/cases/PHANTOM-1/edit/", age="55", clinical_t="T2", clinical_n="N0",
                     er_status="positive", pr_status="positive", her2_ihc="3+", grade="2")
    assert response.status_code == 302
    job = Job.objects.get(case=phantom_case, kind=JobKind.SCORE_CASE, status="queued")
    job = job_run(job.pk)
    assert job.status == "succeeded" and job.outcome == "succeeded" and job.message.startswith("Scored:")
    score = case_latest_score(phantom_case)
    assert score.status == ScoreStatus.SCORED and score.risk_group in {"Low", "Medium", "High"}
    phantom_case.refresh_from_db()
    assert phantom_case.clinical_stage == "II" and phantom_case.hr_status == "positive"
