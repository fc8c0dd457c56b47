"""Websocket fuzz (issue 15): every consumer gets non-JSON, binary, oversized, deeply nested,
non-finite and unknown-type frames. The sender gets an error frame each time (or, after too many,
a close code); the other participant gets nothing; nothing is stored. Through the real ASGI
application (auth middleware, router, channel layer), as tests/viewer/board/test_consumers.py."""
from __future__ import annotations

import asyncio
import json

import pytest

from analysis.models import Job
from tests.viewer.board.test_consumers import _close_consumer_connections, connect, cookie_for  # noqa: F401
from viewer.consumers import BAD_FRAMES_CLOSE_CODE, MAX_BAD_FRAMES, MAX_FRAME_CHARS

pytestmark = pytest.mark.django_db(transaction=True)

# (name, text or bytes): each must be refused with an error frame to its sender.
BAD_FRAMES = [
    ("not json", "{type: state"),
    ("empty", ""),
    ("binary", b"\x00\xffbinary"),
    ("oversized", json.dumps({"type": "state", "state": {"case": 1, "pad": "x" * MAX_FRAME_CHARS}})),
    ("deep within size", "[" * 1000 + "]" * 1000),
    ("deep beyond the parser", "[" * 100_000),
    ("NaN", '{"type": "state", "state": {"case": %(case)s, "zoom": NaN}}'),
    ("Infinity", '{"type": "state", "state": {"case": %(case)s, "zoom": -Infinity}}'),
    ("1e400", '{"type": "state", "state": {"case": %(case)s, "zoom": 1e400}}'),
    ("unknown type", '{"type": "launch-missiles"}'),
    ("no type", '{"state": {"case": %(case)s}}'),
    ("not an object", "[1, 2, 3]"),
    ("a number", "5"),
    ("bad utf-16", '"\\udc00"'),
]


async def _next(communicator, timeout=3.0) -> dict:
    return await communicator.receive_json_from(timeout=timeout)


async def _error_for(communicator, skip=("participants", "jobs", "hello")) -> dict:
    while True:
        message = await _next(communicator)
        if message["type"] not in skip:
            return message


async def _silence(communicator, wait=0.3) -> list[dict]:
    """Messages that arrive within `wait` s, other than participant lists."""
    got = []
    while not await communicator.receive_nothing(timeout=wait):
        message = await _next(communicator)
        if message["type"] != "participants":
            got.append(message)
    return got


async def _fuzz(sender, bystander, case_pk: int) -> dict[str, dict]:
    answers = {}
    for name, frame in BAD_FRAMES:
        if isinstance(frame, bytes):
            await sender.send_input({"type": "websocket.receive", "bytes": frame})
        else:  # send_input, not send_to: send_to refuses an empty text frame
            text = frame % {"case": case_pk} if "%(case)s" in frame else frame
            await sender.send_input({"type": "websocket.receive", "text": text})
        answers[name] = await _error_for(sender)
        assert await _silence(bystander) == [], f"{name}: the other participant heard of it"
    return answers


@pytest.fixture
def board(presenter, pathologist, case):
    from viewer.board.services import board_create

    return board_create(user=presenter, cases=[case])


def test_board_consumer_refuses_every_bad_frame(board, presenter, pathologist, case):
    from viewer.board.selectors import board_latest_state

    path = f"/ws/board/{board.pk}/"
    cookies = cookie_for(presenter), cookie_for(pathologist)

    async def run():
        driver, ok1, _ = await connect(path, cookies[0])
        follower, ok2, _ = await connect(path, cookies[1])
        assert ok1 and ok2
        await _silence(driver)
        await _silence(follower)
        answers = await _fuzz(driver, follower, case.pk)
        # Still a working board for both: a good state goes through.
        await driver.send_json_to({"type": "state", "state": {"case": case.pk, "zoom": 1.5}})
        while (message := await _next(follower))["type"] != "state":
            pass
        await driver.disconnect()
        await follower.disconnect()
        return answers, message

    board.refresh_from_db()
    assert board.state is None and board_latest_state(board) is None
    answers, relayed = asyncio.run(run())
    for name, answer in answers.items():
        assert answer["type"] == "error" and answer["code"] and answer["error"], (name, answer)
    assert answers["binary"]["code"] == "bad_frame" and answers["oversized"]["code"] == "too_large"
    assert answers["NaN"]["code"] == answers["1e400"]["code"] == "bad_state"  # the board's word for it
    assert "64 levels" in answers["deep within size"]["error"]
    assert relayed["state"] == {"case": case.pk, "zoom": 1.5}
    board.refresh_from_db()
    assert board_latest_state(board)["state"] == {"case": case.pk, "zoom": 1.5}  # only the good one stored


def test_job_progress_consumer_refuses_every_bad_frame(pathologist, make_user, case):
    path = f"/ws/cases/{case.pk}/"
    jobs_before = Job.objects.count()
    cookies = cookie_for(pathologist), cookie_for(make_user("other", "pathologist"))

    async def run():
        sender, ok1, _ = await connect(path, cookies[0])
        other, ok2, _ = await connect(path, cookies[1])
        assert ok1 and ok2
        assert (await _next(sender))["type"] == "jobs" and (await _next(other))["type"] == "jobs"
        answers = await _fuzz(sender, other, case.pk)
        await sender.send_json_to({"type": "refresh"})  # still served: a good message is no error
        quiet = await _silence(sender)
        await sender.disconnect()
        await other.disconnect()
        return answers, quiet

    answers, quiet = asyncio.run(run())
    for name, answer in answers.items():
        assert answer["type"] == "error" and answer["code"] and answer["error"], (name, answer)
    assert answers["unknown type"]["code"] == "bad_message"
    assert quiet == []
    assert Job.objects.count() == jobs_before


@pytest.mark.parametrize("consumer", ["board", "jobs"])
def test_a_sender_of_bad_frames_is_closed(consumer, board, presenter, case):
    path = f"/ws/board/{board.pk}/" if consumer == "board" else f"/ws/cases/{case.pk}/"
    cookie = cookie_for(presenter)

    async def run():
        sender, ok, _ = await connect(path, cookie)
        assert ok
        for _ in range(MAX_BAD_FRAMES):
            await sender.send_to(text_data="not json")
        output = []
        while True:
            message = await sender.receive_output(timeout=3)
            output.append(message)
            if message["type"] == "websocket.close":
                break
        await sender.wait()
        return output

    output = asyncio.run(run())
    errors = [m for m in output if m["type"] == "websocket.send" and '"error"' in m.get("text", "")]
    assert len(errors) == MAX_BAD_FRAMES and output[-1]["code"] == BAD_FRAMES_CLOSE_CODE
