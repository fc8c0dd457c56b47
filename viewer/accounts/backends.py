"""Authentication backends: the login throttle as the first backend, so that every form that
authenticates a user name and password goes through it (viewer.accounts.throttle)."""
from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied

from viewer.accounts.throttle import REFUSED_ATTR, login_attempt_reserve

logger = logging.getLogger(__name__)


class LoginThrottleBackend:
    """Authenticates nobody: reserves an attempt, or stops authentication (PermissionDenied makes
    django.contrib.auth.authenticate return None without asking the next backend)."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None or password is None:
            return None
        if not login_attempt_reserve(request, username):
            if request is not None:
                setattr(request, REFUSED_ATTR, True)
            logger.warning("login throttled for user name %r from %s", str(username)[:150],
                           request.META.get("REMOTE_ADDR", "?") if request is not None else "?")
            raise PermissionDenied("too many login attempts")
        return None

    # No get_user(): sessions name ModelBackend, and Client.force_login picks the first backend
    # that has one.
