"""Celery app for the scale-out configuration: `celery -A config worker -l info`."""
from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("ladder")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["analysis"])
# Run one worker with -B (beat) so jobs whose worker died are reaped even when no new job arrives.
app.conf.beat_schedule = {
    "reap-stale-jobs": {
        "task": "analysis.reap_stale_jobs",
        "schedule": max(2.0, int(os.environ.get("LADDER_JOB_HEARTBEAT_TIMEOUT", "120")) / 2),
    }
}
