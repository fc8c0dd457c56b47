"""Overlay layers of a slide's latest analysis run: layer list, PNG tiles, viewport records,
cell inspector data, feature sources, and region snapshots for the tumour board.

Rendering is pure (analysis.core.overlay); this module finds the run, keeps a few runs in
memory per process (`RunOverlay`, an LRU behind a lock), caches tiles in caches["tiles"]
and small derived data (layer summaries, cell details) in caches["default"]. Everything is
synchronous and thread-safe: the ASGI fast path (viewer.tile_app) calls
`overlay_pixel_response` on its tile thread pool. docs/overlays.md describes the formats.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.cache import caches

from analysis.core import overlay as ov
from analysis.core.classes import CLASS_COLOURS, HER2_COLOURS

logger = logging.getLogger(__name__)

RENDER_VERSION = "1"  # bump when rendering changes: cached tiles and ETags are dropped
RUN_INFO_TTL_SECONDS = 5.0
DEFAULT_MAX_RECORDS = 500_000
DEFAULT_RUNS_IN_MEMORY = 4
LAYER_LABELS = {"cells": "Cell classes", "her2": "HER2 membrane", "edges": "Graph edges"}


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


# --------------------------------------------------------------------------- selectors


def overlay_run_info(slide_id: int) -> RunInfo | None:
    """The slide's latest analysis run (cached a few seconds: no query per tile)."""
    now = time.monotonic()
    hit = _info_cache.get(slide_id)
    if hit and now - hit[0] < RUN_INFO_TTL_SECONDS:
        return hit[1]
    from analysis.models import AnalysisRun
    from analysis.results import run_path
    from cases.models import SlideStatus

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
        from analysis.core.cells import table_metadata

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

    from analysis.core.cells import table_metadata

    table_metadata(path=info.cells_path)  # checks that it is a cell table
    cells = pq.read_table(info.cells_path, columns=["id", "x", "y", "cls", "her2_class", "area"],
                          read_dictionary=["cls", "her2_class"]).to_pandas()
    edge_frame = None
    if edges and info.has_edges:
        edge_frame = pq.read_table(info.edges_path, columns=["source", "target", "pair_type"],
                                   read_dictionary=["pair_type"]).to_pandas()
    return cells, edge_frame


def _layer_summary(info: RunInfo) -> dict:
    cache = caches["default"]
    key = f"overlay-summary:{RENDER_VERSION}:{info.key}"
    summary = cache.get(key)
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
        cache.set(key, summary, timeout=None)
    return summary


def _title(value: str) -> str:
    return value.replace("_", " ").capitalize()


def _density_legend(vmax: float, mpp_x: float | None, mpp_y: float | None) -> list[dict]:
    palette = ov.cividis(255)
    legend = []
    for i, frac in enumerate((0.0, 0.25, 0.5, 0.75, 1.0)):
        code = 1 + int(round(frac * 254))
        value = frac * vmax
        if mpp_x:
            label = f"{value * 1e6 / (mpp_x * (mpp_y or mpp_x)):,.0f} cells/mm²"
        else:
            label = f"{value * 1e4:.2f} cells/100² px"
        legend.append({"key": f"q{i}", "label": ("≥ " if frac == 1.0 else "") + label,
                       "color": "#%02X%02X%02X" % palette[code - 1], "code": code, "count": None})
    return legend


_warm_started = False


def _warm_inspector_imports() -> None:
    """Import the cell inspector's science modules (igraph, skimage: ~5-10 s) in the background,
    once per process, as soon as a slide with overlays is listed: the first click on a cell
    then does not pay for them."""
    global _warm_started
    if _warm_started:
        return
    _warm_started = True

    def work():
        import analysis.core.cell_features  # noqa: F401
        import analysis.core.slide_features  # noqa: F401

    threading.Thread(target=work, name="overlay-warm-imports", daemon=True).start()


