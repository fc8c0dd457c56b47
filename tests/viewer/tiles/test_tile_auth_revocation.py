"""Issue 15, defect 12: logging out, a password change, deactivation or a removed token end tile
access through the ASGI fast path at once (its auth cache used to keep answering for ~10 s)."""
from __future__ import annotations

import pytest
from django.test import Client

from tests.viewer.asgi import asgi_get

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a-Long-test-passw0rd"


@pytest.fixture
def logged_in(pathologist, he_slide):
    from django.core.cache import cache

    from viewer.tiles.asgi import forget_credentials

    cache.clear()
    forget_credentials()
    client = Client()
    assert client.post("/accounts/login/", {"username": "path1", "password": PASSWORD}).status_code == 302
    cookie = [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]
    path = f"/slides/{he_slide.pk}_files/10/0_0.jpeg"
    assert asgi_get(path, cookie)[0] == 200  # now cached in the fast path
    assert asgi_get(path, cookie)[0] == 200
    return client, cookie, path


def test_logout_ends_tile_access_at_once(logged_in):
    client, cookie, path = logged_in
    client.post("/accounts/logout/")
    assert asgi_get(path, cookie)[0] == 401


def test_password_change_ends_other_sessions_at_once(logged_in, pathologist):
    _, cookie, path = logged_in
    pathologist.set_password("another-Long-passw0rd")
    pathologist.save()
    assert asgi_get(path, cookie)[0] == 401


def test_deactivation_ends_tile_access_at_once(logged_in, pathologist):
    _, cookie, path = logged_in
    pathologist.is_active = False
    pathologist.save(update_fields=["is_active"])
    assert asgi_get(path, cookie)[0] == 401


def test_removed_token_ends_tile_access_at_once(pathologist, he_slide):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=pathologist)
    header = [(b"authorization", f"Token {token.key}".encode())]
    path = f"/slides/{he_slide.pk}_files/10/0_0.jpeg"
    assert asgi_get(path, header)[0] == 200
    token.delete()
    assert asgi_get(path, header)[0] == 401


def test_other_sessions_of_the_user_keep_working(logged_in, pathologist):
    """Logging out one browser ends that session only (the others are re-checked, and pass)."""
    client, cookie, path = logged_in
    other = Client()
    other.post("/accounts/login/", {"username": "path1", "password": PASSWORD})
    other_cookie = [(b"cookie", f"sessionid={other.cookies['sessionid'].value}".encode())]
    assert asgi_get(path, other_cookie)[0] == 200
    client.post("/accounts/logout/")
    assert asgi_get(path, cookie)[0] == 401
    assert asgi_get(path, other_cookie)[0] == 200
