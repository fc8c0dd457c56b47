"""Writes of the review app: reviews, case review status, annotations and their revisions.

Keyword-only functions named <entity>_<action>; every write is recorded in the audit log.
Permissions are checked here too (PermissionDenied), so views and the API stay thin.
"""
from __future__ import annotations

import math

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from cases.models import Case, CaseStatus, Her2Score, Role, Slide
from viewer.review.models import (
    Annotation,
    AnnotationLabel,
    AnnotationRevision,
    ExpectedResponse,
    IshResult,
    Review,
    ReviewHer2,
    RiskGroup,
    Shape,
)

__all__ = ["ConflictError", "annotation_create", "annotation_delete", "annotation_revert", "annotation_update",
           "annotations_import", "case_mark_discussed", "review_save"]
from cases.audit import audit_record
from cases.roles import user_can_edit_cases, user_has_role, user_is_admin
from cases.status import case_status_change

MAX_VERTICES = 20000
MAX_COMMENT = 5000


class ConflictError(Exception):
    """Someone else saved first (optimistic concurrency): reload and apply again."""

    def __init__(self, message: str, *, current_version: int | None = None):
        super().__init__(message)
        self.current_version = current_version


# --- automated results the reviewer compares with ------------------------------------------

def case_automated_her2(case: Case) -> tuple[str, str]:
    """(score, source): the latest analysis run's HER2 score of the case's IHC slide
    ('analysis'); else the clinical Case.her2_ihc ('clinical'); else ('', '')."""
    slide = case.slide_for("ihc")
    if slide is not None:
        for run in slide.runs.order_by("-created_at"):
            score = (run.her2 or {}).get("score")
            if score in Her2Score.values:
                return score, "analysis"
    if case.her2_ihc:
        return case.her2_ihc, "clinical"
    return "", ""


def case_model_call(case: Case):
    """The case's latest score (analysis.scoring.case_latest_score) if it was scored, else None."""
    from analysis.scoring import case_latest_score

    score = case_latest_score(case)
    if score is None or not score.risk_group:
        return None
    return score


def _her2_category(score: str) -> str:
    """HER2-ultralow is an IHC 0 (ASCO/CAP): it agrees with an automated 0."""
    return "0" if score == ReviewHer2.ULTRALOW else score


def review_is_disagreement(*, agrees, her2_score: str, automated_her2: str, risk_group: str = "",
                           model_risk_group: str = "") -> bool:
    return (agrees is False
            or bool(her2_score and automated_her2 and _her2_category(her2_score) != automated_her2)
            or bool(risk_group and model_risk_group and risk_group != model_risk_group))


# --- reviews ---------------------------------------------------------------------------------

REVIEW_FIELDS = ("agrees", "risk_group", "expected_response", "her2_score", "ish_result", "confidence", "comment",
                 "submitted")


def _review_clean(data: dict) -> dict:
    errors = {}
    clean = {}
    agrees = data.get("agrees")
    if agrees not in (None, True, False):
        errors["agrees"] = "Agree or disagree with the risk group (true, false or null)."
    clean["agrees"] = agrees
    risk_group = data.get("risk_group") or ""
    if risk_group not in RiskGroup.values and risk_group != "":
        errors["risk_group"] = f"The risk group you think right is one of {', '.join(RiskGroup.values)}."
    clean["risk_group"] = risk_group
    expected = data.get("expected_response") or ""
    if expected not in ExpectedResponse.values and expected != "":
        errors["expected_response"] = f"The expected response is one of {', '.join(ExpectedResponse.values)}."
    clean["expected_response"] = expected
    her2 = data.get("her2_score") or ""
    if her2 not in ReviewHer2.values and her2 != "":
        errors["her2_score"] = f"Your HER2 score is one of {', '.join(ReviewHer2.values)}."
    clean["her2_score"] = her2
    ish = data.get("ish_result") or ""
    if ish not in IshResult.values and ish != "":
        errors["ish_result"] = f"The ISH result is one of {', '.join(IshResult.values)}."
    clean["ish_result"] = ish
    confidence = data.get("confidence")
    if confidence in ("", None):
        confidence = None
    else:
        try:
            confidence = int(confidence)
            if not 1 <= confidence <= 5:
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            errors["confidence"] = "Confidence is a whole number from 1 to 5."
    clean["confidence"] = confidence
    comment = data.get("comment") or ""
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        errors["comment"] = f"The comment is text of at most {MAX_COMMENT} characters."
    clean["comment"] = comment if isinstance(comment, str) else ""
    clean["submitted"] = bool(data.get("submitted", False))
    if clean["submitted"] and not errors:
        # said as the form says it, not by field name
        needed = {"agrees": "agree or disagree with the risk group", "expected_response": "the expected response",
                  "her2_score": "your HER2 IHC score"}
        missing = [needed[name] for name in ("expected_response", "her2_score") if not clean[name]]
        if clean["agrees"] is None:
            missing.insert(0, needed["agrees"])
        if missing:
            errors["submitted"] = (f"To submit the review, choose {', '.join(missing[:-1])}"
                                   f"{' and ' if len(missing) > 1 else ''}{missing[-1]}; or save it as a draft.")
    if errors:
        raise ValidationError(errors)
    return clean


