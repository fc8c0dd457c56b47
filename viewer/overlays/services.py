"""Overlay layers of a slide's latest analysis run: the run lookup, the in-memory runs, PNG tiles
and region snapshots for the tumour board. (What pages and the API read, the layer list,
viewport records, cell inspector data and feature sources, is in viewer.overlays.selectors.)

Rendering is pure (analysis.core.overlay); this module finds the run, keeps a few runs in
memory per process (`RunOverlay`, an LRU behind a lock), caches tiles in the "tiles" cache
and layer summaries in the "default" cache, both through the guarded helper of
viewer.tiles.cache. Everything is synchronous and thread-safe: the ASGI fast path
(viewer.tiles.asgi) calls `overlay_pixel_response` on its tile thread pool.
docs/overlays.md describes the formats.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings

from analysis.core import overlay as ov
from analysis.core.slides.reader import TileNotFoundError
from analysis.models import AnalysisRun
from analysis.results import run_path
from cases.models import SlideStatus
from viewer.tiles.cache import cache_get, cache_set, render_version
from viewer.tiles.services import TileResponse, tile_source_get

logger = logging.getLogger(__name__)

RENDER_VERSION = render_version("overlay")  # part of every cache key and ETag (viewer.tiles.cache)
RUN_INFO_TTL_SECONDS = 5.0
DEFAULT_RUNS_IN_MEMORY = 4


class OverlayNotFound(LookupError):
    """No such slide, run, layer or cell."""


class ViewportTooLarge(ValueError):
    """More records than a viewport may carry: the client should use the PNG tiles."""


@dataclass(frozen=True)
class RunInfo:
    slide_id: int
    run_id: int
    folder: Path
    stain: str
    width: int
    height: int
    mpp_x: float | None
    mpp_y: float | None
    slide_path: Path
    approximate: bool
    segmenter: str
    # Part of `key`: caches keyed by it then never keep a run's edge-less state once its
    # folder holds edges (runs are published with their edges; this guards any later writer).
    has_edges: bool = False

    @property
    def cells_path(self) -> Path:
        return self.folder / "cells.parquet"

    @property
    def edges_path(self) -> Path:
        return self.folder / "edges.parquet"

    @property
    def key(self) -> str:
        return f"{self.run_id}:{self.folder.name}:{'e' if self.has_edges else 'n'}"


_info_cache: dict[int, tuple[float, RunInfo | None]] = {}
_runs: OrderedDict[str, ov.RunOverlay] = OrderedDict()
_runs_lock = threading.Lock()
_load_lock = threading.Lock()


def overlay_run_info(slide_id: int) -> RunInfo | None:
    """The slide's latest analysis run (cached a few seconds: no query per tile)."""
    now = time.monotonic()
    hit = _info_cache.get(slide_id)
    if hit and now - hit[0] < RUN_INFO_TTL_SECONDS:
        return hit[1]

    run = (AnalysisRun.objects.select_related("slide").filter(slide_id=slide_id, slide__status=SlideStatus.READY)
           .order_by("-created_at", "-pk").first())
    info = None
    if run is not None and (run_path(run) / "cells.parquet").exists():
        slide = run.slide
        info = RunInfo(slide_id=slide_id, run_id=run.pk, folder=run_path(run), stain=slide.stain, width=slide.width,
                       height=slide.height, mpp_x=slide.mpp_x, mpp_y=slide.mpp_y or slide.mpp_x,
                       slide_path=Path(slide.file_path), approximate=run.approximate, segmenter=run.segmenter,
                       has_edges=(run_path(run) / "edges.parquet").exists())
    if info is not None:
        _info_cache[slide_id] = (now, info)
    else:
        _info_cache.pop(slide_id, None)
    return info

def overlay_cache_forget(slide_id: int | None = None) -> None:
    """Drop the cached run lookups (one slide, or all) and the in-memory runs (all)."""
    if slide_id is None:
        _info_cache.clear()
    else:
        _info_cache.pop(slide_id, None)
    with _runs_lock:
        _runs.clear()
        _qc_cache.clear()

