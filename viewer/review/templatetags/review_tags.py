"""{% review_panel case %}: the context of the review panel on the case page."""
from __future__ import annotations

from django import template
from django.urls import reverse

from viewer.review import selectors
from viewer.review.models import ExpectedResponse, IshResult, Review, ReviewHer2, RiskGroup
from cases.roles import user_can_edit_cases

register = template.Library()


@register.inclusion_tag("review/_panel.html", takes_context=True)
def review_panel(context, case):
    request = context["request"]
    user = request.user
    mine = Review.objects.filter(case=case, reviewer=user).select_related("reviewer").first()
    mine_json = selectors.review_json(mine, case=case)
    others = [r for r in selectors.case_reviews(case) if r.reviewer_id != user.pk]
    slides = [s for s in (case.slide_for("he"), case.slide_for("ihc")) if s is not None]
    can_edit = user_can_edit_cases(user)
    config = {
        "case": case.pk,
        "reviewUrl": reverse("api-case-review-mine", args=[case.pk]),
        "labelsUrl": reverse("api-annotation-labels"),
        "canAnnotate": can_edit,
        "user": user.get_username(),
        "isAdmin": bool(context.get("is_admin")),
        "slides": [{"id": s.pk, "stain": s.stain, "label": s.get_stain_display(),
                    "annotationsUrl": reverse("api-slide-annotations", args=[s.pk]),
                    "importUrl": reverse("api-slide-annotations-import", args=[s.pk])} for s in slides],
        "labels": [{"name": label.name, "color": label.color} for label in selectors.annotation_labels()],
    }
    return {
        "case": case,
        "mine": mine_json,
        "others": others,
        "can_review": can_edit,
        "slides": slides,
        "expected_choices": ExpectedResponse.choices,
        "her2_choices": ReviewHer2.choices,
        "ish_choices": IshResult.choices,
        "risk_choices": RiskGroup.choices,
        "labels": config["labels"],
        "review_config": config,
        "request": request,
    }


def _flatten(value, prefix: str = ""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}{key}.")
        return
    if isinstance(value, (list, tuple)):
        text = ", ".join("–" if v in (None, "") else str(v) for v in value)
    elif value is None or value == "":
        text = "–"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    else:
        text = str(value)
    yield prefix.rstrip("."), text


@register.filter
def audit_items(detail) -> list[tuple[str, str]]:
    """An audit event's detail as readable key/value pairs ("before · age: 51"), not dict text."""
    if not isinstance(detail, dict):
        return [("", str(detail))] if detail not in (None, "") else []
    return [(key.replace("_", " ").replace(".", " · "), text) for key, text in _flatten(detail)]
