"""The case status the analysis pipeline owns: New → Analysing (a cell analysis or scoring is
queued or running) → Ready for review (scored). Statuses set by people (in review, reviewed,
discussed at tumour board) are never taken back by a job."""
from __future__ import annotations

import logging

from analysis.models import ACTIVE_STATUSES, Job, JobKind, ScoreStatus
from cases.models import CaseStatus
from cases.status import case_status_change

logger = logging.getLogger(__name__)

PIPELINE_KINDS = (JobKind.ANALYZE_SLIDE, JobKind.SCORE_CASE)
PIPELINE_STATUSES = (CaseStatus.NEW, CaseStatus.ANALYSING, CaseStatus.READY)


def case_pipeline_status(case) -> str:
    """What the pipeline says of the case now: analysing, ready (its latest score is a score) or new."""
    if Job.objects.filter(case=case, kind__in=PIPELINE_KINDS, status__in=ACTIVE_STATUSES).exists():
        return CaseStatus.ANALYSING
    latest = case.scores.order_by("-created_at", "-id").values_list("status", flat=True).first()
    return CaseStatus.READY if latest == ScoreStatus.SCORED else CaseStatus.NEW


def case_status_sync(case) -> bool:
    """Bring a case's status in line with its jobs and score (a pipeline status only); audited
    when it changes. True when it changed."""
    return case_status_change(case=case, to=case_pipeline_status(case), allowed_from=PIPELINE_STATUSES,
                              detail={"by": "analysis pipeline"})


def case_status_sync_after(job) -> None:
    """After a pipeline job was queued or ended; never fails the job that calls it."""
    if job.kind not in PIPELINE_KINDS or job.case_id is None:
        return
    try:
        case_status_sync(job.case)
    except Exception:  # noqa: BLE001 - the job's own outcome is recorded; the status catches up next time
        logger.exception("case %s: the status could not follow job %s", job.case_id, job.pk)
