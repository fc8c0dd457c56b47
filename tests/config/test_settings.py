"""Production settings refuse unsafe configurations, and `check --deploy` is clean."""
from __future__ import annotations

import os
import subprocess
import sys

from tests._env import PROJECT_ROOT

GOOD_KEY = "k" * 20 + "Q7x!p2_Zr9-Lm4vT8sW1yB6nC3dF0hJ5gK"  # 55 characters, not a default


def run_django(env_changes: dict, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_changes}
    for name, value in env_changes.items():
        if value is None:
            env.pop(name)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_production_refuses_missing_secret_key(tmp_path):
    done = run_django({"LADDER_ENV": "production", "LADDER_SECRET_KEY": None, "LADDER_DATA_DIR": str(tmp_path)}, "check")
    assert done.returncode != 0 and "LADDER_SECRET_KEY must be set" in done.stderr


def test_production_refuses_default_or_short_key(tmp_path):
    for key in ("django-insecure-" + "x" * 50, "short"):
        done = run_django({"LADDER_ENV": "production", "LADDER_SECRET_KEY": key, "LADDER_DATA_DIR": str(tmp_path)}, "check")
        assert done.returncode != 0 and "default or too short" in done.stderr


def test_production_refuses_debug(tmp_path):
    done = run_django({"LADDER_ENV": "production", "LADDER_SECRET_KEY": GOOD_KEY, "LADDER_DEBUG": "1",
                       "LADDER_DATA_DIR": str(tmp_path)}, "check")
    assert done.returncode != 0 and "LADDER_DEBUG must be off" in done.stderr


def test_check_deploy_is_clean_in_production(tmp_path):
    done = run_django({"LADDER_ENV": "production", "LADDER_SECRET_KEY": GOOD_KEY, "LADDER_DEBUG": None,
                       "LADDER_DATA_DIR": str(tmp_path)}, "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout
