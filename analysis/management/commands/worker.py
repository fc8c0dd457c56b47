"""python manage.py worker: the embedded job worker (what `serve` starts for you)."""
from __future__ import annotations

from django.core.management.base import BaseCommand

from analysis.jobs.worker import embedded_worker_lock, worker_loop


class Command(BaseCommand):
    help = "Run queued jobs from the database (embedded mode). Stops on SIGTERM/SIGINT."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="exit when the queue is empty")
        parser.add_argument("--poll", type=float, default=0.5, help="seconds between queue polls")
        parser.add_argument("--exclusive", action="store_true",
                            help="run only while no other exclusive worker of this data folder runs (what "
                                 "`serve` starts): wait for its lock first")

    def handle(self, *args, once: bool, poll: float, exclusive: bool, **options):
        if exclusive:
            self._lock = embedded_worker_lock(wait_message=lambda: self.stdout.write(
                "another embedded worker of this data folder is running; waiting for it to stop", ending="\n"))
        ran = worker_loop(poll_seconds=poll, once=once)
        self.stdout.write(f"worker stopped after {ran} job(s)")
