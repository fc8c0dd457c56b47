"""Receivers of django.contrib.auth's signals for the login throttle."""
from __future__ import annotations

from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

from viewer.accounts.throttle import login_attempts_clear


@receiver(user_logged_in, dispatch_uid="ladder-login-throttle-clear")
def _clear_attempts(sender, request, user, **kwargs):
    login_attempts_clear(request, user.get_username())
