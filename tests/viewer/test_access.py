"""Every URL and websocket requires a login; roles decide who may change what."""
from __future__ import annotations

import re

import pytest
from channels.testing import WebsocketCommunicator
from django.urls import URLPattern, URLResolver, get_resolver

from config.asgi import application

SAMPLE_VALUES = {"int": "1", "str": "CASE-1", "slug": "x", "path": "x", "uuid": "00000000-0000-0000-0000-000000000000"}


def _walk(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern)


def _concrete(pattern: str) -> str:
    """Turn a route ('cases/<int:pk>/') or regex ('^api/(?P<pk>[^/.]+)/$') into a sample URL."""
    url = re.sub(r"\\\.\(\?P<format>[^)]*\)/\?", "", pattern)  # DRF's optional .json suffix
    url = re.sub(r"\(\?P<\w+>[^)]*\)", "1", url)
    url = re.sub(r"<(?:(\w+):)?\w+>", lambda m: SAMPLE_VALUES.get(m.group(1) or "str", "1"), url)
    url = url.replace("^", "").replace("$", "").replace("\\.", ".").replace("\\Z", "")
    return "/" + url.lstrip("/")


def all_urls() -> list[str]:
    # DRF's '.json' format-suffix twins of each route are the same views: skip them.
    return sorted({_concrete(p) for p in _walk(get_resolver().url_patterns) if "format>" not in p})


OPEN_URLS = {"/accounts/login/", "/admin/login/"}
LOGIN_PAGES = ("/accounts/login/", "/admin/login/")


@pytest.mark.django_db
@pytest.mark.parametrize("url", [u for u in all_urls() if u not in OPEN_URLS])
def test_anonymous_is_refused_everywhere(client, url, case):
    for method in ("get", "post"):
        response = getattr(client, method)(url, follow=True)  # e.g. /api/cases -> /api/cases/ -> 401
        final_path = response.request["PATH_INFO"]
        if final_path.startswith(LOGIN_PAGES):
            assert response.redirect_chain, f"{method.upper()} {url} shows a login page without redirecting"
        else:
            assert response.status_code in (401, 403, 405), f"{method.upper()} {url} -> {response.status_code}"


def test_url_walk_finds_the_routes():
    urls = all_urls()
    assert "/api/schema/" in urls and "/cases/CASE-1/" in urls and "/slides/1.dzi" in urls
    assert any(u.startswith("/admin/") for u in urls)
    assert len(urls) > 30


@pytest.mark.django_db(transaction=True)
def test_anonymous_websocket_is_closed(case):
    import asyncio

    async def connect():
        communicator = WebsocketCommunicator(application, f"/ws/cases/{case.pk}/",
                                             headers=[(b"origin", b"http://localhost"), (b"host", b"localhost")])
        connected, code = await communicator.connect()
        await communicator.disconnect()
        return connected, code

    connected, code = asyncio.run(connect())
    assert not connected and code == 4401


def test_login_page_is_open(client, db):
    assert client.get("/accounts/login/").status_code == 200


@pytest.mark.django_db
def test_schema_for_logged_in_users(client_for, pathologist):
    response = client_for(pathologist).get("/api/schema/")
    assert response.status_code == 200 and b"/api/slides/" in response.content


@pytest.mark.django_db
def test_presenter_reads_but_cannot_change(client_for, presenter, he_slide, ihc_slide):
    client = client_for(presenter)
    assert client.get(f"/api/cases/{he_slide.case.pk}/").status_code == 200
    assert client.patch(f"/api/cases/{he_slide.case.pk}/", {"age": 40}, content_type="application/json").status_code == 403
    assert client.put(f"/api/slides/{ihc_slide.pk}/mpp/", {"mpp": 0.5}, content_type="application/json").status_code == 403
    assert client.put(f"/api/cases/{he_slide.case.pk}/alignment/", {"offset_x": 1, "offset_y": 2, "rotation": 0, "scale": 1},
                      content_type="application/json").status_code == 403


@pytest.mark.django_db
def test_login_throttling(client, make_user, settings):
    make_user("victim", "pathologist", password="the-Right-passw0rd")
    for _ in range(settings.LADDER_LOGIN_MAX_FAILURES):
        assert client.post("/accounts/login/", {"username": "victim", "password": "wrong"}).status_code == 200
    locked = client.post("/accounts/login/", {"username": "victim", "password": "the-Right-passw0rd"})
    assert locked.status_code == 429 and b"Too many failed attempts" in locked.content
