"""Overlay routes: viewport records, cell inspector and feature sources (DRF, login required),
and the overlay DZI/PNG pixel routes (answered by the ASGI fast path in the server; these
views serve the same URLs to the test client, WSGI and reverse()). Logic: viewer.overlays."""
from __future__ import annotations

import math

from asgiref.sync import sync_to_async
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from viewer import overlays, tile_app


def _number(request, name: str) -> float | None:
    try:
        value = float(request.query_params.get(name, ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
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


@extend_schema(responses=OpenApiTypes.OBJECT)
class CellDetailView(APIView):
    """GET: one cell's values, contour, morphology, HER2 and graph metrics (?by=row: row position)."""

    def get(self, request, slide_id: int, cell_id: int):
        try:
            detail = overlays.overlay_cell_detail(slide_id=slide_id, cell_id=cell_id,
                                                  by_row=request.query_params.get("by") == "row")
        except overlays.OverlayNotFound as exc:
            return Response({"detail": str(exc)}, status=404)
        return Response(detail)


@extend_schema(responses=OpenApiTypes.OBJECT)
class FeatureSourceView(APIView):
    """GET: a model input's group, definition, unit and source cells/pair type."""

    def get(self, request, name: str):
        source = overlays.feature_source_get(name)
        if source is None:
            return Response({"detail": f"no feature {name!r}"}, status=404)
        return Response(source)


async def _pixels(request, path: str):
    match = tile_app.TILE_PATH.match(path)
    user = await request.auser()

    def work():
        return tile_app.tile_request(match, authorised=bool(user.is_authenticated and user.is_active),
                                     if_none_match=request.headers.get("If-None-Match"), hide=request.GET.get("hide"))

    status, headers, body = await sync_to_async(work, thread_sensitive=False, executor=tile_app.executor())()
    response = HttpResponse(body, status=status)
    for key, value in headers:
        response.headers[key.decode()] = value.decode()
    return response


async def overlay_dzi(request, slide_id: int, name: str):
    return await _pixels(request, f"/slides/{slide_id}/overlays/{name}.dzi")


async def overlay_tile(request, slide_id: int, name: str, level: int, col: int, row: int):
    return await _pixels(request, f"/slides/{slide_id}/overlays/{name}_files/{level}/{col}_{row}.png")
