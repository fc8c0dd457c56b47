"""Writes of tumour-board sessions: create, join, driver state, handover, board record files."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from viewer.board.models import BoardItem, BoardParticipant, BoardRecord, BoardSession, RecordKind
from viewer.board.selectors import STATE_CACHE_TIMEOUT, board_state_cache_key
from cases.models import Case, Role, Slide, SlideStatus, Stain
from analysis.core.files import atomic_write_bytes
from cases.audit import audit_record
from cases.roles import user_has_role
from viewer.overlays.services import overlay_render_region
from viewer.review import selectors as review_selectors

logger = logging.getLogger(__name__)

MAX_PLAYLIST = 50
MAX_SNAPSHOT_SIDE = 4096
MAX_READ_PIXELS = 64_000_000  # pixels read from the chosen pyramid level for one snapshot


class BoardError(ValueError):
    """A request the board cannot carry out (bad input); the message is shown to the user."""


class BoardPermissionError(PermissionError):
    pass


class BoardEndedError(BoardError):
    """The session has ended: its record and state are read-only (HTTP 409, websocket 4409)."""


ENDED_MESSAGE = "This tumour board has ended; its record is read-only."
MAX_STATE_BYTES = 32 * 1024


def board_ensure_open(session: BoardSession) -> None:
    if session.ended_at is not None:
        raise BoardEndedError(ENDED_MESSAGE)


def board_state_encode(state) -> str:
    """The driver's state as compact JSON, or BoardError: an object, at most MAX_STATE_BYTES, and
    finite numbers only (a NaN would reach late joiners as a bare `NaN`, which JSON.parse rejects,
    and make the board API fail while it is cached)."""
    if not isinstance(state, dict):
        raise BoardError("state must be an object.")
    try:
        encoded = json.dumps(state, separators=(",", ":"), allow_nan=False)
    except ValueError:
        raise BoardError("state must contain only finite numbers (no NaN or Infinity).") from None
    except (TypeError, RecursionError):
        raise BoardError("state must be plain JSON.") from None
    if len(encoded) > MAX_STATE_BYTES:
        raise BoardError(f"state is larger than {MAX_STATE_BYTES} bytes.")
    return encoded


def user_can_present(user) -> bool:
    """Presenters and admins make sessions (and so drive them)."""
    return user_has_role(user, Role.PRESENTER, Role.ADMIN)


def user_can_record(user) -> bool:
    """Snapshots and summaries for the board record: any role (not a user without one)."""
    return user_has_role(user, Role.PRESENTER, Role.PATHOLOGIST, Role.ADMIN)


def board_create(*, user, cases: list[Case], title: str = "") -> BoardSession:
    if not user_can_present(user):
        raise BoardPermissionError("Only presenters and admins can start a tumour board.")
    unique: list[Case] = []
    for case in cases:
        if case not in unique:
            unique.append(case)
    if not unique:
        raise BoardError("A tumour board needs at least one case.")
    if len(unique) > MAX_PLAYLIST:
        raise BoardError(f"At most {MAX_PLAYLIST} cases per session.")
    title = (title or "").strip()[:200] or f"Tumour board {timezone.now():%Y-%m-%d}"
    with transaction.atomic():
        session = BoardSession.objects.create(title=title, presenter=user, driver=user)
        BoardItem.objects.bulk_create(
            [BoardItem(session=session, case=case, position=i) for i, case in enumerate(unique)])
        BoardParticipant.objects.create(session=session, user=user)
        audit_record(user=user, action="board.create", case=unique[0],
                     detail={"session": session.pk, "cases": [c.pk for c in unique]})
    return session


def board_join(*, session: BoardSession, user) -> BoardParticipant:
    """A websocket of `user` opened on the session: a participant, connected now."""
    participant, _ = BoardParticipant.objects.get_or_create(session=session, user=user)
    BoardParticipant.objects.filter(pk=participant.pk).update(connections=F("connections") + 1,
                                                              last_seen=timezone.now())
    participant.refresh_from_db(fields=["connections", "last_seen"])
    return participant


def board_leave(*, session_id: int, user) -> None:
    """A websocket of `user` closed; the user stays a participant, connected while another is open."""
    BoardParticipant.objects.filter(session_id=session_id, user=user, connections__gt=0).update(
        connections=F("connections") - 1, last_seen=timezone.now())


def board_state_store(*, session_id: int, session_key: str, state: dict, seq: int, persist: bool) -> None:
    """Keep the latest state for late joiners: always in the cache (Redis in scale-out, so every
    web process sees it), and in the session row when `persist` (throttled by the consumer).
    Refused (BoardError) for a non-finite or oversized state; an ended session's row is never written."""
    board_state_encode(state)
    cache.set(board_state_cache_key(session_key), {"state": state, "seq": seq}, STATE_CACHE_TIMEOUT)
    if persist:
        BoardSession.objects.filter(pk=session_id, state_seq__lte=seq, ended_at__isnull=True).update(
            state=state, state_seq=seq, state_at=timezone.now())


