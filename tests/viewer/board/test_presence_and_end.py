"""Who is here, who may take over, and the end of a board: the participant list says who is
connected now and who may present; the presenter (or an admin) ends the board from its page;
an ended board shows it and offers no presenter controls; /boards/ lists it under Past boards."""
from __future__ import annotations

import asyncio
import json
import re

import pytest

from tests.viewer.board.test_consumers import _close_consumer_connections, connect, cookie_for, receive  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def board(presenter, pathologist, case):
    from viewer.board.services import board_create

    return board_create(user=presenter, cases=[case], title="Friday board")


async def _participants_until(communicator, predicate) -> dict:
    """The first participant list that satisfies `predicate` (one arrives per join and leave)."""
    while True:
        message = await receive(communicator, "participants")
        by_name = {p["username"]: p for p in message["participants"]}
        if predicate(by_name):
            return by_name


def _config(html: str) -> dict:
    return json.loads(re.search(r'<script id="board-config" type="application/json">(.*?)</script>', html,
                                re.S).group(1))


def test_participants_say_who_is_connected_and_who_may_present(board, presenter, pathologist, make_user):
    watcher = make_user("watcher")  # logged in, no role: may watch, never present
    path = f"/ws/board/{board.pk}/"
    cookies = [cookie_for(user) for user in (presenter, pathologist, watcher)]

    async def run():
        lead, _, _ = await connect(path, cookies[0])
        await receive(lead, "hello")
        follower, _, _ = await connect(path, cookies[1])
        joined = await _participants_until(lead, lambda people: "path1" in people)
        guest, _, _ = await connect(path, cookies[2])
        with_guest = await _participants_until(lead, lambda people: "watcher" in people)
        await follower.disconnect()
        left = await _participants_until(lead, lambda people: not people["path1"]["connected"])
        await guest.disconnect()
        await lead.disconnect()
        return joined, with_guest, left

    joined, with_guest, left = asyncio.run(run())
    assert joined["path1"] == {"id": pathologist.pk, "username": "path1", "connected": True, "can_present": True}
    assert joined["pres1"]["connected"] and joined["pres1"]["can_present"]
    assert with_guest["watcher"]["connected"] and with_guest["watcher"]["can_present"] is False
    # the one who left stays a participant, no longer connected: not offered as a hand-over target
    assert left["path1"]["connected"] is False and left["pres1"]["connected"] is True


def test_two_tabs_of_one_user_count_until_both_close(board, pathologist):
    from viewer.board.models import BoardParticipant

    path = f"/ws/board/{board.pk}/"
    cookie = cookie_for(pathologist)

    async def run():
        first, _, _ = await connect(path, cookie)
        second, _, _ = await connect(path, cookie)
        await receive(second, "hello")
        await first.disconnect()
        await asyncio.sleep(0.2)
        from asgiref.sync import sync_to_async

        between = await sync_to_async(lambda: BoardParticipant.objects.get(user=pathologist).connections)()
        await second.disconnect()
        return between

    assert asyncio.run(run()) == 1
    assert BoardParticipant.objects.get(user=pathologist).connections == 0


def test_hand_over_only_to_someone_who_may_present(board, presenter, make_user):
    from viewer.board.services import BoardError, board_handover

    with pytest.raises(BoardError, match="no role that may present"):
        board_handover(session=board, by=presenter, to_user_id=make_user("watcher").pk)
    board.refresh_from_db()
    assert board.driver_id == presenter.pk


def test_end_button_for_the_presenter_and_admins_only(board, client_for, pathologist, admin_user_role, presenter):
    html = client_for(presenter).get(f"/boards/{board.pk}/").content.decode()
    assert 'id="board-end"' in html and 'id="board-end-dialog"' in html
    config = _config(html)
    assert config["canEnd"] is True and config["ended"] is False and config["endUrl"] == f"/api/boards/{board.pk}/end/"
    assert 'id="board-end"' in client_for(admin_user_role).get(f"/boards/{board.pk}/").content.decode()
    html = client_for(pathologist).get(f"/boards/{board.pk}/").content.decode()
    assert 'id="board-end"' not in html and _config(html)["canEnd"] is False


def test_an_ended_board_says_so_offers_no_controls_and_is_a_past_board(board, client_for, presenter, pathologist):
    from viewer.board.services import board_end

    client = client_for(presenter)
    listed = client.get("/boards/").content.decode()
    assert "Friday board" in listed.split('id="board-past-sessions"')[0]  # open
    board_end(session=board, user=presenter)

    html = client.get(f"/boards/{board.pk}/").content.decode()
    config = _config(html)
    assert config["ended"] is True and config["canEnd"] is False and config["canRecord"] is False
    assert 'data-ended="1"' in html and re.search(r'id="board-ended"(?! hidden)[^>]*>Ended', html)
    for control in ("board-detach", "board-handover", "board-take", "board-end", "board-snapshot", "board-summary"):
        assert f'id="{control}"' not in html, control

    listed = client_for(pathologist).get("/boards/").content.decode()
    open_part, past_part = listed.split('id="board-past-sessions"')
    assert "Friday board" not in open_part and "No open sessions." in open_part
    assert f'href="/boards/{board.pk}/"' in past_part and "Friday board" in past_part
