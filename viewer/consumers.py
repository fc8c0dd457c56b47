"""The base of every websocket consumer: anonymous sockets are refused (close code 4401), and
every frame is checked before a consumer sees it (issue 15): binary, oversized, non-JSON,
non-finite numbers and nesting deeper than 64 levels get an error frame
{"type": "error", "code", "error"} to the sender only, nothing else happens; a sender that
keeps sending bad frames is closed (4400)."""
from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from viewer.api.params import MAX_PK
from viewer.api.parsers import JSONRejected, NonFiniteNumber, loads_strict

ANONYMOUS_CLOSE_CODE = 4401
NOT_FOUND_CLOSE_CODE = 4404
BAD_FRAMES_CLOSE_CODE = 4400
MAX_FRAME_CHARS = 64 * 1024  # the largest message any client sends is a board state (32 kB)
MAX_BAD_FRAMES = 20  # per connection, then it is closed


class LoginRequiredConsumer(AsyncJsonWebsocketConsumer):
    """Refuse anonymous sockets before anything else happens."""

    non_finite_code = "bad_json"  # the error code of a frame with NaN / Infinity (the board: bad_state)

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=ANONYMOUS_CLOSE_CODE)
            return
        kwargs = self.scope.get("url_route", {}).get("kwargs", {})
        if any(isinstance(value, int) and value > MAX_PK for value in kwargs.values()):
            await self.close(code=NOT_FOUND_CLOSE_CODE)  # no such row: ids are 64-bit
            return
        await self.on_connect()

    async def on_connect(self):
        await self.accept()

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if text_data is None:
            await self.frame_error("bad_frame", "Binary frames are not accepted: send JSON text.")
        elif len(text_data) > MAX_FRAME_CHARS:
            await self.frame_error("too_large", f"A message is at most {MAX_FRAME_CHARS} characters.")
        else:
            try:
                content = loads_strict(text_data)
            except NonFiniteNumber as exc:
                await self.frame_error(self.non_finite_code, f"Not accepted: {exc}")
                return
            except JSONRejected as exc:
                await self.frame_error("bad_json", f"Not accepted as JSON: {exc}")
                return
            await self.receive_json(content, **kwargs)

    async def frame_error(self, code: str, message: str):
        self._bad_frames = getattr(self, "_bad_frames", 0) + 1
        await self.send_json({"type": "error", "code": code, "error": message[:300]})
        if self._bad_frames >= MAX_BAD_FRAMES:
            await self.close(code=BAD_FRAMES_CLOSE_CODE)


class NotFoundConsumer(LoginRequiredConsumer):
    """Every websocket path no route names: closed 4404 (4401 when anonymous), never a 500."""

    async def on_connect(self):
        await self.close(code=NOT_FOUND_CLOSE_CODE)
