from rest_framework.permissions import SAFE_METHODS, BasePermission

from cases.roles import user_can_edit_cases, user_is_admin


class CanEditCasesOrReadOnly(BasePermission):
    """Everyone logged in reads; pathologists and admins change."""

    message = "Only pathologists and admins can change cases and slides."

    def has_permission(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or user_can_edit_cases(request.user)


class IsAdminRoleOrReadOnly(BasePermission):
    message = "Only admins can do this."

    def has_permission(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in SAFE_METHODS or user_is_admin(request.user)


class IsAdminRole(BasePermission):
    message = "Only admins can see this."

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated and user_is_admin(request.user))
