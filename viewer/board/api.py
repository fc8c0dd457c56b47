"""REST API of tumour-board sessions (thin: services write, selectors read)."""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from viewer.api import schema as docs
from viewer.api.params import MAX_PK
from viewer.board import selectors, services
from viewer.board.models import BoardRecord, BoardSession
from cases.models import Case, Slide


class CanPresentOrReadOnly(BasePermission):
    message = "Only presenters and admins can start a tumour board."

    def has_permission(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or services.user_can_present(request.user)


class CanRecord(BasePermission):
    message = "Your account has no role that may add to the board record."

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated and services.user_can_record(request.user))


def record_data(record: BoardRecord) -> dict:
    return selectors.board_record_data(record)


def session_data(session: BoardSession, *, full: bool = True) -> dict:
    data = {
        "id": session.pk, "title": str(session),
        "url": reverse("board-detail", args=[session.pk]), "ws_url": f"/ws/board/{session.pk}/",
        "presenter": {"id": session.presenter_id, "username": session.presenter.get_username()},
        "driver": {"id": session.driver_id, "username": session.driver.get_username()},
        "cases": [{"id": c.pk, "case_id": c.case_id} for c in selectors.board_playlist(session)],
        "created_at": session.created_at.isoformat(),
        "ended_at": session.ended_at.isoformat() if session.ended_at else None,
    }
    if full:
        data["state"] = selectors.board_latest_state(session)
        data["participants"] = selectors.board_participants(session)
        data["records"] = [record_data(r) for r in selectors.board_records(session)]
    return data


class BoardCreateInput(serializers.Serializer):
    cases = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=MAX_PK), allow_empty=False,
                                  max_length=services.MAX_PLAYLIST, help_text="Case primary keys, in order.")
    title = serializers.CharField(required=False, allow_blank=True, max_length=200)


class PaneInput(serializers.Serializer):
    slide = serializers.IntegerField(min_value=1)
    x = serializers.FloatField()
    y = serializers.FloatField()
    width = serializers.FloatField(min_value=1)
    height = serializers.FloatField(min_value=1)
    out_width = serializers.IntegerField(min_value=16, max_value=services.MAX_SNAPSHOT_SIDE)
    out_height = serializers.IntegerField(min_value=16, max_value=services.MAX_SNAPSHOT_SIDE, required=False)
    layers = serializers.ListField(child=serializers.CharField(max_length=64), required=False, max_length=20)
    overlay_opacity = serializers.FloatField(required=False, min_value=0, max_value=1, default=1.0)
    hidden = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField(max_length=64), max_length=256), required=False)


class SnapshotInput(serializers.Serializer):
    slide = serializers.IntegerField(min_value=1)
    x = serializers.FloatField(help_text="Viewport left, level-0 px")
    y = serializers.FloatField(help_text="Viewport top, level-0 px")
    width = serializers.FloatField(min_value=1)
    height = serializers.FloatField(min_value=1)
    out_width = serializers.IntegerField(min_value=16, max_value=services.MAX_SNAPSHOT_SIDE)
    out_height = serializers.IntegerField(min_value=16, max_value=services.MAX_SNAPSHOT_SIDE, required=False)
    caption = serializers.CharField(required=False, allow_blank=True, max_length=500)
    layers = serializers.ListField(child=serializers.CharField(max_length=64), required=False, max_length=20)
    overlay_opacity = serializers.FloatField(required=False, min_value=0, max_value=1, default=1.0)
    hidden = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField(max_length=64), max_length=256), required=False,
        help_text='Legend keys left out per layer, as unticked in the viewer: {"cells": ["stroma"], "edges": ["T-S"]}')
    panes = serializers.ListField(
        child=PaneInput(), required=False, max_length=3,
        help_text="The other panes shown beside the first (e.g. the IHC next to the H&E), same fields: "
                  "the PNG shows them side by side, as the presenter sees them")


class SummaryInput(serializers.Serializer):
    case = serializers.IntegerField(min_value=1)


def _bad(message: str, code=status.HTTP_400_BAD_REQUEST) -> Response:
    return Response({"detail": message}, status=code)


