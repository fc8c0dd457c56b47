"""Issue 15, defects 5 and 11: no non-finite numbers in a board's state, and an ended board is read-only."""
from __future__ import annotations

import asyncio
import json

import pytest
from django.core.cache import cache

from tests.viewer.board.test_consumers import (_close_consumer_connections, connect, cookie_for,  # noqa: F401
                                               nothing_of, receive, session, state_for)

pytestmark = pytest.mark.django_db(transaction=True)


def test_nan_state_is_refused_and_never_stored(session, client_for):
    board = session["session"]

    async def run():
        presenter, _, _ = await connect(session["path"], session["cookies"]["presenter"])
        follower, _, _ = await connect(session["path"], session["cookies"]["pathologist"])
        await receive(follower, "hello")
        answers = []
        for raw in ('{"type":"state","state":{"case":%d,"zoom":NaN}}' % session["case"].pk,
                    '{"type":"state","state":{"case":%d,"viewport":{"zoom":Infinity}}}' % session["case"].pk,
                    '{"type":"state","state":{"case":%d,"x":-Infinity}}' % session["case"].pk):
            await presenter.send_to(text_data=raw)
            answers.append(await receive(presenter, "error"))
        relayed = not await nothing_of(follower, "state")
        await presenter.send_json_to({"type": "ping", "t": 1})
        await receive(presenter, "pong")
        await presenter.disconnect()
        await follower.disconnect()
        return answers, relayed

    answers, relayed = asyncio.run(run())
    assert [a["code"] for a in answers] == ["bad_state"] * 3
    assert "finite" in answers[0]["error"]
    assert not relayed
    board.refresh_from_db()
    assert board.state is None
    response = client_for(session["presenter"]).get(f"/api/boards/{board.pk}/")
    assert response.status_code == 200 and response.json()["state"] is None


def test_a_poisoned_cached_state_is_not_handed_out(session, client_for):
    """A NaN state cached before the fix: the API answers 200, late joiners get strict JSON."""
    from viewer.board.selectors import board_state_cache_key

    board = session["session"]
    cache.set(board_state_cache_key(board.key), {"state": {"case": session["case"].pk, "zoom": float("nan")},
                                                 "seq": 10**15})
    response = client_for(session["presenter"]).get(f"/api/boards/{board.pk}/")
    assert response.status_code == 200 and response.json()["state"] is None

    async def join():
        late, _, _ = await connect(session["path"], session["cookies"]["pathologist"])
        raw = await late.receive_from(timeout=3)
        await late.disconnect()
        return raw

    hello = json.loads(asyncio.run(join()), parse_constant=lambda name: pytest.fail(f"bare {name} sent"))
    assert hello["type"] == "hello" and hello["latest"] is None


def test_service_refuses_non_finite_state(session):
    from viewer.board.services import BoardError, board_state_store

    board = session["session"]
    with pytest.raises(BoardError, match="finite"):
        board_state_store(session_id=board.pk, session_key=board.key, state={"zoom": float("inf")}, seq=1,
                          persist=True)


def _end(session, client_for):
    response = client_for(session["presenter"]).post(f"/api/boards/{session['session'].pk}/end/")
    assert response.status_code == 200 and response.json()["ended_at"]


def test_ended_board_refuses_snapshots_and_summaries(presenter, client_for, he_slide):
    from viewer.board.models import BoardRecord
    from viewer.board.services import board_create

    board = board_create(user=presenter, cases=[he_slide.case])
    client = client_for(presenter)
    assert client.post(f"/api/boards/{board.pk}/end/").status_code == 200
    body = {"slide": he_slide.pk, "x": 0, "y": 0, "width": 500, "height": 500, "out_width": 100}
    snap = client.post(f"/api/boards/{board.pk}/snapshots/", body, content_type="application/json")
    summary = client.post(f"/api/boards/{board.pk}/summaries/", {"case": he_slide.case.pk},
                          content_type="application/json")
    for response in (snap, summary):
        assert response.status_code == 409, response.content
        assert "ended" in response.json()["detail"]
    assert not BoardRecord.objects.filter(session=board).exists()


def test_ended_board_closes_open_sockets_and_refuses_new_ones(session, client_for):
    board = session["session"]
    state = state_for(session["case"])

    async def live():
        presenter, _, _ = await connect(session["path"], session["cookies"]["presenter"])
        follower, _, _ = await connect(session["path"], session["cookies"]["pathologist"])
        await presenter.send_json_to({"type": "state", "state": state})
        await receive(follower, "state")
        return presenter, follower

    async def run():
        presenter, follower = await live()
        from asgiref.sync import sync_to_async

        await sync_to_async(_end)(session, client_for)
        told = [await receive(c, "ended") for c in (presenter, follower)]
        closed = [await c.receive_output(timeout=3) for c in (presenter, follower)]
        # a new socket: accepted, told, closed with 4409
        late, connected, _ = await connect(session["path"], session["cookies"]["pathologist"])
        late_told = await late.receive_json_from(timeout=3)
        late_closed = await late.receive_output(timeout=3)
        return told, closed, connected, late_told, late_closed

    told, closed, connected, late_told, late_closed = asyncio.run(run())
    assert all("ended" in t["error"] for t in told)
    assert all(c == {"type": "websocket.close", "code": 4409} for c in closed), closed
    assert connected and late_told["type"] == "ended" and late_closed["code"] == 4409
    board.refresh_from_db()
    assert board.state == state  # the last state before the end stays in the record


def test_ended_board_refuses_handover_and_state_writes(session):
    from viewer.board.services import BoardEndedError, board_end, board_handover, board_state_store

    board = session["session"]
    board_end(session=board, user=session["presenter"])
    with pytest.raises(BoardEndedError):
        board_handover(session=board, by=session["presenter"], to_user_id=session["pathologist"].pk)
    board_state_store(session_id=board.pk, session_key=board.key, state=state_for(session["case"]), seq=5,
                      persist=True)
    board.refresh_from_db()
    assert board.state is None and board.driver_id == session["presenter"].pk
