"""Tumour-board websocket: the driver sends its view, everyone else follows.

Client -> server:
    {"type": "state", "state": {...}}        driver only; relayed to every other participant
    {"type": "handover", "to": <user id>}     driver (or the presenter, taking it back)
    {"type": "ping", "t": ...}                answered {"type": "pong", "t": ...}
Server -> client:
    {"type": "hello", "you", "presenter", "driver", "driver_name", "participants", "latest"}   on connect
    {"type": "state", "state": {...}, "seq", "driver"}   live, and at once to a late joiner
    {"type": "handover", "driver", "driver_name", "by"}  to everyone
    {"type": "participants", "participants": [...]}      someone joined or left: [{id, username,
                                                         connected, can_present}]
    {"type": "record", "record": {...}}                  a snapshot or PDF summary was added to the
                                                         board record (the API's record, with
                                                         "created_time" HH:MM), to everyone
    {"type": "error", "code", "error"}                   to the sender only
    {"type": "ended", "error"}                           the session ended; then close code 4409

Close codes: 4401 not logged in, 4404 no such session, 4409 the session has ended (read-only;
static/board/board.js says so and does not reconnect). Frames are always strict JSON: a state
with NaN or Infinity is refused (bad_state), and nothing is sent with allow_nan.

The latest state lives in the cache (Redis in scale-out, shared by all web processes) and,
throttled, in the session row; the group fan-out goes through the channel layer.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time

from channels.db import database_sync_to_async

from viewer.board.models import BoardSession
from viewer.board.selectors import (board_channel_layer_alias, board_group_name, board_latest_state,
                                    board_participants)
from viewer.board.services import (ENDED_MESSAGE, MAX_STATE_BYTES, BoardEndedError, BoardError,  # noqa: F401
                                   BoardPermissionError, board_handover, board_join, board_leave,
                                   board_state_encode, board_state_store)
from viewer.consumers import LoginRequiredConsumer

logger = logging.getLogger(__name__)

PERSIST_EVERY_S = 1.0
NOT_FOUND_CLOSE_CODE = 4404
ENDED_CLOSE_CODE = 4409


class BoardConsumer(LoginRequiredConsumer):
    non_finite_code = "bad_state"  # a state with NaN / Infinity is refused as a bad state (issue 15)

    @property
    def channel_layer_alias(self) -> str:
        """A "board" channel layer when the settings define one (e.g. channels_redis' pub/sub layer,
        see docs/board.md), else the default layer."""
        return board_channel_layer_alias()

    async def on_connect(self):
        self.user = self.scope["user"]
        self.session_pk = int(self.scope["url_route"]["kwargs"]["session_pk"])
        info = await self._load()
        if info is None:
            await self.close(code=NOT_FOUND_CLOSE_CODE)
            return
        if info.get("ended"):  # accepted first, so that the page sees the code and can explain it
            await self.accept()
            await self.send_json({"type": "ended", "error": ENDED_MESSAGE})
            await self.close(code=ENDED_CLOSE_CODE)
            return
        self.session_key = info["key"]
        self.presenter_id = info["presenter"]
        self.driver_id = info["driver"]
        self.playlist = set(info["playlist"])
        self.seq = info["seq"]
        self._dirty = None
        self._last_persist = 0.0
        self._persisted_case = None
        self._pending = None
        self._relay = None

        self.group = board_group_name(self.session_key)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "you": self.user.pk, "presenter": self.presenter_id,
                              "driver": self.driver_id, "driver_name": info["driver_name"],
                              "participants": info["participants"], "latest": info["latest"]})
        if info["latest"] is not None:
            await self.send_json({"type": "state", "state": info["latest"]["state"],
                                  "seq": info["latest"]["seq"], "driver": self.driver_id})
        await self.channel_layer.group_send(self.group, {"type": "board.participants",
                                                         "participants": info["participants"]})

    async def disconnect(self, code):
        if hasattr(self, "group"):
            if self._relay is not None and not self._relay.done():
                await self._relay
            await self.channel_layer.group_discard(self.group, self.channel_name)
            if self._dirty is not None:
                await self._store(self._dirty, self.seq, persist=True)
            # the others' hand-over lists offer only who is still here
            participants = await self._leave()
            await self.channel_layer.group_send(self.group, {"type": "board.participants",
                                                             "participants": participants})

    # ----- from the browser

    async def receive_json(self, content, **kwargs):
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "state":
            await self._on_state(content.get("state"))
        elif kind == "handover":
            await self._on_handover(content.get("to"))
        elif kind == "ping":  # answered once everything sent before it has been relayed
            if self._relay is not None and not self._relay.done():
                await self._relay
            await self.send_json({"type": "pong", "t": content.get("t")})
        else:
            await self._error("bad_message", "Unknown message type.")

    @classmethod
    async def encode_json(cls, content):
        return json.dumps(content, allow_nan=False)  # strict JSON: browsers' JSON.parse rejects NaN

    async def decode_json(self, text_data):
        try:
            return json.loads(text_data)
        except ValueError:
            return None

    async def _on_state(self, state):
        if self.user.pk != self.driver_id and not await self._is_driver():
            await self._error("not_driver", "Only the driver steers the board; you are following.")
            return
        try:
            board_state_encode(state)
        except BoardError as exc:
            await self._error("bad_state", str(exc))
            return
        case = state.get("case")
        if case is not None and case not in self.playlist:
            await self._error("bad_state", "That case is not on this session's playlist.")
            return
        self.seq = max(self.seq, int(time.time() * 1000) * 1000)  # monotonic across drivers and processes
        self.seq += 1
        # Latest wins: while one state is being fanned out, newer ones replace each other, so a
        # driver sending faster than the layer delivers never builds a queue (followers only
        # ever need the newest view).
        self._pending = (state, self.seq)
        if self._relay is None or self._relay.done():
            self._relay = asyncio.ensure_future(self._relay_pending())

    async def _relay_pending(self):
        try:
            await self._relay_loop()
        except Exception:  # noqa: BLE001 - a relay failure must not pass silently, nor kill the socket
            logger.exception("board %s: relaying the driver's state failed", self.session_pk)
            await self._error("relay_failed", "The server could not pass your view on; it will retry.")

    async def _relay_loop(self):
        while self._pending is not None:
            (state, seq), self._pending = self._pending, None
            await self.channel_layer.group_send(self.group, {"type": "board.state", "state": state, "seq": seq,
                                                             "driver": self.user.pk, "sender": self.channel_name})
            case = state.get("case")
            now = time.monotonic()
            if now - self._last_persist >= PERSIST_EVERY_S or case != self._persisted_case:
                await self._store(state, seq, persist=True)
                self._last_persist, self._persisted_case, self._dirty = now, case, None
            else:
                await self._cache_state(state, seq)
                self._dirty = state

    async def _on_handover(self, to):
        try:
            target = await self._handover(to)
        except (BoardError, BoardPermissionError) as exc:
            await self._error("handover_refused", str(exc))
            return
        await self.channel_layer.group_send(self.group, {"type": "board.handover", "driver": target[0],
                                                         "driver_name": target[1], "by": self.user.pk})

    async def _error(self, code: str, message: str):
        await self.send_json({"type": "error", "code": code, "error": message})

    # ----- from the group

    async def board_state(self, event):
        self.driver_id = event["driver"]
        self.seq = max(self.seq, event["seq"])
        if event["sender"] != self.channel_name:
            await self.send_json({"type": "state", "state": event["state"], "seq": event["seq"],
                                  "driver": event["driver"]})

    async def board_handover(self, event):
        if self._dirty is not None and self.driver_id == self.user.pk:
            await self._store(self._dirty, self.seq, persist=True)
            self._dirty = None
        self.driver_id = event["driver"]
        await self.send_json({"type": "handover", "driver": event["driver"], "driver_name": event["driver_name"],
                              "by": event["by"]})

    async def board_ended(self, event):
        """The presenter ended the session (viewer.board.services.board_end): read-only from now."""
        self._pending = self._dirty = None
        await self.send_json({"type": "ended", "error": ENDED_MESSAGE})
        await self.close(code=ENDED_CLOSE_CODE)

    async def board_record(self, event):
        """A new board record (viewer.board.services._announce_record): every page lists it live."""
        await self.send_json({"type": "record", "record": event["record"]})

    async def board_participants(self, event):
        await self.send_json({"type": "participants", "participants": event["participants"]})

    # ----- database

    @database_sync_to_async
    def _load(self) -> dict | None:
        session = BoardSession.objects.select_related("driver").filter(pk=self.session_pk).first()
        if session is None:
            return None
        if session.ended_at is not None:
            return {"ended": True}
        board_join(session=session, user=self.user)
        latest = board_latest_state(session)
        return {"key": session.key, "presenter": session.presenter_id, "driver": session.driver_id,
                "driver_name": session.driver.get_username(),
                "playlist": list(session.items.values_list("case_id", flat=True)),
                "seq": (latest or {}).get("seq", session.state_seq), "latest": latest,
                "participants": board_participants(session)}

    @database_sync_to_async
    def _leave(self) -> list[dict]:
        board_leave(session_id=self.session_pk, user=self.user)
        session = BoardSession.objects.filter(pk=self.session_pk).first()
        return board_participants(session) if session else []

    @database_sync_to_async
    def _is_driver(self) -> bool:
        """Checked in the database when the local copy says no (a handover may be in flight)."""

        driver = BoardSession.objects.filter(pk=self.session_pk).values_list("driver_id", flat=True).first()
        if driver is not None:
            self.driver_id = driver
        return driver == self.user.pk

    @database_sync_to_async
    def _store(self, state: dict, seq: int, *, persist: bool) -> None:
        if persist and BoardSession.objects.filter(pk=self.session_pk, ended_at__isnull=False).exists():
            return  # ended meanwhile: nothing more is stored
        board_state_store(session_id=self.session_pk, session_key=self.session_key, state=state, seq=seq,
                          persist=persist)

    async def _cache_state(self, state: dict, seq: int) -> None:
        """Cache only, off Django's shared sync thread (the cache clients are thread-safe)."""
        from asgiref.sync import sync_to_async


        await sync_to_async(board_state_store, thread_sensitive=False)(
            session_id=self.session_pk, session_key=self.session_key, state=state, seq=seq, persist=False)

    @database_sync_to_async
    def _handover(self, to) -> tuple[int, str]:
        session = BoardSession.objects.get(pk=self.session_pk)
        target = board_handover(session=session, by=self.user, to_user_id=to)
        return target.pk, target.get_username()
