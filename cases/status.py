"""Moving a case between statuses (cases.models.CaseStatus): one place that changes the row and
writes the audit event, and only for a real change (never "discussed → discussed")."""
from __future__ import annotations

from collections.abc import Iterable

from cases.audit import audit_record
from cases.models import Case

_ATTEMPTS = 3  # compare-and-set retries when another process changes the status meanwhile


def case_status_change(*, case: Case, to: str, allowed_from: Iterable[str] | None = None, user=None,
                       action: str = "case.status", detail: dict | None = None) -> bool:
    """Set the case's status to `to` when it is in `allowed_from` (any status when None) and not
    `to` already; audit `action` with {"from", "to", **detail}. True when the status changed.

    A compare-and-set on the row, so the audited "from" is the status actually replaced even when
    a job and a reviewer change the case at the same moment."""
    allowed = None if allowed_from is None else set(allowed_from)
    for _ in range(_ATTEMPTS):
        previous = Case.objects.filter(pk=case.pk).values_list("status", flat=True).first()
        if previous is None or previous == to or (allowed is not None and previous not in allowed):
            if previous is not None:
                case.status = previous
            return False
        if Case.objects.filter(pk=case.pk, status=previous).update(status=to):
            case.status = to
            audit_record(user=user, action=action, case=case, detail={"from": previous, "to": to, **(detail or {})})
            return True
    return False