def run_overlay_get(info: RunInfo) -> ov.RunOverlay:
    """The run's cells and edges in memory (loaded once per process, LRU of a few runs)."""
    with _runs_lock:
        hit = _runs.get(info.key)
        if hit is not None:
            _runs.move_to_end(info.key)
            return hit
    with _load_lock:  # one load at a time: two requests for a cold run do not both load it
        with _runs_lock:
            hit = _runs.get(info.key)
            if hit is not None:
                return hit
        from analysis.core.cells.table import table_metadata

        started = time.perf_counter()
        cells, edges = _read_run(info)
        data = ov.run_overlay_build(cells=cells, edges=edges, stain=info.stain, width=info.width, height=info.height)
        ov.run_overlay_rasters(data)
        table_metadata(path=info.cells_path)  # parse the Parquet footer index now, not on the first contour tile
        logger.info("overlay: run %s loaded (%d cells, %d edges, %.1f MB) in %.2f s", info.run_id, len(data.x),
                    len(data.ex1), data.nbytes / 1e6, time.perf_counter() - started)
        with _runs_lock:
            _runs[info.key] = data
            capacity = int(getattr(settings, "LADDER_OVERLAY_RUNS", DEFAULT_RUNS_IN_MEMORY))
            while len(_runs) > max(capacity, 1):
                _runs.popitem(last=False)
        return data

def _read_run(info: RunInfo, *, edges: bool = True):
    """(cells, edges or None) frames of a run; string columns as categoricals (Parquet dictionaries)."""
    import pyarrow.parquet as pq

    from analysis.core.cells.table import table_metadata

    table_metadata(path=info.cells_path)  # checks that it is a cell table
    cells = pq.read_table(info.cells_path, columns=["id", "x", "y", "cls", "her2_class", "area"],
                          read_dictionary=["cls", "her2_class"]).to_pandas()
    edge_frame = None
    if edges and info.has_edges:
        edge_frame = pq.read_table(info.edges_path, columns=["source", "target", "pair_type"],
                                   read_dictionary=["pair_type"]).to_pandas()
    return cells, edge_frame

def overlay_layer_summary(info: RunInfo) -> dict:
    key = f"overlay-summary:{RENDER_VERSION}:{info.key}"
    summary = cache_get(key, alias="default")
    if summary is None:
        with _runs_lock:
            loaded = _runs.get(info.key)
        if loaded is not None:
            summary = ov.layer_summary_of(loaded)
        else:
            import pyarrow.parquet as pq

            cells, _ = _read_run(info, edges=False)
            labels = (pq.read_table(info.edges_path, columns=["pair_type"], read_dictionary=["pair_type"])
                      .to_pandas()["pair_type"] if info.has_edges else None)
            summary = ov.layer_summary(cells=cells, pair_labels=labels, stain=info.stain, width=info.width,
                                       height=info.height)
        cache_set(key, summary, alias="default", timeout=None)
    return summary

_qc_cache: OrderedDict[str, dict] = OrderedDict()


def overlay_qc_data(info: RunInfo) -> dict | None:
    """The run's QC raster, its downsample and the analysed tiles (analysis.core.slides.qc), or None
    without a tissue mask. Runs from before qc.png: tissue / glass from tissue.png, tiles recomputed."""
    import json

    from PIL import Image

    from analysis.core.slides import qc as qc_mod

    hit = _qc_cache.get(info.key)
    if hit is not None:
        return hit
    summary_path, tissue_path, qc_path = (info.folder / n for n in ("summary.json", "tissue.png", "qc.png"))
    if not (summary_path.is_file() and tissue_path.is_file()):
        return None
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    downsample = float(summary["tissue"]["downsample"])
    tiles = (summary.get("qc") or {}).get("tiles")
    if qc_path.is_file():
        raster = np.asarray(Image.open(qc_path)).astype(np.uint8)
    else:
        raster = qc_mod.qc_from_tissue_png(np.asarray(Image.open(tissue_path)))
    if tiles is None:
        from analysis.core.slides.tissue import TissueMask, tissue_tiles

        mask = TissueMask(mask=raster == qc_mod.TISSUE, downsample=downsample, threshold_od=0.0, tissue_fraction=0.0)
        tiles = tissue_tiles(tissue=mask, slide_width=info.width, slide_height=info.height,
                             tile_px=int(summary["tile_px"]))
    data = {"qc": raster, "downsample": downsample, "tiles": np.asarray(tiles, dtype=np.int64).reshape(-1, 4),
            "pen_fraction": float((raster == qc_mod.PEN).mean()), "small_fraction": float((raster == qc_mod.SMALL).mean()),
            "tissue_fraction": float((raster == qc_mod.TISSUE).mean()), "recorded": qc_path.is_file(),
            "cells_on_pen": (summary.get("qc") or {}).get("cells_on_pen")}
    with _runs_lock:
        _qc_cache[info.key] = data
        while len(_qc_cache) > 8:
            _qc_cache.popitem(last=False)
    return data


