"""Receivers of django.contrib.auth's signals: the login throttle, and the tile fast path's auth
cache (viewer.tiles.asgi), which must forget a user at once on logout, a password change (any save
of the user: a changed password, deactivation), removal, or a token's removal."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from rest_framework.authtoken.models import Token

from viewer.accounts.throttle import login_attempts_clear
from viewer.tiles.asgi import credentials_forget_user


@receiver(user_logged_in, dispatch_uid="ladder-login-throttle-clear")
def _clear_attempts(sender, request, user, **kwargs):
    login_attempts_clear(request, user.get_username())


@receiver(user_logged_out, dispatch_uid="ladder-tiles-forget-logout")
def _forget_on_logout(sender, request, user, **kwargs):
    session = getattr(request, "session", None)
    credentials_forget_user(getattr(user, "pk", None), session_key=getattr(session, "session_key", None))


@receiver(post_save, sender=get_user_model(), dispatch_uid="ladder-tiles-forget-user-save")
@receiver(post_delete, sender=get_user_model(), dispatch_uid="ladder-tiles-forget-user-delete")
def _forget_on_user_change(sender, instance, **kwargs):
    if not kwargs.get("created"):
        credentials_forget_user(instance.pk)


@receiver(post_delete, sender=Token, dispatch_uid="ladder-tiles-forget-token")
def _forget_on_token_delete(sender, instance, **kwargs):
    credentials_forget_user(instance.user_id)
