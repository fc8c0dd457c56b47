"""REST API of jobs: list (filter by case, slide, status, kind), detail, cancel, retry.
Progress reaches the case page over the websocket of viewer.jobs.consumers."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from analysis.models import Job, JobKind, JobStatus
from analysis.services import JobStateError, job_cancel, job_retry
from viewer.api.params import query_choice, query_pk
from viewer.api.permissions import CanEditCasesOrReadOnly
from viewer.jobs.serializers import JobSerializer


@extend_schema_view(list=extend_schema(parameters=[
    OpenApiParameter("case", int, description="Only this case's jobs (id)"),
    OpenApiParameter("slide", int, description="Only this slide's jobs (id)"),
    OpenApiParameter("status", str, enum=JobStatus.values), OpenApiParameter("kind", str, enum=JobKind.values)]))
class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = JobSerializer
    permission_classes = [CanEditCasesOrReadOnly]

    def get_queryset(self):
        jobs = Job.objects.all()
        filters = {"case": query_pk(self.request, "case"), "slide": query_pk(self.request, "slide"),
                   "status": query_choice(self.request, "status", JobStatus.values),
                   "kind": query_choice(self.request, "kind", JobKind.values)}
        jobs = jobs.filter(**{name: value for name, value in filters.items() if value is not None})
        return jobs.order_by("-created_at")

    @extend_schema(request=None, responses=JobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        try:
            job = job_cancel(job=self.get_object(), user=request.user)
        except JobStateError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(JobSerializer(job).data)

    @extend_schema(request=None, responses={201: JobSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        try:
            job = job_retry(job=self.get_object(), user=request.user)
        except JobStateError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)
