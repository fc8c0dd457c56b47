"""The API's own pages: the OpenAPI schema and its Swagger UI (served from this origin by
drf-spectacular-sidecar: no CDN, within the CSP). Both need a login."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView


@extend_schema(exclude=True)  # as SERVE_INCLUDE_SCHEMA=False does for the view it replaces
class SchemaView(SpectacularAPIView):
    """GET /api/schema/: OpenAPI YAML (?format=json: JSON). A browser gets the YAML as text to
    read, instead of a file download of an unknown type."""

    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        if "text/html" in request.headers.get("Accept", "") and not request.query_params.get("format"):
            response.content_type = "text/plain; charset=utf-8"
        return response
