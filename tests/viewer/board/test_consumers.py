"""The tumour-board websocket through the real ASGI application (auth middleware, router, layer)."""
from __future__ import annotations

import asyncio

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.cache import cache
from django.test import Client

from config.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

STATE = {"case": None, "slide": 1, "viewport": {"center": {"x": 1234.5, "y": 678.0}, "zoom": 0.5, "rotation": 90},
         "overlays": {"layers": ["cells"], "opacity": 0.6}, "attribution": "T-T meanEdgeLength",
         "pointer": {"x": 1300.0, "y": 700.0}}


@pytest.fixture(autouse=True)
def _close_consumer_connections():
    """Consumers query the database on asgiref's shared sync thread: close its connection after
    each test, so PostgreSQL can drop the test database at the end."""
    yield
    from channels.db import database_sync_to_async
    from django.db import connections

    asyncio.run(database_sync_to_async(connections.close_all)())


def cookie_for(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


async def connect(path: str, cookie: str | None = None):
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if cookie:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


async def receive(communicator, kind: str, timeout: float = 3.0) -> dict:
    """The next message of a type, skipping others (participant lists arrive in between)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        message = await communicator.receive_json_from(timeout=max(0.01, deadline - loop.time()))
        if message["type"] == kind:
            return message


async def nothing_of(communicator, kind: str, wait: float = 0.3) -> bool:
    """True when no message of that type arrives within `wait` s (receive_nothing never cancels the app)."""
    while not await communicator.receive_nothing(timeout=wait):
        if (await communicator.receive_json_from())["type"] == kind:
            return False
    return True


@pytest.fixture
def session(presenter, pathologist, make_user, case):
    from viewer.board.services import board_create
    from cases.models import Case

    other = Case.objects.create(case_id="CASE-2")
    board = board_create(user=presenter, cases=[case, other])
    return {"session": board, "path": f"/ws/board/{board.pk}/", "case": case, "other": other,
            "presenter": presenter, "pathologist": pathologist, "third": make_user("third", "pathologist"),
            "cookies": {"presenter": cookie_for(presenter), "pathologist": cookie_for(pathologist)}}


def state_for(case) -> dict:
    return {**STATE, "case": case.pk}


def test_anonymous_is_refused(session):
    async def run():
        communicator, connected, code = await connect(session["path"])
        await communicator.disconnect()
        return connected, code

    assert asyncio.run(run()) == (False, 4401)


def test_unknown_session_is_closed(session):
    async def run():
        communicator, connected, code = await connect("/ws/board/999999/", session["cookies"]["presenter"])
        await communicator.disconnect()
        return connected, code

    assert asyncio.run(run()) == (False, 4404)


def test_follower_receives_the_presenters_state(session):
    state = state_for(session["case"])

    async def run():
        presenter, ok1, _ = await connect(session["path"], session["cookies"]["presenter"])
        follower, ok2, _ = await connect(session["path"], session["cookies"]["pathologist"])
        assert ok1 and ok2
        hello = await receive(follower, "hello")
        assert hello["driver"] == session["presenter"].pk and hello["you"] == session["pathologist"].pk
        await presenter.send_json_to({"type": "state", "state": state})
        got = await receive(follower, "state")
        echo_free = await nothing_of(presenter, "state")
        await presenter.disconnect()
        await follower.disconnect()
        return got, echo_free

    got, echo_free = asyncio.run(run())
    assert got["state"] == state and got["driver"] == session["presenter"].pk
    assert echo_free, "the driver got its own state back"


def test_an_idle_follower_still_follows(session):
    """Idle for longer than the channel layer's blocking wait (5 s) and redis-py 8's default
    read timeout (5 s), which used to tear every idle websocket down on Redis: still following."""
    state = state_for(session["case"])

    async def run():
        presenter, ok1, _ = await connect(session["path"], session["cookies"]["presenter"])
        follower, ok2, _ = await connect(session["path"], session["cookies"]["pathologist"])
        assert ok1 and ok2
        await receive(follower, "hello")
        await asyncio.sleep(7)
        await presenter.send_json_to({"type": "state", "state": state})
        got = await receive(follower, "state", timeout=5)
        await presenter.disconnect()
        await follower.disconnect()
        return got

    assert asyncio.run(run())["state"] == state


def test_late_joiner_gets_the_latest_state_at_once(session):
    first, second = state_for(session["case"]), {**state_for(session["other"]), "pointer": None}

    async def run():
        presenter, _, _ = await connect(session["path"], session["cookies"]["presenter"])
        await presenter.send_json_to({"type": "state", "state": first})
        await presenter.send_json_to({"type": "state", "state": second})
        await presenter.send_json_to({"type": "ping", "t": 1})
        await receive(presenter, "pong")  # both states handled
        late, _, _ = await connect(session["path"], session["cookies"]["pathologist"])
        hello = await late.receive_json_from(timeout=3)
        now = await late.receive_json_from(timeout=3)
        await late.disconnect()
        await presenter.disconnect()
        return hello, now

    hello, now = asyncio.run(run())
    assert hello["type"] == "hello" and hello["latest"]["state"] == second
    assert now["type"] == "state" and now["state"] == second


def test_late_joiner_gets_the_state_from_the_database_without_the_cache(session):
    from viewer.board.selectors import board_state_cache_key

    state = state_for(session["case"])

    async def run():
        presenter, _, _ = await connect(session["path"], session["cookies"]["presenter"])
        await presenter.send_json_to({"type": "state", "state": state})
        await presenter.send_json_to({"type": "ping", "t": 1})
        await receive(presenter, "pong")
        await presenter.disconnect()

    asyncio.run(run())
    cache.delete(board_state_cache_key(session["session"].key))  # another web process, or the cache restarted
    session["session"].refresh_from_db()
    assert session["session"].state == state

    async def join():
        late, _, _ = await connect(session["path"], session["cookies"]["pathologist"])
        got = await receive(late, "state")
        await late.disconnect()
        return got

    assert asyncio.run(join())["state"] == state


def test_state_from_a_non_driver_is_rejected(session):
    async def run():
        presenter, _, _ = await connect(session["path"], session["cookies"]["presenter"])
        follower, _, _ = await connect(session["path"], session["cookies"]["pathologist"])
        await follower.send_json_to({"type": "state", "state": state_for(session["case"])})
        error = await receive(follower, "error")
        relayed = not await nothing_of(presenter, "state")
        # Not on the playlist: refused even from the driver.
        await presenter.send_json_to({"type": "state", "state": {"case": 999999}})
        bad = await receive(presenter, "error")
        await presenter.send_json_to({"type": "dance"})
        unknown = await receive(presenter, "error")
        await presenter.disconnect()
        await follower.disconnect()
        return error, relayed, bad, unknown

    error, relayed, bad, unknown = asyncio.run(run())
    assert error["code"] == "not_driver"
    assert not relayed
    assert bad["code"] == "bad_state" and unknown["code"] == "bad_message"
    session["session"].refresh_from_db()
    assert session["session"].state is None


def test_handover_changes_the_driver_and_everyone_is_told(session):
    pres, path_user, third = session["presenter"], session["pathologist"], session["third"]
    third_cookie = cookie_for(third)
    state = state_for(session["case"])

    async def run():
        presenter, _, _ = await connect(session["path"], session["cookies"]["presenter"])
        follower, _, _ = await connect(session["path"], session["cookies"]["pathologist"])
        watcher, _, _ = await connect(session["path"], third_cookie)
        # A follower cannot hand over.
        await watcher.send_json_to({"type": "handover", "to": third.pk})
        refused = await receive(watcher, "error")
        await presenter.send_json_to({"type": "handover", "to": path_user.pk})
        told = [await receive(c, "handover") for c in (presenter, follower, watcher)]
        # The new driver drives; the presenter is now a follower.
        await follower.send_json_to({"type": "state", "state": state})
        at_presenter = await receive(presenter, "state")
        at_watcher = await receive(watcher, "state")
        await presenter.send_json_to({"type": "state", "state": {**state, "pointer": None}})
        presenter_refused = await receive(presenter, "error")
        # The presenter takes the controls back.
        await presenter.send_json_to({"type": "handover", "to": pres.pk})
        back = await receive(follower, "handover")
        for c in (presenter, follower, watcher):
            await c.disconnect()
        return refused, told, at_presenter, at_watcher, presenter_refused, back

    refused, told, at_presenter, at_watcher, presenter_refused, back = asyncio.run(run())
    assert refused["code"] == "handover_refused"
    assert all(t["driver"] == path_user.pk and t["by"] == pres.pk and t["driver_name"] == "path1" for t in told)
    assert at_presenter["state"] == state and at_watcher["driver"] == path_user.pk
    assert presenter_refused["code"] == "not_driver"
    assert back["driver"] == pres.pk
    session["session"].refresh_from_db()
    assert session["session"].driver_id == pres.pk
    from cases.models import AuditEvent

    assert AuditEvent.objects.filter(action="board.handover").count() == 2


def test_new_board_records_reach_every_open_page_live(session, client_for, he_slide):
    """A snapshot or PDF summary the presenter adds is announced over the websocket, so followers
    list it at once (static/board/board.js) instead of after a reload."""
    from asgiref.sync import sync_to_async

    case, board = session["case"], session["session"]
    assert he_slide.case_id == case.pk  # the session's first case has a slide to snapshot
    client = client_for(session["presenter"])

    def post(url, body):
        response = client.post(url, body, content_type="application/json")
        assert response.status_code == 201, response.content
        return response.json()

    async def run():
        presenter, _, _ = await connect(session["path"], session["cookies"]["presenter"])
        follower, _, _ = await connect(session["path"], session["cookies"]["pathologist"])
        await receive(follower, "hello")
        snapshot = await sync_to_async(post)(f"/api/boards/{board.pk}/snapshots/",
                                             {"slide": he_slide.pk, "x": 0, "y": 0, "width": 800, "height": 800,
                                              "out_width": 200, "caption": "Invasive front"})
        got_snapshot = [await receive(c, "record") for c in (follower, presenter)]
        summary = await sync_to_async(post)(f"/api/boards/{board.pk}/summaries/", {"case": case.pk})
        got_summary = await receive(follower, "record")
        await presenter.disconnect()
        await follower.disconnect()
        return snapshot, got_snapshot, summary, got_summary

    snapshot, got_snapshot, summary, got_summary = asyncio.run(run())
    for got in got_snapshot:  # the API's record, and the time as the page lists it
        record = got["record"]
        assert {k: v for k, v in record.items() if k != "created_time"} == snapshot
        assert record["caption"] == "Invasive front" and record["kind"] == "snapshot"
        assert len(record["created_time"]) == 5 and record["created_time"][2] == ":"
    assert got_summary["record"]["id"] == summary["id"] and got_summary["record"]["kind"] == "summary"
    assert got_summary["record"]["url"] == summary["url"] and got_summary["record"]["case_id"] == case.case_id
