"""REST API of cases and slides: cases, slide import/upload, mpp, analysis requests, alignment.
Thin: services do the writes (routes: viewer/api/urls.py)."""
from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from analysis.registration import (
    FieldIntegrityError,
    alignment_field_active,
    alignment_field_bytes,
    alignment_restore_automatic,
    registration_enqueue,
)
from analysis.services import JobStateError, analysis_enqueue
from analysis.registration import alignment_ensure_default
from cases.models import Case, Slide, SlideStatus
from viewer.cases import selectors
from viewer.api import schema as docs
from viewer.api.params import query_pk
from viewer.api.parsers import StrictJSONParser
from viewer.api.permissions import CanEditCasesOrReadOnly
from viewer.cases.serializers import (
    AlignmentSerializer,
    CaseSerializer,
    SlideImportSerializer,
    SlideMppSerializer,
    SlideSerializer,
)
from viewer.cases.services import cases as case_services
from viewer.cases.services.slides import (
    SlideImportError,
    alignment_reset,
    alignment_update,
    slide_import,
    slide_set_mpp,
    slide_upload,
)
from viewer.jobs.serializers import JobSerializer
from viewer.tiles.services import tile_source_forget


@extend_schema_view(list=extend_schema(parameters=[
    OpenApiParameter("q", str, description="Text in the case id"), OpenApiParameter("status", str),
    OpenApiParameter("her2", str, description="HER2 IHC score (0, 1+, 2+, 3+), clinical or automated: "
                     "cases whose clinical score or latest IHC analysis' automated score is this"), OpenApiParameter("case_id", str, description="Exactly this case id")]))
class CaseViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                  mixins.UpdateModelMixin, viewsets.GenericViewSet):
    serializer_class = CaseSerializer
    permission_classes = [CanEditCasesOrReadOnly]

    def get_queryset(self):
        params = self.request.query_params
        cases = selectors.case_list(query=params.get("q", ""), status=params.get("status", ""),
                                    her2=params.get("her2", "")).prefetch_related("slides")
        if params.get("case_id"):
            cases = cases.filter(case_id=params["case_id"])
        return cases

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        try:
            serializer.instance = case_services.case_create(user=self.request.user, **data)
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages})

    def perform_update(self, serializer):
        changes = dict(serializer.validated_data)
        if "case_id" in changes and changes["case_id"] != serializer.instance.case_id:
            # The case id names the case in files, reviews and the audit trail: fixed once created.
            raise ValidationError({"case_id": ["The case id cannot be changed."]})
        changes.pop("case_id", None)
        try:
            serializer.instance = case_services.case_update_clinical(
                case=serializer.instance, user=self.request.user, **changes)
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages})


@extend_schema_view(list=extend_schema(parameters=[OpenApiParameter("case", int, description="Only this case's slides (id)")]))
class SlideViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = SlideSerializer
    permission_classes = [CanEditCasesOrReadOnly]
    parser_classes = [StrictJSONParser, MultiPartParser, FormParser]

    def get_queryset(self):
        slides = Slide.objects.select_related("case")
        case = query_pk(self.request, "case")
        return slides if case is None else slides.filter(case_id=case)

    @extend_schema(request=SlideImportSerializer, responses={201: SlideSerializer, 202: SlideSerializer})
    def create(self, request):
        """Import a slide into a case: JSON {case, stain, path} or multipart {case, stain, file}."""
        form = SlideImportSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            if data.get("file"):
                slide = slide_upload(case=data["case"], stain=data["stain"], uploaded_file=data["file"],
                                     user=request.user)
            else:
                slide = slide_import(case=data["case"], stain=data["stain"], path=data["path"], user=request.user,
                                     defer_conversion=True)
        except SlideImportError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        # 202: a plain image is being converted by a job (status "converting"; see /api/jobs/?slide=)
        accepted = slide.status == SlideStatus.CONVERTING
        return Response(SlideSerializer(slide).data,
                        status=status.HTTP_202_ACCEPTED if accepted else status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={201: JobSerializer})
    @action(detail=True, methods=["post"])
    def analyze(self, request, pk=None):
        """Queue the slide's cell analysis (segmentation, HER2 grading on IHC, graph features)."""
        slide = self.get_object()
        try:
            job = analysis_enqueue(slide=slide, user=request.user)
        except JobStateError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=SlideMppSerializer, responses=SlideSerializer)
    @action(detail=True, methods=["put"], url_path="mpp")
    def set_mpp(self, request, pk=None):
        """Set a slide's resolution (µm per pixel) when its file has none."""
        slide = self.get_object()
        form = SlideMppSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            slide_set_mpp(slide=slide, mpp=form.validated_data["mpp"], user=request.user)
        except SlideImportError as exc:
            raise ValidationError({"mpp": str(exc)}) from exc
        tile_source_forget(slide.pk)
        return Response(SlideSerializer(slide).data)


