"""A case's status follows the analysis pipeline: New → Analysing (an analysis or scoring queued
or running) → Ready for review (scored); back to New when the pipeline stops without a score.
Statuses set by people (in review, reviewed, discussed) are never taken back by a job, and the
audit log records real changes only."""
from __future__ import annotations

import pytest

from analysis.jobs.runner import job_claim, job_execute
from analysis.models import Job, JobKind, JobStatus
from analysis.scoring import model_register
from analysis.services import analysis_enqueue, job_cancel
from cases.models import AuditEvent, CaseStatus, Stain
from tests.analysis.test_scoring import _give_features

pytestmark = pytest.mark.django_db(transaction=True)


def run_now(job: Job) -> Job:
    """Run a queued job in this process, exactly as a worker does."""
    return job_execute(job_claim(job_id=job.pk, worker="test"))


def _queued_scoring(case) -> Job:
    return Job.objects.get(case=case, kind=JobKind.SCORE_CASE, status=JobStatus.QUEUED)


def _status(case) -> str:
    case.refresh_from_db()
    return case.status


def _transitions(case) -> list[tuple[str, str]]:
    return [(e.detail["from"], e.detail["to"])
            for e in AuditEvent.objects.filter(case=case, action__in=["case.status", "case.discussed"]).order_by("id")]


def test_analysed_and_scored_case_is_ready_for_review(phantom_case, small_trained_model):
    assert _status(phantom_case) == CaseStatus.NEW
    _give_features(phantom_case, small_trained_model)  # what the two cell analyses leave behind
    model_register(directory=small_trained_model, activate=True)  # activation queues the scoring
    job = _queued_scoring(phantom_case)
    assert _status(phantom_case) == CaseStatus.ANALYSING
    assert run_now(job).status == JobStatus.SUCCEEDED and phantom_case.scores.get().status == "scored"
    assert _status(phantom_case) == CaseStatus.READY
    assert _transitions(phantom_case) == [("new", "analysing"), ("analysing", "ready")]


def test_an_analysis_queued_then_cancelled_leaves_the_case_new(phantom_case):
    job = analysis_enqueue(slide=phantom_case.slide_for(Stain.HE))
    assert _status(phantom_case) == CaseStatus.ANALYSING
    job_cancel(job=job)
    assert _status(phantom_case) == CaseStatus.NEW  # nothing runs, nothing scored: not ready


def test_scoring_without_all_inputs_does_not_make_the_case_ready(phantom_case, small_trained_model):
    model_register(directory=small_trained_model, activate=True)
    job = run_now(_queued_scoring(phantom_case))
    assert job.status == JobStatus.SUCCEEDED and job.result["status"] == "missing_inputs"
    assert _status(phantom_case) == CaseStatus.NEW


@pytest.mark.parametrize("reviewed", [CaseStatus.IN_REVIEW, CaseStatus.REVIEWED, CaseStatus.DISCUSSED])
def test_a_rescore_never_takes_a_reviewed_case_back(phantom_case, small_trained_model, reviewed):
    _give_features(phantom_case, small_trained_model)
    type(phantom_case).objects.filter(pk=phantom_case.pk).update(status=reviewed)
    model_register(directory=small_trained_model, activate=True)
    run_now(_queued_scoring(phantom_case))
    assert _status(phantom_case) == reviewed
    assert _transitions(phantom_case) == []


def test_discussed_twice_is_audited_once(phantom_case, presenter):
    from viewer.review.services import case_mark_discussed

    case_mark_discussed(case=phantom_case, user=presenter)
    case_mark_discussed(case=phantom_case, user=presenter)  # a second PDF summary of the same case
    assert _status(phantom_case) == CaseStatus.DISCUSSED
    assert _transitions(phantom_case) == [("new", "discussed")]  # never "discussed → discussed"
