"""ASGI fast path for slide pixels: DZI descriptors, tiles and thumbnails.

Django runs sync views and sync middleware on one shared thread under ASGI, so a burst
of tile requests would queue behind it (and behind any slow page). These routes are
therefore answered before Django's handler: the session or token is checked and the
tile is rendered on a dedicated thread pool. Same rules as the Django views: login
required, ETag / If-None-Match, private caching.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from http.cookies import SimpleCookie
from importlib import import_module
from urllib.parse import parse_qs

from django.conf import settings
from django.db import close_old_connections

from viewer.tiles import services as tiles

logger = logging.getLogger(__name__)

TILE_PATH = re.compile(
    r"^/slides/(?P<slide>\d+)(?:(?P<dzi>\.dzi)|_files/(?P<level>\d+)/(?P<col>\d+)_(?P<row>\d+)\.jpeg"
    r"|(?P<thumb>/thumbnail\.jpg)"
    # overlay layers (viewer.overlays.services): palette PNG tiles in the slide's geometry
    r"|/overlays/(?P<layer>[a-z0-9][a-z0-9-]{0,40})(?:(?P<odzi>\.dzi)"
    r"|_files/(?P<olevel>\d+)/(?P<ocol>\d+)_(?P<orow>\d+)\.png))$"
)
HIDE_CODES = re.compile(r"\d{1,3}(?:,\d{1,3}){0,255}")
CACHE_CONTROL = "private, max-age=86400"
OVERLAY_CACHE_CONTROL = "private, no-cache"
AUTH_TTL_SECONDS = 10.0

_executor: ThreadPoolExecutor | None = None
# "s:<session key>" / "t:<token>" -> (checked at, user id or None, the user's epoch then)
_auth_cache: dict[str, tuple[float, int | None, int | None]] = {}


def executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=settings.LADDER_TILE_THREADS, thread_name_prefix="tiles")
    return _executor


class _SessionOnly:
    """The least of a request that django.contrib.auth.get_user needs."""

    def __init__(self, session):
        self.session = session


def _epoch_key(user_id: int) -> str:
    return f"tiles-auth-epoch:{user_id}"


def _epoch(user_id: int) -> int | None:
    """The user's credential epoch in the shared cache (Redis in scale-out: every web process sees a
    bump at once); None when the cache cannot say, which forces a check in the database."""
    from django.core.cache import cache

    try:
        return cache.get(_epoch_key(user_id), 0)
    except Exception:  # noqa: BLE001 - an accelerator that may fail: check the database instead
        return None


def credentials_valid(*, session_key: str | None, token: str | None) -> bool:
    """Is there a logged-in, active user behind this session cookie or API token?

    A positive answer is cached for AUTH_TTL_SECONDS, but only while the user's credential epoch is
    unchanged: logging out, a password change, deactivation or removal bump it
    (credentials_forget_user, from viewer.accounts.signals), so tile access ends at once."""
    cache_key = f"s:{session_key}" if session_key else f"t:{token}"
    if not (session_key or token):
        return False
    now = time.monotonic()
    hit = _auth_cache.get(cache_key)
    if hit and now - hit[0] < AUTH_TTL_SECONDS:
        checked_at, user_id, epoch = hit
        if user_id is None:
            return False
        if epoch is not None and _epoch(user_id) == epoch:
            return True
    user_id = None
    try:
        if session_key:
            from django.contrib.auth import get_user

            store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
            user = get_user(_SessionOnly(store))
            if user.is_authenticated and user.is_active:
                user_id = user.pk
        else:
            from rest_framework.authtoken.models import Token

            user_id = Token.objects.filter(key=token, user__is_active=True).values_list("user_id", flat=True).first()
    finally:
        close_old_connections()
    # The epoch is read after the check: a bump during the check makes the next request check again.
    epoch = _epoch(user_id) if user_id is not None else None
    if len(_auth_cache) > 10_000:
        _auth_cache.clear()
    _auth_cache[cache_key] = (now, user_id, epoch)
    return user_id is not None


def credentials_forget_user(user_id: int | None, *, session_key: str | None = None) -> None:
    """End the cached tile access of a user (and of one session) in every web process at once."""
    if session_key:
        _auth_cache.pop(f"s:{session_key}", None)
    if user_id is None:
        return
    for key, entry in list(_auth_cache.items()):
        if entry[1] == user_id:
            _auth_cache.pop(key, None)
    from django.core.cache import cache

    try:
        cache.add(_epoch_key(user_id), 0, timeout=24 * 3600)
        cache.incr(_epoch_key(user_id))
    except ValueError:
        cache.set(_epoch_key(user_id), 1, timeout=24 * 3600)
    except Exception:  # noqa: BLE001 - other processes then keep their entry for at most AUTH_TTL_SECONDS
        logger.warning("tile auth cache: could not bump the epoch of user %s", user_id, exc_info=True)


def forget_credentials() -> None:
    _auth_cache.clear()


def _answer_from_memory(match: re.Match, *, session_key: str | None, token: str | None,
                        if_none_match: str | None):
    """A slide tile answered on the event loop when nothing has to be waited for: credentials found valid
    less than AUTH_TTL_SECONDS ago (the same cache `credentials_valid` keeps) and the tile in the
    in-process tile cache (tiles.tile_response_in_memory). None otherwise: the request goes to the pool."""
    if match["level"] is None or not (session_key or token):
        return None
    hit = _auth_cache.get(f"s:{session_key}" if session_key else f"t:{token}")
    if not hit or not hit[1] or time.monotonic() - hit[0] >= AUTH_TTL_SECONDS:
        return None
    response = tiles.tile_response_in_memory(int(match["slide"]), level=int(match["level"]), col=int(match["col"]),
                                             row=int(match["row"]))
    return None if response is None else _pixel_answer(response, if_none_match)


def tile_request(match: re.Match, *, authorised: bool, if_none_match: str | None, thumb_size: int = 256,
                 hide: str | None = None):
    """Answer one matched pixel request: (status, headers, body). `hide`: the overlay tiles'
    `?hide=0,3` parameter, legend codes to leave out."""
    if not authorised:
        return 401, [(b"content-type", b"text/plain")], b"login required"
    if match["layer"]:
        from viewer.overlays import services as overlays

        if hide and not HIDE_CODES.fullmatch(hide):
            return 400, [(b"content-type", b"text/plain")], b"hide: comma-separated legend codes, e.g. hide=0,3"
        try:
            response = overlays.overlay_pixel_response(
                slide_id=int(match["slide"]), layer=match["layer"], dzi=bool(match["odzi"]),
                level=int(match["olevel"] or 0), col=int(match["ocol"] or 0), row=int(match["orow"] or 0),
                hide=tuple(int(code) for code in hide.split(",")) if hide else ())
        finally:
            close_old_connections()
        # The URLs stay when a slide is re-analysed: revalidate (ETag names the run) instead of max-age.
        return _pixel_answer(response, if_none_match, cache_control=OVERLAY_CACHE_CONTROL)
    try:
        source = tiles.tile_source_get(int(match["slide"]))
    finally:
        close_old_connections()
    if source is None:
        return 404, [(b"content-type", b"text/plain")], b"no such slide"
    if match["dzi"]:
        response = tiles.dzi_response(source)
    elif match["thumb"]:
        response = tiles.thumbnail_response(source, size=thumb_size)
    else:
        response = tiles.tile_response(source, level=int(match["level"]), col=int(match["col"]), row=int(match["row"]))
    return _pixel_answer(response, if_none_match)


def _pixel_answer(response, if_none_match: str | None, cache_control: str = CACHE_CONTROL):
    headers = [(b"content-type", response.content_type.encode())]
    if response.cacheable:
        headers += [(b"etag", response.etag.encode()), (b"cache-control", cache_control.encode()),
                    (b"vary", b"Cookie, Authorization")]
        if if_none_match and response.etag in [tag.strip() for tag in if_none_match.split(",")]:
            return 304, headers[1:], b""
    headers += [(b"x-content-type-options", b"nosniff")]
    return response.status, headers, response.body


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _credentials(scope) -> tuple[str | None, str | None]:
    session_key = token = None
    cookie_header = _header(scope, b"cookie")
    if cookie_header:
        cookie = SimpleCookie()
        try:
            cookie.load(cookie_header)
        except Exception:
            cookie = SimpleCookie()
        morsel = cookie.get(settings.SESSION_COOKIE_NAME)
        session_key = morsel.value if morsel else None
    authorization = _header(scope, b"authorization") or ""
    if authorization.lower().startswith("token "):
        token = authorization[6:].strip()
    return session_key, token


def _query_value(scope, name: str) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[0] if values else None


def thumb_size_of(size: str | None) -> int:
    """?size= of a thumbnail: 1-4 ASCII digits ('²'.isdigit() is true, int('²') fails), else 256."""
    size = size or ""
    return int(size) if size.isascii() and size.isdigit() and len(size) <= 4 else 256


def _thumb_size(scope) -> int:
    return thumb_size_of(_query_value(scope, "size"))


class TileFastPath:
    """ASGI middleware: pixel routes answered here, everything else passed to `app`."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("method") in ("GET", "HEAD"):
            match = TILE_PATH.match(scope.get("path", ""))
            if match:
                await self._serve(scope, send, match)
                return
        await self.app(scope, receive, send)

    async def _serve(self, scope, send, match):
        session_key, token = _credentials(scope)
        answer = _answer_from_memory(match, session_key=session_key, token=token,
                                     if_none_match=_header(scope, b"if-none-match"))
        if answer is not None:  # a warm tile: no thread-pool hop (about half of a hit's latency under load)
            await self._send(scope, send, *answer)
            return
        loop = asyncio.get_running_loop()

        def work():
            authorised = credentials_valid(session_key=session_key, token=token)
            return tile_request(match, authorised=authorised, if_none_match=_header(scope, b"if-none-match"),
                                thumb_size=_thumb_size(scope), hide=_query_value(scope, "hide"))

        status, headers, body = await loop.run_in_executor(executor(), work)
        await self._send(scope, send, status, headers, body)

    @staticmethod
    async def _send(scope, send, status, headers, body):
        headers = headers + [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
