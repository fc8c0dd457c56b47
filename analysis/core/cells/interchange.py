"""Cells in and out of other tools ("bring your own segmentation").

Interchange ("bring your own segmentation"): HoVer-Net JSON exactly as sc-MTOP's
WSIGraph.py reads it, and QuPath GeoJSON detections as QuPath's "Export as GeoJSON"
writes them (FeatureCollection; properties.objectType / classification{name, color} /
measurements; Polygon in full-resolution pixel coordinates, origin top left).
Imported cells become an ordinary cell table (analysis.core.cells.table); exported files are
written atomically.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from analysis.core.cells.classes import CLASS_COLOURS, CLASS_TO_PANNUKE, HER2_COLOURS, PANNUKE_TO_CLASS, CellClass, Her2Class
from analysis.core.cells.table import _HER2_VALUES, _polygon_centroid, polygon_area, require_columns
from analysis.core.files import atomic_write_text


class InterchangeFormatError(ValueError):
    """A HoVer-Net JSON or QuPath GeoJSON file is malformed; the message names where."""


@dataclass(frozen=True)
class ImportedCells:
    """Cells read from an interchange file: a cell frame plus what the file said about scale."""

    cells: pd.DataFrame
    source_format: str  # "hovernet-json" | "qupath-geojson"
    mag: float | None = None  # HoVer-Net "mag" (objective magnification), None if absent


def _load_json(path: Path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise InterchangeFormatError(
            f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except UnicodeDecodeError as exc:
        raise InterchangeFormatError(f"{path}: not UTF-8 text ({exc})") from None


def _points(value, *, where: str) -> np.ndarray:
    try:
        pts = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InterchangeFormatError(f"{where}: contour must be a list of [x, y] number pairs") from None
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
        raise InterchangeFormatError(
            f"{where}: contour must be a non-empty list of [x, y] pairs, got shape {pts.shape}"
        )
    if not np.isfinite(pts).all():
        raise InterchangeFormatError(f"{where}: contour has a non-finite coordinate")
    return pts


def read_hovernet_json(*, path: Path) -> ImportedCells:
    """Read HoVer-Net JSON as sc-MTOP's WSIGraph.py reads it.

    `{"mag": m, "nuc": {key: {"bbox", "centroid": [x, y], "contour": [[x, y], ...],
    "type_prob": p, "type": t}}}`; coordinates are level-0 pixels (sc-MTOP SEMANTICS.md).
    id = int(key); rows keep the file's order (sc-MTOP's `name` is the 0-based position).
    Types map by PANNUKE_TO_CLASS; type 0 (HoVer-Net "no label") becomes OTHER; the raw
    code is kept in a `pannuke_type` column (not stored in cell tables). The JSON
    bbox is not read: sc-MTOP ignores it too and it is recomputed on export.
    """
    path = Path(path)
    doc = _load_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("nuc"), dict):
        raise InterchangeFormatError(f'{path}: top level must be an object with a "nuc" object of nuclei')
    mag = doc.get("mag")
    if mag is not None and not isinstance(mag, (int, float)):
        raise InterchangeFormatError(f'{path}: "mag" must be a number or null, got {mag!r}')
    ids, xs, ys, contours, classes, probs, areas, types = [], [], [], [], [], [], [], []
    for key, nuc in doc["nuc"].items():
        where = f'{path}: nucleus "{key}"'
        if not isinstance(nuc, dict):
            raise InterchangeFormatError(f"{where}: must be an object")
        try:
            ids.append(int(key))
        except ValueError:
            raise InterchangeFormatError(f"{where}: key must be an integer id") from None
        for field in ("centroid", "contour", "type"):
            if field not in nuc:
                raise InterchangeFormatError(f'{where}: missing "{field}"')
        c = nuc["centroid"]
        if not (isinstance(c, list) and len(c) == 2 and all(isinstance(v, (int, float)) for v in c)):
            raise InterchangeFormatError(f"{where}: centroid must be [x, y], got {c!r}")
        pts = _points(nuc["contour"], where=where)
        t = nuc["type"]
        if t is None:
            t = 0
        if not isinstance(t, int) or (t != 0 and t not in PANNUKE_TO_CLASS):
            raise InterchangeFormatError(
                f"{where}: type must be a PanNuke code 0..5, got {t!r}"
            )
        p = nuc.get("type_prob", 1.0)
        if p is None:
            p = 1.0
        if not isinstance(p, (int, float)):
            raise InterchangeFormatError(f"{where}: type_prob must be a number, got {p!r}")
        xs.append(float(c[0]))
        ys.append(float(c[1]))
        contours.append(pts.astype(np.int32) if np.all(pts == np.rint(pts)) else pts)
        classes.append((PANNUKE_TO_CLASS.get(t) or CellClass.OTHER).value)
        types.append(t)
        probs.append(float(p))
        areas.append(polygon_area(pts))
    cells = pd.DataFrame(
        {
            "id": np.asarray(ids, dtype=np.int64),
            "x": np.asarray(xs, dtype=np.float64),
            "y": np.asarray(ys, dtype=np.float64),
            "contour": pd.Series(contours, dtype=object),
            "cls": classes,
            "prob": np.asarray(probs, dtype=np.float64),
            "area": np.asarray(areas, dtype=np.float32),
            # The original code, so that an export gives back 0 / 4 / 5 exactly.
            "pannuke_type": np.asarray(types, dtype=np.int8),
        }
    )
    if cells["id"].duplicated().any():
        raise InterchangeFormatError(f"{path}: nucleus key {cells['id'][cells['id'].duplicated()].iloc[0]} repeats")
    return ImportedCells(cells=cells, source_format="hovernet-json", mag=None if mag is None else float(mag))


def _json_number(v: float):
    f = float(v)
    return int(f) if f.is_integer() and abs(f) < 2**53 else f


def write_hovernet_json(*, path: Path, cells: pd.DataFrame, mag: float | None = 20) -> int:
    """Write cells as HoVer-Net JSON (sc-MTOP input), atomically; returns the nucleus count.

    bbox is HoVer-Net's [[rmin, cmin], [rmax, cmax]] with exclusive max (max + 1), from the
    contour; `type` from CLASS_TO_PANNUKE (or a `pannuke_type` column when the frame has one).
    """
    require_columns(cells, ("id", "x", "y", "contour", "cls"), "cell frame")
    probs = cells["prob"].to_numpy(dtype=np.float64) if "prob" in cells else np.ones(len(cells))
    types = cells["pannuke_type"].to_numpy() if "pannuke_type" in cells else None
    nuc = {}
    for i, (cid, x, y, contour, cls) in enumerate(
        zip(cells["id"], cells["x"], cells["y"], cells["contour"], cells["cls"])
    ):
        pts = np.rint(np.asarray(contour, dtype=np.float64).reshape(-1, 2)).astype(np.int64)
        t = int(types[i]) if types is not None else CLASS_TO_PANNUKE[CellClass(cls)]
        nuc[str(int(cid))] = {
            "bbox": [
                [int(pts[:, 1].min()), int(pts[:, 0].min())],
                [int(pts[:, 1].max()) + 1, int(pts[:, 0].max()) + 1],
            ],
            "centroid": [float(x), float(y)],
            "contour": pts.tolist(),
            "type_prob": _json_number(probs[i]),
            "type": t,
        }
    atomic_write_text(Path(path), json.dumps({"mag": mag, "nuc": nuc}))
    return len(nuc)


# QuPath's built-in class names (PathClassFactory) and common synonyms -> our classes.
QUPATH_CLASS_NAMES: dict[str, CellClass] = {
    **{c.value: c for c in CellClass},
    "tumor": CellClass.TUMOUR,
    "neoplastic": CellClass.TUMOUR,
    "tumor cells": CellClass.TUMOUR,
    "connective": CellClass.STROMA,
    "fibroblast": CellClass.STROMA,
    "immune cells": CellClass.LYMPHOCYTE,
    "inflammatory": CellClass.LYMPHOCYTE,
    "lymphocytes": CellClass.LYMPHOCYTE,
    "neutrophils": CellClass.NEUTROPHIL,
    "macrophages": CellClass.MACROPHAGE,
}
_QP_PROB = "probability"
_QP_AREA = "Area px^2"
_QP_HER2 = {
    "her2_od": "HER2: Membrane DAB OD mean",
    "her2_stained_od": "HER2: Stained membrane DAB OD mean",
    "her2_completeness": "HER2: Membrane completeness",
}


def _hex_rgb(hex_colour: str) -> list[int]:
    h = hex_colour.lstrip("#")
    return [int(h[i : i + 2], 16) for i in (0, 2, 4)]


def _measurements(props: dict, *, where: str) -> dict:
    m = props.get("measurements", {}) or {}
    if isinstance(m, list):  # QuPath <= 0.2: [{"name": ..., "value": ...}, ...]
        try:
            return {d["name"]: d["value"] for d in m}
        except (TypeError, KeyError):
            raise InterchangeFormatError(f'{where}: measurements list must hold {{"name", "value"}} objects') from None
    if not isinstance(m, dict):
        raise InterchangeFormatError(f"{where}: measurements must be an object or a list")
    return m


def _geometry_ring(geometry, *, where: str) -> np.ndarray:
    if not isinstance(geometry, dict) or "type" not in geometry:
        raise InterchangeFormatError(f"{where}: geometry missing or not an object")
    kind = geometry["type"]
    coords = geometry.get("coordinates")
    if kind == "Polygon":
        rings = [coords[0]] if isinstance(coords, list) and coords else None
    elif kind == "MultiPolygon":
        # A cell split in parts: keep the largest part's outer ring.
        rings = [poly[0] for poly in coords] if isinstance(coords, list) and coords and all(
            isinstance(p, list) and p for p in coords
        ) else None
    else:
        raise InterchangeFormatError(f"{where}: geometry type {kind!r} is not a Polygon or MultiPolygon")
    if not rings:
        raise InterchangeFormatError(f"{where}: {kind} has no coordinates")
    parts = [_points(r, where=where) for r in rings]
    pts = max(parts, key=polygon_area)
    if len(pts) > 1 and np.array_equal(pts[0], pts[-1]):
        pts = pts[:-1]  # GeoJSON rings repeat the first point
    if len(pts) < 3:
        raise InterchangeFormatError(f"{where}: polygon ring needs at least 3 distinct points")
    return pts


def read_qupath_geojson(
    *, path: Path, class_names: Mapping[str, CellClass] | None = None
) -> ImportedCells:
    """Read QuPath GeoJSON detections (File > Export objects as GeoJSON, or
    exportObjectsToGeoJson) as cells.

    Accepts a FeatureCollection, a bare list of Features, or one Feature. Objects of
    type "detection" and "cell" are read (for "cell", properties.nucleusGeometry when
    present, as QuPath writes it); "annotation"/"tile" objects are skipped. Class name
    "Base: Sub" (QuPath derived class) gives class Base and, when Sub is a Her2Class
    value, the HER2 class. Unknown names map to OTHER; pass `class_names` to extend.
    Ids are the positions 0..N-1 of the detections read.
    """
    path = Path(path)
    doc = _load_json(path)
    names = {k.lower(): v for k, v in {**QUPATH_CLASS_NAMES, **(class_names or {})}.items()}
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        features = doc.get("features")
        if not isinstance(features, list):
            raise InterchangeFormatError(f'{path}: FeatureCollection "features" must be a list')
    elif isinstance(doc, dict) and doc.get("type") == "Feature":
        features = [doc]
    elif isinstance(doc, list):
        features = doc
    else:
        raise InterchangeFormatError(f"{path}: expected a GeoJSON FeatureCollection, Feature or list of Features")
    rows = []
    for i, feat in enumerate(features):
        where = f"{path}: feature {i}"
        if not isinstance(feat, dict) or feat.get("type") != "Feature":
            raise InterchangeFormatError(f'{where}: not a GeoJSON Feature (needs "type": "Feature")')
        props = feat.get("properties") or {}
        if not isinstance(props, dict):
            raise InterchangeFormatError(f"{where}: properties must be an object")
        kind = props.get("objectType", "detection")
        if kind not in ("detection", "cell"):
            continue
        geometry = props.get("nucleusGeometry") if kind == "cell" and props.get("nucleusGeometry") else feat.get("geometry")
        pts = _geometry_ring(geometry, where=where)
        cls, her2 = CellClass.OTHER, None
        klass = props.get("classification")
        if klass is not None:
            name = klass.get("name") if isinstance(klass, dict) else klass
            if not isinstance(name, str):
                raise InterchangeFormatError(f"{where}: classification name must be a string")
            base, _, sub = name.partition(":")
            cls = names.get(base.strip().lower(), CellClass.OTHER)
            sub = sub.strip().lower()
            her2 = sub if sub in _HER2_VALUES else None
        m = _measurements(props, where=where)
        cx, cy = _polygon_centroid(pts)
        row = {
            "id": len(rows),
            "x": cx,
            "y": cy,
            "contour": pts,
            "cls": cls.value,
            "prob": float(m.get(_QP_PROB, 1.0)),
            "area": float(m[_QP_AREA]) if _QP_AREA in m else polygon_area(pts),
            "her2_class": her2,
        }
        for col, key in _QP_HER2.items():
            row[col] = float(m[key]) if key in m and m[key] is not None else np.nan
        rows.append(row)
    columns = ["id", "x", "y", "contour", "cls", "prob", "area", *_QP_HER2, "her2_class"]
    cells = pd.DataFrame(rows, columns=columns)
    cells["id"] = cells["id"].astype(np.int64)
    for col in ("x", "y", "prob"):
        cells[col] = cells[col].astype(np.float64)
    if cells["her2_class"].isna().all() and cells[list(_QP_HER2)].isna().all().all():
        cells = cells.drop(columns=[*_QP_HER2, "her2_class"])
    return ImportedCells(cells=cells, source_format="qupath-geojson")


def write_qupath_geojson(*, path: Path, cells: pd.DataFrame) -> int:
    """Write cells as a QuPath-importable GeoJSON FeatureCollection of detections, atomically.

    Classification name is the CellClass value, or "<class>: <Her2Class value>" for graded
    IHC cells (QuPath's derived-class syntax), coloured from CLASS_COLOURS / HER2_COLOURS.
    Measurements: probability, area and the HER2 numbers. Feature ids are UUIDv5 of the cell id.
    """
    require_columns(cells, ("id", "x", "y", "contour", "cls"), "cell frame")
    n = len(cells)
    probs = cells["prob"].to_numpy(dtype=np.float64) if "prob" in cells else np.ones(n)
    areas = cells["area"].to_numpy(dtype=np.float64) if "area" in cells else None
    her2 = cells["her2_class"].to_numpy(dtype=object) if "her2_class" in cells else None
    features = []
    for i, (cid, contour, cls) in enumerate(zip(cells["id"], cells["contour"], cells["cls"])):
        pts = np.asarray(contour, dtype=np.float64).reshape(-1, 2)
        ring = np.vstack([pts, pts[:1]])
        klass = CellClass(cls)
        name, colour = klass.value, CLASS_COLOURS[klass]
        if her2 is not None and isinstance(her2[i], str):
            h = Her2Class(her2[i])
            name, colour = f"{klass.value}: {h.value}", HER2_COLOURS[h]
        measurements = {_QP_PROB: float(probs[i])}
        measurements[_QP_AREA] = float(areas[i]) if areas is not None else polygon_area(pts)
        for col, key in _QP_HER2.items():
            if col in cells:
                v = cells[col].iloc[i]
                if v is not None and np.isfinite(v):
                    measurements[key] = float(v)
        features.append(
            {
                "type": "Feature",
                "id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"her2-ladder-cell-{int(cid)}")),
                "geometry": {"type": "Polygon", "coordinates": [[[_json_number(a), _json_number(b)] for a, b in ring]]},
                "properties": {
                    "objectType": "detection",
                    "classification": {"name": name, "color": _hex_rgb(colour)},
                    "measurements": measurements,
                    "isLocked": False,
                },
            }
        )
    atomic_write_text(Path(path), json.dumps({"type": "FeatureCollection", "features": features}))
    return n