def review_save(*, case: Case, user, data: dict, version: int) -> Review:
    """Create or update `user`'s review of `case`.

    `version` is the version the client edited (0 for a new review). If the stored review
    has moved on since (another tab or request saved first), ConflictError: nothing is
    overwritten. The automated results the reviewer compared with are stored with it.
    """
    if not user_can_edit_cases(user):
        raise PermissionDenied("Only pathologists and admins record reviews.")
    clean = _review_clean(data)
    score = case_model_call(case)
    if clean["agrees"] is not None and score is None:
        raise ValidationError({"agrees": "The case has no risk group to agree or disagree with yet."})
    if score is not None and clean["risk_group"]:
        if clean["agrees"] is True and clean["risk_group"] != score.risk_group:
            raise ValidationError({"risk_group": f"You agree with the model's {score.risk_group} risk group but chose "
                                                 f"{clean['risk_group']}: disagree, or choose {score.risk_group}."})
        if clean["agrees"] is False and clean["risk_group"] == score.risk_group:
            raise ValidationError({"risk_group": f"You disagree with the model's {score.risk_group} risk group: "
                                                 "choose the group you think right."})
    automated_her2, her2_source = case_automated_her2(case)
    derived = {
        "model_risk_group": score.risk_group if score else "",
        "model_score": score,
        "automated_her2": automated_her2,
        "automated_her2_source": her2_source,
        "is_disagreement": review_is_disagreement(agrees=clean["agrees"], her2_score=clean["her2_score"],
                                                  automated_her2=automated_her2, risk_group=clean["risk_group"],
                                                  model_risk_group=score.risk_group if score else ""),
    }
    with transaction.atomic():
        if version == 0:
            try:
                with transaction.atomic():
                    review = Review.objects.create(case=case, reviewer=user, **clean, **derived)
            except IntegrityError:
                current = Review.objects.filter(case=case, reviewer=user).values_list("version", flat=True).first()
                raise ConflictError("This review was saved meanwhile (elsewhere): reload it.",
                                    current_version=current) from None
        else:
            updated = Review.objects.filter(case=case, reviewer=user, version=version).update(
                **clean, **derived, version=F("version") + 1, updated_at=timezone.now())
            if not updated:
                current = Review.objects.filter(case=case, reviewer=user).values_list("version", flat=True).first()
                raise ConflictError(
                    "This review was changed since you opened it (version "
                    f"{current if current is not None else 'none'}, you edited {version}): reload it.",
                    current_version=current)
            review = Review.objects.get(case=case, reviewer=user)
        _case_status_after_review(case=case, submitted=clean["submitted"])
        audit_record(user=user, action="review.submit" if clean["submitted"] else "review.save", case=case,
                     detail={"review": review.pk, "version": review.version,
                             **{k: clean[k] for k in REVIEW_FIELDS if k != "comment"},
                             "comment_length": len(clean["comment"]),
                             "model_risk_group": derived["model_risk_group"],
                             "automated_her2": automated_her2, "automated_her2_source": her2_source,
                             "is_disagreement": derived["is_disagreement"]})
    return review


