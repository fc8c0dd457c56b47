"""Documentation-only serializers: the request and response bodies of the API views that build
their JSON by hand (selectors' *_json functions), so that /api/schema/ describes every body and
Schemathesis (tests/viewer/api/test_schemathesis.py) checks the answers against it. Keep each in
step with the function named in its docstring; the fuzz test fails when they drift apart."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

from cases.models import Her2Score
from viewer.review.models import ExpectedResponse, Shape


def _json(help_text: str = "", **kwargs) -> serializers.JSONField:
    return serializers.JSONField(help_text=help_text, **kwargs)


# --- errors ---------------------------------------------------------------------------------

class ErrorSerializer(serializers.Serializer):
    """Every 4xx answer: {"detail": message} or {field: [messages]} (DRF's validation errors)."""

    detail = _json("What was wrong (text, or a list of texts).", required=False)


ERRORS = OpenApiResponse(ErrorSerializer, description="Refused: the body says why ({detail} or {field: [messages]}).")


# --- annotations ----------------------------------------------------------------------------

class GeometrySerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["Point", "Polygon"])
    coordinates = _json("Level-0 px: [x, y] for a Point, [[[x, y], ...]] rings for a Polygon.")


class AnnotationPropertiesInput(serializers.Serializer):
    label = serializers.CharField(required=False, help_text="An annotation label's name (GET /api/annotation-labels/).")
    classification = inline_serializer("QuPathClassification", {"name": serializers.CharField()}, required=False)
    comment = serializers.CharField(required=False, allow_blank=True)
    shape = serializers.ChoiceField(choices=Shape.values, required=False)
    source = serializers.CharField(required=False, help_text='"drawn" (in the viewer); anything else is "api".')


class AnnotationInput(serializers.Serializer):
    """POST /api/slides/<id>/annotations/: one GeoJSON Feature (level-0 px)."""

    type = serializers.ChoiceField(choices=["Feature"])
    geometry = GeometrySerializer()
    properties = AnnotationPropertiesInput()


class AnnotationPatchInput(serializers.Serializer):
    """PATCH /api/annotations/<id>/: the parts to change, and the version edited (409 if it moved on)."""

    type = serializers.ChoiceField(choices=["Feature"], required=False)
    geometry = GeometrySerializer(required=False)
    properties = AnnotationPropertiesInput(required=False)
    version = serializers.IntegerField(min_value=0, required=False)


class AnnotationDeleteInput(serializers.Serializer):
    version = serializers.IntegerField(min_value=0, required=False)


class AnnotationSerializer(serializers.Serializer):
    """viewer.review.selectors.annotation_json."""

    id = serializers.IntegerField()
    uuid = serializers.UUIDField()
    slide = serializers.IntegerField()
    shape = serializers.ChoiceField(choices=Shape.values)
    geometry = GeometrySerializer()
    label = serializers.CharField()
    color = serializers.CharField()
    comment = serializers.CharField(allow_blank=True)
    author = serializers.CharField(allow_null=True)
    source = serializers.CharField()
    transferred_from = serializers.IntegerField(allow_null=True, help_text="The annotation this one was copied from "
                                                "(carried across the registration), else null.")
    transfer = _json("How it was carried across (TransferRecordSerializer), else {}.")
    deleted = serializers.BooleanField()
    version = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    can_edit = serializers.BooleanField()


class RevisionSerializer(serializers.Serializer):
    """viewer.review.selectors.revision_json."""

    revision = serializers.IntegerField()
    action = serializers.CharField()
    user = serializers.CharField(allow_null=True)
    at = serializers.DateTimeField()
    label = serializers.CharField()
    shape = serializers.CharField()
    geometry = _json()
    comment = serializers.CharField(allow_blank=True)
    deleted = serializers.BooleanField()


class AnnotationHistorySerializer(serializers.Serializer):
    annotation = serializers.IntegerField()
    version = serializers.IntegerField()
    revisions = RevisionSerializer(many=True)


class RevertInput(serializers.Serializer):
    revision = serializers.IntegerField(help_text="The revision number to go back to.")


class AnnotationLabelSerializer(serializers.Serializer):
    name = serializers.CharField()
    color = serializers.CharField()


