"""Issue 15, defect 9: the embedded worker dies with `serve` (even on SIGKILL), and a restarted
server never runs a second worker beside one that is still there."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._env import PROJECT_ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(condition, seconds: float = 60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    return condition()


def test_worker_dies_with_a_killed_server(child_env):
    child_env = {**child_env, "LADDER_JOB_BACKEND": "embedded"}  # the scale-out run too: serve's own worker
    server = subprocess.Popen([sys.executable, "manage.py", "serve", "--port", str(_free_port())],
                              cwd=PROJECT_ROOT, env=child_env, start_new_session=True)
    try:
        workers = _wait(lambda: _children(server.pid))
        assert workers, "serve started no worker"
        worker = workers[0]
        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
        assert _wait(lambda: not _alive(worker), 10), "the worker outlived the killed server"
    finally:
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_second_exclusive_worker_waits_for_the_first(child_env):
    command = [sys.executable, "manage.py", "worker", "--exclusive", "--poll", "0.2"]
    first = subprocess.Popen(command, cwd=PROJECT_ROOT, env=child_env, start_new_session=True)
    second = None
    try:
        from django.conf import settings

        lock = Path(settings.LADDER_DATA_DIR) / "embedded-worker.lock"
        assert _wait(lambda: lock.exists() and lock.read_text().strip() == str(first.pid))
        second = subprocess.Popen(command, cwd=PROJECT_ROOT, env=child_env, stdout=subprocess.PIPE, text=True,
                                  start_new_session=True)
        line = second.stdout.readline()
        assert "another embedded worker" in line
        assert lock.read_text().strip() == str(first.pid)
        first.kill()  # however the first one dies, the second takes over
        first.wait(timeout=10)
        assert _wait(lambda: lock.read_text().strip() == str(second.pid), 20)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=10)
