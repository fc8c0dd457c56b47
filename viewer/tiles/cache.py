"""The cache of everything drawn: one guarded helper and one render version per kind.

The caches are accelerators, never the source of truth: when one is down (Redis restarting),
`cache_get` answers a miss and `cache_set` drops the value, and the caller renders instead of
failing. Slide tiles, thumbnails, overlay tiles, overlay layer summaries and cell-inspector data
all go through here.

`RENDER_VERSIONS`: bump a kind's version when its rendering changes; it is part of every cache
key and ETag of that kind, so stale tiles are neither served from the cache nor kept by browsers.
"""
from __future__ import annotations

import logging

from django.core.cache import caches

logger = logging.getLogger(__name__)

RENDER_VERSIONS = {
    "slide": "3",    # slide tiles, thumbnails and DZI descriptors (viewer.tiles); 3: SVS grid = stored tiles
    "overlay": "3",  # overlay tiles, layer summaries and cell details (viewer.overlays); 3: HER2 on tumour only, density ramp per class
}

_MISSING = object()


def render_version(kind: str) -> str:
    return RENDER_VERSIONS[kind]


def cache_get(key: str, *, alias: str = "tiles"):
    """The cached value, or None when absent or when the cache is unavailable."""
    try:
        return caches[alias].get(key)
    except Exception as exc:  # redis.ConnectionError and friends
        logger.warning("%s cache unavailable (%s); rendering without it", alias, exc.__class__.__name__)
        return None


def cache_set(key: str, value, *, alias: str = "tiles", timeout=_MISSING) -> None:
    """Store a value; a cache failure is logged and otherwise ignored."""
    try:
        if timeout is _MISSING:
            caches[alias].set(key, value)
        else:
            caches[alias].set(key, value, timeout=timeout)
    except Exception as exc:
        logger.warning("%s cache unavailable (%s); value not cached", alias, exc.__class__.__name__)


def cache_is_local(*, alias: str = "tiles") -> bool:
    """Is this cache in the process's own memory (LocMem, the embedded default)? Only then may it be read
    on the event loop: a Redis round trip would block every other request of the process."""
    from django.core.cache.backends.locmem import LocMemCache

    return isinstance(caches[alias], LocMemCache)
