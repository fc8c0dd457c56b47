"""Schemathesis against the live server (issue 15): every operation of our own OpenAPI schema,
as a logged-in pathologist, with a real case, slide (CMU-1-Small-Region.svs), annotation, job
and board so that path parameters hit real objects. Checks: no server error, the status code,
content type and body the schema documents. A bounded number of examples per operation and a
fixed seed keep it to a few minutes and repeatable.

The server is `manage.py serve` (daphne, the ASGI application, the tile fast path) on a fresh
data folder, started as tests/e2e/conftest.py starts it, but without the job worker: the fuzzer
queues analyses and must not start them (the queued rows are still cancelled and retried).
No operation is excluded: logout and the admin are not part of /api/, and every write
here is reversible or bounded (soft deletes, a board ending, queued jobs).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests._env import PROJECT_ROOT, SHARED_DATA

SEED = 15
MAX_EXAMPLES = int(os.environ.get("LADDER_FUZZ_EXAMPLES", "12"))  # per operation and phase
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SLIDE = SHARED_DATA / "slides" / "CMU-1-Small-Region.svs"
PASSWORD = "fuzz-Pathologist-passw0rd"

SETUP = """
import json
from django.contrib.auth.models import Group, User
from analysis.services import analysis_enqueue
from cases.models import Case
from viewer.board.services import board_create
from viewer.cases.services.slides import slide_import
from viewer.review.services import annotation_create

def user(name, *roles):
    account = User.objects.create_user(username=name, password=%(password)r)
    for role in roles:
        account.groups.add(Group.objects.get_or_create(name=role)[0])
    return account

pathologist, presenter = user("fuzzer", "pathologist"), user("presenter", "presenter")
case = Case.objects.create(case_id="FUZZ-1", age=51, clinical_t="T2", clinical_n="N1", clinical_stage="II",
                           er_status="positive", pr_status="negative", hr_status="positive", her2_ihc="3+")
slide = slide_import(case=case, stain="he", path=%(slide)r, user=pathologist)
square = {"type": "Polygon", "coordinates": [[[100, 100], [400, 100], [400, 300], [100, 100]]]}
annotation = annotation_create(slide=slide, user=pathologist, geometry=square, label="artefact")
job = analysis_enqueue(slide=slide, user=pathologist)
board = board_create(user=presenter, cases=[case])
print(json.dumps({"cases": case.pk, "slides": slide.pk, "annotations": annotation.pk, "jobs": job.pk,
                  "boards": board.pk}))
"""


def _manage(env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@pytest.fixture(scope="module")
def fuzz_site():
    if not SLIDE.exists():
        pytest.skip(f"missing test file {SLIDE}")
    import socket

    data_dir = tempfile.mkdtemp(prefix="ladder-fuzz-")
    env = {**os.environ, "LADDER_DATA_DIR": data_dir, "PYTHONUNBUFFERED": "1", "LADDER_JOB_BACKEND": "embedded"}
    for name in ("LADDER_DB_PATH", "DATABASE_URL", "REDIS_URL"):  # a server of its own, embedded defaults
        env.pop(name, None)
    _manage(env, "migrate", "--noinput", "-v0")
    known = json.loads(_manage(env, "shell", "-c", SETUP % {"password": PASSWORD, "slide": str(SLIDE)})
                       .strip().splitlines()[-1])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(os.path.join(data_dir, "server.log"), "w")
    server = subprocess.Popen([sys.executable, "manage.py", "serve", "--port", str(port), "--no-worker"],
                              cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
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
    session = requests.Session()
    session.get(f"{url}/accounts/login/", timeout=10)
    answer = session.post(f"{url}/accounts/login/", timeout=10, allow_redirects=False,
                          data={"username": "fuzzer", "password": PASSWORD,
                                "csrfmiddlewaretoken": session.cookies["csrftoken"]})
    assert answer.status_code == 302, answer.text[:300]
    yield {"url": url, "session": session, "known": known, "log": log.name}
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


def _generated_schema() -> dict:
    """The schema /api/schema/ serves, generated in-process (Django is set up before collection),
    so that each operation is a test item of its own; test_served_schema_is_the_fuzzed_one
    checks the live server serves the same."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


SCHEMA = _generated_schema()
# No generated Authorization header: a random token would be refused (401) before the session
# cookie is read, and every call would test the login wall instead of the operation.
schema = schemathesis.openapi.from_dict(SCHEMA, config=schemathesis.Config.from_dict(
    {"seed": SEED, "generation": {"with-security-parameters": False}}))


def test_served_schema_is_the_fuzzed_one(fuzz_site):
    answer = fuzz_site["session"].get(f"{fuzz_site['url']}/api/schema/", params={"format": "json"}, timeout=30)
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["paths"] == SCHEMA["paths"]


def test_every_body_is_described():
    """No request or response body is a bare object: the fuzzer (and a client) knows each one."""
    untyped = []
    for path, operations in SCHEMA["paths"].items():
        for method, operation in operations.items():
            bodies = [("request", (operation.get("requestBody") or {}).get("content", {}))]
            bodies += [(code, answer.get("content", {})) for code, answer in operation["responses"].items()]
            for where, content in bodies:
                for media, body in content.items():
                    if body.get("schema") in (None, {}, {"type": "object", "additionalProperties": {}}):
                        untyped.append(f"{method.upper()} {path} {where} {media}")
    assert untyped == []
    assert len([op for ops in SCHEMA["paths"].values() for op in ops]) >= 40


def _aim_at_real_objects(case, known: dict) -> None:
    """Two generated ids in three become a real object's, so most calls get past the 404."""
    collection = case.path.strip("/").split("/")[1]  # /api/<collection>/...
    for name, value in list((case.path_parameters or {}).items()):
        if not isinstance(value, int) or value % 3 == 0:
            continue
        if name == "slide_id":
            case.path_parameters[name] = known["slides"]
        elif name in ("id", "pk") and collection in known:
            case.path_parameters[name] = known[collection]


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_api_fuzz(case, fuzz_site):
    _aim_at_real_objects(case, fuzz_site["known"])
    session = fuzz_site["session"]
    headers = {"X-CSRFToken": session.cookies["csrftoken"]}

    response = case.call(base_url=fuzz_site["url"], session=session, headers=headers, timeout=60)
    assert response.status_code != 401, "the fuzzer's session was not accepted: it tests nothing past the login"
    if (response.status_code == 400 and not response.content and "multipart" in (case.media_type or "")):
        # A malformed multipart body is refused by Twisted (daphne's HTTP layer) before Django
        # sees it, with an empty 400; docs/security.md says so. Any other empty answer fails.
        return
    try:
        case.validate_response(response, checks=CHECKS)
    except Exception:
        with open(fuzz_site["log"]) as log:  # the server's traceback, for the failure report
            sys.stderr.write(log.read()[-6000:])
        raise
