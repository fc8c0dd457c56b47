"""What pages and the API read about overlays: a slide's layer list (with legends and counts),
a viewport's binary cell / edge records, the cell inspector's data and a model input's source cells.

The run lookup, the in-memory runs and the tile rendering are in viewer.overlays.services;
docs/overlays.md describes the formats.
"""
from __future__ import annotations

import logging
import math
import threading
import time

import numpy as np
from django.conf import settings

from analysis.core import overlay as ov
from analysis.core.cells.classes import CLASS_COLOURS, HER2_COLOURS
from viewer.overlays.services import (
    RENDER_VERSION,
    OverlayNotFound,
    RunInfo,
    ViewportTooLarge,
    overlay_layer_run_info,
    overlay_layer_summary,
    overlay_qc_data,
    overlay_run_info,
    run_overlay_get,
)
from viewer.overlays.contours import contour_records
from viewer.tiles.cache import cache_get, cache_set

logger = logging.getLogger(__name__)

DEFAULT_MAX_RECORDS = 500_000
LAYER_LABELS = {"cells": "Cell classes", "her2": "HER2 membrane (tumour cells)", "edges": "Graph edges"}
# ASCO/CAP grade tumour cells only: the others are counted in the legend, never drawn with a ring.
NOT_GRADED_ENTRY = {"key": "not_graded", "label": "Not graded (non-tumour)", "color": "#BBBBBB", "code": -1,
                    "toggle": False}


def _title(value: str) -> str:
    return value.replace("_", " ").capitalize()

def _density_legend(vmax: float, mpp_x: float | None, mpp_y: float | None, colour: str) -> list[dict]:
    palette, _ = ov.density_ramp(colour)
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
        import analysis.core.cells.features  # noqa: F401
        import analysis.core.graph.slide_features  # noqa: F401

    threading.Thread(target=work, name="overlay-warm-imports", daemon=True).start()

def slide_overlay_layers(slide) -> list[dict]:
    """Overlay layers of the slide's latest run ([] without one): see docs/overlays.md."""
    info = overlay_run_info(slide.pk)
    if info is None:
        return []
    _warm_inspector_imports()
    try:
        summary = overlay_layer_summary(info)
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
            entry["contours_url"] = f"/api/slides/{slide.pk}/overlays/{name}/contours"
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
             "count": her2_counts.get(h.value, 0)} for i, h in enumerate(ov.HER2_ORDER)]
            + [NOT_GRADED_ENTRY | {"count": summary.get("her2_not_graded", 0)}], 12))
    if summary["pairs"] is not None:
        layers.append(layer("edges", "edges", LAYER_LABELS["edges"], [
            {"key": p, "label": ov.pair_label(p), "color": ov.pair_colour(p, i), "code": i,
             "count": summary["pair_counts"].get(p, 0)} for i, p in enumerate(summary["pairs"])], 20))
    qc = _qc_layer(info)
    if qc is not None:
        layers.append(layer("qc", "qc", "QC: tissue, tiles, exclusions", qc, None))
    for c in ov.CLASS_ORDER:
        if class_counts.get(c.value, 0) > 0:
            layers.append(layer(f"density-{c.value}", "density", f"{_title(c.value)} density",
                                _density_legend(summary["density_vmax"].get(c.value, 1.0), info.mpp_x, info.mpp_y,
                                                CLASS_COLOURS[c]),
                                None))
    return layers

def _qc_layer(info) -> list[dict] | None:
    """Legend of the QC layer (issue 14 item 20): what was analysed and what was left out, with the
    share of the slide's thumbnail each takes; entries are a key, not toggles."""
    from analysis.core.slides import qc as qc_mod

    try:
        data = overlay_qc_data(info)
    except (OSError, ValueError, KeyError):
        logger.exception("overlay: QC data of run %s unreadable", info.run_id)
        return None
    if data is None:
        return None

    def entry(key, label, colour, share=None):
        text = label + (f" ({share:.1%} of the slide)" if share is not None else "")
        return {"key": key, "label": text, "color": colour, "code": -1, "count": None, "toggle": False}

    legend = [entry("tissue", "Tissue analysed", ov.QC_STYLE[qc_mod.TISSUE][0], data["tissue_fraction"]),
              entry("tiles", f"Tiles analysed: {len(data['tiles']):,}", ov.QC_TILE_COLOUR)]
    if data["recorded"]:
        pen = "Pen ink, excluded" + (f", {data['cells_on_pen']:,} nuclei dropped" if data["cells_on_pen"] else "")
        legend += [entry("pen", pen, ov.QC_STYLE[qc_mod.PEN][0], data["pen_fraction"]),
                   entry("small", "Fragments too small, excluded", ov.QC_STYLE[qc_mod.SMALL][0], data["small_fraction"])]
    legend += [entry("background", "Background glass, excluded", ov.QC_STYLE[qc_mod.BACKGROUND][0]),
               entry("focus", "Focus: not assessed" if data["recorded"] else "Pen, fragments, focus: not recorded by "
                     "this run (re-run to see them)", "#FFFFFF")]
    return legend


