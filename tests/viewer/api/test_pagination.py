"""Pages have a ceiling: a huge `limit` is cut to MAX_LIMIT instead of overflowing the database
(found by API fuzzing: GET /api/jobs/?limit=2118888628188278907054587904 was a 500)."""
from __future__ import annotations

import pytest

from viewer.api.pagination import MAX_LIMIT

pytestmark = pytest.mark.django_db


@pytest.fixture
def many_jobs(case):
    from analysis.models import Job, JobKind

    Job.objects.bulk_create([Job(kind=JobKind.ANALYZE_SLIDE, case=case) for _ in range(MAX_LIMIT + 5)])


def test_a_huge_limit_is_cut_to_the_ceiling(client, pathologist, many_jobs):
    client.force_login(pathologist)
    body = client.get("/api/jobs/", {"limit": "2118888628188278907054587904"}).json()
    assert body["count"] == MAX_LIMIT + 5 and len(body["results"]) == MAX_LIMIT
    assert len(client.get("/api/jobs/", {"limit": 3}).json()["results"]) == 3


def test_an_offset_past_the_end_is_an_empty_page(client, pathologist, many_jobs):
    client.force_login(pathologist)
    body = client.get("/api/jobs/", {"offset": "99999999999999999999999999", "limit": 10}).json()
    assert body["results"] == [] and body["count"] == MAX_LIMIT + 5
