"""The login throttle, one for every login form (the login page, /admin/login/, anything that
calls django.contrib.auth.authenticate).

Each attempt reserves a slot *before* its password is checked: an atomic counter per
(user name, address), `cache.add` then `cache.incr` (atomic in LocMemCache and in Redis). So
however many attempts arrive at once, at most LADDER_LOGIN_MAX_FAILURES passwords are checked
per window; a get-then-set counter let 40 concurrent attempts check 21. A successful login
clears the counter. The window (LADDER_LOGIN_LOCKOUT_SECONDS) starts at the first attempt.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

LOCKED_MESSAGE = "Too many failed attempts. Wait a few minutes before trying again."
# Set on the request by the backend when it refused an attempt, so the view answers 429.
REFUSED_ATTR = "_ladder_login_throttled"


def _key(request, username: str) -> str:
    address = request.META.get("REMOTE_ADDR", "") if request is not None else ""
    return f"login-attempts:{(username or '').strip().lower()}:{address}"


def login_attempt_reserve(request, username: str) -> bool:
    """Count one attempt; False when the limit is reached (the password must not be checked)."""
    key = _key(request, username)
    try:
        cache.add(key, 0, timeout=settings.LADDER_LOGIN_LOCKOUT_SECONDS)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=settings.LADDER_LOGIN_LOCKOUT_SECONDS)
            count = 1
    except Exception:  # cache down: do not lock everyone out, and do not crash the login page
        logger.warning("login throttle: cache unavailable, attempt not counted", exc_info=True)
        return True
    return count <= settings.LADDER_LOGIN_MAX_FAILURES


def login_attempts_clear(request, username: str) -> None:
    try:
        cache.delete(_key(request, username))
    except Exception:  # cache down: nothing was counted either
        pass


def login_was_throttled(request) -> bool:
    return bool(getattr(request, REFUSED_ATTR, False))
