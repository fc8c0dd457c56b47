"""Login with throttling: after N failures per user name and address, a lock-out."""
from __future__ import annotations

from django.conf import settings
from django.contrib.auth.views import LoginView
from django.core.cache import cache


def _failures(key: str) -> int:
    try:
        return cache.get(key, 0)
    except Exception:  # cache down: do not lock everyone out, and do not crash the login page
        return 0


def _throttle_key(request) -> str:
    username = (request.POST.get("username") or "").strip().lower()
    address = request.META.get("REMOTE_ADDR", "")
    return f"login-failures:{username}:{address}"


class ThrottledLoginView(LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        if _failures(_throttle_key(request)) >= settings.LADDER_LOGIN_MAX_FAILURES:
            form = self.get_form()
            form.errors.clear()
            form.add_error(None, "Too many failed attempts. Wait a few minutes before trying again.")
            response = self.render_to_response(self.get_context_data(form=form))
            response.status_code = 429
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        key = _throttle_key(self.request)
        try:
            cache.set(key, _failures(key) + 1, timeout=settings.LADDER_LOGIN_LOCKOUT_SECONDS)
        except Exception:
            pass  # cache down: the failure is not counted
        return super().form_invalid(form)

    def form_valid(self, form):
        try:
            cache.delete(_throttle_key(self.request))
        except Exception:
            pass
        return super().form_valid(form)