def board_handover(*, session: BoardSession, by, to_user_id) -> "settings.AUTH_USER_MODEL":
    """The driver (or the presenter, taking it back) hands the controls to another user."""
    session.refresh_from_db(fields=["driver", "ended_at"])
    board_ensure_open(session)
    if by.pk not in (session.driver_id, session.presenter_id):
        raise BoardPermissionError("Only the driver or the presenter can hand over.")
    try:
        target = get_user_model().objects.get(pk=int(to_user_id), is_active=True)
    except (TypeError, ValueError, get_user_model().DoesNotExist):
        raise BoardError("No such user to hand over to.") from None
    if not user_can_record(target):  # a login without a role may watch, never steer
        raise BoardError(f"{target.get_username()} has no role that may present.")
    previous = session.driver_id
    session.driver = target
    session.save(update_fields=["driver"])
    BoardParticipant.objects.get_or_create(session=session, user=target)
    audit_record(user=by, action="board.handover",
                 detail={"session": session.pk, "from": previous, "to": target.pk})
    return target


def user_can_end(*, session: BoardSession, user) -> bool:
    """The presenter who made the session, or an admin."""
    return user.pk == session.presenter_id or user_has_role(user, Role.ADMIN)


def board_end(*, session: BoardSession, user) -> None:
    if not user_can_end(session=session, user=user):
        raise BoardPermissionError("Only the presenter or an admin can end the session.")
    if session.ended_at is not None:
        return
    session.ended_at = timezone.now()
    session.save(update_fields=["ended_at"])
    cache.delete(board_state_cache_key(session.key))  # the row keeps the last state; nothing newer is taken
    audit_record(user=user, action="board.end", detail={"session": session.pk})
    transaction.on_commit(lambda: _close_sockets(session.key))


def _announce_record(session_key: str, record: BoardRecord) -> None:
    """Tell the session's open websockets (viewer.board.consumers) of a new board record, so that
    everyone following sees it in their "Board record" list at once, not after a reload."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from viewer.board.selectors import board_channel_layer_alias, board_group_name, board_record_data

    try:
        data = board_record_data(record)
        # the time as the page's list shows it (the server's time zone, to the minute)
        data["created_time"] = f"{timezone.localtime(record.created_at):%H:%M}"
        async_to_sync(get_channel_layer(board_channel_layer_alias()).group_send)(
            board_group_name(session_key), {"type": "board.record", "record": data})
    except Exception:  # noqa: BLE001 - the record is made; the others see it on their next load
        logger.exception("board %s: could not announce record %s to the open websockets", session_key, record.pk)


def _close_sockets(session_key: str) -> None:
    """Tell the session's open websockets (viewer.board.consumers) to close with code 4409."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from viewer.board.selectors import board_channel_layer_alias, board_group_name

    try:
        async_to_sync(get_channel_layer(board_channel_layer_alias()).group_send)(
            board_group_name(session_key), {"type": "board.ended"})
    except Exception:  # noqa: BLE001 - the sockets' own writes are refused anyway
        logger.exception("board %s: could not tell the open websockets that it ended", session_key)


