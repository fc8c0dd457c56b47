"""Websocket routes of this app (added to viewer.routing)."""
from django.urls import path

from viewer.board.consumers import BoardConsumer

websocket_urlpatterns: list = [
    path("ws/board/<int:session_pk>/", BoardConsumer.as_asgi()),
]
