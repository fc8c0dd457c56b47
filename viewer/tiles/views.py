"""Django views for slide pixels. The ASGI fast path (viewer.tiles.asgi) answers these same
URLs in the running server; these views serve the test client, WSGI and reverse()."""
from __future__ import annotations


from asgiref.sync import sync_to_async
from django.http import HttpResponse

from viewer.tiles import asgi as tile_app


async def _answer(request, path: str):
    match = tile_app.TILE_PATH.match(path)
    user = await request.auser()

    def work():
        size = tile_app.thumb_size_of(request.GET.get("size"))
        return tile_app.tile_request(match, authorised=bool(user.is_authenticated and user.is_active),
                                     if_none_match=request.headers.get("If-None-Match"), thumb_size=size)

    status, headers, body = await sync_to_async(work, thread_sensitive=False, executor=tile_app.executor())()
    response = HttpResponse(body, status=status)
    for key, value in headers:
        response.headers[key.decode()] = value.decode()
    return response


async def slide_dzi(request, slide_id: int):
    return await _answer(request, f"/slides/{slide_id}.dzi")


async def slide_tile(request, slide_id: int, level: int, col: int, row: int):
    return await _answer(request, f"/slides/{slide_id}_files/{level}/{col}_{row}.jpeg")


async def slide_thumbnail(request, slide_id: int):
    return await _answer(request, f"/slides/{slide_id}/thumbnail.jpg")