# --- board record files --------------------------------------------------------------------

def board_dir(session: BoardSession) -> Path:
    folder = Path(settings.LADDER_DATA_DIR) / "board" / session.key
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write_atomic(folder: Path, name: str, data: bytes) -> None:
    atomic_write_bytes(folder / name, data)


def _session_case(session: BoardSession, case: Case) -> None:
    if not session.items.filter(case=case).exists():
        raise BoardError("That case is not on this session's playlist.")


def _overlay_region(slide: Slide, layers: list[str], x, y, width, height, out_width, out_height, hidden=None):
    """The overlay layers over the region (viewer.overlays.services.overlay_render_region), or None."""
    if not layers:
        return None
    try:
        return overlay_render_region(slide, list(layers), x, y, width, height, out_width, out_height, hidden=hidden)
    except Exception:  # noqa: BLE001 - the snapshot still has value without its overlay; the record says so
        logger.exception("snapshot of slide %s: overlay rendering failed", slide.pk)
        return None


def _pane_render(*, slide: Slide, x, y, width, height, out_width, out_height=None, layers=None,
                 overlay_opacity: float = 1.0, hidden=None):
    """One pane's view (region + overlays + scale bar) and what the record keeps of it."""
    from analysis.core.slides.reader import SlideReader
    from viewer.board.render import pane_view

    if slide.status != SlideStatus.READY:
        raise BoardError("The slide is not ready.")
    values = [x, y, width, height]
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        raise BoardError("The viewport must be four finite numbers.")
    # Clip to the slide; the view may hang over its edges.
    x0, y0 = max(0.0, float(x)), max(0.0, float(y))
    x1, y1 = min(float(slide.width), float(x) + float(width)), min(float(slide.height), float(y) + float(height))
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise BoardError("The viewport does not overlap the slide.")
    region_w, region_h = x1 - x0, y1 - y0
    out_width = int(out_width)
    if out_height is None:
        out_height = round(out_width * region_h / region_w)
    out_height = int(out_height)
    if not (16 <= out_width <= MAX_SNAPSHOT_SIDE and 16 <= out_height <= MAX_SNAPSHOT_SIDE):
        raise BoardError(f"The output size must be 16 to {MAX_SNAPSHOT_SIDE} px on each side.")
    reader = SlideReader(Path(slide.file_path))
    try:
        downsample = max(region_w / out_width, region_h / out_height)
        level_ds = reader.level_downsamples[reader.best_level_for_downsample(downsample)]
        if (region_w / level_ds) * (region_h / level_ds) > MAX_READ_PIXELS:
            raise BoardError("That region is too large for the slide's pyramid at this output size.")
        ix, iy = int(round(x0)), int(round(y0))
        iw, ih = max(1, int(round(region_w))), max(1, int(round(region_h)))
        region = reader.read_scaled(x=ix, y=iy, width=iw, height=ih, out_width=out_width, out_height=out_height)
    finally:
        reader.close()
    overlay = _overlay_region(slide, layers or [], ix, iy, iw, ih, out_width, out_height, hidden=hidden)
    um_per_px = slide.mpp_x * iw / out_width if slide.mpp_x else None
    view = pane_view(region=region, overlay=overlay, um_per_px=um_per_px, overlay_opacity=float(overlay_opacity))
    meta = {"slide": slide.pk, "x": ix, "y": iy, "width": iw, "height": ih, "out_width": out_width,
            "out_height": out_height, "layers": list(layers or []), "overlay": overlay is not None}
    return view, meta