def _case_status_after_review(*, case: Case, submitted: bool) -> None:
    """unreviewed -> in review (a draft) -> reviewed (a submitted review); never back from
    'discussed', never from 'reviewed' back to 'in review'."""
    if submitted:
        target, allowed_from = CaseStatus.REVIEWED, [s for s in CaseStatus.values if s != CaseStatus.DISCUSSED]
    else:
        target, allowed_from = CaseStatus.IN_REVIEW, [CaseStatus.NEW, CaseStatus.ANALYSING, CaseStatus.READY]
    case_status_change(case=case, to=target, allowed_from=allowed_from)


def case_mark_discussed(*, case: Case, user) -> Case:
    """The case was discussed at tumour board (called by the tumour-board work)."""
    if not user_has_role(user, Role.PATHOLOGIST, Role.PRESENTER, Role.ADMIN):
        raise PermissionDenied("Only pathologists, presenters and admins can mark a case discussed.")
    # audited once, when it becomes discussed: another PDF summary of the case changes nothing
    case_status_change(case=case, to=CaseStatus.DISCUSSED, user=user, action="case.discussed")
    return case


# --- geometry ----------------------------------------------------------------------------

def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationError(f"{where}: coordinates must be finite numbers.")
    return round(float(value), 3)


def _position(value, where: str, slide: Slide | None) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) < 2:
        raise ValidationError(f"{where}: a position is [x, y].")
    x, y = _number(value[0], where), _number(value[1], where)
    if slide is not None and slide.width and slide.height:
        if not (-slide.width <= x <= 2 * slide.width and -slide.height <= y <= 2 * slide.height):
            raise ValidationError(f"{where}: ({x:g}, {y:g}) lies far outside the slide "
                                  f"({slide.width} x {slide.height} level-0 px).")
    return [x, y]


def geometry_clean(geometry, *, slide: Slide | None = None, shape: str | None = None) -> tuple[str, dict]:
    """Validate a GeoJSON geometry in level-0 pixels; returns (shape, normalised geometry).

    Point, or Polygon (rings closed here if they are not; at least 3 distinct vertices).
    """
    if not isinstance(geometry, dict):
        raise ValidationError("geometry: a GeoJSON geometry object is required.")
    kind = geometry.get("type")
    coordinates = geometry.get("coordinates")
    if kind == "Point":
        if shape not in (None, "", Shape.POINT):
            raise ValidationError(f"geometry: a Point cannot be a {shape}.")
        return Shape.POINT, {"type": "Point", "coordinates": _position(coordinates, "Point", slide)}
    if kind == "Polygon":
        if shape in (None, "", Shape.POINT):
            shape = Shape.POLYGON
        if shape not in Shape.values:
            raise ValidationError(f"shape: one of {', '.join(Shape.values)}.")
        if not isinstance(coordinates, list) or not coordinates:
            raise ValidationError("Polygon: coordinates must be a list of rings.")
        rings, total = [], 0
        for r, ring in enumerate(coordinates):
            if not isinstance(ring, list):
                raise ValidationError(f"Polygon ring {r}: a list of positions.")
            points = [_position(p, f"Polygon ring {r}", slide) for p in ring]
            if points and points[0] != points[-1]:
                points.append(list(points[0]))
            if len({tuple(p) for p in points}) < 3:
                raise ValidationError(f"Polygon ring {r}: at least 3 distinct vertices are needed.")
            total += len(points)
            rings.append(points)
        if total > MAX_VERTICES:
            raise ValidationError(f"Polygon: {total} vertices, at most {MAX_VERTICES}.")
        return shape, {"type": "Polygon", "coordinates": rings}
    raise ValidationError(f"geometry type {kind!r} is not supported (Polygon or Point; "
                          "MultiPolygon only on import).")


# --- annotations ---------------------------------------------------------------------------

def _can_change(user, annotation: Annotation) -> bool:
    return bool(getattr(user, "is_authenticated", False)) and (
        annotation.author_id == user.pk or user_is_admin(user))


def annotation_label_get(*, name: str) -> AnnotationLabel:
    if name is not None and not isinstance(name, str):
        raise ValidationError("label: a label name (text) is required.")
    label = AnnotationLabel.objects.filter(name__iexact=(name or "").strip()).first()
    if label is None:
        names = ", ".join(AnnotationLabel.objects.filter(active=True).values_list("name", flat=True))
        raise ValidationError(f"label: unknown label {name!r} (one of: {names}).")
    return label