def slide_overlay_layers(slide) -> list[dict]:
    """Overlay layers of the slide's latest run ([] without one): see docs/overlays.md."""
    info = overlay_run_info(slide.pk)
    if info is None:
        return []
    _warm_inspector_imports()
    try:
        summary = _layer_summary(info)
    except Exception:  # an unreadable run must not break the slide API
        logger.exception("overlay: run %s unreadable", info.run_id)
        return []
    common = {"run": info.run_id, "approximate": info.approximate, "segmenter": info.segmenter}

    def layer(name: str, kind: str, label: str, legend: list[dict], records: int | None) -> dict:
        entry = {"name": name, "label": label, "kind": kind, "legend": legend,
                 "dzi_url": f"/slides/{slide.pk}/overlays/{name}.dzi"}
        if records:
            entry["viewport_url"] = f"/api/slides/{slide.pk}/overlays/{name}/viewport"
            entry["record_bytes"] = records
        if kind in ("cells", "her2"):
            entry["id_is_row"] = summary["id_is_row"]
        return {**entry, **common}

    class_counts = summary["class_counts"]
    layers = [layer("cells", "cells", LAYER_LABELS["cells"], [
        {"key": c.value, "label": _title(c.value), "color": CLASS_COLOURS[c], "code": i,
         "count": class_counts.get(c.value, 0)} for i, c in enumerate(ov.CLASS_ORDER)], 12)]
    if info.stain == "ihc":
        her2_counts = summary["her2_counts"]
        layers.append(layer("her2", "her2", LAYER_LABELS["her2"], [
            {"key": h.value, "label": _title(h.value), "color": HER2_COLOURS[h], "code": i,
             "count": her2_counts.get(h.value, 0)} for i, h in enumerate(ov.HER2_ORDER)], 12))
    if summary["pairs"] is not None:
        layers.append(layer("edges", "edges", LAYER_LABELS["edges"], [
            {"key": p, "label": ov.pair_label(p), "color": ov.pair_colour(p, i), "code": i,
             "count": summary["pair_counts"].get(p, 0)} for i, p in enumerate(summary["pairs"])], 20))
    for c in ov.CLASS_ORDER:
        if class_counts.get(c.value, 0) > 0:
            layers.append(layer(f"density-{c.value}", "density", f"{_title(c.value)} density",
                                _density_legend(summary["density_vmax"].get(c.value, 1.0), info.mpp_x, info.mpp_y),
                                None))
    return layers


def _layer_names(info: RunInfo) -> set[str]:
    summary = _layer_summary(info)
    names = {"cells"}
    if info.stain == "ihc":
        names.add("her2")
    if summary["pairs"] is not None:
        names.add("edges")
    names |= {f"density-{c}" for c, n in summary["class_counts"].items() if n > 0}
    return names


def _info_for_layer(slide_id: int, layer: str) -> RunInfo:
    info = overlay_run_info(slide_id)
    if info is None or layer not in _layer_names(info):
        raise OverlayNotFound(f"slide {slide_id} has no overlay layer {layer!r}")
    return info


# --------------------------------------------------------------------------- pixels


def _contour_source(info: RunInfo, kind: str):
    from analysis.core.cells import cells_in_rect

    def source(x0, y0, x1, y1):
        cells = cells_in_rect(path=info.cells_path, x0=x0, y0=y0, x1=x1, y1=y1,
                              columns=["x", "y", "contour", "cls", "her2_class"])
        if kind == "her2":
            codes = ov.her2_codes(cells["her2_class"].to_numpy())
        else:
            codes = ov.class_codes(cells["cls"].to_numpy())
        return list(cells["contour"]), codes

    return source