def board_snapshot_create(*, session: BoardSession, user, slide: Slide, x: float, y: float, width: float,
                          height: float, out_width: int, out_height: int | None = None, caption: str = "",
                          layers: list[str] | None = None, overlay_opacity: float = 1.0,
                          hidden: dict[str, list[str]] | None = None,
                          panes: list[dict] | None = None) -> BoardRecord:
    """A PNG of a slide region (level-0 px) at the given output size, with overlays (without the
    legend entries `hidden` per layer, as the presenter unticked them) and a caption.

    `panes`: the other panes the presenter sees beside it (the IHC next to the H&E), each
    {"slide": Slide, x, y, width, height, out_width, out_height?, layers?, overlay_opacity?, hidden?}
    of the same case; the PNG shows them side by side, left to right, under one caption."""
    from viewer.board.render import caption_below, panes_side_by_side, png_bytes

    if not user_can_record(user):
        raise BoardPermissionError("Your account has no role that may add to the board record.")
    board_ensure_open(session)
    _session_case(session, slide.case)
    case = slide.case
    views, metas, described = [], [], []
    for pane in [{"slide": slide, "x": x, "y": y, "width": width, "height": height, "out_width": out_width,
                  "out_height": out_height, "layers": layers, "overlay_opacity": overlay_opacity,
                  "hidden": hidden}, *(panes or [])]:
        pane_slide = pane["slide"]
        if pane_slide.case_id != case.pk:
            raise BoardError("All panes of a snapshot must show slides of the same case.")
        view, meta = _pane_render(**pane)
        views.append((pane_slide.get_stain_display(), view))
        metas.append(meta)
        described.append(f"{pane_slide.get_stain_display()} {pane_slide.name} · x {meta['x']}, y {meta['y']}, "
                         f"{meta['width']} × {meta['height']} px level 0")
    caption = (caption or "").strip()[:500]
    subtitle = (f"{case.case_id}{' (synthetic demo)' if case.is_demo else ''} · {' | '.join(described)} · "
                f"{session} · {timezone.localtime():%Y-%m-%d %H:%M %Z}")
    image = caption_below(panes_side_by_side(views if len(views) > 1 else [("", views[0][1])]),
                          caption=caption, subtitle=subtitle)
    data = png_bytes(image)
    first = metas[0]
    viewport = {k: v for k, v in first.items() if k != "slide"}
    if len(metas) > 1:
        viewport["panes"] = metas
    record = BoardRecord.objects.create(
        session=session, case=case, slide=slide, kind=RecordKind.SNAPSHOT, caption=caption,
        viewport=viewport, file_name="", size_bytes=len(data), created_by=user)
    record.file_name = f"snapshot-{record.pk}.png"
    _write_atomic(board_dir(session), record.file_name, data)
    record.save(update_fields=["file_name"])
    audit_record(user=user, action="board.snapshot", case=case, slide=slide,
                 detail={"session": session.pk, "record": record.pk, "panes": len(metas)})
    transaction.on_commit(lambda: _announce_record(session.key, record))
    return record


def _local_minute(moment) -> str:
    """A time as the board record prints it: local (settings.TIME_ZONE), to the minute."""
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M}" if moment else ""


def _review_items(case: Case) -> tuple[list[dict], list[dict]]:
    """The case's reviews and its slides' annotations (viewer.review), as rows of the PDF's tables."""
    reviews = []
    for r in review_selectors.case_reviews(case):
        call = "no call" if r.agrees is None else ("agrees" if r.agrees else "disagrees")
        reviews.append({
            "reviewer": r.reviewer.get_username(),
            "call": f"{call} with {r.model_risk_group}" if r.model_risk_group and r.agrees is not None else call,
            "risk_group": getattr(r, "risk_group", ""),
            "expected": r.get_expected_response_display() if r.expected_response else "",
            "her2": (f"{'0 ultralow' if r.her2_score == 'ultralow' else r.her2_score} / auto {r.automated_her2 or '–'}"
                     if r.her2_score else ""),
            "ish": r.get_ish_result_display() if getattr(r, "ish_result", "") else "",
            "confidence": f"{r.confidence}/5" if r.confidence else "",
            "status": ("submitted" if r.submitted else "draft") + (", disagrees" if r.is_disagreement else ""),
            "saved": _local_minute(r.updated_at),
            "comment": r.comment,
        })
    annotations = []
    for slide in case.slides.all():
        for a in review_selectors.slide_annotations(slide):
            annotations.append({
                "slide": slide.get_stain_display(), "label": a.label.name, "shape": a.get_shape_display(),
                "author": a.author.get_username() if a.author else "", "comment": a.comment,
                "updated": _local_minute(a.updated_at),
            })
    return reviews, annotations


