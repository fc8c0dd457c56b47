"""Reads of tumour-board sessions."""
from __future__ import annotations

import json

from django.conf import settings
from django.core.cache import cache
from django.db.models import QuerySet
from django.urls import reverse

from viewer.board.models import BoardRecord, BoardSession
from cases.models import Case

STATE_CACHE_TIMEOUT = 7 * 24 * 3600
BOARD_CHANNEL_LAYER = "board"


def board_channel_layer_alias() -> str:
    """A "board" channel layer when the settings define one (e.g. channels_redis' pub/sub layer,
    see docs/board.md), else the default layer."""
    return BOARD_CHANNEL_LAYER if BOARD_CHANNEL_LAYER in getattr(settings, "CHANNEL_LAYERS", {}) else "default"


def _finite(state) -> bool:
    """Only a state that serialises as strict JSON is handed out (one stored before non-finite
    numbers were refused is ignored rather than failing every reader)."""
    try:
        json.dumps(state, allow_nan=False)
    except (ValueError, TypeError):
        return False
    return True


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
    # An ended session is read-only: only its row counts (a socket may have cached a state late).
    cached = None if session.ended_at else cache.get(board_state_cache_key(session.key))
    if cached is not None and cached.get("seq", 0) >= session.state_seq and _finite(cached.get("state")):
        return cached
    if session.state is None or not _finite(session.state):
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
