"""Websocket routes. Every consumer refuses anonymous connections (close code 4401)."""
from __future__ import annotations

from django.urls import path

from viewer import consumers

websocket_urlpatterns = [
    path("ws/cases/<int:case_pk>/", consumers.CaseEventsConsumer.as_asgi()),
]
