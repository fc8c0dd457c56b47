from cases.roles import user_can_edit_cases, user_is_admin, user_roles


def roles(request):
    user = getattr(request, "user", None)
    return {
        "user_roles": sorted(user_roles(user)),
        "can_edit_cases": user_can_edit_cases(user),
        "is_admin": user_is_admin(user),
    }
