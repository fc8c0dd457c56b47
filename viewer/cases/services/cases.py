"""Case writes."""
from __future__ import annotations

from cases.models import Case
from cases.audit import audit_record

CLINICAL_FIELDS = ("age", "clinical_t", "clinical_n", "clinical_stage", "er_status", "pr_status", "hr_status",
                   "her2_ihc", "grade", "regimen", "pcr")


def case_create(*, case_id: str, user=None, **clinical) -> Case:
    case = Case(case_id=case_id, **clinical)
    case.full_clean()
    case.save()
    audit_record(user=user, action="case.create", case=case, detail={"case_id": case_id})
    return case


def case_update_clinical(*, case: Case, user=None, **changes) -> Case:
    unknown = set(changes) - set(CLINICAL_FIELDS) - {"notes", "status"}
    if unknown:
        raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
    before = {name: getattr(case, name) for name in changes}
    for name, value in changes.items():
        setattr(case, name, value)
    case.full_clean()
    case.save()
    audit_record(user=user, action="case.update", case=case, detail={"before": before, "after": changes})
    if set(changes) & set(CLINICAL_FIELDS):
        from analysis.scoring import score_enqueue

        score_enqueue(case=case, user=user)  # clinical inputs changed: re-score
    return case
