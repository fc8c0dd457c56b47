"""Tumour-board pages (thin): the session list, the presentation page, record files."""
from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404
from django.middleware.csrf import get_token
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from viewer.api.params import ascii_int
from viewer.cases import selectors as viewer_selectors
from viewer.board import selectors, services
from viewer.board.models import BoardRecord, BoardSession, RecordKind
from cases.models import Case


@require_http_methods(["GET", "POST"])
def board_list(request):
    if request.method == "POST":
        if not services.user_can_present(request.user):
            raise PermissionDenied("Only presenters and admins can start a tumour board.")
        pks = [pk for pk in map(ascii_int, request.POST.getlist("cases")) if pk is not None]
        found = Case.objects.in_bulk(pks)
        try:
            session = services.board_create(user=request.user, cases=[found[pk] for pk in pks if pk in found],
                                            title=request.POST.get("title", ""))
        except services.BoardError as exc:
            messages.error(request, str(exc))
            return redirect("board-list")
        return redirect("board-detail", pk=session.pk)
    return render(request, "board/list.html", {
        "sessions": selectors.board_list(),
        "past_sessions": selectors.board_past_list(),
        "can_present": services.user_can_present(request.user),
        "cases": Case.objects.order_by("case_id") if services.user_can_present(request.user) else [],
    })


def board_detail(request, pk: int):
    session = get_object_or_404(BoardSession.objects.select_related("presenter", "driver"), pk=pk)
    requested = request.GET.get("case", "")
    case = selectors.board_current_case(session, requested=ascii_int(requested))
    playlist = selectors.board_playlist(session)
    index = playlist.index(case) if case in playlist else -1
    csrf = get_token(request)
    ended = session.ended_at is not None
    can_end = not ended and services.user_can_end(session=session, user=request.user)
    viewer_config = (viewer_selectors.case_viewer_config(case=case, can_edit=False, csrf_token=csrf)
                     if case else {"slides": []})
    board_config = {
        "sessionId": session.pk,
        "title": str(session),
        "wsPath": f"/ws/board/{session.pk}/",
        "pageUrl": reverse("board-detail", args=[session.pk]),
        "you": request.user.pk,
        "presenter": session.presenter_id,
        "driver": session.driver_id,
        "caseId": case.pk if case else None,
        "caseLabel": case.case_id if case else "",
        "playlist": [{"id": c.pk, "case_id": c.case_id} for c in playlist],
        "index": index,
        "slides": [{"id": s["id"], "stain": s["stain"], "label": s["label"]} for s in viewer_config["slides"]],
        "snapshotsUrl": reverse("api-board-snapshots", args=[session.pk]),
        "summariesUrl": reverse("api-board-summaries", args=[session.pk]),
        "csrfToken": csrf,
        "canRecord": services.user_can_record(request.user) and not ended,
        "ended": ended,
        "canEnd": can_end,
        "endUrl": reverse("api-board-end", args=[session.pk]),
    }
    discussion = selectors.board_case_discussion(case) if case else None
    board_config["annotations"] = discussion["annotations"] if discussion else []
    return render(request, "board/session.html", {
        "session": session,
        "case": case,
        "playlist": playlist,
        "index": index,
        "previous_case": playlist[index - 1] if index > 0 else None,
        "next_case": playlist[index + 1] if 0 <= index < len(playlist) - 1 else None,
        "score_panel": viewer_selectors.case_score_panel(case) if case else None,
        "viewer_config": viewer_config,
        "board_config": board_config,
        "records": [(r, selectors.board_record_url(r)) for r in selectors.board_records(session)],
        "is_driver": session.driver_id == request.user.pk and not ended,
        "ended": ended,
        "can_end": can_end,
        "discussion": discussion,
    })


def board_record_file(request, pk: int, record_pk: int):
    record = get_object_or_404(BoardRecord.objects.select_related("session"), pk=record_pk, session_id=pk)
    path = services.board_dir(record.session) / record.file_name
    if not record.file_name or not path.is_file():
        raise Http404("The file of this record is missing.")
    content_type = "image/png" if record.kind == RecordKind.SNAPSHOT else "application/pdf"
    response = FileResponse(path.open("rb"), content_type=content_type, filename=record.file_name)
    response["Cache-Control"] = "private, max-age=3600"
    return response
