"""GET /api/health/ (admins): the deployment's health checks."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view, permission_classes
from rest_framework.response import Response

from viewer.api.permissions import IsAdminRole
from viewer.api.schema import HealthSerializer
from viewer.health.services import FAIL, health_as_dict, health_report


@extend_schema(responses={200: HealthSerializer, 503: HealthSerializer},
               description="Admins: the deployment's health checks (as `manage.py health`); 503 when one fails.")
@api_view(["GET"])
@permission_classes([IsAdminRole])
def health(request):
    report = health_as_dict(health_report())
    return Response(report, status=503 if report["status"] == FAIL else 200)