class FeatureCollectionSerializer(serializers.Serializer):
    """A GeoJSON FeatureCollection (QuPath's annotation export/import format, level-0 px)."""

    type = serializers.ChoiceField(choices=["FeatureCollection"])
    features = serializers.ListField(child=_json("A GeoJSON Feature."))


class ImportUploadInput(serializers.Serializer):
    file = serializers.FileField(help_text="A QuPath GeoJSON file (at most 50 MB).")


class ImportResultSerializer(serializers.Serializer):
    created = AnnotationSerializer(many=True)
    errors = serializers.ListField(child=inline_serializer(
        "ImportError", {"feature": serializers.IntegerField(), "error": serializers.CharField()}))


class ImportJobSerializer(serializers.Serializer):
    """202 of a large import: it runs as a job (GET its url for progress)."""

    job = serializers.IntegerField()
    features = serializers.IntegerField()
    url = serializers.CharField()
    detail = serializers.CharField()


class TransferInput(serializers.Serializer):
    """POST /api/annotations/<id>/transfer/."""

    preview = serializers.BooleanField(required=False, default=False,
                                       help_text="true: answer where it would lie, save nothing.")


class TransferRecordSerializer(serializers.Serializer):
    """viewer.review.transfer.annotation_map's `transfer`."""

    from_slide = serializers.IntegerField()
    from_stain = serializers.CharField()
    to_slide = serializers.IntegerField()
    alignment = serializers.CharField(help_text="The alignment's source (automatic, manual, ...).")
    nonrigid = serializers.BooleanField()
    field_checksum = serializers.CharField(allow_blank=True)
    similarity = inline_serializer("TransferSimilarity", {k: serializers.FloatField() for k in
                                                          ("offset_x", "offset_y", "rotation", "scale")})
    at = serializers.DateTimeField(required=False)


class TransferPreviewSerializer(serializers.Serializer):
    """viewer.review.transfer.annotation_map: where the annotation lies on the paired slide."""

    slide = serializers.IntegerField()
    stain = serializers.CharField()
    shape = serializers.ChoiceField(choices=Shape.values)
    geometry = GeometrySerializer()
    transfer = TransferRecordSerializer()


class AlignmentFieldSerializer(serializers.Serializer):
    """analysis.core.slides.registration.DisplacementField.to_dict."""

    version = serializers.IntegerField()
    spacing_px = serializers.FloatField(help_text="Grid spacing in H&E level-0 px.")
    mpp = serializers.FloatField(allow_null=True)
    shape = serializers.ListField(child=serializers.IntegerField(), help_text="[rows, columns] of the grid.")
    dtype = serializers.CharField(help_text='"<f2": little-endian float16.')
    forward = serializers.CharField(help_text="base64 grid, x/y interleaved: fixed -> moving displacement u(p).")
    inverse = serializers.CharField(help_text="base64 grid, x/y interleaved: moving -> fixed displacement v(p).")


# --- reviews --------------------------------------------------------------------------------

class ReviewInput(serializers.Serializer):
    """PUT /api/cases/<id>/reviews/mine/."""

    version = serializers.IntegerField(min_value=0, help_text="The version you edited (0 for a new review).")
    agrees = serializers.BooleanField(allow_null=True, required=False)
    expected_response = serializers.ChoiceField(choices=ExpectedResponse.values, allow_blank=True, required=False)
    her2_score = serializers.ChoiceField(choices=Her2Score.values, allow_blank=True, required=False)
    confidence = serializers.IntegerField(min_value=1, max_value=5, allow_null=True, required=False)
    comment = serializers.CharField(allow_blank=True, required=False)
    submitted = serializers.BooleanField(required=False)


class ReviewContextSerializer(serializers.Serializer):
    model_risk_group = serializers.CharField(allow_blank=True)
    automated_her2 = serializers.CharField(allow_blank=True)
    automated_her2_source = serializers.CharField(allow_blank=True)


class ReviewCurrentSerializer(ReviewContextSerializer):
    case_status = serializers.CharField()