def _revision_add(*, annotation: Annotation, user, action: str) -> AnnotationRevision:
    number = (annotation.revisions.order_by("-number").values_list("number", flat=True).first() or 0) + 1
    return AnnotationRevision.objects.create(
        annotation=annotation, number=number, action=action, user=user if user and user.is_authenticated else None,
        label_name=annotation.label.name, shape=annotation.shape, geometry=annotation.geometry,
        comment=annotation.comment, deleted=annotation.deleted)


def _annotation_detail(annotation: Annotation) -> dict:
    return {"annotation": annotation.pk, "uuid": str(annotation.uuid), "label": annotation.label.name,
            "shape": annotation.shape, "version": annotation.version, "deleted": annotation.deleted}


def annotation_create(*, slide: Slide, user, geometry: dict, label: str, comment: str = "", shape: str | None = None,
                      source: str = "drawn", audit: bool = True) -> Annotation:
    if not user_can_edit_cases(user):
        raise PermissionDenied("Only pathologists and admins draw annotations.")
    shape, geometry = geometry_clean(geometry, slide=slide, shape=shape)
    label_obj = annotation_label_get(name=label)
    comment = _comment_clean(comment)
    with transaction.atomic():
        annotation = Annotation.objects.create(slide=slide, author=user, label=label_obj, shape=shape,
                                               geometry=geometry, comment=comment, source=source)
        _revision_add(annotation=annotation, user=user, action="create" if source != "imported" else "import")
        if audit:
            audit_record(user=user, action="annotation.create", case=slide.case, slide=slide,
                         detail=_annotation_detail(annotation))
    return annotation


def _comment_clean(comment) -> str:
    if comment is None:
        return ""
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        raise ValidationError(f"comment: text of at most {MAX_COMMENT} characters.")
    return comment


def _locked(annotation: Annotation, version: int | None) -> Annotation:
    current = Annotation.objects.select_for_update().select_related("label", "slide__case").get(pk=annotation.pk)
    if version is not None and current.version != version:
        raise ConflictError(f"The annotation was changed since you opened it (version {current.version}, "
                            f"you edited {version}): reload it.", current_version=current.version)
    return current


def annotation_update(*, annotation: Annotation, user, geometry: dict | None = None, label: str | None = None,
                      comment: str | None = None, shape: str | None = None, version: int | None = None) -> Annotation:
    if not _can_change(user, annotation):
        raise PermissionDenied("Only the author of an annotation (or an admin) can change it.")
    with transaction.atomic():
        annotation = _locked(annotation, version)
        if annotation.deleted:
            raise ValidationError("The annotation is deleted: revert it to a revision first.")
        changed = []
        if geometry is not None:
            annotation.shape, annotation.geometry = geometry_clean(geometry, slide=annotation.slide,
                                                                   shape=shape or annotation.shape)
            changed.append("geometry")
        if label is not None:
            annotation.label = annotation_label_get(name=label)
            changed.append("label")
        if comment is not None:
            annotation.comment = _comment_clean(comment)
            changed.append("comment")
        if not changed:
            return annotation
        annotation.version += 1
        annotation.save()
        _revision_add(annotation=annotation, user=user, action="update")
        audit_record(user=user, action="annotation.update", case=annotation.slide.case, slide=annotation.slide,
                     detail={**_annotation_detail(annotation), "changed": changed})
    return annotation


def annotation_delete(*, annotation: Annotation, user, version: int | None = None) -> Annotation:
    """Soft delete: the annotation disappears from the slide; its history stays (revertible)."""
    if not _can_change(user, annotation):
        raise PermissionDenied("Only the author of an annotation (or an admin) can delete it.")
    with transaction.atomic():
        annotation = _locked(annotation, version)
        if annotation.deleted:
            return annotation
        annotation.deleted = True
        annotation.version += 1
        annotation.save()
        _revision_add(annotation=annotation, user=user, action="delete")
        audit_record(user=user, action="annotation.delete", case=annotation.slide.case, slide=annotation.slide,
                     detail=_annotation_detail(annotation))
    return annotation


