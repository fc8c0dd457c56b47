"""Websocket consumers."""
from __future__ import annotations

from channels.db import database_sync_to_async
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


def case_group(case_pk: int) -> str:
    return f"case-{case_pk}"


class CaseEventsConsumer(LoginRequiredConsumer):
    """Live events of one case (job progress, new results) for everyone who has it open."""

    async def on_connect(self):
        self.case_pk = int(self.scope["url_route"]["kwargs"]["case_pk"])
        if not await self._case_exists():
            await self.close(code=4404)
            return
        self.group = case_group(self.case_pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def case_event(self, event):
        await self.send_json(event["payload"])

    @database_sync_to_async
    def _case_exists(self) -> bool:
        from cases.models import Case

        return Case.objects.filter(pk=self.case_pk).exists()
