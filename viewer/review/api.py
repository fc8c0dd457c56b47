"""REST API of reviews and annotations. Thin: services write, selectors read."""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.decorators import api_view, parser_classes
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from cases.models import Case, Slide
from viewer.api import schema as docs
from viewer.api.parsers import JSONRejected, StrictJSONParser, loads_strict
from viewer.review import selectors, services, transfer
from cases.roles import user_can_edit_cases
from viewer.review import jobs as review_jobs
from viewer.review.models import Annotation, Review
from cases.roles import user_is_admin
from viewer.review.statistics import AnnotationStatisticsSerializer
from viewer.review.statistics import annotation_statistics as annotation_statistics_of


def _invalid(exc: DjangoValidationError) -> ValidationError:
    if hasattr(exc, "error_dict"):
        return ValidationError({k: [m for e in v for m in e.messages] for k, v in exc.error_dict.items()})
    return ValidationError({"detail": exc.messages})


def _conflict(exc: services.ConflictError) -> Response:
    return Response({"detail": str(exc), "current_version": exc.current_version}, status=status.HTTP_409_CONFLICT)


def _version(data) -> int | None:
    value = data.get("version") if isinstance(data, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError({"version": ["A non-negative integer."]})
    return value


def _feature_parts(data) -> dict:
    """{geometry, label, comment, shape} from a GeoJSON Feature or a flat object."""
    if not isinstance(data, dict):
        raise ValidationError({"detail": ["A JSON object is required."]})
    if data.get("type") == "Feature":
        properties = data.get("properties") or {}
        if not isinstance(properties, dict):
            raise ValidationError({"properties": ["An object."]})
        label = properties.get("label")
        if label is None and isinstance(properties.get("classification"), dict):
            label = properties["classification"].get("name")
        parts = {"geometry": data.get("geometry"), "label": label, "comment": properties.get("comment"),
                 "shape": properties.get("shape"), "source": properties.get("source")}
    else:
        parts = {k: data.get(k) for k in ("geometry", "label", "comment", "shape", "source")}
    if parts["label"] is not None and not isinstance(parts["label"], str):
        raise ValidationError({"label": ["properties.label (or properties.classification.name) must be text."]})
    return parts


# --- annotations ---------------------------------------------------------------------------

@extend_schema(methods=["GET"], responses=docs.AnnotationSerializer(many=True))
@extend_schema(methods=["POST"], request={"application/json": docs.AnnotationInput},
               responses={201: docs.AnnotationSerializer, 400: docs.ERRORS, 403: docs.ERRORS, 404: docs.ERRORS})
@api_view(["GET", "POST"])
def slide_annotations(request, slide_id: int):
    """GET: the slide's annotations (JSON list). POST: one GeoJSON Feature (level-0 px,
    properties.label, properties.comment, optional properties.shape) -> 201 + the annotation."""
    slide = get_object_or_404(Slide.objects.select_related("case"), pk=slide_id)
    if request.method == "GET":
        is_admin = user_is_admin(request.user)
        return Response([selectors.annotation_json(a, user=request.user, is_admin=is_admin)
                         for a in selectors.slide_annotations(slide)])
    parts = _feature_parts(request.data)
    if not parts["label"]:
        raise ValidationError({"label": ["properties.label is required."]})
    try:
        annotation = services.annotation_create(slide=slide, user=request.user, geometry=parts["geometry"],
                                                label=parts["label"], comment=parts["comment"] or "",
                                                shape=parts["shape"], source="drawn" if parts["source"] == "drawn" else "api")
    except DjangoValidationError as exc:
        raise _invalid(exc)
    return Response(selectors.annotation_json(annotation, user=request.user), status=status.HTTP_201_CREATED)


@extend_schema(responses={(200, "application/geo+json"): docs.FeatureCollectionSerializer},
               parameters=[OpenApiParameter("download", OpenApiTypes.STR, description="Any value: as a file")])
@api_view(["GET"])
def slide_annotations_geojson(request, slide_id: int):
    """The slide's annotations as one QuPath-readable FeatureCollection (level-0 px)."""
    slide = get_object_or_404(Slide.objects.select_related("case"), pk=slide_id)
    response = JsonResponse(selectors.slide_annotations_geojson(slide), json_dumps_params={"indent": 1})
    response["Content-Type"] = "application/geo+json"
    if request.query_params.get("download"):
        response["Content-Disposition"] = (f'attachment; filename="{slide.case.case_id}-{slide.stain}-'
                                           f'{slide.pk}-annotations.geojson"')
    return response


@extend_schema(request={"application/json": docs.FeatureCollectionSerializer,
                        "multipart/form-data": docs.ImportUploadInput},
               responses={201: docs.ImportResultSerializer, 202: docs.ImportJobSerializer, 400: docs.ERRORS,
                          403: docs.ERRORS, 404: docs.ERRORS, 413: docs.ERRORS})
@api_view(["POST"])
@parser_classes([StrictJSONParser, MultiPartParser])
def slide_annotations_import(request, slide_id: int):
    """Import QuPath GeoJSON: a JSON body, or a multipart upload in the field 'file'."""
    slide = get_object_or_404(Slide.objects.select_related("case"), pk=slide_id)
    if "file" in request.FILES:
        upload = request.FILES["file"]
        if upload.size > 50 * 1024 * 1024:
            raise ValidationError({"file": ["At most 50 MB."]})
        try:
            data = loads_strict(upload.read().decode("utf-8"))
        except (UnicodeDecodeError, JSONRejected) as exc:
            raise ValidationError({"file": [f"Not JSON: {exc}"]})
    else:
        data = request.data
    try:
        count = services.import_feature_count(data)
        services.import_check_size(count)
        if count > settings.LADDER_GEOJSON_SYNC_FEATURES:  # big: a job with progress, not this request
            if not user_can_edit_cases(request.user):
                raise DjangoPermissionDenied("Only pathologists and admins import annotations.")
            job = review_jobs.annotations_import_enqueue(slide=slide, user=request.user, data=data, features=count)
            return Response({"job": job.pk, "features": count, "url": f"/api/jobs/{job.pk}/",
                             "detail": f"Importing {count} features as job #{job.pk}; follow its progress there."},
                            status=status.HTTP_202_ACCEPTED)
        created, errors = services.annotations_import(slide=slide, user=request.user, data=data)
    except services.ImportTooLarge as exc:
        return Response({"detail": "; ".join(exc.messages), "limit": settings.LADDER_GEOJSON_MAX_FEATURES},
                        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    except DjangoValidationError as exc:
        raise _invalid(exc)
    body = {"created": [selectors.annotation_json(a, user=request.user) for a in created], "errors": errors}
    return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_400_BAD_REQUEST)


@extend_schema(methods=["GET"], responses=docs.AnnotationSerializer)
@extend_schema(methods=["PATCH"], request={"application/json": docs.AnnotationPatchInput},
               responses={200: docs.AnnotationSerializer, 409: docs.ConflictSerializer, 400: docs.ERRORS,
                          403: docs.ERRORS, 404: docs.ERRORS})
@extend_schema(methods=["DELETE"], request={"application/json": docs.AnnotationDeleteInput},
               responses={204: None, 409: docs.ConflictSerializer, 400: docs.ERRORS, 403: docs.ERRORS,
                          404: docs.ERRORS})
@api_view(["GET", "PATCH", "DELETE"])
def annotation_detail(request, pk: int):
    annotation = get_object_or_404(Annotation.objects.select_related("label", "author", "slide__case"), pk=pk)
    if request.method == "GET":
        return Response(selectors.annotation_json(annotation, user=request.user))
    try:
        if request.method == "DELETE":
            version = _version(request.data) if request.data else None
            services.annotation_delete(annotation=annotation, user=request.user, version=version)
            return Response(status=status.HTTP_204_NO_CONTENT)
        parts = _feature_parts(request.data)
        parts.pop("source")
        annotation = services.annotation_update(annotation=annotation, user=request.user, version=_version(request.data),
                                                **parts)
    except DjangoValidationError as exc:
        raise _invalid(exc)
    except services.ConflictError as exc:
        return _conflict(exc)
    return Response(selectors.annotation_json(annotation, user=request.user))


@extend_schema(responses=docs.AnnotationHistorySerializer)
@api_view(["GET"])
def annotation_history(request, pk: int):
    annotation = get_object_or_404(Annotation, pk=pk)
    return Response({"annotation": annotation.pk, "version": annotation.version,
                     "revisions": [selectors.revision_json(r) for r in
                                   annotation.revisions.select_related("user").order_by("number")]})


@extend_schema(request={"application/json": docs.RevertInput}, responses=docs.AnnotationSerializer)
@api_view(["POST"])
def annotation_revert(request, pk: int):
    annotation = get_object_or_404(Annotation.objects.select_related("label", "slide__case"), pk=pk)
    revision = request.data.get("revision") if isinstance(request.data, dict) else None
    if isinstance(revision, bool) or not isinstance(revision, int):
        raise ValidationError({"revision": ["The revision number (an integer) to go back to."]})
    try:
        annotation = services.annotation_revert(annotation=annotation, user=request.user, revision=revision)
    except DjangoValidationError as exc:
        raise _invalid(exc)
    return Response(selectors.annotation_json(annotation, user=request.user))


@extend_schema(responses=docs.AnnotationLabelSerializer(many=True))
@api_view(["GET"])
def annotation_label_list(request):
    return Response([{"name": label.name, "color": label.color} for label in selectors.annotation_labels()])


# --- reviews ---------------------------------------------------------------------------------

@extend_schema(responses=docs.ReviewSerializer(many=True))
@api_view(["GET"])
def case_review_list(request, pk: int):
    case = get_object_or_404(Case, pk=pk)
    return Response([selectors.review_json(r, case=case) for r in selectors.case_reviews(case)])


@extend_schema(methods=["GET"], responses=docs.ReviewSerializer)
@extend_schema(methods=["PUT"], request={"application/json": docs.ReviewInput},
               responses={200: docs.ReviewSerializer, 409: docs.ConflictSerializer, 400: docs.ERRORS,
                          403: docs.ERRORS, 404: docs.ERRORS})
@api_view(["GET", "PUT"])
def case_review_mine(request, pk: int):
    """GET: your review of the case (version 0 when there is none). PUT: save it, with the
    `version` you edited; 409 when it was saved since (reload and apply again)."""
    case = get_object_or_404(Case, pk=pk)
    if request.method == "GET":
        review = Review.objects.filter(case=case, reviewer=request.user).select_related("reviewer").first()
        return Response(selectors.review_json(review, case=case))
    version = _version(request.data)
    if version is None:
        raise ValidationError({"version": ["Required: the version you edited (0 for a new review)."]})
    try:
        review = services.review_save(case=case, user=request.user, data=request.data, version=version)
    except DjangoValidationError as exc:
        raise _invalid(exc)
    except services.ConflictError as exc:
        return _conflict(exc)
    case.refresh_from_db(fields=["status"])
    return Response(selectors.review_json(review, case=case))


@extend_schema(responses={200: AnnotationStatisticsSerializer}, summary="Statistics of the region an annotation draws")
@api_view(["GET"])
def annotation_statistics(request, pk: int):
    """Cells inside the annotation by class, HER2 classes of its tumour cells, ASCO/CAP score, H-score, area."""
    from analysis.core.cells.region import RegionError
    from analysis.core.cells.table import CellTableError

    annotation = get_object_or_404(Annotation.objects.select_related("slide"), pk=pk)
    try:
        body = annotation_statistics_of(annotation)
    except RegionError as exc:
        raise ValidationError({"geometry": [str(exc)]})
    except CellTableError as exc:
        return Response({"detail": f"The slide's analysis run cannot be read: {exc}"}, status=status.HTTP_409_CONFLICT)
    return Response(AnnotationStatisticsSerializer(body).data)


@extend_schema(request={"application/json": docs.TransferInput},
               responses={200: docs.TransferPreviewSerializer, 201: docs.AnnotationSerializer, 400: docs.ERRORS,
                          403: docs.ERRORS, 404: docs.ERRORS, 409: docs.ERRORS})
@api_view(["POST"])
def annotation_transfer(request, pk: int):
    """Carry the annotation across to the paired slide through the registration (similarity, and the
    non-rigid field while the automatic registration applies). Body {"preview": true}: 200 with where
    it would lie ({slide, shape, geometry, transfer}), nothing saved; otherwise 201 with the new
    annotation, marked `source: "transferred"` with `transferred_from`; 409 if already copied."""
    annotation = get_object_or_404(Annotation.objects.select_related("label", "slide__case"), pk=pk)
    try:
        if isinstance(request.data, dict) and request.data.get("preview"):
            return Response(transfer.annotation_map(annotation))
        copy = transfer.annotation_transfer(annotation=annotation, user=request.user)
    except DjangoValidationError as exc:
        raise _invalid(exc)
    except transfer.TransferConflict as exc:
        return Response({"detail": str(exc), "annotation": exc.existing.pk}, status=status.HTTP_409_CONFLICT)
    return Response(selectors.annotation_json(copy, user=request.user), status=status.HTTP_201_CREATED)