def annotation_revert(*, annotation: Annotation, user, revision: int) -> Annotation:
    """Bring back the state of revision `revision` (kept as a new revision: nothing is lost)."""
    if not _can_change(user, annotation):
        raise PermissionDenied("Only the author of an annotation (or an admin) can revert it.")
    with transaction.atomic():
        annotation = _locked(annotation, None)
        target = annotation.revisions.filter(number=revision).first()
        if target is None:
            raise ValidationError(f"revision: annotation {annotation.pk} has no revision {revision}.")
        label = AnnotationLabel.objects.filter(name=target.label_name).first()
        if label is None:  # the label was renamed since: keep the current one
            label = annotation.label
        annotation.label = label
        annotation.shape = target.shape
        annotation.geometry = target.geometry
        annotation.comment = target.comment
        annotation.deleted = target.deleted
        annotation.version += 1
        annotation.save()
        _revision_add(annotation=annotation, user=user, action="revert")
        audit_record(user=user, action="annotation.revert", case=annotation.slide.case, slide=annotation.slide,
                     detail={**_annotation_detail(annotation), "to_revision": revision})
    return annotation


# --- QuPath GeoJSON import -------------------------------------------------------------------

def _features_of(data) -> list:
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        if data.get("type") == "FeatureCollection":
            features = data.get("features")
            if not isinstance(features, list):
                raise ValidationError("FeatureCollection: 'features' must be a list.")
            return features
        if data.get("type") == "Feature":
            return [data]
    raise ValidationError("Expected a GeoJSON FeatureCollection, a Feature or a list of Features.")


def _label_from_properties(properties: dict, *, user) -> AnnotationLabel:
    classification = properties.get("classification")
    name, color = None, None
    if isinstance(classification, dict):
        name, color = classification.get("name"), classification.get("color") or classification.get("colorRGB")
    elif isinstance(classification, str):
        name = classification
    name = name or properties.get("label")
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("no classification: set properties.classification.name (or properties.label).")
    label = AnnotationLabel.objects.filter(name__iexact=name.strip()).first()
    if label is None:
        if len(name.strip()) > 80:
            raise ValidationError("classification name longer than 80 characters.")
        hex_color = "#E69F00"
        if isinstance(color, list) and len(color) >= 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in color[:3]):
            hex_color = "#{:02X}{:02X}{:02X}".format(*color[:3])
        elif isinstance(color, int):  # QuPath's packed (A)RGB integer
            hex_color = "#{:06X}".format(color & 0xFFFFFF)
        label = AnnotationLabel.objects.create(name=name.strip(), color=hex_color)
        audit_record(user=user, action="annotation_label.create", detail={"name": label.name, "color": label.color,
                                                                          "via": "import"})
    return label


class ImportTooLarge(ValidationError):
    """More features (or annotations) than one import takes: HTTP 413 naming the limit."""


IMPORT_BATCH = 500


def import_check_size(count: int, *, what: str = "features") -> None:
    limit = settings.LADDER_GEOJSON_MAX_FEATURES
    if count > limit:
        raise ImportTooLarge(f"{count} {what}: one import takes at most {limit} (LADDER_GEOJSON_MAX_FEATURES); "
                             "split the file.")


def import_feature_count(data) -> int:
    return len(_features_of(data))


class _ImportBatches:
    """Collects imported annotations and writes them IMPORT_BATCH at a time (bulk, one short
    transaction per batch, revisions included)."""

    def __init__(self, *, slide, user, created: list, total: int, progress=None):
        self.slide, self.user, self.created, self.total, self.progress = slide, user, created, total, progress
        self.pending: list[Annotation] = []
        self.done = 0

    def __enter__(self):
        return self

    def check_room(self, count: int) -> None:
        """A feature whose parts would pass the limit is refused whole (and reported)."""
        limit = settings.LADDER_GEOJSON_MAX_FEATURES
        if len(self.created) + len(self.pending) + count > limit:
            raise ValidationError(f"not imported: one import makes at most {limit} annotations "
                                  "(LADDER_GEOJSON_MAX_FEATURES).")

    def add(self, annotation: Annotation, *, index: int) -> None:
        self.pending.append(annotation)
        self.done = index + 1
        if len(self.pending) >= IMPORT_BATCH:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            author = self.user if self.user and self.user.is_authenticated else None
            with transaction.atomic():
                saved = Annotation.objects.bulk_create(self.pending)
                AnnotationRevision.objects.bulk_create([
                    AnnotationRevision(annotation=a, number=1, action="import", user=author,
                                       label_name=a.label.name, shape=a.shape, geometry=a.geometry,
                                       comment=a.comment, deleted=a.deleted) for a in saved])
            self.created.extend(saved)
            self.pending = []
        if self.progress:
            self.progress(self.done, self.total)

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.done = self.total
            self.flush()
        return False


