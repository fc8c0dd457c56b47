"""Reads of the review app: annotation JSON and QuPath GeoJSON, reviews, disagreements, audit."""
from __future__ import annotations

import csv
import io
from datetime import datetime, time

from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date

from cases.models import AuditEvent, Case, Slide
from viewer.review.models import Annotation, AnnotationLabel, AnnotationRevision, Review
from cases.roles import user_is_admin


def annotation_labels(*, active_only: bool = True) -> QuerySet[AnnotationLabel]:
    labels = AnnotationLabel.objects.all()
    return labels.filter(active=True) if active_only else labels


def slide_annotations(slide: Slide) -> QuerySet[Annotation]:
    return slide.annotations.filter(deleted=False).select_related("label", "author").order_by("created_at", "id")


def annotation_can_edit(annotation: Annotation, user, *, is_admin: bool | None = None) -> bool:
    if not getattr(user, "is_authenticated", False):
        return False
    return annotation.author_id == user.pk or (user_is_admin(user) if is_admin is None else is_admin)


def annotation_json(annotation: Annotation, *, user=None, is_admin: bool | None = None) -> dict:
    return {
        "id": annotation.pk,
        "uuid": str(annotation.uuid),
        "slide": annotation.slide_id,
        "shape": annotation.shape,
        "geometry": annotation.geometry,
        "label": annotation.label.name,
        "color": annotation.label.color,
        "comment": annotation.comment,
        "author": annotation.author.get_username() if annotation.author else None,
        "source": annotation.source,
        "transferred_from": annotation.transferred_from_id,
        "transfer": annotation.transfer,
        "deleted": annotation.deleted,
        "version": annotation.version,
        "created_at": annotation.created_at.isoformat(),
        "updated_at": annotation.updated_at.isoformat(),
        "can_edit": annotation_can_edit(annotation, user, is_admin=is_admin) if user is not None else False,
    }


def revision_json(revision: AnnotationRevision) -> dict:
    return {
        "revision": revision.number,
        "action": revision.action,
        "user": revision.user.get_username() if revision.user else None,
        "at": revision.at.isoformat(),
        "label": revision.label_name,
        "shape": revision.shape,
        "geometry": revision.geometry,
        "comment": revision.comment,
        "deleted": revision.deleted,
    }


def annotation_qupath_feature(annotation: Annotation) -> dict:
    """One annotation as QuPath reads it (GeoJSON Feature, level-0 pixel coordinates)."""
    label = annotation.label
    first_line = (annotation.comment or "").strip().splitlines()[0][:80] if annotation.comment.strip() else ""
    return {
        "type": "Feature",
        "id": str(annotation.uuid),
        "geometry": annotation.geometry,
        "properties": {
            "objectType": "annotation",
            "classification": {"name": label.name, "color": label.rgb},
            "name": first_line or label.name,
            "isLocked": False,
            "comment": annotation.comment,
            "author": annotation.author.get_username() if annotation.author else None,
            "shape": annotation.shape,
            "ladder_id": annotation.pk,
            "created_at": annotation.created_at.isoformat(),
            "updated_at": annotation.updated_at.isoformat(),
        },
    }


def slide_annotations_geojson(slide: Slide) -> dict:
    return {"type": "FeatureCollection",
            "features": [annotation_qupath_feature(a) for a in slide_annotations(slide)]}


# --- reviews -------------------------------------------------------------------------------

def review_json(review: Review | None, *, case: Case) -> dict:
    from viewer.review.services import case_automated_her2, case_model_call

    score = case_model_call(case)
    her2, her2_source = case_automated_her2(case)
    current = {"model_risk_group": score.risk_group if score else "", "automated_her2": her2,
               "automated_her2_source": her2_source, "case_status": case.status}
    if review is None:
        return {"version": 0, "agrees": None, "risk_group": "", "expected_response": "", "her2_score": "",
                "ish_result": "", "confidence": None,
                "comment": "", "submitted": False, "is_disagreement": False, "reviewer": None,
                "updated_at": None, "saved_with": None, "current": current}
    return {
        "id": review.pk,
        "version": review.version,
        "reviewer": review.reviewer.get_username(),
        "agrees": review.agrees,
        "risk_group": review.risk_group,
        "expected_response": review.expected_response,
        "her2_score": review.her2_score,
        "ish_result": review.ish_result,
        "confidence": review.confidence,
        "comment": review.comment,
        "submitted": review.submitted,
        "is_disagreement": review.is_disagreement,
        "saved_with": {"model_risk_group": review.model_risk_group, "automated_her2": review.automated_her2,
                       "automated_her2_source": review.automated_her2_source},
        "updated_at": review.updated_at.isoformat(),
        "current": current,
    }


def case_reviews(case: Case) -> QuerySet[Review]:
    return case.reviews.select_related("reviewer").order_by("updated_at")


def disagreement_reviews(*, query: str = "") -> QuerySet[Review]:
    reviews = (Review.objects.filter(is_disagreement=True).select_related("case", "reviewer")
               .prefetch_related("case__slides").order_by("-updated_at"))
    if query:
        reviews = reviews.filter(case__case_id__icontains=query)
    return reviews


CSV_COLUMNS = ["case_id", "case_status", "reviewer", "submitted", "agrees_with_risk_group", "model_risk_group",
               "reviewer_risk_group", "expected_response", "reviewer_her2", "automated_her2", "automated_her2_source",
               "ish_result", "confidence", "comment", "updated_at", "he_slide_id", "ihc_slide_id", "he_annotations",
               "ihc_annotations"]


def disagreements_csv(reviews) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for review in reviews:
        case = review.case
        he, ihc = case.slide_for("he"), case.slide_for("ihc")
        writer.writerow([
            case.case_id, case.status, review.reviewer.get_username(), review.submitted,
            "" if review.agrees is None else ("yes" if review.agrees else "no"), review.model_risk_group,
            review.reviewer_risk_group, review.expected_response, review.her2_score, review.automated_her2,
            review.automated_her2_source, review.ish_result, "" if review.confidence is None else review.confidence,
            _csv_safe(review.comment), review.updated_at.isoformat(), he.pk if he else "", ihc.pk if ihc else "",
            slide_annotations(he).count() if he else 0, slide_annotations(ihc).count() if ihc else 0,
        ])
    return out.getvalue()


def _csv_safe(text: str) -> str:
    """No formula injection when the CSV is opened in a spreadsheet."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# --- audit log -------------------------------------------------------------------------------

def audit_events(*, action: str = "", user: str = "", case: str = "", date_from: str = "", date_to: str = "")\
        -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.select_related("user", "case", "slide").order_by("-at", "-id")
    if action:
        events = events.filter(action__startswith=action) if action.endswith(".") else events.filter(action=action)
    if user:
        events = events.filter(user__username=user)
    if case:
        events = events.filter(case__case_id=case)
    tz = timezone.get_current_timezone()
    start, end = _date(date_from), _date(date_to)
    if start:
        events = events.filter(at__gte=timezone.make_aware(datetime.combine(start, time.min), tz))
    if end:
        events = events.filter(at__lte=timezone.make_aware(datetime.combine(end, time.max), tz))
    return events


def _date(text: str):
    try:
        return parse_date((text or "").strip())
    except ValueError:
        return None


def audit_filter_choices() -> dict:
    return {
        "actions": list(AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct()),
        "users": list(get_user_model().objects.order_by("username").values_list("username", flat=True)),
    }
