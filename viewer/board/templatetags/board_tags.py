"""The case page's tumour-board panel reads through this tag (case.html is not ours to change)."""
from django import template

from viewer.board import selectors, services

register = template.Library()


@register.simple_tag(takes_context=True)
def board_case_panel(context, case):
    user = context.get("user") or getattr(context.get("request"), "user", None)
    return {
        "can_present": services.user_can_present(user),
        "sessions": list(selectors.board_sessions_with_case(case)[:5]) if case is not None else [],
    }
