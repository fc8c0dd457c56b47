"""PostgreSQL connections are pooled per web process (Django 5.1+ with psycopg_pool), never in
Celery's forking workers; under load the pool bounds the connections instead of piling them up."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest
from django.db import close_old_connections, connection

from tests._env import PROJECT_ROOT

SHOW_OPTIONS = ("import json, os, sys; sys.argv = [sys.argv[1]]; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings';"
                "from django.conf import settings; pool = settings.DATABASES['default'].get('OPTIONS', {}).get('pool');"
                "print(json.dumps(pool))")


def pool_options(argv0: str, **env: str) -> dict | None:
    done = subprocess.run([sys.executable, "-c", SHOW_OPTIONS, argv0], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          env={**os.environ, "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test", **env},
                          timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_web_processes_pool_and_celery_workers_do_not():
    assert pool_options("manage.py") == {"min_size": 2, "max_size": 20, "timeout": 10.0}
    assert pool_options("manage.py", LADDER_DB_POOL_MAX="5", LADDER_DB_POOL_TIMEOUT="3") == {
        "min_size": 2, "max_size": 5, "timeout": 3.0}
    assert pool_options("manage.py", LADDER_DB_POOL_MAX="0") is None
    assert pool_options("/venv/bin/celery") is None
    assert pool_options("/venv/lib/python3.11/site-packages/celery/__main__.py") is None


@pytest.mark.skipif("postgres" not in os.environ.get("DATABASE_URL", ""), reason="scale-out only (PostgreSQL)")
@pytest.mark.django_db(transaction=True)
def test_many_threads_share_a_bounded_pool():
    """40 threads (ASGI runs each request's sync code on a thread of its own) query at once:
    all succeed and the server sees at most the pool's size of our connections."""
    pool = connection.pool
    assert pool is not None and pool.max_size == 20
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
    close_old_connections()
    barrier = threading.Barrier(40)
    seen: list[int] = []
    errors: list[BaseException] = []

    def request_like():
        try:
            barrier.wait(timeout=30)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_sleep(0.05), count(*) FROM pg_stat_activity WHERE datname = current_database()")
                seen.append(cursor.fetchone()[1])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            close_old_connections()  # what Django does when a request finishes

    threads = [threading.Thread(target=request_like) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(seen) == 40
    assert max(seen) <= pool.max_size + 5  # our pool, plus the few other processes of the test run
    stats = pool.get_stats()
    assert stats["pool_size"] <= pool.max_size and stats["requests_num"] >= 40