def _qc_codes(info: RunInfo, *, x0, y0, out_w, out_h, scale) -> np.ndarray:
    data = overlay_qc_data(info)
    return ov.render_qc_codes(qc=data["qc"], downsample=data["downsample"], tiles=data["tiles"], x0=x0, y0=y0,
                              out_w=out_w, out_h=out_h, scale=scale, slide_w=info.width, slide_h=info.height)


def _layer_names(info: RunInfo) -> set[str]:
    summary = overlay_layer_summary(info)
    names = {"cells"}
    if (info.folder / "tissue.png").is_file():
        names.add("qc")
    if info.stain == "ihc":
        names.add("her2")
    if summary["pairs"] is not None:
        names.add("edges")
    names |= {f"density-{c}" for c, n in summary["class_counts"].items() if n > 0}
    return names

def overlay_layer_run_info(slide_id: int, layer: str) -> RunInfo:
    info = overlay_run_info(slide_id)
    if info is None or layer not in _layer_names(info):
        raise OverlayNotFound(f"slide {slide_id} has no overlay layer {layer!r}")
    return info

def _contour_source(info: RunInfo, kind: str):
    from analysis.core.cells.table import cells_in_rect

    def source(x0, y0, x1, y1):
        cells = cells_in_rect(path=info.cells_path, x0=x0, y0=y0, x1=x1, y1=y1,
                              columns=["x", "y", "contour", "cls", "her2_class"])
        if kind == "her2":
            codes = ov.graded_her2_codes(cells["cls"].to_numpy(), cells["her2_class"].to_numpy())
        else:
            codes = ov.class_codes(cells["cls"].to_numpy())
        return list(cells["contour"]), codes

    return source

def overlay_pixel_response(*, slide_id: int, layer: str, dzi: bool, level: int = 0, col: int = 0, row: int = 0,
                           hide: tuple[int, ...] = ()):
    """A DZI descriptor or palette PNG tile of an overlay layer, as a viewer.tiles.services.TileResponse.

    `hide`: legend codes (classes, HER2 classes, pair types) left out of the tile, as the
    pathologist unticks them in the layer's legend; the tile is cached once, unfiltered.
    """

    source = tile_source_get(slide_id)
    try:
        info = overlay_layer_run_info(slide_id, layer) if source is not None else None
    except (OverlayNotFound, OSError, ValueError):
        info = None
    if info is None:
        return TileResponse(404, b"no such overlay", "text/plain")
    hide = tuple(sorted(set(hide))) if ov.hideable_codes(layer) else ()
    etag_base = f"ov{info.run_id}-{RENDER_VERSION}-{layer}" + (f"-h{'.'.join(map(str, hide))}" if hide else "")
    if dzi:
        return TileResponse(200, source.geometry.dzi_xml(fmt="png").encode(), "application/xml", f'"{etag_base}-dzi"')
    geometry = source.geometry
    try:
        (x0, y0, w0, h0), (tile_w, tile_h) = geometry.tile_region(level, col, row)
    except TileNotFoundError as exc:
        return TileResponse(404, str(exc).encode(), "text/plain")
    key = f"ov:{info.key}:{RENDER_VERSION}:{layer}:{level}:{col}:{row}"
    body = cache_get(key)
    if body is None:
        try:
            body = overlay_tile_png(info, layer, x0=x0, y0=y0, w0=w0, h0=h0, out_w=tile_w, out_h=tile_h,
                                    scale=1.0 / geometry.level_scale(level))
        except (OSError, ValueError) as exc:  # run files gone or unreadable (CellTableError is a ValueError)
            logger.warning("overlay: tile of run %s failed: %s", info.run_id, exc)
            return TileResponse(503, f"overlay unreadable: {exc}".encode(), "text/plain")
        cache_set(key, body)
    if hide:
        body = ov.png_palette_hide(body, ov.palette_indices_of_codes(layer, hide))
    return TileResponse(200, body, "image/png", f'"{etag_base}-{level}-{col}-{row}"')

