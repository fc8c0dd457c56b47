"""Deep-zoom descriptors, tiles and thumbnails of slides, cached.

Everything here is synchronous and thread-safe; the ASGI fast path (viewer.tiles.asgi) runs
it on a dedicated thread pool so that tiles never queue behind Django's single thread for
sync code. Only the pyramid is read: associated images (label, macro) are never touched.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from analysis.core.slides.reader import (
    DeepZoomGeometry,
    SlideError,
    SlideReaderCache,
    TileNotFoundError,
    encode_jpeg,
    render_tile_jpeg,
)
from viewer.tiles.cache import cache_get, cache_is_local, cache_set, render_version
from cases.models import Slide, SlideStatus

TILE_SIZE = 256  # deep-zoom tile side of slides without raw JPEG tiles (JPEG 2000, NDPI, ...) and of overlays
TILE_OVERLAP = 0
THUMBNAIL_SIZES = (128, 256, 512, 1024)
RENDER_VERSION = render_version("slide")  # part of every cache key and ETag (viewer.tiles.cache)
INFO_TTL_SECONDS = 5.0


@dataclass(frozen=True)
class TileSource:
    slide_id: int
    path: Path
    checksum: str
    width: int
    height: int
    tile_size: int = TILE_SIZE  # of the slide's own tiles: the file's JPEG tile side when it has one

    @property
    def geometry(self) -> DeepZoomGeometry:
        """The 256-px grid overlays are drawn in (viewer.overlays)."""
        return DeepZoomGeometry(width=self.width, height=self.height, tile_size=TILE_SIZE, overlap=TILE_OVERLAP)

    @property
    def slide_geometry(self) -> DeepZoomGeometry:
        """The slide's deep-zoom grid: the file's stored tile size (240 px for most Aperio SVS), so that
        stored JPEG tiles line up with deep-zoom tiles and are passed through (reader.render_tile_jpeg)."""
        return DeepZoomGeometry(width=self.width, height=self.height, tile_size=self.tile_size, overlap=TILE_OVERLAP)


@dataclass(frozen=True)
class TileResponse:
    status: int
    body: bytes
    content_type: str
    etag: str = ""

    @property
    def cacheable(self) -> bool:
        return self.status == 200 and bool(self.etag)


logger = logging.getLogger(__name__)

_readers: SlideReaderCache | None = None
_readers_lock = threading.Lock()
_info_cache: dict[int, tuple[float, TileSource | None]] = {}


def slide_readers() -> SlideReaderCache:
    global _readers
    with _readers_lock:
        if _readers is None:
            _readers = SlideReaderCache(capacity=settings.LADDER_OPEN_SLIDES)
        return _readers


def tile_source_get(slide_id: int) -> TileSource | None:
    """The ready slide's file and size, cached for a few seconds (no query per tile)."""
    now = time.monotonic()
    hit = _info_cache.get(slide_id)
    if hit and now - hit[0] < INFO_TTL_SECONDS:
        return hit[1]

    row = (
        Slide.objects.filter(pk=slide_id, status=SlideStatus.READY)
        .values("file_path", "checksum", "width", "height")
        .first()
    )
    source = (
        TileSource(slide_id=slide_id, path=Path(row["file_path"]), checksum=row["checksum"],
                   width=row["width"], height=row["height"], tile_size=_stored_tile_size(Path(row["file_path"])))
        if row else None
    )
    if source is not None:  # a miss is not remembered: a slide imported a moment later is served at once
        _info_cache[slide_id] = (now, source)
    return source


def _stored_tile_size(path: Path) -> int:
    """The deep-zoom tile side for this slide file: its stored JPEG tile side if it has one in a sane range."""
    try:
        stored = slide_readers().get(path).stored_tile_size
    except (SlideError, OSError):
        return TILE_SIZE  # unreadable: its tiles answer 503 anyway
    return stored if stored is not None and 128 <= stored <= 1024 else TILE_SIZE


def tile_source_forget(slide_id: int | None = None) -> None:
    """Drop cached slide info (one slide, or all with None)."""
    if slide_id is None:
        _info_cache.clear()
    else:
        _info_cache.pop(slide_id, None)


def _etag(source: TileSource, *parts) -> str:
    return '"' + "-".join([source.checksum[:20], RENDER_VERSION, *map(str, parts)]) + '"'


def dzi_response(source: TileSource) -> TileResponse:
    body = source.slide_geometry.dzi_xml(fmt="jpeg").encode()
    return TileResponse(200, body, "application/xml", _etag(source, "dzi", source.tile_size, TILE_OVERLAP))


def _tile_key_and_etag(source: TileSource, level: int, col: int, row: int, quality: int) -> tuple[str, str]:
    # The tile size is part of the address: a tile of a 240-px grid is not the same tile of a 256-px grid.
    return (f"t:{source.checksum}:{RENDER_VERSION}:{source.tile_size}:{level}:{col}:{row}:{quality}",
            _etag(source, level, col, row, quality, source.tile_size))


def tile_response(source: TileSource, *, level: int, col: int, row: int) -> TileResponse:
    quality = settings.LADDER_JPEG_QUALITY
    key, etag = _tile_key_and_etag(source, level, col, row, quality)
    body = cache_get(key)
    if body is None:
        try:
            reader = slide_readers().get(source.path)
            body = render_tile_jpeg(reader, source.slide_geometry, level=level, col=col, row=row, quality=quality)
        except TileNotFoundError as exc:
            return TileResponse(404, str(exc).encode(), "text/plain")
        except (SlideError, OSError) as exc:
            return TileResponse(503, f"slide unreadable: {exc}".encode(), "text/plain")
        cache_set(key, body)
    return TileResponse(200, body, "image/jpeg", etag)


def tile_response_in_memory(slide_id: int, *, level: int, col: int, row: int) -> TileResponse | None:
    """The tile's response if everything it needs is already in this process's memory (the slide's info
    cached, the tile in a local-memory tile cache), else None. Never touches the database, the slide file or
    a networked cache, so the ASGI fast path may call it on the event loop (viewer.tiles.asgi)."""
    if not cache_is_local():
        return None
    hit = _info_cache.get(slide_id)
    if not hit or hit[1] is None or time.monotonic() - hit[0] >= INFO_TTL_SECONDS:
        return None
    key, etag = _tile_key_and_etag(hit[1], level, col, row, settings.LADDER_JPEG_QUALITY)
    body = cache_get(key)
    return None if body is None else TileResponse(200, body, "image/jpeg", etag)


def thumbnail_response(source: TileSource, *, size: int) -> TileResponse:
    size = min((s for s in THUMBNAIL_SIZES if s >= size), default=THUMBNAIL_SIZES[-1])
    key = f"thumb:{source.checksum}:{RENDER_VERSION}:{size}"
    body = cache_get(key)
    if body is None:
        try:
            image = slide_readers().get(source.path).thumbnail_image(size)
        except (SlideError, OSError) as exc:
            return TileResponse(503, f"slide unreadable: {exc}".encode(), "text/plain")
        body = encode_jpeg(image, quality=85)
        cache_set(key, body)
    return TileResponse(200, body, "image/jpeg", _etag(source, "thumb", size))
