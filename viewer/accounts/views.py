"""Login pages. The throttle itself is an authentication backend (viewer.accounts.backends), so it
also guards /admin/login/; these views only turn its refusal into a 429 with a message."""
from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.views import LoginView

from viewer.accounts.throttle import LOCKED_MESSAGE, login_was_throttled


def _locked(response, form):
    """`response` (a TemplateResponse showing `form`) as a 429 that says why."""
    form.errors.clear()
    form.add_error(None, LOCKED_MESSAGE)
    response.status_code = 429
    return response


class ThrottledLoginView(LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def form_invalid(self, form):
        response = super().form_invalid(form)
        return _locked(response, form) if login_was_throttled(self.request) else response


def admin_login(request, extra_context=None):
    """/admin/login/: the admin's own page, with the same throttle's 429."""
    response = admin.site.login(request, extra_context)
    if login_was_throttled(request) and getattr(response, "context_data", None) and "form" in response.context_data:
        return _locked(response, response.context_data["form"])
    return response