def overlay_tile_png(info: RunInfo, layer: str, *, x0, y0, w0, h0, out_w, out_h, scale=None) -> bytes:
    if layer == "qc":
        rgb, alpha = ov.qc_palette()
        return ov.palette_png(_qc_codes(info, x0=x0, y0=y0, out_w=out_w, out_h=out_h,
                                        scale=scale or min(out_w / w0, out_h / h0)), rgb, alpha)
    data = run_overlay_get(info)
    kind = ov.layer_kind(layer)
    body, _ = ov.render_tile_png(data, layer, x0=x0, y0=y0, w0=w0, h0=h0, out_w=out_w, out_h=out_h, scale=scale,
                                 contour_source=_contour_source(info, kind) if kind in ("cells", "her2") else None)
    return body

def _legend_codes(info: RunInfo, layer: str, keys) -> list[int]:
    """Legend codes of the legend keys (class, HER2 class or pair type names) of a layer; unknown keys are skipped."""
    kind = ov.layer_kind(layer)
    if kind == "cells":
        order = [c.value for c in ov.CLASS_ORDER]
    elif kind == "her2":
        order = [h.value for h in ov.HER2_ORDER]
    elif kind == "edges":
        order = overlay_layer_summary(info)["pairs"] or []
    else:
        return []
    return [order.index(key) for key in keys if key in order]

def overlay_render_region(slide, layer_names, x, y, width, height, out_width, out_height, hidden=None):
    """The named layers over a level-0 region, composited in order, as an RGBA PIL image of
    (out_width, out_height); None when the slide has no run or none of the layers (tumour-board snapshots).
    `hidden`: legend keys left out per layer, e.g. {"cells": ["stroma"]}."""
    from PIL import Image

    info = overlay_run_info(slide.pk)
    if info is None or width <= 0 or height <= 0:
        return None
    available = _layer_names(info)
    names = [n for n in layer_names if n in available]
    if not names:
        return None
    data = run_overlay_get(info)
    out = np.zeros((int(out_height), int(out_width), 4), dtype=np.float32)
    for name in names:
        kind = ov.layer_kind(name)
        if kind == "qc":
            rgb, alpha = ov.qc_palette()
            codes = _qc_codes(info, x0=float(x), y0=float(y), out_w=int(out_width), out_h=int(out_height),
                              scale=min(out_width / width, out_height / height))
            rgba = ov.codes_to_rgba(codes, rgb, alpha).astype(np.float32) / 255.0
            a = rgba[..., 3:4]
            out[..., :3] = rgba[..., :3] * a + out[..., :3] * (1 - a)
            out[..., 3:4] = a + out[..., 3:4] * (1 - a)
            continue
        codes = ov.render_tile_codes(data, name, x0=float(x), y0=float(y), w0=float(width), h0=float(height),
                                     out_w=int(out_width), out_h=int(out_height),
                                     contour_source=_contour_source(info, kind) if kind in ("cells", "her2") else None)
        rgb, alpha = ov.layer_palette(data, name)
        for index in ov.palette_indices_of_codes(name, _legend_codes(info, name, (hidden or {}).get(name, ()))):
            alpha[index] = 0
        rgba = ov.codes_to_rgba(codes, rgb, alpha).astype(np.float32) / 255.0
        a = rgba[..., 3:4]
        out[..., :3] = rgba[..., :3] * a + out[..., :3] * (1 - a)  # premultiplied "over"
        out[..., 3:4] = a + out[..., 3:4] * (1 - a)
    alpha_out = out[..., 3:4]
    out[..., :3] = np.where(alpha_out > 0, out[..., :3] / np.maximum(alpha_out, 1e-6), 0)  # straight alpha
    return Image.fromarray(np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8), mode="RGBA")
