"""The audit log: one append-only row per import, analysis, review, annotation or activation."""
from __future__ import annotations

from cases.models import AuditEvent


def audit_record(*, user=None, action: str, case=None, slide=None, detail: dict | None = None) -> AuditEvent:
    return AuditEvent.objects.create(
        user=user if getattr(user, "is_authenticated", False) else None,
        action=action,
        case=case,
        slide=slide,
        detail=detail or {},
    )
