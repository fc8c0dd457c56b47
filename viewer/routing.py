"""Websocket routes. Every consumer refuses anonymous connections (close code 4401)."""
from __future__ import annotations

from django.urls import path

from viewer import consumers
from viewer.board.routing import websocket_urlpatterns as board_websockets
from viewer.review.routing import websocket_urlpatterns as review_websockets

websocket_urlpatterns = [
    path("ws/cases/<int:case_pk>/", consumers.CaseEventsConsumer.as_asgi()),
    *board_websockets,
    *review_websockets,
]
