"""The job list tells the truth: a scoring job that could not score says 'Not scored' and why;
a finished job says how it ended, not its last progress line; jobs name their slide."""
from __future__ import annotations

import pytest

from analysis.jobs.runner import job_run
from analysis.models import JobKind
from analysis.services import job_enqueue


@pytest.mark.django_db
def test_scoring_without_inputs_is_not_scored(client_for, pathologist, phantom_case, small_trained_model):
    from analysis.models import Job
    from analysis.scoring import model_register

    model_register(directory=small_trained_model, activate=True)
    Job.objects.all().delete()
    job = job_run(job_enqueue(kind=JobKind.SCORE_CASE, case=phantom_case).pk)
    assert job.status == "succeeded"  # the job itself ran fine ...
    assert job.outcome == "not_scored" and job.outcome_display == "Not scored"  # ... but the case has no score
    assert job.message == ("Not scored: needs the H&E slide's cell analysis (not run yet) and the HER2 IHC slide's "
                           "cell analysis (not run yet).")
    data = client_for(pathologist).get(f"/api/jobs/?case={phantom_case.pk}").json()
    row = (data.get("results") or data)[0]
    assert row["outcome"] == "not_scored" and row["outcome_display"] == "Not scored"
    html = client_for(pathologist).get("/cases/PHANTOM-1/").content.decode()
    assert "status-not_scored" in html and "Not scored" in html


@pytest.mark.django_db
def test_finished_job_drops_its_progress_line_and_names_its_slide(client_for, pathologist, he_slide):
    job = job_run(job_enqueue(kind=JobKind.SELFTEST, case=he_slide.case, slide=he_slide, params={"seconds": 0.2}).pk)
    assert job.status == "succeeded" and job.message == "Finished"  # not "step 2 of 2"
    failed = job_run(job_enqueue(kind=JobKind.SELFTEST, case=he_slide.case, params={"seconds": 0.1, "fail": "x"}).pk)
    assert failed.message == "Failed" and failed.error == "x"
    data = client_for(pathologist).get(f"/api/jobs/?case={he_slide.case.pk}").json()
    rows = {row["id"]: row for row in (data.get("results") or data)}
    assert rows[job.pk]["slide_name"] == "H&E · CMU-1-Small-Region.svs"
    assert rows[failed.pk]["slide_name"] == ""
    html = client_for(pathologist).get(f"/cases/{he_slide.case.case_id}/").content.decode()
    assert "· H&amp;E · CMU-1-Small-Region.svs" in html


@pytest.mark.django_db
def test_a_failure_a_later_run_has_done_is_marked_superseded(client_for, pathologist, he_slide):
    """Walk-through: an old "Not scored" / "Failed" entry stayed as if the case still had a problem."""
    from viewer.cases.selectors import case_jobs

    case = he_slide.case
    failed = job_run(job_enqueue(kind=JobKind.SELFTEST, case=case, slide=he_slide, params={"seconds": 0.1, "fail": "x"}).pk)
    other = job_run(job_enqueue(kind=JobKind.SELFTEST, case=case, params={"seconds": 0.1, "fail": "y"}).pk)  # no slide
    done = job_run(job_enqueue(kind=JobKind.SELFTEST, case=case, slide=he_slide, params={"seconds": 0.1}).pk)
    marks = {job.pk: job.superseded for job in case_jobs(case)}
    assert marks == {failed.pk: True, other.pk: False, done.pk: False}  # another slide's failure still stands
    html = client_for(pathologist).get(f"/cases/{case.case_id}/").content.decode()
    assert html.count("superseded") == 1 and "Failed · since done" in html
