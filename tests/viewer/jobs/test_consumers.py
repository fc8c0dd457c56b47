"""Job progress reaches the case page over its websocket (viewer.jobs.consumers), not by polling."""
from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from config.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _close_consumer_connections():
    """The consumer queries on asgiref's shared sync thread: close its connection after each test."""
    yield
    from django.db import connections

    asyncio.run(database_sync_to_async(connections.close_all)())


def _cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


async def _connect(path: str, cookie: str):
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost"),
               (b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode())]
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


def test_progress_is_pushed_as_it_changes(case, pathologist):
    from analysis.models import Job, JobKind, JobStatus

    cookie = _cookie(pathologist)

    async def scenario():
        communicator, connected, _ = await _connect(f"/ws/cases/{case.pk}/", cookie)
        assert connected
        first = await communicator.receive_json_from(timeout=5)
        assert first == {"type": "jobs", "jobs": []}
        job = await database_sync_to_async(Job.objects.create)(
            kind=JobKind.ANALYZE_SLIDE, case=case, status=JobStatus.RUNNING, progress=0.25, message="tiles 1/4",
            log="\n".join(f"line {i}" for i in range(100)))
        await communicator.send_json_to({"type": "refresh"})  # as the page does after cancel/retry
        queued = await communicator.receive_json_from(timeout=5)
        [sent] = queued["jobs"]
        assert (sent["id"], sent["status"], sent["progress"], sent["message"]) == (job.pk, "running", 0.25, "tiles 1/4")
        assert sent["kind_display"] and sent["log"].split("\n") == [f"line {i}" for i in range(60, 100)]
        # a worker (another process) writes progress: pushed within the active interval, no request needed
        await database_sync_to_async(Job.objects.filter(pk=job.pk).update)(progress=0.75, message="tiles 3/4")
        moved = await communicator.receive_json_from(timeout=5)
        assert (moved["jobs"][0]["progress"], moved["jobs"][0]["message"]) == (0.75, "tiles 3/4")
        # nothing changed: nothing sent
        assert await communicator.receive_nothing(timeout=1.5)
        await communicator.disconnect()

    asyncio.run(scenario())


def test_unknown_case_is_closed(pathologist):
    cookie = _cookie(pathologist)

    async def scenario():
        communicator, connected, code = await _connect("/ws/cases/999999/", cookie)
        return connected, code

    assert asyncio.run(scenario()) == (False, 4404)
