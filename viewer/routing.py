"""Websocket routes. Every consumer refuses anonymous connections (close code 4401)."""
from __future__ import annotations

from django.urls import path, re_path

from viewer.board.routing import websocket_urlpatterns as board_websockets
from viewer.consumers import NotFoundConsumer
from viewer.jobs.consumers import JobProgressConsumer

websocket_urlpatterns = [
    path("ws/cases/<int:case_pk>/", JobProgressConsumer.as_asgi()),
    *board_websockets,
    # Last: any other path is closed 4404 (4401 when anonymous), not a 500 from the router.
    re_path(r"", NotFoundConsumer.as_asgi()),
]
