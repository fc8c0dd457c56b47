"""End-to-end fixtures: the real server (`manage.py serve`) on a fresh data folder, and
Debian's Chromium driven by Playwright (never a downloaded browser)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests._env import PROJECT_ROOT

CHROMIUM = Path(os.environ.get("LADDER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _manage(env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    if done.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@pytest.fixture(scope="session")
def live_site():
    """A running product with the demo case (small phantom), as `./run.sh` makes it."""
    data_dir = tempfile.mkdtemp(prefix="ladder-e2e-")
    env = {**os.environ, "LADDER_DATA_DIR": data_dir, "PYTHONUNBUFFERED": "1"}
    env.pop("LADDER_DB_PATH", None)
    # The served site runs its own jobs (the demo analyses) with the embedded worker, also in the
    # scale-out run, where REDIS_URL still makes the cache and channel layer Redis.
    env["LADDER_JOB_BACKEND"] = "embedded"
    if env.get("DATABASE_URL"):  # scale-out run: a database of its own, not the test database
        env["DATABASE_URL"] = env["DATABASE_URL"].rsplit("/", 1)[0] + "/ladder_e2e"
        _recreate_postgres_database(env["DATABASE_URL"])
    _manage(env, "migrate", "--noinput", "-v0")
    _manage(env, "setup_demo", "--phantom-size", "3072")
    logins = json.loads((Path(data_dir) / "demo" / "logins.json").read_text())
    port = _free_port()
    server = subprocess.Popen([sys.executable, "manage.py", "serve", "--port", str(port)], cwd=PROJECT_ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/accounts/login/", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("the server did not start")
            time.sleep(0.3)
    yield {"url": url, "logins": logins, "data_dir": data_dir, "env": env}
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()


def _recreate_postgres_database(database_url: str) -> None:
    import psycopg

    base, name = database_url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


# Module scope: Playwright's sync API allows one running instance per thread, and the browser
# tests in tests/frontend start their own after these modules have closed theirs.
@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (./test.sh installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def logged_in_page(browser, live_site):
    """A page logged in as the demo pathologist."""
    context = browser.new_context(viewport={"width": 1400, "height": 860})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{live_site['url']}/accounts/login/")
    page.fill("#id_username", "pathologist")
    page.fill("#id_password", live_site["logins"]["pathologist"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_site['url']}/")
    page.errors = errors
    yield page
    assert errors == [], f"page errors: {errors}"
    context.close()