class ReviewSerializer(serializers.Serializer):
    """viewer.review.selectors.review_json (version 0 and no id when there is no review yet)."""

    id = serializers.IntegerField(required=False)
    version = serializers.IntegerField()
    reviewer = serializers.CharField(allow_null=True)
    agrees = serializers.BooleanField(allow_null=True)
    expected_response = serializers.CharField(allow_blank=True)
    her2_score = serializers.CharField(allow_blank=True)
    confidence = serializers.IntegerField(allow_null=True)
    comment = serializers.CharField(allow_blank=True)
    submitted = serializers.BooleanField()
    is_disagreement = serializers.BooleanField()
    saved_with = ReviewContextSerializer(allow_null=True)
    updated_at = serializers.DateTimeField(allow_null=True)
    current = ReviewCurrentSerializer()


class ConflictSerializer(serializers.Serializer):
    detail = serializers.CharField()
    current_version = serializers.IntegerField(allow_null=True)


# --- boards ---------------------------------------------------------------------------------

class UserRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class BoardParticipantSerializer(UserRefSerializer):
    """viewer.board.selectors.board_participants."""

    connected = serializers.BooleanField(help_text="Has the session open now.")
    can_present = serializers.BooleanField(help_text="Has a role that may drive the board (hand-over target).")


class BoardCaseSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    case_id = serializers.CharField()


class BoardRecordSerializer(serializers.Serializer):
    """viewer.board.api.record_data."""

    id = serializers.IntegerField()
    kind = serializers.CharField()
    case = serializers.IntegerField()
    case_id = serializers.CharField()
    slide = serializers.IntegerField(allow_null=True)
    caption = serializers.CharField(allow_blank=True)
    viewport = _json(allow_null=True)
    url = serializers.CharField()
    size_bytes = serializers.IntegerField()
    created_by = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()


class BoardSummarySerializer(serializers.Serializer):
    """viewer.board.api.session_data(full=False)."""

    id = serializers.IntegerField()
    title = serializers.CharField()
    url = serializers.CharField()
    ws_url = serializers.CharField()
    presenter = UserRefSerializer()
    driver = UserRefSerializer()
    cases = BoardCaseSerializer(many=True)
    created_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)


class BoardSerializer(BoardSummarySerializer):
    """viewer.board.api.session_data(full=True)."""

    state = inline_serializer("BoardLatestState", {"state": _json("The driver's view."),
                                                   "seq": serializers.IntegerField()}, allow_null=True)
    participants = BoardParticipantSerializer(many=True)
    records = BoardRecordSerializer(many=True)


# --- overlays, features, health ---------------------------------------------------------------

class CellDetailSerializer(serializers.Serializer):
    """viewer.overlays.selectors.overlay_cell_detail."""

    id = serializers.IntegerField()
    row = serializers.IntegerField()
    run = serializers.IntegerField()
    x = serializers.FloatField()
    y = serializers.FloatField()
    cls = serializers.CharField()
    prob = serializers.FloatField(allow_null=True)
    area_px = serializers.FloatField(allow_null=True)
    area_um2 = serializers.FloatField(allow_null=True)
    contour = _json("[[x, y], ...] level-0 px")
    morphology = _json(allow_null=True)
    her2 = _json(allow_null=True)
    graph = _json(allow_null=True)
    compute_ms = serializers.FloatField(required=False)


class FeatureSourceSerializer(serializers.Serializer):
    """viewer.overlays.selectors.feature_source_get."""

    name = serializers.CharField()
    group = serializers.CharField()
    definition = serializers.CharField(allow_blank=True)
    unit = serializers.CharField(allow_blank=True)
    source_cells = _json(allow_null=True)


class HealthSerializer(serializers.Serializer):
    """viewer.health.services.health_as_dict."""

    status = serializers.ChoiceField(choices=["ok", "warn", "fail"])
    checks = serializers.ListField(child=inline_serializer("HealthCheck", {
        "name": serializers.CharField(), "status": serializers.ChoiceField(choices=["ok", "warn", "fail"]),
        "detail": serializers.CharField(allow_blank=True), "ms": serializers.FloatField()}))


def add_error_responses(result, generator, request, public):
    """SPECTACULAR_SETTINGS' postprocessing hook: every operation documents its refusals (4XX,
    an ErrorSerializer body), so Schemathesis checks those bodies too."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("Error", {"type": "object", "description": ErrorSerializer.__doc__,
                                    "properties": {"detail": {"description": "What was wrong."}}})
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "4XX" not in responses:  # the codes listed explicitly keep their own description
                responses["4XX"] = {"description": "Refused: the body says why ({detail} or {field: [messages]}).",
                                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return result
