from cases.roles import user_can_edit_cases, user_is_admin, user_roles


def roles(request):
    user = getattr(request, "user", None)
    return {
        "user_roles": sorted(user_roles(user)),
        "can_edit_cases": user_can_edit_cases(user),
        "is_admin": user_is_admin(user),
        # the Admin link only for accounts Django's admin lets in and shows something to: an
        # admin-role account without staff status or model permissions would get "no permission"
        "can_use_django_admin": bool(getattr(user, "is_active", False) and getattr(user, "is_staff", False)
                                     and (user.is_superuser or user.get_all_permissions())),
    }
