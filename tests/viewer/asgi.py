"""Drive the ASGI pixel fast path directly, as the server does (one request, no network)."""
from __future__ import annotations

import asyncio

from viewer.tiles.asgi import TileFastPath


def asgi_get(path: str, headers: list[tuple[bytes, bytes]], query: bytes = b""):
    """GET `path` through TileFastPath; anything it passes on answers 599 'django'. -> (status, headers, body)."""
    scope = {"type": "http", "method": "GET", "path": path, "query_string": query, "headers": headers}
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    async def fallback(scope, receive, send):
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b"django"})

    asyncio.run(TileFastPath(fallback)(scope, receive, send))
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]
