"""Faults: a full disk while writing outputs; Redis restarting under the web (scale-out)."""
from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest
from django.conf import settings

from analysis.jobs.runner import job_claim, job_execute
from analysis.models import AnalysisRun, JobStatus
from analysis.services import analysis_enqueue
from cases.models import Stain


@pytest.fixture
def tiny_disk(tmp_path):
    """A 24 kB tmpfs (root only): writes beyond it fail with ENOSPC, as on a full disk."""
    mount_point = tmp_path / "full-disk"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24k", "tmpfs", str(mount_point)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode().strip()}); needs root")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)])


@pytest.mark.django_db(transaction=True)
def test_disk_full_while_writing_a_run_fails_cleanly(phantom_case, tiny_disk, settings):
    settings.LADDER_RUNS_DIR = tiny_disk
    slide = phantom_case.slide_for(Stain.HE)
    job = job_execute(job_claim(job_id=analysis_enqueue(slide=slide).pk, worker="test"))
    assert job.status == JobStatus.FAILED
    assert "No space left on device" in job.error
    assert not AnalysisRun.objects.exists()
    leftovers = [p for p in tiny_disk.rglob("*") if p.is_file()]
    assert leftovers == [], f"partial outputs left behind: {leftovers}"
    # The database is intact and the next run (with space) succeeds.
    settings.LADDER_RUNS_DIR = settings.LADDER_DATA_DIR / "runs"
    again = job_execute(job_claim(job_id=analysis_enqueue(slide=slide).pk, worker="test"))
    assert again.status == JobStatus.SUCCEEDED, again.error


REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "",
               "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log"]


def _redis_up() -> bool:
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "ping"], capture_output=True).returncode == 0


@pytest.mark.scaleout
@pytest.mark.django_db(transaction=True)
def test_web_keeps_serving_tiles_while_redis_restarts(client_for, pathologist, he_slide):
    if not settings.REDIS_URL:
        pytest.skip("scale-out only (REDIS_URL set)")
    from django.core.cache import caches

    client = client_for(pathologist)
    url = f"/slides/{he_slide.pk}_files/12/0_0.jpeg"
    assert client.get(url).status_code == 200
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "shutdown", "nosave"], capture_output=True)
    try:
        deadline = time.monotonic() + 10
        while _redis_up() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _redis_up()
        down = client.get(f"/slides/{he_slide.pk}_files/12/1_0.jpeg")
        assert down.status_code == 200 and down.content[:2] == b"\xff\xd8"
    finally:
        subprocess.run(REDIS_START, capture_output=True)
        deadline = time.monotonic() + 20
        while not _redis_up() and time.monotonic() < deadline:
            time.sleep(0.2)
    assert _redis_up()
    key = f"probe-{uuid.uuid4().hex}"
    caches["tiles"].set(key, b"x")  # reconnected
    assert caches["tiles"].get(key) == b"x"
    assert client.get(f"/slides/{he_slide.pk}_files/12/2_0.jpeg").status_code == 200
