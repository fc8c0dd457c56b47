"""Reads of tumour-board sessions."""
from __future__ import annotations

import json

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, QuerySet
from django.urls import reverse

from viewer.board.models import BoardRecord, BoardSession
from cases.models import Case, Role

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


PAST_BOARDS_SHOWN = 50


def board_past_list(*, limit: int = PAST_BOARDS_SHOWN) -> QuerySet[BoardSession]:
    """Ended sessions, the latest first, with how many records each left (read-only now)."""
    return (BoardSession.objects.filter(ended_at__isnull=False).select_related("presenter")
            .prefetch_related("items__case").annotate(record_count=Count("records"))
            .order_by("-ended_at")[:limit])


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


def board_record_data(record: BoardRecord) -> dict:
    """A board record as the API answers it and the board's websocket announces it."""
    return {"id": record.pk, "kind": record.kind, "case": record.case_id, "case_id": record.case.case_id,
            "slide": record.slide_id, "caption": record.caption, "viewport": record.viewport,
            "url": board_record_url(record), "size_bytes": record.size_bytes,
            "created_by": record.created_by.get_username() if record.created_by else None,
            "created_at": record.created_at.isoformat()}


def board_participants(session: BoardSession) -> list[dict]:
    """Everyone who joined, with whether they are connected now and may present (any role: a
    login without one may watch, never steer)."""
    roles = set(Role.values)
    participants = session.participants.select_related("user").prefetch_related("user__groups").order_by("joined_at")
    return [{"id": p.user_id, "username": p.user.get_username(), "connected": p.connections > 0,
             "can_present": p.user.is_superuser or any(g.name in roles for g in p.user.groups.all())}
            for p in participants]


def board_case_discussion(case) -> dict:
    """What the board discusses beside the score: the case's reviews and its open annotations
    (every annotation marks where a reviewer disagrees with the automated result: misclassified
    cells, missed tumour, HER2 grade wrong, artefact), each with the bounding box the presenter
    jumps to and the geometry outlined there (level-0 px of its slide)."""
    from django.utils import timezone

    from viewer.review import selectors as review_selectors

    reviews = []
    for r in review_selectors.case_reviews(case):
        call = "no call" if r.agrees is None else ("agrees" if r.agrees else "disagrees")
        reviews.append({
            "reviewer": r.reviewer.get_username(), "call": call, "model_risk_group": r.model_risk_group,
            "risk_group": r.risk_group, "her2": r.get_her2_score_display() if r.her2_score else "",
            "automated_her2": r.automated_her2, "ish": r.get_ish_result_display() if r.ish_result else "",
            "expected": r.get_expected_response_display() if r.expected_response else "",
            "confidence": r.confidence, "comment": r.comment, "submitted": r.submitted,
            "disagreement": r.is_disagreement, "saved": f"{timezone.localtime(r.updated_at):%Y-%m-%d %H:%M}",
        })
    annotations = []
    for stain in ("he", "ihc"):
        slide = case.slide_for(stain)
        if slide is None:
            continue
        for a in review_selectors.slide_annotations(slide):
            points = _geometry_points(a.geometry)
            if not points:
                continue
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            annotations.append({
                "id": a.pk, "slide": slide.pk, "stain": stain, "stain_label": slide.get_stain_display(),
                "label": a.label.name, "color": a.label.color, "shape": a.get_shape_display(),
                "author": a.author.get_username() if a.author else "", "comment": a.comment,
                "bbox": [min(xs), min(ys), max(xs), max(ys)],
                "geometry": a.geometry,  # drawn on its slide when the board goes to it
            })
    return {"reviews": reviews, "annotations": annotations,
            "disagreements": sum(1 for r in reviews if r["disagreement"] and r["submitted"])}


def _geometry_points(geometry) -> list[tuple[float, float]]:
    """The vertices of a GeoJSON Point / Polygon / MultiPolygon (level-0 px)."""
    if not isinstance(geometry, dict):
        return []
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    try:
        if kind == "Point":
            return [(float(coords[0]), float(coords[1]))]
        if kind == "Polygon":
            return [(float(x), float(y)) for ring in coords for x, y, *_ in ring]
        if kind == "MultiPolygon":
            return [(float(x), float(y)) for poly in coords for ring in poly for x, y, *_ in ring]
    except (TypeError, ValueError, IndexError):
        return []
    return []
