"""Minimal Flask deep-zoom server: the comparison baseline of benchmarks/tiles.py.

Built the way openslide-python's examples/deepzoom (deepzoom_server.py and
deepzoom_multiserver.py, LGPL-2.1, Carnegie Mellon University / Benjamin Gilbert) serve
slides, written anew here: an LRU of open OpenSlide handles each wrapped in a
DeepZoomGenerator behind a lock, tiles from ``DeepZoomGenerator.get_tile`` encoded to
JPEG by PIL, Flask's threaded development server. No tile cache, no authentication.

Configured like the product so that both serve the same pyramid: tile size 256,
overlap 0, limit_bounds False, JPEG quality = LADDER_JPEG_QUALITY (default 80).
Werkzeug's per-request access log is switched off (Daphne's is off too in the product).

Routes (slide paths relative to --slide-dir):
    /<path>.dzi
    /<path>_files/<level>/<col>_<row>.jpeg

Run: .venv/bin/python benchmarks/flask_deepzoom_server.py --slide-dir /tmp --port 5000
"""
from __future__ import annotations

import argparse
import logging
import os
from collections import OrderedDict
from io import BytesIO
from pathlib import Path
from threading import Lock

import openslide
from flask import Flask, abort, make_response
from openslide.deepzoom import DeepZoomGenerator


class SlideCache:
    """LRU of DeepZoomGenerators over open slides, like the example's _SlideCache."""

    def __init__(self, *, capacity: int, tile_size: int, overlap: int, limit_bounds: bool):
        self.capacity = capacity
        self.options = {"tile_size": tile_size, "overlap": overlap, "limit_bounds": limit_bounds}
        self._lock = Lock()
        self._cache: OrderedDict[str, DeepZoomGenerator] = OrderedDict()

    def get(self, path: str) -> DeepZoomGenerator:
        with self._lock:
            if path in self._cache:
                generator = self._cache.pop(path)
                self._cache[path] = generator
                return generator
        generator = DeepZoomGenerator(openslide.OpenSlide(path), **self.options)
        with self._lock:
            if path not in self._cache:
                if len(self._cache) == self.capacity:
                    self._cache.popitem(last=False)
                self._cache[path] = generator
        return generator


def create_app(*, slide_dir: Path, tile_size: int, overlap: int, quality: int, limit_bounds: bool) -> Flask:
    app = Flask(__name__)
    slide_dir = slide_dir.resolve()
    cache = SlideCache(capacity=10, tile_size=tile_size, overlap=overlap, limit_bounds=limit_bounds)

    def generator_for(path: str) -> DeepZoomGenerator:
        full = (slide_dir / path).resolve()
        if slide_dir not in full.parents or not full.is_file():
            abort(404)
        try:
            return cache.get(str(full))
        except openslide.OpenSlideError:
            abort(404)

    @app.route("/<path:path>.dzi")
    def dzi(path: str):
        response = make_response(generator_for(path).get_dzi("jpeg"))
        response.mimetype = "application/xml"
        return response

    @app.route("/<path:path>_files/<int:level>/<int:col>_<int:row>.<fmt>")
    def tile(path: str, level: int, col: int, row: int, fmt: str):
        if fmt.lower() not in ("jpeg", "jpg"):
            abort(404)
        generator = generator_for(path)
        try:
            image = generator.get_tile(level, (col, row))
        except ValueError:  # DeepZoomGenerator's answer to a level or address out of range
            abort(404)
        buffer = BytesIO()
        image.save(buffer, "jpeg", quality=quality)
        response = make_response(buffer.getvalue())
        response.mimetype = "image/jpeg"
        return response

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slide-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=0)
    parser.add_argument("--quality", type=int, default=int(os.environ.get("LADDER_JPEG_QUALITY", "80")))
    parser.add_argument("--limit-bounds", action="store_true")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app(slide_dir=args.slide_dir, tile_size=args.tile_size, overlap=args.overlap,
                     quality=args.quality, limit_bounds=args.limit_bounds)
    app.run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