@extend_schema(methods=["GET"], responses=AlignmentSerializer)
@extend_schema(methods=["PUT"], request=AlignmentSerializer, responses=AlignmentSerializer)
@extend_schema(methods=["DELETE"], responses=AlignmentSerializer, description="Reset to the default alignment.")
@api_view(["GET", "PUT", "DELETE"])
@permission_classes([CanEditCasesOrReadOnly])
def case_alignment(request, pk: int):
    """The saved alignment of a case's IHC slide on its H&E slide."""
    case = get_object_or_404(Case, pk=pk)
    alignment = alignment_ensure_default(case=case)
    if alignment is None:
        return Response({"detail": "the case needs one H&E and one IHC slide, both ready, to be aligned"}, status=404)
    if request.method == "PUT":
        form = AlignmentSerializer(alignment, data=request.data)
        form.is_valid(raise_exception=True)
        alignment = alignment_update(alignment=alignment, user=request.user, **form.validated_data)
    elif request.method == "DELETE":
        alignment = alignment_reset(alignment=alignment, user=request.user)
    return Response(AlignmentSerializer(alignment).data)


def _case_pair_alignment(pk: int):
    case = get_object_or_404(Case, pk=pk)
    return case, alignment_ensure_default(case=case)


@extend_schema(request=None, responses={202: JobSerializer})
@api_view(["POST"])
@permission_classes([CanEditCasesOrReadOnly])
def case_alignment_auto(request, pk: int):
    """Queue the automatic registration of the case's IHC onto its H&E (202 with the job; the one
    already queued or running is returned instead of a second). The current alignment stays until
    the job succeeds; a failure says why in the job's error and log."""
    case = get_object_or_404(Case, pk=pk)
    try:
        job = registration_enqueue(case=case, user=request.user, reason="requested")
    except JobStateError as exc:
        raise ValidationError({"detail": str(exc)}) from exc
    return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(request=None, responses=AlignmentSerializer)
@api_view(["POST"])
@permission_classes([CanEditCasesOrReadOnly])
def case_alignment_auto_reset(request, pk: int):
    """'Reset to automatic': the last automatic registration (similarity and field) becomes the alignment."""
    _, alignment = _case_pair_alignment(pk)
    if alignment is None:
        return Response({"detail": "the case needs one H&E and one IHC slide, both ready, to be aligned"}, status=404)
    try:
        alignment = alignment_restore_automatic(alignment=alignment, user=request.user)
    except ValueError as exc:
        raise ValidationError({"detail": str(exc)}) from exc
    return Response(AlignmentSerializer(alignment).data)


@extend_schema(responses={200: docs.AlignmentFieldSerializer, 404: docs.ERRORS, 409: docs.ERRORS})
@api_view(["GET"])
@permission_classes([CanEditCasesOrReadOnly])
def case_alignment_field(request, pk: int):
    """The non-rigid field of the automatic registration, while it applies: JSON with two float16 grids
    (base64, little-endian, x/y interleaved) in H&E level-0 px, node (r, c) at (c, r) * spacing_px:
    fixed->moving q = S(p + u(p)), moving->fixed p = S^-1(q) + v(S^-1(q)) (docs/registration.md)."""
    _, alignment = _case_pair_alignment(pk)
    if not alignment_field_active(alignment):
        return Response({"detail": "this case's alignment has no non-rigid field (none computed, or the "
                                   "alignment was adjusted by hand)"}, status=404)
    try:
        data = alignment_field_bytes(alignment)
    except FieldIntegrityError as exc:
        return Response({"detail": str(exc)}, status=409)
    response = HttpResponse(data, content_type="application/json")
    response["Cache-Control"] = "private, max-age=3600"
    return response
