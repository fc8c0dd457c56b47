"""python manage.py serve [--host H] [--port P]: the ASGI server plus the embedded worker."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

logger = logging.getLogger(__name__)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent_pid: int):
    """preexec_fn of the worker: on Linux the kernel kills it (SIGKILL) when the server dies, even
    by SIGKILL, so it never outlives `serve`; the jobs it ran are retried by the reaper and its
    temporary outputs swept (analysis.jobs.sweep). Elsewhere the worker's exclusive lock keeps a
    restarted server from running a second one beside an orphan."""

    def setup():
        if sys.platform.startswith("linux"):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent_pid:  # the server died before prctl took effect
                os._exit(1)

    return setup


class WorkerSupervisor:
    """Keeps one `manage.py worker` process alive beside the server; restarts it if it dies.
    The worker dies with the server (parent-death signal) and holds the embedded-worker lock."""

    def __init__(self):
        self.process: subprocess.Popen | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="worker-supervisor")

    def start(self):
        self.thread.start()

    def _run(self):
        manage = Path(settings.BASE_DIR) / "manage.py"
        while not self.stopping.is_set():
            self.process = subprocess.Popen([sys.executable, str(manage), "worker", "--exclusive"],
                                            preexec_fn=_die_with_parent(os.getpid()))
            code = self.process.wait()
            if self.stopping.is_set():
                return
            logger.warning("embedded worker exited with %s; restarting in 2 s", code)
            self.stopping.wait(2)

    def stop(self):
        self.stopping.set()
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


class Command(BaseCommand):
    help = "Serve the viewer (Daphne ASGI: pages, API, tiles, websockets) and run the embedded job worker."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-worker", action="store_true",
                            help="do not start the embedded worker (e.g. Celery workers run the jobs)")

    def handle(self, *args, host: str, port: int, no_worker: bool, **options):
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server

        from django.utils.module_loading import import_string

        application = import_string(settings.ASGI_APPLICATION)  # config.asgi.application

        supervisor = None
        if not no_worker and settings.LADDER_JOB_BACKEND == "embedded":
            supervisor = WorkerSupervisor()
            supervisor.start()
        elif settings.LADDER_JOB_BACKEND == "celery":
            self.stdout.write("jobs go to Celery workers (start them with: celery -A config worker -B -l info)")
        self.stdout.write(self.style.SUCCESS(f"HER2-LADDER viewer on http://{host}:{port}/"))
        try:
            Server(
                application=application,
                endpoints=build_endpoint_description_strings(host=host, port=port),
                http_timeout=None,
                websocket_timeout=None,
                application_close_timeout=10,
                verbosity=0,
            ).run()
        finally:
            if supervisor:
                supervisor.stop()
                time.sleep(0.1)
