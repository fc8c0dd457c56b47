"""One guarded cache helper and one render version per kind, for slide tiles and overlays alike."""
from __future__ import annotations

import ast
from pathlib import Path

from viewer.tiles import cache

ROOT = Path(__file__).resolve().parents[3]


class _Down:
    """A cache whose server is gone (Redis restarting)."""

    def get(self, *args, **kwargs):
        raise ConnectionError("down")

    def set(self, *args, **kwargs):
        raise ConnectionError("down")


def test_a_cache_outage_is_a_miss_not_an_error(monkeypatch, caplog):
    monkeypatch.setattr(cache, "caches", {"tiles": _Down(), "default": _Down()})
    assert cache.cache_get("k") is None
    assert cache.cache_get("k", alias="default") is None
    cache.cache_set("k", b"v")
    cache.cache_set("k", {"a": 1}, alias="default", timeout=None)
    assert "cache unavailable" in caplog.text


def test_values_round_trip(settings):
    cache.cache_set("test-cache-helper", b"v")
    assert cache.cache_get("test-cache-helper") == b"v"


def test_render_versions_are_the_only_ones():
    from viewer.overlays import services as overlays
    from viewer.tiles import services as tiles

    assert tiles.RENDER_VERSION == cache.render_version("slide")
    assert overlays.RENDER_VERSION == cache.render_version("overlay")


def test_no_unguarded_cache_access_in_tiles_or_overlays():
    """Every cache read and write of tiles and overlays goes through viewer.tiles.cache."""
    for path in [*(ROOT / "viewer" / "tiles").glob("*.py"), *(ROOT / "viewer" / "overlays").glob("*.py")]:
        if path.name == "cache.py":
            continue
        names = {n.id for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Name)}
        assert "caches" not in names, f"{path} uses django caches directly"
