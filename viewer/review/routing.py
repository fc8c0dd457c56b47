"""Websocket routes of this app (added to viewer.routing)."""
websocket_urlpatterns: list = []
