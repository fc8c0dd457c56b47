"""Issue 15, defects 1 and 2: one login throttle for every login form, and an atomic counter."""
from __future__ import annotations

import threading

import pytest
from django.test import Client

RIGHT = "the-Right-passw0rd"


@pytest.fixture(autouse=True)
def _fresh_counters():
    from django.core.cache import cache

    cache.clear()  # the counters live in the (process-wide) cache
    yield
    cache.clear()


@pytest.fixture
def staff(make_user):
    user = make_user("staffer", "admin", password=RIGHT)
    user.is_staff = True
    user.save()
    return user


@pytest.mark.django_db
def test_admin_login_is_throttled(client, staff, settings):
    for _ in range(settings.LADDER_LOGIN_MAX_FAILURES):
        assert client.post("/admin/login/", {"username": "staffer", "password": "wrong"}).status_code == 200
    locked = client.post("/admin/login/", {"username": "staffer", "password": RIGHT})
    assert locked.status_code == 429 and b"Too many failed attempts" in locked.content
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_lockout_on_one_form_holds_on_the_other(client, staff, settings):
    for _ in range(settings.LADDER_LOGIN_MAX_FAILURES):
        client.post("/accounts/login/", {"username": "staffer", "password": "wrong"})
    assert client.post("/accounts/login/", {"username": "staffer", "password": "wrong"}).status_code == 429
    locked = client.post("/admin/login/", {"username": "staffer", "password": RIGHT})
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    # and the other way round the counter is the same one
    assert client.post("/accounts/login/", {"username": "staffer", "password": RIGHT}).status_code == 429


@pytest.mark.django_db
def test_success_clears_the_counter(client, staff, settings):
    for _ in range(settings.LADDER_LOGIN_MAX_FAILURES - 1):
        client.post("/accounts/login/", {"username": "staffer", "password": "wrong"})
    assert client.post("/accounts/login/", {"username": "staffer", "password": RIGHT}).status_code == 302
    client.logout()
    for _ in range(settings.LADDER_LOGIN_MAX_FAILURES):
        assert client.post("/accounts/login/", {"username": "staffer", "password": "wrong"}).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_concurrent_attempts_check_at_most_the_limit(make_user, settings):
    """40 wrong passwords at once: no more than LADDER_LOGIN_MAX_FAILURES are checked (not 429)."""
    make_user("victim", "pathologist", password=RIGHT)
    statuses: list[int] = []
    barrier = threading.Barrier(40)
    lock = threading.Lock()

    def attempt(url):
        barrier.wait()
        status = Client().post(url, {"username": "victim", "password": "wrong"}).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=attempt, args=("/accounts/login/" if i % 2 else "/admin/login/",))
               for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(statuses) == 40
    checked = [s for s in statuses if s != 429]
    assert len(checked) <= settings.LADDER_LOGIN_MAX_FAILURES, statuses
    assert set(statuses) <= {200, 429}