@extend_schema_view(
    get=extend_schema(operation_id="boards_list", responses=docs.BoardSummarySerializer(many=True)),
    post=extend_schema(operation_id="boards_create", request={"application/json": BoardCreateInput},
                       responses={201: docs.BoardSerializer, 400: docs.ERRORS, 403: docs.ERRORS}),
)
class BoardListView(APIView):
    """GET: open sessions. POST {"cases": [case pks], "title"?}: a new session (presenters, admins)."""

    permission_classes = [IsAuthenticated, CanPresentOrReadOnly]
    serializer_class = BoardCreateInput

    def get(self, request):
        return Response([session_data(s, full=False) for s in selectors.board_list()])

    def post(self, request):
        data = BoardCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        pks = data.validated_data["cases"]
        found = Case.objects.in_bulk(pks)
        missing = [pk for pk in pks if pk not in found]
        if missing:
            return _bad(f"Unknown case ids: {missing}")
        try:
            session = services.board_create(user=request.user, cases=[found[pk] for pk in pks],
                                            title=data.validated_data.get("title", ""))
        except services.BoardError as exc:
            return _bad(str(exc))
        return Response(session_data(session), status=status.HTTP_201_CREATED)


@extend_schema(responses=docs.BoardSerializer)
class BoardDetailView(APIView):
    permission_classes = [IsAuthenticated]

    def get(self, request, pk: int):
        return Response(session_data(get_object_or_404(BoardSession, pk=pk)))


@extend_schema(request=None, responses=docs.BoardSerializer)
class BoardEndView(APIView):
    permission_classes = [IsAuthenticated]

    def post(self, request, pk: int):
        session = get_object_or_404(BoardSession, pk=pk)
        try:
            services.board_end(session=session, user=request.user)
        except services.BoardPermissionError as exc:
            return _bad(str(exc), status.HTTP_403_FORBIDDEN)
        return Response(session_data(session))


@extend_schema(request={"application/json": SnapshotInput},
               responses={201: docs.BoardRecordSerializer, 400: docs.ERRORS, 403: docs.ERRORS, 404: docs.ERRORS})
class BoardSnapshotView(APIView):
    """POST: a captioned PNG of a slide region (level-0 px) at an output size, stored in the session."""

    permission_classes = [IsAuthenticated, CanRecord]
    serializer_class = SnapshotInput

    def post(self, request, pk: int):
        session = get_object_or_404(BoardSession, pk=pk)
        if session.ended_at is not None:
            return _bad(services.ENDED_MESSAGE, status.HTTP_409_CONFLICT)
        data = SnapshotInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        slide = Slide.objects.select_related("case").filter(pk=values.pop("slide")).first()
        if slide is None:
            return _bad("Unknown slide.", status.HTTP_404_NOT_FOUND)
        for pane in values.get("panes") or []:
            pane["slide"] = Slide.objects.select_related("case").filter(pk=pane["slide"]).first()
            if pane["slide"] is None:
                return _bad("Unknown slide.", status.HTTP_404_NOT_FOUND)
        try:
            record = services.board_snapshot_create(session=session, user=request.user, slide=slide, **values)
        except services.BoardEndedError as exc:
            return _bad(str(exc), status.HTTP_409_CONFLICT)
        except services.BoardError as exc:
            return _bad(str(exc))
        return Response(record_data(record), status=status.HTTP_201_CREATED)


@extend_schema(request={"application/json": SummaryInput},
               responses={201: docs.BoardRecordSerializer, 400: docs.ERRORS, 403: docs.ERRORS, 404: docs.ERRORS})
class BoardSummaryView(APIView):
    """POST {"case": pk}: the case's PDF summary for the board record, stored in the session."""

    permission_classes = [IsAuthenticated, CanRecord]
    serializer_class = SummaryInput

    def post(self, request, pk: int):
        session = get_object_or_404(BoardSession, pk=pk)
        if session.ended_at is not None:
            return _bad(services.ENDED_MESSAGE, status.HTTP_409_CONFLICT)
        data = SummaryInput(data=request.data)
        data.is_valid(raise_exception=True)
        case = Case.objects.filter(pk=data.validated_data["case"]).first()
        if case is None:
            return _bad("Unknown case.", status.HTTP_404_NOT_FOUND)
        try:
            record = services.board_summary_create(session=session, user=request.user, case=case)
        except services.BoardEndedError as exc:
            return _bad(str(exc), status.HTTP_409_CONFLICT)
        except services.BoardError as exc:
            return _bad(str(exc))
        return Response(record_data(record), status=status.HTTP_201_CREATED)
