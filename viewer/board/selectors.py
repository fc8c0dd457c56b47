"""Reads of tumour-board sessions."""
from __future__ import annotations

from django.core.cache import cache
from django.db.models import QuerySet
from django.urls import reverse

from viewer.board.models import BoardRecord, BoardSession
from cases.models import Case

STATE_CACHE_TIMEOUT = 7 * 24 * 3600


def board_state_cache_key(session_key: str) -> str:
    return f"board:state:{session_key}"


def board_group_name(session_key: str) -> str:
    return f"board-{session_key}"


def board_list(*, include_ended: bool = False) -> QuerySet[BoardSession]:
    sessions = BoardSession.objects.select_related("presenter", "driver").prefetch_related("items__case")
    if not include_ended:
        sessions = sessions.filter(ended_at__isnull=True)
    return sessions.order_by("-created_at")


def board_sessions_with_case(case: Case) -> QuerySet[BoardSession]:
    return board_list().filter(items__case=case).distinct()


def board_playlist(session: BoardSession) -> list[Case]:
    return [item.case for item in session.items.select_related("case").order_by("position")]


def board_latest_state(session: BoardSession) -> dict | None:
    """{"state", "seq"}: the cache first (shared by all web processes with Redis), then the DB row."""
    cached = cache.get(board_state_cache_key(session.key))
    if cached is not None and cached.get("seq", 0) >= session.state_seq:
        return cached
    if session.state is None:
        return None
    return {"state": session.state, "seq": session.state_seq}


def board_current_case(session: BoardSession, *, requested: int | None = None) -> Case | None:
    """The case to show: the requested one if on the playlist, else the driver's, else the first."""
    playlist = board_playlist(session)
    by_pk = {case.pk: case for case in playlist}
    if requested in by_pk:
        return by_pk[requested]
    latest = board_latest_state(session)
    case_pk = (latest or {}).get("state", {}).get("case") if latest else None
    if case_pk in by_pk:
        return by_pk[case_pk]
    return playlist[0] if playlist else None


def board_records(session: BoardSession) -> QuerySet[BoardRecord]:
    return session.records.select_related("case", "slide", "created_by").order_by("created_at")


def board_record_url(record: BoardRecord) -> str:
    return reverse("board-record-file", args=[record.session_id, record.pk])


def board_participants(session: BoardSession) -> list[dict]:
    return [{"id": p.user_id, "username": p.user.get_username()}
            for p in session.participants.select_related("user").order_by("joined_at")]
