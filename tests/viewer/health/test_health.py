"""`manage.py health` and `GET /api/health/`: real checks of the parts this deployment runs on."""
from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from analysis.models import Job, JobStatus
from viewer.health.services import CHECKS, health_report

pytestmark = pytest.mark.django_db(transaction=True)


def run_health(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("health", *args, stdout=out)
        code = 0
    except SystemExit as exc:
        code = int(exc.code)
    return code, out.getvalue()


def test_a_working_deployment_passes_every_check():
    code, out = run_health("--json")
    report = json.loads(out)
    assert code == 0, out
    assert [check["name"] for check in report["checks"]] == list(CHECKS)
    by_name = {check["name"]: check for check in report["checks"]}
    assert by_name["database"]["status"] == "ok" and "migrations applied" in by_name["database"]["detail"]
    assert by_name["cache"]["status"] == "ok" and by_name["channels"]["status"] == "ok"
    assert by_name["data_dir"]["status"] == "ok" and "writable" in by_name["data_dir"]["detail"]
    # scale-out: no Celery worker runs during this test, which is a warning, not a failure
    assert by_name["jobs"]["status"] in ("ok", "warn") and report["status"] in ("ok", "warn")


def test_an_unwritable_data_folder_fails_with_exit_status_1(settings, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    settings.LADDER_DATA_DIR = blocker
    code, out = run_health("--only", "data_dir,cache")
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("ok") and "cache" in lines[0]
    assert lines[1].startswith("fail") and "data_dir" in lines[1] and "is not a folder" in lines[1]


def test_warnings_fail_only_when_strict(settings, tmp_path):
    # the product's own upload and demo folders may not exist yet: not a warning
    settings.LADDER_SLIDE_ROOTS = [settings.LADDER_UPLOAD_DIR, settings.LADDER_DEMO_DIR]
    (check,) = health_report(["slide_roots"])
    assert check.status == "ok" and "none configured" in check.detail
    settings.LADDER_SLIDE_ROOTS = [tmp_path / "missing", settings.LADDER_UPLOAD_DIR]
    assert run_health("--only", "slide_roots")[0] == 0
    code, out = run_health("--only", "slide_roots", "--strict")
    assert code == 1 and "not readable" in out


def test_a_job_without_heartbeat_is_reported(settings):
    from datetime import timedelta

    from django.utils import timezone

    job = Job.objects.create(kind="selftest", status=JobStatus.RUNNING, worker="gone",
                             heartbeat_at=timezone.now() - timedelta(seconds=settings.LADDER_JOB_HEARTBEAT_TIMEOUT + 5))
    (check,) = health_report(["jobs"])
    assert check.status == "warn" and "without a heartbeat" in check.detail
    job.delete()


def test_unknown_check_names_are_refused():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="unknown check"):
        call_command("health", "--only", "database,coffee")


def test_api_is_for_admins(client_for, admin_user_role, pathologist):
    response = client_for(admin_user_role).get("/api/health/")
    assert response.status_code == 200 and response.json()["status"] in ("ok", "warn")
    assert {check["name"] for check in response.json()["checks"]} == set(CHECKS)
    assert client_for(pathologist).get("/api/health/").status_code == 403