def board_summary_create(*, session: BoardSession, user, case: Case) -> BoardRecord:
    """The PDF summary of one case for the board record."""
    from PIL import Image

    from analysis.core.slides.reader import SlideReader
    from viewer.board.render import summary_pdf
    from viewer.cases.selectors import case_score_panel

    if not user_can_record(user):
        raise BoardPermissionError("Your account has no role that may add to the board record.")
    board_ensure_open(session)
    _session_case(session, case)
    rows = [("Case", f"{case.case_id}{' (synthetic demo, not a patient)' if case.is_demo else ''}"),
            ("Age", case.age or "-"),
            ("Clinical TN", f"{case.clinical_t or 'T?'} {case.clinical_n or 'N?'}"),
            ("Stage", case.clinical_stage or "-"),
            ("ER / PR / HR", " / ".join(s or "-" for s in (case.get_er_status_display(), case.get_pr_status_display(),
                                                          case.get_hr_status_display()))),
            ("HER2 IHC", case.her2_ihc or "-"), ("Grade", case.grade or "-"), ("Regimen", case.regimen or "-"),
            ("pCR", "unknown" if case.pcr is None else ("yes" if case.pcr else "no (residual disease)"))]
    panel = case_score_panel(case)
    score = None
    if panel is not None:
        s = panel["score"]
        score = {"status": s.status, "message": s.message, "score": s.score, "risk_group": s.risk_group,
                 "probability_pcr": s.probability_pcr, "implication": panel.get("implication", ""),
                 "model": f"{panel['model'].name} {getattr(panel['model'], 'version_label', '')}".strip(),
                 "attributions": panel.get("attributions", [])}
    thumbnails = []
    for stain in (Stain.HE, Stain.IHC):
        slide = case.slide_for(stain)
        if slide is None or slide.status != SlideStatus.READY:
            continue
        reader = SlideReader(Path(slide.file_path))
        try:
            thumbnails.append((f"{slide.get_stain_display()} · {slide.name} · {slide.width} × {slide.height} px",
                               reader.thumbnail_image(512)))
        finally:
            reader.close()
    reviews, annotations = _review_items(case)
    folder = board_dir(session)
    snapshots = []
    for record in session.records.filter(case=case, kind=RecordKind.SNAPSHOT).order_by("created_at")[:12]:
        path = folder / record.file_name
        if path.exists():
            with Image.open(path) as image:
                snapshots.append((record.caption or f"Snapshot {record.pk}", image.copy()))
    # The case once in the title: the session's own title often names the case too ("Tumour board ·
    # <case>", as the case page starts one), so it goes on the line below, as the board it was made at.
    data = summary_pdf(title=f"Case summary: {case.case_id}", case={"case_id": case.case_id, "rows": rows},
                       score=score, thumbnails=thumbnails, reviews=reviews, annotations=annotations,
                       snapshots=snapshots, made_by=user.get_username(), made_at=timezone.localtime(),
                       board=str(session))
    record = BoardRecord.objects.create(session=session, case=case, kind=RecordKind.SUMMARY,
                                        caption=f"Case summary {case.case_id}", file_name="",
                                        size_bytes=len(data), created_by=user)
    record.file_name = f"summary-{record.pk}-{case.case_id}.pdf"
    _write_atomic(folder, record.file_name, data)
    record.save(update_fields=["file_name"])
    audit_record(user=user, action="board.summary", case=case, detail={"session": session.pk, "record": record.pk})
    transaction.on_commit(lambda: _announce_record(session.key, record))
    from viewer.review.services import case_mark_discussed

    case_mark_discussed(case=case, user=user)  # its summary is in the board record: discussed
    return record
