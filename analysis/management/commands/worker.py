"""python manage.py worker: the embedded job worker (what `serve` starts for you)."""
from __future__ import annotations

from django.core.management.base import BaseCommand

from analysis.jobs.worker import worker_loop


class Command(BaseCommand):
    help = "Run queued jobs from the database (embedded mode). Stops on SIGTERM/SIGINT."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="exit when the queue is empty")
        parser.add_argument("--poll", type=float, default=0.5, help="seconds between queue polls")

    def handle(self, *args, once: bool, poll: float, **options):
        ran = worker_loop(poll_seconds=poll, once=once)
        self.stdout.write(f"worker stopped after {ran} job(s)")