def overlay_pixel_response(*, slide_id: int, layer: str, dzi: bool, level: int = 0, col: int = 0, row: int = 0,
                           hide: tuple[int, ...] = ()):
    """A DZI descriptor or palette PNG tile of an overlay layer, as a viewer.services.tiles.TileResponse.

    `hide`: legend codes (classes, HER2 classes, pair types) left out of the tile, as the
    pathologist unticks them in the layer's legend; the tile is cached once, unfiltered.
    """
    from analysis.core.slides import TileNotFoundError
    from viewer.services.tiles import TileResponse, tile_source_get

    source = tile_source_get(slide_id)
    try:
        info = _info_for_layer(slide_id, layer) if source is not None else None
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
    cache = caches["tiles"]
    key = f"ov:{info.key}:{RENDER_VERSION}:{layer}:{level}:{col}:{row}"
    body = cache.get(key)
    if body is None:
        try:
            body = overlay_tile_png(info, layer, x0=x0, y0=y0, w0=w0, h0=h0, out_w=tile_w, out_h=tile_h,
                                    scale=1.0 / geometry.level_scale(level))
        except (OSError, ValueError) as exc:  # run files gone or unreadable (CellTableError is a ValueError)
            logger.warning("overlay: tile of run %s failed: %s", info.run_id, exc)
            return TileResponse(503, f"overlay unreadable: {exc}".encode(), "text/plain")
        cache.set(key, body)
    if hide:
        body = ov.png_palette_hide(body, ov.palette_indices_of_codes(layer, hide))
    return TileResponse(200, body, "image/png", f'"{etag_base}-{level}-{col}-{row}"')


def overlay_tile_png(info: RunInfo, layer: str, *, x0, y0, w0, h0, out_w, out_h, scale=None) -> bytes:
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
        order = _layer_summary(info)["pairs"] or []
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


# --------------------------------------------------------------------------- viewport records


def overlay_max_records() -> int:
    return int(getattr(settings, "LADDER_OVERLAY_MAX_RECORDS", DEFAULT_MAX_RECORDS))


def overlay_viewport(*, slide_id: int, layer: str, x: float, y: float, width: float, height: float) -> tuple[bytes, int]:
    """Binary records of a layer's cells or edges in a level-0 rectangle: (body, count)."""
    info = _info_for_layer(slide_id, layer)
    kind = ov.layer_kind(layer)
    if kind == "density":
        raise OverlayNotFound(f"layer {layer!r} has no viewport records (PNG tiles only)")
    data = run_overlay_get(info)
    answer = ov.viewport_records(data, kind, x0=x, y0=y, x1=x + width, y1=y + height, limit=overlay_max_records())
    if answer is None:
        raise ViewportTooLarge("zoom in")
    return answer


# --------------------------------------------------------------------------- cell inspector


def _finite(value):
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _cell_row(info: RunInfo, row: int) -> dict:
    import pyarrow.parquet as pq

    from analysis.core.cells import arrow_to_cells

    pf = pq.ParquetFile(info.cells_path)
    start = 0
    for group in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(group).num_rows
        if row < start + n:
            table = pf.read_row_group(group, columns=["id", "x", "y", "contour", "cls", "prob", "area", "her2_od",
                                                      "her2_completeness", "her2_class"]).slice(row - start, 1)
            return arrow_to_cells(table=table).iloc[0].to_dict()
        start += n
    raise OverlayNotFound(f"no row {row}")


def _morphology(info: RunInfo, contour: np.ndarray) -> dict:
    from analysis.core.cell_features import morph_features, nucleus_features
    from viewer.services.tiles import slide_readers

    try:
        reader = slide_readers().get(info.slide_path)

        def read(x, y, w, h):
            return reader.read_region(x=x, y=y, width=w, height=h)

        row = nucleus_features(contours=[contour], read_region=read).iloc[0].to_dict()
    except Exception as exc:  # pixels unreadable: shape only
        logger.warning("overlay: texture of a cell of run %s not computed: %s", info.run_id, exc)
        row = morph_features(contour=contour)
    return {k: _finite(v) for k, v in row.items()}


def _graph(info: RunInfo, row: int) -> dict:
    from analysis.core.cells import read_cells
    from analysis.core.slide_features import SlideFeatureError, cell_graph_metrics, cell_type_codes

    if not info.mpp_x:
        return {}
    cells = read_cells(path=info.cells_path, columns=["x", "y", "cls", "her2_class"])
    try:
        code = cell_type_codes(cells=cells.iloc[[row]], stain=info.stain)[0]
    except SlideFeatureError:
        return {}
    graphs = {}
    for pair in ov.pair_types(info.stain):
        a, _, b = pair.partition("-")
        if code not in (a, b):
            continue
        try:
            metrics = cell_graph_metrics(cells=cells, cell_index=row, mpp=info.mpp_x, stain=info.stain, pair_type=pair)
        except SlideFeatureError as exc:
            logger.info("overlay: graph %s of cell row %s: %s", pair, row, exc)
            continue
        graphs[pair] = {k: _finite(v) for k, v in metrics.items()}
    return graphs


