"""The base of every websocket consumer: anonymous sockets are refused (close code 4401)."""
from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

ANONYMOUS_CLOSE_CODE = 4401


class LoginRequiredConsumer(AsyncJsonWebsocketConsumer):
    """Refuse anonymous sockets before anything else happens."""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=ANONYMOUS_CLOSE_CODE)
            return
        await self.on_connect()

    async def on_connect(self):
        await self.accept()
