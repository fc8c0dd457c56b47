"""Roles: Django groups named after cases.models.Role. Superusers are admins."""
from __future__ import annotations

from django.contrib.auth.models import Group

from cases.models import Role


def roles_ensure_groups() -> None:
    for role in Role:
        Group.objects.get_or_create(name=role.value)


def user_roles(user) -> set[str]:
    if not getattr(user, "is_authenticated", False):
        return set()
    roles = set(user.groups.values_list("name", flat=True)) & {r.value for r in Role}
    if user.is_superuser:
        roles.add(Role.ADMIN.value)
    return roles


def user_has_role(user, *roles: str) -> bool:
    return bool(user_roles(user) & set(roles))


def user_can_edit_cases(user) -> bool:
    """Import slides, edit clinical data, set mpp and alignment: pathologists and admins."""
    return user_has_role(user, Role.PATHOLOGIST, Role.ADMIN)


def user_is_admin(user) -> bool:
    return user_has_role(user, Role.ADMIN)