def annotations_import(*, slide: Slide, user, data, progress=None) -> tuple[list[Annotation], list[dict]]:
    """Import QuPath GeoJSON annotations (FeatureCollection, Feature or list of Features).

    Polygon and Point become one annotation each; MultiPolygon and MultiPoint one per part.
    Unknown classifications become new labels. Features that cannot be imported are
    reported as {"feature": index, "error": ...}; the others are imported.

    At most settings.LADDER_GEOJSON_MAX_FEATURES features and as many annotations
    (ImportTooLarge beyond). Annotations are written in bulk, IMPORT_BATCH at a time, each batch
    its own short transaction: 20,000 points one row and one query at a time held SQLite's write
    lock for 38 s (others' writes failed with "database is locked"). `progress(done, total)` is
    called after each batch (the import job reports it).
    """
    if not user_can_edit_cases(user):
        raise PermissionDenied("Only pathologists and admins import annotations.")
    features = _features_of(data)
    import_check_size(len(features))
    created: list[Annotation] = []
    errors: list[dict] = []
    with _ImportBatches(slide=slide, user=user, created=created, total=len(features), progress=progress) as batch:
        for index, feature in enumerate(features):
            try:
                if not isinstance(feature, dict) or feature.get("type") != "Feature":
                    raise ValidationError("not a GeoJSON Feature.")
                properties = feature.get("properties") or {}
                if not isinstance(properties, dict):
                    raise ValidationError("properties must be an object.")
                object_type = properties.get("objectType", "annotation")
                if object_type not in ("annotation", None):
                    raise ValidationError(f"objectType {object_type!r}: only annotations are imported "
                                          "(cells and detections belong in an analysis run).")
                geometry = feature.get("geometry") or {}
                kind = geometry.get("type") if isinstance(geometry, dict) else None
                if kind in ("MultiPolygon", "MultiPoint") and not isinstance(geometry.get("coordinates") or [], list):
                    raise ValidationError(f"{kind}: coordinates must be a list.")
                if kind == "MultiPolygon":
                    parts = [{"type": "Polygon", "coordinates": c} for c in geometry.get("coordinates") or []]
                elif kind == "MultiPoint":
                    parts = [{"type": "Point", "coordinates": c} for c in geometry.get("coordinates") or []]
                elif kind in ("Polygon", "Point"):
                    parts = [geometry]
                elif kind in ("LineString", "MultiLineString"):
                    raise ValidationError(f"{kind}: open lines are not supported (draw a polygon).")
                else:
                    raise ValidationError(f"geometry type {kind!r} is not supported "
                                          "(Polygon, MultiPolygon, Point, MultiPoint).")
                if not parts:
                    raise ValidationError(f"{kind} without coordinates.")
                cleaned = []
                for part in parts:
                    shape_hint = properties.get("shape") if properties.get("shape") in Shape.values else None
                    if part["type"] == "Point":
                        shape_hint = Shape.POINT
                    elif shape_hint == Shape.POINT:
                        shape_hint = None
                    cleaned.append(geometry_clean(part, slide=slide, shape=shape_hint))
                label = _label_from_properties(properties, user=user)
                comment = properties.get("comment")
                if comment is None:
                    name = properties.get("name")
                    comment = name if isinstance(name, str) and name.strip().lower() != label.name.lower() else ""
                comment = _comment_clean(comment)
                batch.check_room(len(cleaned))
            except ValidationError as exc:
                errors.append({"feature": index, "error": "; ".join(exc.messages)})
                continue
            for shape, geom in cleaned:
                batch.add(Annotation(slide=slide, author=user, label=label, shape=shape, geometry=geom,
                                     comment=comment, source="imported"), index=index)
    with transaction.atomic():
        audit_record(user=user, action="annotation.import", case=slide.case, slide=slide,
                     detail={"features": len(features), "created": [a.pk for a in created], "errors": errors[:50]})
    return created, errors
