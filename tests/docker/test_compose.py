"""docker/compose.yml validates with Docker Compose and describes the scale-out set-up."""
from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests._env import PROJECT_ROOT

COMPOSE_FILE = PROJECT_ROOT / "docker" / "compose.yml"


def _compose_command() -> list[str]:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip("neither 'docker compose' nor 'docker-compose' is installed (./test.sh installs it as root)")


def test_compose_config_validates():
    done = subprocess.run([*_compose_command(), "-f", str(COMPOSE_FILE), "--profile", "gpu", "config"],
                          capture_output=True, text=True, env={"LADDER_SECRET_KEY": "x" * 50, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert {"postgres", "redis", "web", "worker", "gpu-worker"} <= set(config["services"])


def test_compose_requires_a_secret_key():
    done = subprocess.run([*_compose_command(), "-f", str(COMPOSE_FILE), "config"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode != 0 and "LADDER_SECRET_KEY" in (done.stderr + done.stdout)


def test_web_and_workers_share_data_and_scale_out_settings():
    config = yaml.safe_load(COMPOSE_FILE.read_text())
    for name in ("web", "worker", "gpu-worker"):
        service = {**config["x-ladder"], **config["services"][name]}
        assert any(str(volume).startswith("ladder-data:/data") for volume in service["volumes"])
    env = config["x-ladder"]["environment"]
    assert env["DATABASE_URL"].startswith("postgres://") and env["REDIS_URL"].startswith("redis://")
    gpu = config["services"]["gpu-worker"]
    assert gpu["environment"]["LADDER_HOVERNET_WEIGHTS"] == "/weights"
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_web_and_worker_have_health_checks():
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    assert services["web"]["healthcheck"]["test"][:4] == ["CMD", "python", "manage.py", "health"]
    assert "inspect ping" in services["worker"]["healthcheck"]["test"][1]
