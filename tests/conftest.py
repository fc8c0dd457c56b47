"""Shared fixtures.

Real test data lives outside the repository, in ../shared/data (see SOURCES.md there);
`LADDER_TEST_DATA` points elsewhere. Tests that need a file it lacks are skipped with
the path in the reason, never silently passed.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests._env import PROJECT_ROOT, SHARED_DATA  # noqa: F401  (PROJECT_ROOT is used by test modules)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real test data (../shared/data)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_file(shared_data):
    """Return a path under ../shared/data, skipping when it is missing."""

    def get(relative: str) -> Path:
        path = shared_data / relative
        if not path.exists():
            pytest.skip(f"missing test file {path}")
        return path

    return get


# --- Django fixtures ----------------------------------------------------------------------

@pytest.fixture
def make_user(db):
    """Create a user with the given roles (cases.models.Role values)."""
    from django.contrib.auth.models import Group, User

    def make(username: str, *roles: str, password: str = "a-Long-test-passw0rd") -> "User":
        user = User.objects.create_user(username=username, password=password)
        for role in roles:
            user.groups.add(Group.objects.get_or_create(name=role)[0])
        return user

    return make


@pytest.fixture
def pathologist(make_user):
    return make_user("path1", "pathologist")


@pytest.fixture
def presenter(make_user):
    return make_user("pres1", "presenter")


@pytest.fixture
def admin_user_role(make_user):
    return make_user("admin1", "admin")


@pytest.fixture
def client_for(client):
    """A test client logged in as the given user."""

    def login(user):
        client.force_login(user)
        return client

    return login


@pytest.fixture
def case(db):
    from cases.models import Case

    return Case.objects.create(case_id="CASE-1", age=51, clinical_t="T2", clinical_n="N1", clinical_stage="II",
                               er_status="positive", pr_status="negative", hr_status="positive", her2_ihc="3+")


@pytest.fixture
def he_slide(case, shared_file):
    from viewer.cases.services.slides import slide_import

    return slide_import(case=case, stain="he", path=shared_file("slides/CMU-1-Small-Region.svs"))


@pytest.fixture
def ihc_slide(case, shared_file):
    from viewer.cases.services.slides import slide_import

    return slide_import(case=case, stain="ihc", path=shared_file("slides/tcga-cr-7395-01a-01-ts1.svs"))


def _database_env() -> dict[str, str]:
    """Environment that points a child process at the test database in use."""
    from django.db import connection

    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return {"LADDER_DB_PATH": str(db["NAME"])}
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return {"DATABASE_URL": f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"}


@pytest.fixture
def child_env(transactional_db):
    """os.environ for processes that must share this test's database and data folder."""
    import os

    return {**os.environ, **_database_env(), "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def live_worker(child_env):
    """A real job worker process: the embedded worker, or a Celery worker in scale-out."""
    import subprocess
    import sys

    from django.conf import settings

    started: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        if settings.LADDER_JOB_BACKEND == "celery":
            # -B: the embedded beat reaps jobs of dead workers, as one worker does in production.
            command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-B", "-l", "warning",
                       "-s", str(settings.LADDER_DATA_DIR / f"celerybeat-{len(started)}"),
                       "--concurrency", "1", "--pool", "solo", "-Q", settings.CELERY_TASK_DEFAULT_QUEUE]
        else:
            command = [sys.executable, "manage.py", "worker", "--poll", "0.2"]
        # A process group of its own: Celery's beat is a child process, and a killed worker must not
        # leave it behind (tests kill the whole group, as a machine or container dying would).
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=child_env, start_new_session=True)
        started.append(process)
        return process

    yield start
    import os
    import signal

    for process in started:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def phantom_pair():
    """A small phantom H&E / HER2-IHC pair with ground truth, inside an allowed slide root."""
    from django.conf import settings

    from analysis.core.demo.phantom import ensure_phantom_pair

    return ensure_phantom_pair(out_dir=settings.LADDER_DEMO_DIR / "test-phantom", width=2048, height=2048)


@pytest.fixture
def phantom_case(db, phantom_pair):
    from cases.models import Case
    from viewer.cases.services.slides import slide_import

    case = Case.objects.create(case_id="PHANTOM-1", age=55, clinical_t="T2", clinical_n="N0", clinical_stage="II",
                               er_status="positive", pr_status="positive", hr_status="positive", her2_ihc="3+", grade=2)
    slide_import(case=case, stain="he", path=phantom_pair.he_path)
    slide_import(case=case, stain="ihc", path=phantom_pair.ihc_path)
    return case


@pytest.fixture(scope="session")
def small_trained_model(tmp_path_factory):
    """The synthetic demo model, trained small (one CV repeat, few trees) for speed."""
    from analysis.core.demo.synthetic_cohort import train_demo_model

    directory = tmp_path_factory.mktemp("model") / "demo"
    train_demo_model(directory=directory, n_cases=160, spec_overrides={"n_repeats": 1, "n_trees": 30,
                                                                        "importance_cases": 5})
    return directory