def overlay_cell_detail(*, slide_id: int, cell_id: int, by_row: bool = False) -> dict:
    """Inspector data of one cell (id, or row position in cells.parquet with by_row / id_is_row runs).

    Morphology, texture and the sc-MTOP graph metrics are computed on demand and cached."""
    info = overlay_run_info(slide_id)
    if info is None:
        raise OverlayNotFound(f"slide {slide_id} has no analysis run")
    data = run_overlay_get(info)
    if by_row or data.id_is_row:
        row = int(cell_id)
        if not 0 <= row < len(data.rows):
            raise OverlayNotFound(f"no cell at row {cell_id}")
    else:
        hits = np.flatnonzero(data.ids == np.uint32(cell_id)) if 0 <= cell_id <= ov.MAX_ID else []
        if len(hits) == 0:
            raise OverlayNotFound(f"no cell {cell_id} in run {info.run_id}")
        row = int(data.rows[hits[0]])
    cache = caches["default"]
    key = f"overlay-cell:{RENDER_VERSION}:{info.key}:{row}"
    detail = cache.get(key)
    if detail is not None:
        return detail
    started = time.perf_counter()
    cell = _cell_row(info, row)
    contour = np.asarray(cell["contour"], dtype=np.int64)
    area_px = _finite(cell["area"])
    mpp2 = info.mpp_x * (info.mpp_y or info.mpp_x) if info.mpp_x else None
    her2 = None
    if cell.get("her2_class"):
        her2 = {"class": cell["her2_class"], "od": _finite(cell["her2_od"]),
                "completeness": _finite(cell["her2_completeness"])}
    detail = {
        "id": int(cell["id"]), "row": row, "run": info.run_id,
        "x": float(cell["x"]), "y": float(cell["y"]), "cls": cell["cls"], "prob": _finite(cell["prob"]),
        "area_px": area_px, "area_um2": area_px * mpp2 if (mpp2 and area_px is not None) else None,
        "contour": contour.tolist(),
        "morphology": _morphology(info, contour),
        "her2": her2,
        "graph": _graph(info, row),
    }
    detail["compute_ms"] = round((time.perf_counter() - started) * 1000, 1)
    cache.set(key, detail, timeout=None)
    return detail


# --------------------------------------------------------------------------- feature sources


def feature_source_get(name: str) -> dict | None:
    """Definition and source cells of a model input (schema feature or clinical column); None if unknown."""
    from analysis.core.cohort import CLINICAL_COLUMNS
    from analysis.core.slide_features import load_schema
    from analysis.results import FEATURE_SCHEMA

    if name in CLINICAL_COLUMNS:
        column = CLINICAL_COLUMNS[name]
        return {"name": name, "group": "clinical", "definition": f"Clinical input: {column.expected}.",
                "unit": "years" if name == "age" else "", "source_cells": None}
    for feature in load_schema(path=FEATURE_SCHEMA)["features"]:
        if feature["name"] != name:
            continue
        source = feature.get("source_cells") or {}
        pair = source.get("pair_type")
        answer = {"pair_type": pair, "cells": source.get("cells") or {}}
        if "partners" in source:
            answer["partners"] = source["partners"]
        if pair:
            a, _, b = pair.partition("-")
            known = ov.pair_types(feature["group"])
            answer["edge_pair_type"] = pair if pair in known else (f"{b}-{a}" if f"{b}-{a}" in known else pair)
        return {"name": name, "group": feature["group"], "definition": feature.get("definition", ""),
                "unit": feature.get("unit", ""), "source_cells": answer}
    return None
