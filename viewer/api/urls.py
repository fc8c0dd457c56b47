"""Every /api/ route, in one list (included by config/urls.py). Each capability keeps its REST
views in its own folder (viewer/<capability>/api.py); this file is where a newcomer finds them all.
OpenAPI schema at /api/schema/, its Swagger UI at /api/docs/; session or token auth; permissions in
viewer/api/permissions.py."""
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from viewer.cases import api as cases_api
from viewer.api.views import SchemaView
from viewer.health import api as health_api
from viewer.jobs import api as jobs_api

router = DefaultRouter()
router.register("cases", cases_api.CaseViewSet, basename="api-case")
router.register("slides", cases_api.SlideViewSet, basename="api-slide")
router.register("jobs", jobs_api.JobViewSet, basename="api-job")

urlpatterns = [
    path("", include("viewer.review.api_urls")),
    path("", include("viewer.board.api_urls")),
    path("", include("viewer.overlays.api_urls")),
    path("schema/", SchemaView.as_view(), name="api-schema"),
    # A page, so a login page rather than a 401 for the anonymous; its script is served at ?script.
    path("docs/", login_required(SpectacularSwaggerSplitView.as_view(url_name="api-schema")), name="api-docs"),
    path("health/", health_api.health, name="api-health"),
    path("cases/<int:pk>/alignment/", cases_api.case_alignment, name="api-case-alignment"),
    path("cases/<int:pk>/alignment/auto/", cases_api.case_alignment_auto, name="api-case-alignment-auto"),
    path("cases/<int:pk>/alignment/auto/reset/", cases_api.case_alignment_auto_reset,
         name="api-case-alignment-auto-reset"),
    path("cases/<int:pk>/alignment/field/", cases_api.case_alignment_field, name="api-case-alignment-field"),
    path("", include(router.urls)),
]
