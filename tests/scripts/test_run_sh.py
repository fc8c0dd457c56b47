"""./run.sh --help prints its usage (the environment variables it reads among it) and exits 0
before setting anything up; an unknown argument is refused."""
from __future__ import annotations

import os
import signal
import subprocess

from tests._env import PROJECT_ROOT


def _run(*args: str, venv) -> subprocess.CompletedProcess:
    # a virtual environment that does not exist: setting up would create it
    env = {**os.environ, "LADDER_VENV": str(venv)}
    process = subprocess.Popen([str(PROJECT_ROOT / "run.sh"), *args], cwd=PROJECT_ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # it went on to install: stop it and everything it started
        process.communicate()
        raise AssertionError(f"./run.sh {' '.join(args)} did not stop (it set up instead)") from None
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_help_prints_usage_and_installs_nothing(tmp_path):
    venv = tmp_path / "venv"
    for flag in ("--help", "-h"):
        done = _run(flag, venv=venv)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("Usage: ./run.sh")
        for variable in ("HOST", "PORT", "LADDER_DATA_DIR", "LADDER_VENV", "DATABASE_URL", "REDIS_URL"):
            assert f"\n  {variable} " in done.stdout, variable
        assert not venv.exists(), "--help created the virtual environment"


def test_unknown_argument_is_refused(tmp_path):
    done = _run("--port", "9000", venv=tmp_path / "venv")
    assert done.returncode == 2 and "unknown argument: --port" in done.stderr and "Usage:" in done.stderr
    assert not (tmp_path / "venv").exists()
