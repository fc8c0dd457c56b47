"""REST API of overlays: viewport records (binary), the cell inspector, a model input's source cells.
Logic: viewer.overlays.selectors; routes: viewer/overlays/api_urls.py."""
from __future__ import annotations

import math

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from django.http import HttpResponse
from rest_framework.response import Response
from rest_framework.views import APIView

from viewer.api import schema as docs
from viewer.overlays import selectors as overlays


def _number(request, name: str) -> float | None:
    try:
        value = float(request.query_params.get(name, ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
               parameters=[OpenApiParameter(name, OpenApiTypes.NUMBER, required=True, description="level-0 px")
                           for name in ("x", "y", "width", "height")])
class OverlayViewportView(APIView):
    """GET ?x=&y=&width=&height= (level-0 px): 12-byte cell or 20-byte edge records."""

    def get(self, request, slide_id: int, name: str):
        x, y, width, height = (_number(request, k) for k in ("x", "y", "width", "height"))
        if None in (x, y, width, height) or width <= 0 or height <= 0:
            return Response({"detail": "x, y, width and height (level-0 px, width and height > 0) are required"},
                            status=400)
        try:
            body, count = overlays.overlay_viewport(slide_id=slide_id, layer=name, x=x, y=y, width=width,
                                                    height=height)
        except overlays.OverlayNotFound as exc:
            return Response({"detail": str(exc)}, status=404)
        except overlays.ViewportTooLarge:
            return Response({"detail": "zoom in"}, status=413)
        response = HttpResponse(body, content_type="application/octet-stream")
        response["X-Edge-Count" if name == "edges" else "X-Cell-Count"] = str(count)
        response["X-Record-Bytes"] = "20" if name == "edges" else "12"
        response["Cache-Control"] = "private, no-cache"
        return response


@extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
               parameters=[OpenApiParameter(name, OpenApiTypes.NUMBER, required=True, description="level-0 px")
                           for name in ("x", "y", "width", "height")])
class OverlayContoursView(APIView):
    """GET ?x=&y=&width=&height= (level-0 px): the nuclei's contour records (docs/overlays.md)."""

    def get(self, request, slide_id: int, name: str):
        x, y, width, height = (_number(request, k) for k in ("x", "y", "width", "height"))
        if None in (x, y, width, height) or width <= 0 or height <= 0:
            return Response({"detail": "x, y, width and height (level-0 px, width and height > 0) are required"},
                            status=400)
        try:
            body, count, vertices = overlays.overlay_contours(slide_id=slide_id, layer=name, x=x, y=y, width=width,
                                                              height=height)
        except overlays.OverlayNotFound as exc:
            return Response({"detail": str(exc)}, status=404)
        except overlays.ViewportTooLarge:
            return Response({"detail": "zoom in"}, status=413)
        response = HttpResponse(body, content_type="application/octet-stream")
        response["X-Cell-Count"] = str(count)
        response["X-Vertex-Count"] = str(vertices)
        response["Cache-Control"] = "private, no-cache"
        return response


@extend_schema(responses=docs.CellDetailSerializer,
               parameters=[OpenApiParameter("by", OpenApiTypes.STR, enum=["row"], description="cell_id is a row")])
class CellDetailView(APIView):
    """GET: one cell's values, contour, morphology, HER2 and graph metrics (?by=row: row position)."""

    def get(self, request, slide_id: int, cell_id: int):
        try:
            detail = overlays.overlay_cell_detail(slide_id=slide_id, cell_id=cell_id,
                                                  by_row=request.query_params.get("by") == "row")
        except overlays.OverlayNotFound as exc:
            return Response({"detail": str(exc)}, status=404)
        from viewer.cases.feature_labels import feature_labels_json

        detail["metric_labels"] = feature_labels_json()["metrics"]  # plain names for the inspector
        return Response(detail)


@extend_schema(responses=docs.FeatureSourceSerializer)
class FeatureSourceView(APIView):
    """GET: a model input's group, definition, unit and source cells/pair type."""

    def get(self, request, name: str):
        source = overlays.feature_source_get(name)
        if source is None:
            return Response({"detail": f"no feature {name!r}"}, status=404)
        from viewer.cases.feature_labels import feature_label

        label = feature_label(name)
        return Response({**source, "label": label["label"], "label_text": label["text"]})
