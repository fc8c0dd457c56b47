"""Overlay pixel routes: DZI descriptors and palette PNG tiles. The ASGI fast path
(viewer.tiles.asgi) answers these URLs in the server; these views serve the test client,
WSGI and reverse(). Logic: viewer.overlays.services; the REST views are in viewer.overlays.api."""
from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import HttpResponse

from viewer.tiles import asgi as tile_app


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
