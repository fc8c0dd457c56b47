"""Live job progress of one case over a websocket (`/ws/cases/<pk>/`), for the case page.

Jobs run in another process (the embedded worker) or on another machine (Celery), and the
embedded configuration's channel layer is in-process only; so the consumer does not wait for
messages from workers: it watches the case's job rows itself, once a second while a job is
queued or running, every five seconds otherwise, and sends the list when it changed:
`{"type": "jobs", "jobs": [...]}` (newest first, 20 at most, as GET /api/jobs/?case=<pk>, with
the last 40 lines of each log). The page sends `{"type": "refresh"}` after a cancel or retry
to get the change at once. One indexed query per socket and second, instead of one HTTP
request per page and second as the polling it replaces.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging

from channels.db import database_sync_to_async

from viewer.consumers import LoginRequiredConsumer

ACTIVE_INTERVAL_SECONDS = 1.0
IDLE_INTERVAL_SECONDS = 5.0
LOG_LINES = 40
MAX_JOBS = 20
NOT_FOUND_CLOSE_CODE = 4404

logger = logging.getLogger(__name__)


class JobProgressConsumer(LoginRequiredConsumer):
    async def on_connect(self):
        self.case_pk = int(self.scope["url_route"]["kwargs"]["case_pk"])
        if not await self._case_exists():
            await self.close(code=NOT_FOUND_CLOSE_CODE)
            return
        await self.accept()
        self._wake = asyncio.Event()
        self._watcher = asyncio.ensure_future(self._watch())

    async def disconnect(self, code):
        watcher = getattr(self, "_watcher", None)
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher

    async def receive_json(self, content, **kwargs):
        if isinstance(content, dict) and content.get("type") == "refresh":
            self._wake.set()
        else:
            await self.frame_error("bad_message", 'Unknown message type (this socket takes {"type": "refresh"}).')

    async def _watch(self):
        last, active = None, False
        while True:
            try:
                jobs, active = await self._snapshot()
                if jobs != last:
                    await self.send_json({"type": "jobs", "jobs": jobs})
                    last = jobs
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup: keep the socket, try again at the next interval
                logger.warning("job progress of case %s: snapshot failed", self.case_pk, exc_info=True)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(),
                                       timeout=ACTIVE_INTERVAL_SECONDS if active else IDLE_INTERVAL_SECONDS)
            self._wake.clear()

    @database_sync_to_async
    def _case_exists(self) -> bool:
        from cases.models import Case

        return Case.objects.filter(pk=self.case_pk).exists()

    @database_sync_to_async
    def _snapshot(self) -> tuple[list[dict], bool]:
        from analysis.models import ACTIVE_STATUSES, Job
        from viewer.jobs.serializers import JobSerializer

        rows = Job.objects.filter(case_id=self.case_pk).order_by("-created_at")[:MAX_JOBS]
        jobs = [dict(item) for item in JobSerializer(rows, many=True).data]
        for job in jobs:
            job["log"] = "\n".join((job.get("log") or "").split("\n")[-LOG_LINES:])
        return jobs, any(job["status"] in ACTIVE_STATUSES for job in jobs)
