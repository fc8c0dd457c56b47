"""Login everywhere, and security headers."""
from __future__ import annotations

from django.conf import settings
from django.contrib.auth.views import redirect_to_login

from viewer.tiles.asgi import TILE_PATH

# Paths that answer for themselves: the login page, static files, the REST API (DRF answers
# 401/403 itself, for session and token clients alike), slide pixels (401, as the ASGI fast
# path does) and the admin (its own login).
OPEN_PREFIXES = ("/accounts/login/", "/static/", "/api/", "/admin/")


class LoginRequiredEverywhereMiddleware:
    """Every page requires a login; anonymous visitors are sent to /accounts/login/."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if (not request.user.is_authenticated and not request.path.startswith(OPEN_PREFIXES)
                and not TILE_PATH.match(request.path)):
            return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
        return self.get_response(request)


class SecurityHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", settings.LADDER_CSP)
        response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        return response