def overlay_max_records() -> int:
    return int(getattr(settings, "LADDER_OVERLAY_MAX_RECORDS", DEFAULT_MAX_RECORDS))

def overlay_viewport(*, slide_id: int, layer: str, x: float, y: float, width: float, height: float) -> tuple[bytes, int]:
    """Binary records of a layer's cells or edges in a level-0 rectangle: (body, count)."""
    info = overlay_layer_run_info(slide_id, layer)
    kind = ov.layer_kind(layer)
    if kind == "density":
        raise OverlayNotFound(f"layer {layer!r} has no viewport records (PNG tiles only)")
    data = run_overlay_get(info)
    answer = ov.viewport_records(data, kind, x0=x, y0=y, x1=x + width, y1=y + height, limit=overlay_max_records())
    if answer is None:
        raise ViewportTooLarge("zoom in")
    return answer

DEFAULT_MAX_CONTOURS = 60_000


def overlay_contours(*, slide_id: int, layer: str, x: float, y: float, width: float,
                     height: float) -> tuple[bytes, int, int]:
    """Contour records (analysis.core.overlay.pack_contours) of the nuclei whose centroid is in
    the level-0 rectangle: (body, cells, vertices). Read from the cell table's row groups that
    meet the rectangle (its spatial index); the ids are those of the cell records."""
    info = overlay_layer_run_info(slide_id, layer)
    kind = ov.layer_kind(layer)
    if kind not in ("cells", "her2"):
        raise OverlayNotFound(f"layer {layer!r} has no nucleus outlines")
    data = run_overlay_get(info)
    x1, y1 = x + width, y + height
    limit = int(getattr(settings, "LADDER_OVERLAY_MAX_CONTOURS", DEFAULT_MAX_CONTOURS))
    if ov.viewport_upper_bound(data, "cells", x0=x, y0=y, x1=x1, y1=y1) > limit \
            and len(ov.cells_in_view(data, x0=x, y0=y, x1=x1, y1=y1)) > limit:
        raise ViewportTooLarge("zoom in")
    return contour_records(cells_path=info.cells_path, x0=x, y0=y, x1=x1, y1=y1, her2_only=kind == "her2",
                           id_is_row=data.id_is_row)


def _finite(value):
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value

def _cell_row(info: RunInfo, row: int) -> dict:
    import pyarrow.parquet as pq

    from analysis.core.cells.table import arrow_to_cells

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
    from analysis.core.cells.features import morph_features, nucleus_features
    from viewer.tiles.services import slide_readers

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
    from analysis.core.cells.table import read_cells
    from analysis.core.graph.slide_features import SlideFeatureError, cell_graph_metrics, cell_type_codes

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
    key = f"overlay-cell:{RENDER_VERSION}:{info.key}:{row}"
    detail = cache_get(key, alias="default")
    if detail is not None:
        return detail
    started = time.perf_counter()
    cell = _cell_row(info, row)
    contour = np.asarray(cell["contour"], dtype=np.int64)
    area_px = _finite(cell["area"])
    mpp2 = info.mpp_x * (info.mpp_y or info.mpp_x) if info.mpp_x else None
    her2 = None
    if cell.get("her2_class") and cell["cls"] == "tumour":  # ASCO/CAP grade tumour cells only (old runs graded all)
        her2 = {"class": cell["her2_class"], "od": _finite(cell["her2_od"]),
                "completeness": _finite(cell["her2_completeness"])}
    detail = {
        "id": int(cell["id"]), "row": row, "run": info.run_id,
        "x": float(cell["x"]), "y": float(cell["y"]), "cls": cell["cls"],
        # The classical segmenter's rules give no probability (the table stores 1.0): say so, not "1".
        "prob": _finite(cell["prob"]) if not info.segmenter.startswith("classical") else None,
        "area_px": area_px, "area_um2": area_px * mpp2 if (mpp2 and area_px is not None) else None,
        "contour": contour.tolist(),
        "morphology": _morphology(info, contour),
        "her2": her2,
        "graph": _graph(info, row),
    }
    detail["compute_ms"] = round((time.perf_counter() - started) * 1000, 1)
    cache_set(key, detail, alias="default", timeout=None)
    return detail

def feature_source_get(name: str) -> dict | None:
    """Definition and source cells of a model input (schema feature or clinical column); None if unknown."""
    from analysis.core.model.cohort import CLINICAL_COLUMNS
    from analysis.core.graph.slide_features import load_schema
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
