"""REST API of jobs: list (filter by case, slide, status, kind), detail, cancel, retry.
Progress reaches the case page over the websocket of viewer.jobs.consumers."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from analysis.models import Job
from analysis.services import JobStateError, job_cancel, job_retry
from viewer.api.permissions import CanEditCasesOrReadOnly
from viewer.jobs.serializers import JobSerializer


class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = JobSerializer
    permission_classes = [CanEditCasesOrReadOnly]

    def get_queryset(self):
        jobs = Job.objects.all()
        params = self.request.query_params
        for name in ("case", "slide", "status", "kind"):
            if params.get(name):
                jobs = jobs.filter(**{name: params[name]})
        return jobs.order_by("-created_at")

    @extend_schema(request=None, responses=JobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        try:
            job = job_cancel(job=self.get_object(), user=request.user)
        except JobStateError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(JobSerializer(job).data)

    @extend_schema(request=None, responses=JobSerializer)
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        try:
            job = job_retry(job=self.get_object(), user=request.user)
        except JobStateError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)
