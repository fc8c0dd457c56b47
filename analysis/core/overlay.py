"""Overlay rendering: palette PNG tiles and binary viewport records of a run's cells and edges.

Pure numpy + Pillow, no Django. The web side (viewer.overlays.services) loads a run once per process
into a `RunOverlay` (flat float32/uint8 arrays sorted by a coarse grid, with CSR offsets: a
rectangle query is a handful of contiguous slices) and asks for tiles and records.

Codes (stable, little-endian; docs/overlays.md):

- class_code = index in CellClass order (tumour 0 ... other 5);
- her2_code = index in Her2Class order (strong_complete 0 ... null_incomplete 5), 15 = none;
- pair_code = index of the pair type in `pair_types(stain)` (the edge layer's legend order).

Records: cells 12 bytes (float32 x, float32 y, uint32 (id << 8) | (her2 << 4) | class),
edges 20 bytes (float32 x1, y1, x2, y2, uint32 pair_code); nucleus outlines (zoomed far in)
are contour records: a 16-byte head (float32 origin x, y, uint32 packed, uint32 n) and n
int16 vertex offsets per cell, collinear vertices dropped (`pack_contours`).

Tiles are mode "P" PNGs, palette index 0 fully transparent. Rendering by zoom (scale =
tile px per level-0 px): scale >= 0.5 draws the nuclei contours (outline opaque, fill
translucent); below, one disc (or one pixel) per cell, stamped with numpy; edges are
vectorised DDA lines; density is a per-class count grid summed into bins of at least
`DENSITY_MIN_BIN_PX` level-0 px, coloured with a ramp of the class's own colour (`density_ramp`;
empty bins transparent).

Size: ~800 lines kept in one module on purpose: the cells, HER2, edges and density layers
share the code tables, palettes and the in-memory `RunOverlay` arrays, and the PNG tile,
viewport-record and snapshot paths must draw exactly the same pixels from them.
"""
from __future__ import annotations

import io
import math
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from analysis.core.cells.classes import CLASS_COLOURS, HER2_COLOURS, CellClass, Her2Class

CLASS_ORDER: tuple[CellClass, ...] = tuple(CellClass)
HER2_ORDER: tuple[Her2Class, ...] = tuple(Her2Class)
HER2_NONE = 15
CELL_RECORD = np.dtype([("x", "<f4"), ("y", "<f4"), ("packed", "<u4")])
EDGE_RECORD = np.dtype([("x1", "<f4"), ("y1", "<f4"), ("x2", "<f4"), ("y2", "<f4"), ("code", "<u4")])
MAX_ID = (1 << 24) - 1

GRID_PX = 256  # level-0 px of the in-memory grid index
DENSITY_BASE_PX = 128  # level-0 px of the stored per-class count grid
DENSITY_MIN_BIN_PX = 128  # smallest density bin drawn (finer bins are mostly 0 or 1 cell)
DENSITY_TILE_PX_PER_BIN = 8  # at low zoom, one bin = 8 x 8 tile px
CONTOUR_SCALE = 1.0  # draw contours from this zoom (tile px per level-0 px) up
RASTER_PX = 32  # low-zoom rasters: one pixel per 32 level-0 px; tiles at scale <= 1/32 are reduced from them
FILL_OFFSET = 32  # palette index of the translucent fill of code c: FILL_OFFSET + 1 + c
FILL_ALPHA = 0x55

# Draw order at low zoom, first drawn first (later ones win a shared pixel): rare classes on top.
CLASS_PRIORITY = {CellClass.OTHER: 0, CellClass.STROMA: 1, CellClass.TUMOUR: 2, CellClass.MACROPHAGE: 3,
                  CellClass.LYMPHOCYTE: 4, CellClass.NEUTROPHIL: 5}
HER2_PRIORITY = {Her2Class.NULL_INCOMPLETE: 0, Her2Class.NULL_COMPLETE: 1, Her2Class.WEAK_INCOMPLETE: 2,
                 Her2Class.WEAK_COMPLETE: 3, Her2Class.STRONG_INCOMPLETE: 4, Her2Class.STRONG_COMPLETE: 5}

# Graph types whose pairs the edge tables hold (analysis.results.EDGE_TYPES, slide_features types).
PAIR_TYPE_NAMES = {
    "T": "Tumour", "S": "Stroma", "L": "Lymphocyte", "N": "Neutrophil", "M": "Macrophage",
    "Tstrong": "Tumour HER2 strong", "Tweak": "Tumour HER2 weak", "Tnull": "Tumour HER2 null",
    "nonT": "Non-tumour",
}
STAIN_PAIR_TYPES = {"he": ("T", "S", "L", "N", "M"), "ihc": ("Tstrong", "Tweak", "Tnull", "nonT")}
# Same-type pairs take their type's colour (Okabe-Ito); cross-type pairs Paul Tol's "muted" set.
TYPE_COLOURS = {"T": "#D55E00", "S": "#009E73", "L": "#0072B2", "N": "#CC79A7", "M": "#E69F00",
                "Tstrong": "#D55E00", "Tweak": "#E69F00", "Tnull": "#0072B2", "nonT": "#009E73"}
CROSS_COLOURS = ("#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE", "#882255", "#44AA99", "#999933",
                 "#AA4499", "#DDDDDD")
# cividis (matplotlib), 9 stops; interpolated to 255 palette entries.
CIVIDIS_STOPS = ("#00224E", "#1A386F", "#434E6C", "#61656F", "#7D7C78", "#9B9476", "#BCAE6C", "#DEC958", "#FEE838")


class OverlayError(ValueError):
    """An overlay request cannot be answered (unknown layer, bad rectangle)."""


# --------------------------------------------------------------------------- codes


def _codes(values, names: Sequence[str], missing: int) -> np.ndarray:
    """Index of each value in `names` (`missing` when absent or null), as uint8.

    Categorical input (Parquet dictionary columns) maps only its few categories."""
    lookup = {name: i for i, name in enumerate(names)}
    if isinstance(getattr(values, "dtype", None), pd.CategoricalDtype):
        cat = values.array if isinstance(values, pd.Series) else values
        table = np.array([lookup.get(str(c), missing) for c in cat.categories] + [missing], dtype=np.uint8)
        return table[np.asarray(cat.codes, dtype=np.int64)]  # code -1 (null) -> the last entry
    cat = pd.Categorical(np.asarray(values, dtype=object), categories=list(names))
    codes = np.asarray(cat.codes, dtype=np.int16)
    codes[codes < 0] = missing
    return codes.astype(np.uint8)


def class_codes(values) -> np.ndarray:
    """CellClass values -> uint8 codes (index in CellClass order; unknown -> other)."""
    return _codes(values, [c.value for c in CLASS_ORDER], CLASS_ORDER.index(CellClass.OTHER))


def her2_codes(values) -> np.ndarray:
    """Her2Class values (None/NaN = none) -> uint8 codes, HER2_NONE for none."""
    return _codes(values, [h.value for h in HER2_ORDER], HER2_NONE)


def graded_her2_codes(cls_values, her2_values) -> np.ndarray:
    """HER2 codes of tumour cells; HER2_NONE ("not graded") for every other class.

    ASCO/CAP grade tumour cells only (analysis.core.her2.grading.keep_tumour_grades); runs made
    before the pipeline dropped non-tumour grades still hold them, so the overlays drop them too."""
    codes = her2_codes(her2_values)
    codes[class_codes(cls_values) != CLASS_ORDER.index(CellClass.TUMOUR)] = HER2_NONE
    return codes


def pair_types(stain: str) -> list[str]:
    """Every pair type an edge table of `stain` may hold, in graph build order ("T-T", "T-S", ...)."""
    types = STAIN_PAIR_TYPES.get(stain, ())
    return [f"{a}-{b}" for i, a in enumerate(types) for b in types[i:]]


def pair_label(pair: str) -> str:
    a, _, b = pair.partition("-")
    return f"{PAIR_TYPE_NAMES.get(a, a)} – {PAIR_TYPE_NAMES.get(b, b)}"


def pair_colour(pair: str, index: int) -> str:
    """Same-type pairs: their type's colour; cross-type pairs: one of CROSS_COLOURS each, counted
    among the stain's cross pairs only (10 on H&E, 6 on IHC), so no two share a colour."""
    a, _, b = pair.partition("-")
    if a == b and a in TYPE_COLOURS:
        return TYPE_COLOURS[a]
    for types in STAIN_PAIR_TYPES.values():
        cross = [f"{x}-{y}" for i, x in enumerate(types) for y in types[i + 1:]]
        if pair in cross:
            return CROSS_COLOURS[cross.index(pair)]
    return CROSS_COLOURS[index % len(CROSS_COLOURS)]


def cividis(n: int = 255) -> list[tuple[int, int, int]]:
    stops = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in CIVIDIS_STOPS], dtype=np.float64)
    t = np.linspace(0, len(stops) - 1, n)
    lo = np.floor(t).astype(int).clip(0, len(stops) - 2)
    frac = (t - lo)[:, None]
    rgb = stops[lo] * (1 - frac) + stops[lo + 1] * frac
    return [tuple(int(round(v)) for v in row) for row in rgb]


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


# --------------------------------------------------------------------------- records


def pack_cells(*, x: np.ndarray, y: np.ndarray, ids: np.ndarray, class_code: np.ndarray,
               her2_code: np.ndarray) -> bytes:
    """12 bytes per cell: float32 x, float32 y, uint32 (id << 8) | (her2 << 4) | class."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() > MAX_ID):
        raise OverlayError("cell ids must fit 24 bits (0 .. 16777215); pack row indices instead")
    out = np.empty(len(ids), dtype=CELL_RECORD)
    out["x"] = x
    out["y"] = y
    out["packed"] = ((ids.astype(np.uint32) << np.uint32(8)) | ((np.asarray(her2_code, np.uint32) & 15) << np.uint32(4))
                     | (np.asarray(class_code, np.uint32) & 15))
    return out.tobytes()


def unpack_cells(data: bytes) -> dict[str, np.ndarray]:
    rec = np.frombuffer(data, dtype=CELL_RECORD)
    packed = rec["packed"]
    return {"x": rec["x"], "y": rec["y"], "id": packed >> 8, "her2_code": (packed >> 4) & 15,
            "class_code": packed & 15}


def pack_edges(*, x1, y1, x2, y2, code) -> bytes:
    """20 bytes per edge: float32 x1, y1, x2, y2 (level-0 px), uint32 pair code."""
    out = np.empty(len(x1), dtype=EDGE_RECORD)
    out["x1"], out["y1"], out["x2"], out["y2"], out["code"] = x1, y1, x2, y2, code
    return out.tobytes()


def unpack_edges(data: bytes) -> dict[str, np.ndarray]:
    rec = np.frombuffer(data, dtype=EDGE_RECORD)
    return {name: rec[name] for name in EDGE_RECORD.names}


# --------------------------------------------------------------------------- contour records

CONTOUR_HEADER_BYTES = 16


def simplify_rings(*, offsets: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop the collinear vertices of flattened rings (CSR `offsets` in points, `values` (n, 2)
    integer): a pixel-chain contour keeps only its corners, the outline drawn is the same.
    Vectorised over all rings; a ring keeps at least 3 vertices. Returns (offsets, values)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    counts = np.diff(offsets)
    n = int(offsets[-1] - offsets[0]) if len(offsets) else 0
    if n == 0:
        return offsets - offsets[0] if len(offsets) else offsets, values[:0]
    pts = np.asarray(values, dtype=np.int32)[offsets[0]:offsets[-1]]
    ring = np.repeat(np.arange(len(counts)), counts)
    start = np.repeat(offsets[:-1] - offsets[0], counts)
    pos = np.arange(n) - start
    cnt = counts[ring]
    prev = start + (pos - 1) % cnt
    nxt = start + (pos + 1) % cnt
    a = pts - pts[prev]
    b = pts[nxt] - pts
    cross = a[:, 0].astype(np.int64) * b[:, 1] - a[:, 1].astype(np.int64) * b[:, 0]
    keep = (cross != 0) | (cnt[ring] <= 3)
    kept = np.bincount(ring[keep], minlength=len(counts))
    small = kept < 3  # degenerate (straight) rings: keep them whole
    if small.any():
        keep |= small[ring]
        kept = np.bincount(ring[keep], minlength=len(counts))
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(kept, out=out[1:])
    return out, pts[keep]


def pack_contours(*, ox: np.ndarray, oy: np.ndarray, packed: np.ndarray, offsets: np.ndarray,
                  values: np.ndarray) -> bytes:
    """Contour records, variable length, 4-byte aligned, little-endian; per cell:
    float32 ox, float32 oy (origin: the rounded centroid, level-0 px), uint32 packed (as the
    cell records: (id << 8) | (her2 << 4) | class), uint32 n; then n x (int16 dx, int16 dy),
    the contour's vertices relative to the origin (the cell table's own encoding)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    counts = np.diff(offsets)
    m = len(counts)
    words = np.zeros(4 * m + int(counts.sum()), dtype=np.uint32)
    head = 4 * np.arange(m) + np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if m else np.zeros(0, np.int64)
    words[head] = np.asarray(ox, dtype="<f4").view(np.uint32)
    words[head + 1] = np.asarray(oy, dtype="<f4").view(np.uint32)
    words[head + 2] = np.asarray(packed, dtype=np.uint32)
    words[head + 3] = counts.astype(np.uint32)
    if len(values):
        pairs = np.ascontiguousarray(np.asarray(values, dtype=np.int32)[offsets[0]:offsets[-1]].astype("<i2"))
        where = np.repeat(head + 4, counts) + (np.arange(int(counts.sum())) - np.repeat(offsets[:-1] - offsets[0], counts))
        words[where] = pairs.view("<u4").ravel()
    return words.astype("<u4").tobytes()


def unpack_contours(data: bytes) -> list[dict]:
    """Decode contour records (tests, tools): [{x, y, packed, points (n, 2) absolute}]."""
    words = np.frombuffer(data, dtype="<u4")
    out, i = [], 0
    while i < len(words):
        ox, oy = words[i:i + 2].view("<f4")
        n = int(words[i + 3])
        rel = words[i + 4:i + 4 + n].view("<i2").reshape(n, 2).astype(np.int64)
        out.append({"x": float(ox), "y": float(oy), "packed": int(words[i + 2]), "points": rel + (int(ox), int(oy))})
        i += 4 + n
    return out


# --------------------------------------------------------------------------- PNG


def palette_png(codes: np.ndarray, palette: Sequence[tuple[int, int, int]], alpha: Sequence[int]) -> bytes:
    """Mode "P" PNG of a uint8 code image; palette[i] is the RGB of index i, alpha[i] its alpha."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    used = int(codes.max()) + 1 if codes.size else 1  # palette only as long as needed: smaller files
    image = Image.fromarray(codes, mode="P")
    flat = np.zeros((256, 3), dtype=np.uint8)
    flat[: len(palette)] = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)[:256]
    image.putpalette(flat[:used].ravel().tobytes())
    trns = bytes(int(a) for a in list(alpha[:used]) + [0] * max(0, used - len(alpha)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=1, transparency=trns)
    return buffer.getvalue()


@lru_cache(maxsize=64)
def transparent_png(width: int, height: int) -> bytes:
    """A fully transparent tile (~100 bytes)."""
    image = Image.new("1", (max(width, 1), max(height, 1)), 0)
    image = image.convert("P")
    image.putpalette(bytes(3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=9, transparency=0)
    return buffer.getvalue()


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def png_palette_hide(png: bytes, indices: Iterable[int]) -> bytes:
    """The same palette PNG with the palette entries `indices` fully transparent.

    Only the tRNS chunk is rewritten (PNG spec, 11.3.2: palette entries beyond it are opaque),
    so a cached tile is filtered in microseconds without decoding or drawing it again. A PNG
    without a palette, or without those entries, comes back unchanged.
    """
    if not png.startswith(PNG_SIGNATURE):
        raise OverlayError("not a PNG")
    chunks: list[tuple[bytes, bytes]] = []
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(png):
        length = int.from_bytes(png[pos : pos + 4], "big")
        chunks.append((png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    palette = next((data for kind, data in chunks if kind == b"PLTE"), None)
    if palette is None:
        return png
    size = len(palette) // 3
    wanted = sorted({int(i) for i in indices if 0 <= int(i) < size})
    if not wanted:
        return png
    old = next((data for kind, data in chunks if kind == b"tRNS"), b"")
    alpha = bytearray(old[:size]) + b"\xff" * max(0, size - len(old))
    for index in wanted:
        alpha[index] = 0
    out, written = [PNG_SIGNATURE], False
    for kind, data in chunks:
        if kind == b"tRNS":
            data, written = bytes(alpha), True
        elif kind == b"IDAT" and not written:  # tRNS goes after PLTE, before the image data
            out.append(_png_chunk(b"tRNS", bytes(alpha)))
            written = True
        out.append(_png_chunk(kind, data))
    return b"".join(out)


def hideable_codes(layer: str) -> int:
    """How many legend codes of a layer can be hidden in its tiles (0: none, as for density)."""
    kind = layer_kind(layer)
    return {"cells": len(CLASS_ORDER), "her2": len(HER2_ORDER), "edges": 254}.get(kind, 0)


def palette_indices_of_codes(layer: str, codes: Iterable[int]) -> list[int]:
    """The palette indices that draw the legend codes `codes` of a layer's tiles
    (a class: its outline 1 + c and its fill FILL_OFFSET + 1 + c; a pair type: 1 + c)."""
    kind = layer_kind(layer)
    limit = hideable_codes(layer)
    codes = sorted({int(c) for c in codes if 0 <= int(c) < limit})
    if kind in ("cells", "her2"):
        return [i for c in codes for i in (1 + c, FILL_OFFSET + 1 + c)]
    return [1 + c for c in codes]


# --------------------------------------------------------------------------- grid index


@dataclass
class GridIndex:
    """Rows sorted by (grid row, grid column) of `cell_px` squares; `offsets` is the CSR start of each square."""

    cell_px: int
    ncols: int
    nrows: int
    offsets: np.ndarray

    @classmethod
    def build(cls, *, x: np.ndarray, y: np.ndarray, width: float, height: float,
              cell_px: int = GRID_PX) -> tuple["GridIndex", np.ndarray]:
        """The index and the permutation that sorts the rows into it."""
        ncols = max(1, int(math.ceil(max(width, float(x.max()) + 1 if len(x) else 1) / cell_px)))
        nrows = max(1, int(math.ceil(max(height, float(y.max()) + 1 if len(y) else 1) / cell_px)))
        gx = np.clip(np.floor(x / cell_px), 0, ncols - 1).astype(np.int64)
        gy = np.clip(np.floor(y / cell_px), 0, nrows - 1).astype(np.int64)
        key = gy * ncols + gx
        order = np.argsort(key, kind="stable")
        offsets = np.zeros(ncols * nrows + 1, dtype=np.int64)
        np.cumsum(np.bincount(key, minlength=ncols * nrows), out=offsets[1:])
        return cls(cell_px=cell_px, ncols=ncols, nrows=nrows, offsets=offsets), order

    def candidates(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        """Row positions (in index order) of every square meeting [x0, x1) x [y0, y1): a superset."""
        if x1 <= x0 or y1 <= y0 or x1 <= 0 or y1 <= 0:
            return np.zeros(0, dtype=np.int64)
        c = self.cell_px
        gx0 = int(np.clip(math.floor(x0 / c), 0, self.ncols - 1))
        gx1 = int(np.clip(math.ceil(x1 / c) - 1, 0, self.ncols - 1))
        gy0 = int(np.clip(math.floor(y0 / c), 0, self.nrows - 1))
        gy1 = int(np.clip(math.ceil(y1 / c) - 1, 0, self.nrows - 1))
        rows = np.arange(gy0, gy1 + 1, dtype=np.int64) * self.ncols
        starts = self.offsets[rows + gx0]
        ends = self.offsets[rows + gx1 + 1]
        return _ranges(starts, ends)

    def count_upper(self, x0, y0, x1, y1) -> int:
        if x1 <= x0 or y1 <= y0:
            return 0
        c = self.cell_px
        gx0 = int(np.clip(math.floor(x0 / c), 0, self.ncols - 1))
        gx1 = int(np.clip(math.ceil(x1 / c) - 1, 0, self.ncols - 1))
        gy0 = int(np.clip(math.floor(y0 / c), 0, self.nrows - 1))
        gy1 = int(np.clip(math.ceil(y1 / c) - 1, 0, self.nrows - 1))
        rows = np.arange(gy0, gy1 + 1, dtype=np.int64) * self.ncols
        return int((self.offsets[rows + gx1 + 1] - self.offsets[rows + gx0]).sum())


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    keep = lengths > 0
    starts, lengths = starts[keep], lengths[keep]
    shift = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(total, dtype=np.int64) + shift


# --------------------------------------------------------------------------- run data


@dataclass
class RunOverlay:
    """A run's cells and edges, in memory, grid-indexed (rows in index order)."""

    stain: str
    width: int
    height: int
    x: np.ndarray  # float32
    y: np.ndarray
    ids: np.ndarray  # uint32: cell ids, or row positions when id_is_row
    rows: np.ndarray  # int64: row position in cells.parquet
    cls: np.ndarray  # uint8 class code
    her2: np.ndarray  # uint8 HER2 code (15 none)
    grid: GridIndex
    id_is_row: bool
    radius_px: float  # median equivalent radius of a nucleus, level-0 px
    class_counts: dict[int, int]
    her2_counts: dict[int, int]
    density: dict[int, np.ndarray]  # class code -> count grid of DENSITY_BASE_PX squares
    density_vmax: dict[int, float]  # class code -> cells per level-0 px^2 mapped to the top colour
    pairs: list[str]
    pair_counts: dict[int, int]
    ex1: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    ey1: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    ex2: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    ey2: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    ecode: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    egrid: GridIndex | None = None
    edge_reach: float = 0.0  # half the longest edge, level-0 px: how far an edge leaves its midpoint's square
    has_edges: bool = False
    rasters: dict = field(default_factory=dict)  # kind -> uint8 keys at 1/RASTER_PX (see _raster_tile)

    @property
    def nbytes(self) -> int:
        arrays = [self.x, self.y, self.ids, self.rows, self.cls, self.her2, self.ex1, self.ey1, self.ex2, self.ey2,
                  self.ecode, *self.density.values(), *self.rasters.values()]
        return int(sum(a.nbytes for a in arrays))


def run_overlay_build(*, cells: pd.DataFrame, edges: pd.DataFrame | None, stain: str, width: int,
                      height: int) -> RunOverlay:
    """Index a run: `cells` with id, x, y, cls, her2_class (optional), area (optional), in file
    order; `edges` with source, target (cell ids), pair_type (optional)."""
    n = len(cells)
    x = cells["x"].to_numpy(dtype=np.float32)
    y = cells["y"].to_numpy(dtype=np.float32)
    raw_ids = cells["id"].to_numpy(dtype=np.int64)
    id_is_row = bool(n and (raw_ids.min() < 0 or raw_ids.max() > MAX_ID))
    cls = class_codes(cells["cls"])
    her2 = (graded_her2_codes(cells["cls"], cells["her2_class"]) if "her2_class" in cells
            else np.full(n, HER2_NONE, np.uint8))
    if "area" in cells and n:
        area = cells["area"].to_numpy(dtype=np.float64)
        radius = float(np.sqrt(np.nanmedian(area) / np.pi)) if np.isfinite(area).any() else 6.0
    else:
        radius = 6.0
    grid, order = GridIndex.build(x=x, y=y, width=width, height=height)
    rows = np.arange(n, dtype=np.int64)[order]
    ids = (rows if id_is_row else raw_ids[order]).astype(np.uint32)
    overlay = RunOverlay(
        stain=stain, width=int(width), height=int(height), x=x[order], y=y[order], ids=ids, rows=rows,
        cls=cls[order], her2=her2[order], grid=grid, id_is_row=id_is_row, radius_px=max(radius, 1.0),
        class_counts={i: int(c) for i, c in enumerate(np.bincount(cls, minlength=len(CLASS_ORDER)))},
        her2_counts={i: int(c) for i, c in enumerate(np.bincount(her2[her2 != HER2_NONE], minlength=len(HER2_ORDER)))},
        density={}, density_vmax={}, pairs=pair_types(stain), pair_counts={},
    )
    _build_density(overlay)
    if edges is not None:
        _build_edges(overlay, edges=edges, raw_ids=raw_ids, x=x, y=y)
    return overlay


def run_overlay_rasters(o: RunOverlay) -> None:
    """Draw the low-zoom rasters (cells, her2, edges at 1/RASTER_PX): every tile at scale
    <= 1/RASTER_PX is then a block reduction of a small array, whatever the cell count."""
    shape = (max(1, math.ceil(o.height / RASTER_PX)), max(1, math.ceil(o.width / RASTER_PX)))
    scale = 1.0 / RASTER_PX
    for kind in ("cells", "her2"):
        if kind == "her2" and not (o.her2 != HER2_NONE).any():
            continue
        img = np.zeros(shape, dtype=np.uint8)
        idx, codes, ranks = _prioritised(o, np.arange(len(o.x)), her2_only=kind == "her2")
        stamp_points(img, px=o.x[idx] * scale, py=o.y[idx] * scale, values=(ranks * 32 + codes + 1).astype(np.uint8),
                     radius=o.radius_px * scale)
        o.rasters[kind] = img
    if o.egrid is not None:
        img = np.zeros(shape, dtype=np.uint8)
        draw_lines(img, ax=o.ex1 * scale, ay=o.ey1 * scale, bx=o.ex2 * scale, by=o.ey2 * scale,
                   values=(o.ecode + 1).astype(np.uint8))
        o.rasters["edges"] = img


def _prioritised(o: RunOverlay, idx: np.ndarray, *, her2_only: bool):
    """Cells `idx` (her2: graded only) ordered for drawing, rare classes last: (idx, codes, ranks)."""
    if her2_only:
        idx = idx[o.her2[idx] != HER2_NONE]
    codes = o.her2[idx] if her2_only else o.cls[idx]
    table = np.zeros(16, np.uint8)
    for code, member in enumerate(HER2_ORDER if her2_only else CLASS_ORDER):
        table[code] = (HER2_PRIORITY if her2_only else CLASS_PRIORITY)[member]
    ranks = table[codes]
    order = np.argsort(ranks, kind="stable")
    return idx[order], codes[order], ranks[order]


def _raster_tile(o: RunOverlay, kind: str, *, x0, y0, out_w, out_h, scale) -> np.ndarray | None:
    """The tile reduced from the low-zoom raster, or None when it does not line up with it."""
    raster = o.rasters.get(kind)
    if raster is None:
        return None
    k = 1.0 / (scale * RASTER_PX)
    if k < 1 or abs(k - round(k)) > 1e-9 or x0 % RASTER_PX or y0 % RASTER_PX:
        return None
    k = int(round(k))
    rx0, ry0 = int(x0 // RASTER_PX), int(y0 // RASTER_PX)
    block = np.zeros((out_h * k, out_w * k), dtype=np.uint8)
    sub = raster[ry0:ry0 + out_h * k, rx0:rx0 + out_w * k]
    block[: sub.shape[0], : sub.shape[1]] = sub
    keys = block.reshape(out_h, k, out_w, k).max(axis=(1, 3)) if k > 1 else block
    return keys if kind == "edges" else keys & np.uint8(31)


def _build_density(o: RunOverlay) -> None:
    b = DENSITY_BASE_PX
    ncols, nrows = max(1, math.ceil(o.width / b)), max(1, math.ceil(o.height / b))
    gx = np.clip((o.x // b).astype(np.int64), 0, ncols - 1)
    gy = np.clip((o.y // b).astype(np.int64), 0, nrows - 1)
    key = gy * ncols + gx
    for code in range(len(CLASS_ORDER)):
        sel = o.cls == code
        if not sel.any():
            continue
        grid = np.bincount(key[sel], minlength=ncols * nrows).astype(np.int32).reshape(nrows, ncols)
        o.density[code] = grid
        # Top colour: the 99th percentile of occupied 256 px squares (2 x 2 base squares).
        coarse = _block_sum(grid, 2)
        occupied = coarse[coarse > 0]
        o.density_vmax[code] = float(np.percentile(occupied, 99)) / (2 * b) ** 2 if occupied.size else 1.0


def _block_sum(grid: np.ndarray, k: int) -> np.ndarray:
    if k == 1:
        return grid
    h, w = grid.shape
    padded = np.zeros((math.ceil(h / k) * k, math.ceil(w / k) * k), dtype=grid.dtype)
    padded[:h, :w] = grid
    return padded.reshape(padded.shape[0] // k, k, padded.shape[1] // k, k).sum(axis=(1, 3))


def _build_edges(o: RunOverlay, *, edges: pd.DataFrame, raw_ids: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
    o.has_edges = True
    if len(edges) == 0:
        o.pair_counts = {i: 0 for i in range(len(o.pairs))}
        return
    low, high = (int(raw_ids.min()), int(raw_ids.max())) if len(raw_ids) else (0, -1)
    if high - low + 1 <= 4 * len(raw_ids) + 1024:  # dense ids (the usual 0..N-1): a direct table
        table = np.full(high - low + 2, -1, dtype=np.int64)
        table[raw_ids - low] = np.arange(len(raw_ids))

        def position(ids: np.ndarray) -> np.ndarray:
            slot = ids - low
            slot = np.where((slot >= 0) & (slot <= high - low), slot, high - low + 1)
            return table[slot]
    else:
        sort = np.argsort(raw_ids, kind="stable")
        sorted_ids = raw_ids[sort]

        def position(ids: np.ndarray) -> np.ndarray:
            pos = np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)
            found = sorted_ids[pos] == ids
            return np.where(found, sort[pos], -1)

    src = position(edges["source"].to_numpy(dtype=np.int64))
    dst = position(edges["target"].to_numpy(dtype=np.int64))
    ok = (src >= 0) & (dst >= 0)
    src, dst = src[ok], dst[ok]
    labels = edges["pair_type"] if "pair_type" in edges else pd.Series(np.full(len(edges), ""))
    present = labels.cat.categories if isinstance(labels.dtype, pd.CategoricalDtype) else pd.unique(labels.astype(str))
    extra = sorted(set(map(str, present)) - set(o.pairs))
    o.pairs = o.pairs + extra
    codes = _codes(labels, o.pairs, 0)[ok]
    x1, y1, x2, y2 = x[src], y[src], x[dst], y[dst]
    grid, order = GridIndex.build(x=(x1 + x2) / 2, y=(y1 + y2) / 2, width=o.width, height=o.height)
    o.ex1, o.ey1, o.ex2, o.ey2, o.ecode = x1[order], y1[order], x2[order], y2[order], codes[order]
    o.egrid = grid
    length = np.hypot(x2 - x1, y2 - y1)
    o.edge_reach = float(length.max()) / 2 + 1 if len(length) else 0.0
    o.pair_counts = {i: int(c) for i, c in enumerate(np.bincount(codes, minlength=len(o.pairs)))}


# --------------------------------------------------------------------------- queries


def cells_in_view(o: RunOverlay, *, x0, y0, x1, y1, her2_only: bool = False) -> np.ndarray:
    """Row positions (index order) of cells whose centroid is in [x0, x1) x [y0, y1)."""
    idx = o.grid.candidates(x0, y0, x1, y1)
    if len(idx) == 0:
        return idx
    x, y = o.x[idx], o.y[idx]
    keep = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    if her2_only:
        keep &= o.her2[idx] != HER2_NONE
    return idx[keep]


def edges_in_view(o: RunOverlay, *, x0, y0, x1, y1) -> np.ndarray:
    """Edge positions whose bounding box meets [x0, x1) x [y0, y1)."""
    if o.egrid is None:
        return np.zeros(0, dtype=np.int64)
    r = o.edge_reach
    idx = o.egrid.candidates(x0 - r, y0 - r, x1 + r, y1 + r)
    if len(idx) == 0:
        return idx
    ax, bx, ay, by = o.ex1[idx], o.ex2[idx], o.ey1[idx], o.ey2[idx]
    keep = (np.minimum(ax, bx) < x1) & (np.maximum(ax, bx) >= x0) & (np.minimum(ay, by) < y1) & (np.maximum(ay, by) >= y0)
    return idx[keep]


def viewport_upper_bound(o: RunOverlay, kind: str, *, x0, y0, x1, y1) -> int:
    """A cheap upper bound of the records of a viewport (grid squares met)."""
    if kind == "edges":
        if o.egrid is None:
            return 0
        r = o.edge_reach
        return o.egrid.count_upper(x0 - r, y0 - r, x1 + r, y1 + r)
    return o.grid.count_upper(x0, y0, x1, y1)


def viewport_records(o: RunOverlay, kind: str, *, x0, y0, x1, y1, limit: int) -> tuple[bytes, int] | None:
    """(records, count) of a viewport, or None when there are more than `limit`."""
    if kind == "edges":
        idx = edges_in_view(o, x0=x0, y0=y0, x1=x1, y1=y1)
        if len(idx) > limit:
            return None
        return pack_edges(x1=o.ex1[idx], y1=o.ey1[idx], x2=o.ex2[idx], y2=o.ey2[idx], code=o.ecode[idx]), len(idx)
    if kind not in ("cells", "her2"):
        raise OverlayError(f"no viewport records for a {kind!r} layer")
    idx = cells_in_view(o, x0=x0, y0=y0, x1=x1, y1=y1, her2_only=kind == "her2")
    if len(idx) > limit:
        return None
    return pack_cells(x=o.x[idx], y=o.y[idx], ids=o.ids[idx], class_code=o.cls[idx], her2_code=o.her2[idx]), len(idx)


# --------------------------------------------------------------------------- palettes


def layer_palette(o: RunOverlay, layer: str) -> tuple[list[tuple[int, int, int]], list[int]]:
    """(RGB, alpha) of palette indices 0..255 for a layer."""
    rgb = [(0, 0, 0)] * 256
    alpha = [0] * 256
    kind = layer_kind(layer)
    if kind in ("cells", "her2"):
        colours = [CLASS_COLOURS[c] for c in CLASS_ORDER] if kind == "cells" else [HER2_COLOURS[h] for h in HER2_ORDER]
        for code, colour in enumerate(colours):
            rgb[1 + code] = rgb[FILL_OFFSET + 1 + code] = hex_rgb(colour)
            alpha[1 + code], alpha[FILL_OFFSET + 1 + code] = 255, FILL_ALPHA
    elif kind == "edges":
        for code, pair in enumerate(o.pairs[:254]):
            rgb[1 + code] = hex_rgb(pair_colour(pair, code))
            alpha[1 + code] = 255
    else:
        ramp, ramp_alpha = density_ramp(CLASS_COLOURS[CLASS_ORDER[density_class(layer)]])
        for i, (colour, a) in enumerate(zip(ramp, ramp_alpha)):
            rgb[1 + i] = colour
            alpha[1 + i] = a
    return rgb, alpha


def density_ramp(colour: str, n: int = 255) -> tuple[list[tuple[int, int, int]], list[int]]:
    """A density layer's ramp: one hue per class (its cell-class colour, so tumour and lymphocyte
    density are told apart), light tint -> the colour -> a darker shade as density rises, and
    alpha rising with it (sparse bins stay see-through; empty bins are palette index 0,
    transparent). Single-hue sequential ramps: Brewer & Harrower, ColorBrewer (2003)."""
    base = np.asarray(hex_rgb(colour), dtype=np.float64)
    light = 0.8 * 255 + 0.2 * base
    dark = 0.55 * base
    out, alpha = [], []
    for t in np.linspace(0.0, 1.0, n):
        c = light + (base - light) * (t / 0.6) if t < 0.6 else base + (dark - base) * ((t - 0.6) / 0.4)
        out.append(tuple(int(round(v)) for v in np.clip(c, 0, 255)))
        alpha.append(int(round(90 + 150 * t)))
    return out, alpha


def layer_kind(layer: str) -> str:
    if layer in ("cells", "her2", "edges", "qc"):
        return layer
    if layer.startswith("density-"):
        return "density"
    raise OverlayError(f"unknown overlay layer {layer!r}")


def density_class(layer: str) -> int:
    name = layer.removeprefix("density-")
    for i, c in enumerate(CLASS_ORDER):
        if c.value == name:
            return i
    raise OverlayError(f"unknown density layer {layer!r}")


# --------------------------------------------------------------------------- rendering

ContourSource = Callable[[float, float, float, float], tuple[list, np.ndarray]]


def _disc_offsets(radius: float) -> np.ndarray:
    r = int(math.ceil(radius))
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    inside = dx * dx + dy * dy <= radius * radius + 0.5
    return np.stack([dy[inside], dx[inside]], axis=1)


def stamp_points(img: np.ndarray, *, px: np.ndarray, py: np.ndarray, values: np.ndarray, radius: float) -> None:
    """Draw a disc of `radius` output px (one pixel below 0.75) at each (px, py); later points win."""
    h, w = img.shape
    cx = np.floor(px).astype(np.int64)
    cy = np.floor(py).astype(np.int64)
    offsets = _disc_offsets(radius) if radius >= 0.75 else np.zeros((1, 2), np.int64)
    for dy, dx in offsets:
        xx, yy = cx + dx, cy + dy
        ok = (xx >= 0) & (xx < w) & (yy >= 0) & (yy < h)
        img[yy[ok], xx[ok]] = values[ok]


def draw_lines(img: np.ndarray, *, ax, ay, bx, by, values: np.ndarray, thick: bool = False) -> None:
    """Vectorised DDA lines (output px coordinates); no Python loop over lines."""
    h, w = img.shape
    dx, dy = bx - ax, by - ay
    steps = np.ceil(np.maximum(np.abs(dx), np.abs(dy))).astype(np.int64) + 1
    steps = np.minimum(steps, 4 * (w + h))  # a line crossing the tile needs no more
    total = int(steps.sum())
    if total == 0:
        return
    which = np.repeat(np.arange(len(steps)), steps)
    first = np.repeat(np.cumsum(steps) - steps, steps)
    t = (np.arange(total) - first) / np.maximum(steps[which] - 1, 1)
    xx = np.floor(ax[which] + dx[which] * t).astype(np.int64)
    yy = np.floor(ay[which] + dy[which] * t).astype(np.int64)
    vals = values[which]
    for ox, oy in ((0, 0), (1, 0), (0, 1)) if thick else ((0, 0),):
        X, Y = xx + ox, yy + oy
        ok = (X >= 0) & (X < w) & (Y >= 0) & (Y < h)
        img[Y[ok], X[ok]] = vals[ok]


def draw_contours(img: np.ndarray, *, contours: list, codes: np.ndarray, x0: float, y0: float, scale: float) -> None:
    """Filled nuclei (translucent fill, opaque outline) at high zoom: one PIL polygon per cell."""
    image = Image.fromarray(img, mode="L")
    draw = ImageDraw.Draw(image)
    width = max(1, int(round(scale)))
    for contour, code in zip(contours, codes.tolist()):
        pts = (np.asarray(contour, dtype=np.float64) - (x0, y0)) * scale
        if len(pts) < 3:
            continue
        flat = [tuple(p) for p in pts.tolist()]
        draw.polygon(flat, fill=FILL_OFFSET + 1 + code, outline=1 + code, width=width)
    img[...] = np.asarray(image)


def render_tile_codes(o: RunOverlay, layer: str, *, x0: float, y0: float, w0: float, h0: float, out_w: int,
                      out_h: int, contour_source: ContourSource | None = None,
                      scale: float | None = None) -> np.ndarray:
    """Palette indices (out_h, out_w) of `layer` over the level-0 rectangle (x0, y0, w0, h0).

    `scale` (output px per level-0 px) defaults to min(out_w / w0, out_h / h0); deep-zoom
    tiles pass their level's exact scale (edge tiles are clipped to the slide)."""
    kind = layer_kind(layer)
    img = np.zeros((out_h, out_w), dtype=np.uint8)
    if w0 <= 0 or h0 <= 0:
        return img
    scale = scale or min(out_w / w0, out_h / h0)
    x1, y1 = x0 + w0, y0 + h0
    if kind != "density" and scale <= 1.0 / RASTER_PX:
        reduced = _raster_tile(o, kind, x0=x0, y0=y0, out_w=out_w, out_h=out_h, scale=scale)
        if reduced is not None:
            return reduced
    if kind in ("cells", "her2"):
        her2_only = kind == "her2"
        if scale >= CONTOUR_SCALE and contour_source is not None:
            pad = 4 * o.radius_px + 8
            contours, cell_codes = contour_source(x0 - pad, y0 - pad, x1 + pad, y1 + pad)
            if her2_only:
                keep = cell_codes != HER2_NONE
                contours = [c for c, k in zip(contours, keep.tolist()) if k]
                cell_codes = cell_codes[keep]
            draw_contours(img, contours=contours, codes=cell_codes, x0=x0, y0=y0, scale=scale)
            return img
        pad = o.radius_px + 2 / scale
        idx = cells_in_view(o, x0=x0 - pad, y0=y0 - pad, x1=x1 + pad, y1=y1 + pad, her2_only=her2_only)
        idx, codes, _ = _prioritised(o, idx, her2_only=her2_only)
        stamp_points(img, px=(o.x[idx] - x0) * scale, py=(o.y[idx] - y0) * scale, values=(codes + 1).astype(np.uint8),
                     radius=o.radius_px * scale)
        return img
    if kind == "edges":
        idx = edges_in_view(o, x0=x0, y0=y0, x1=x1, y1=y1)
        draw_lines(img, ax=(o.ex1[idx] - x0) * scale, ay=(o.ey1[idx] - y0) * scale, bx=(o.ex2[idx] - x0) * scale,
                   by=(o.ey2[idx] - y0) * scale, values=(o.ecode[idx] + 1).astype(np.uint8), thick=scale >= 1)
        return img
    return _render_density(o, density_class(layer), img, x0=x0, y0=y0, scale=scale)


def _render_density(o: RunOverlay, code: int, img: np.ndarray, *, x0, y0, scale) -> np.ndarray:
    grid = o.density.get(code)
    if grid is None:
        return img
    base = DENSITY_BASE_PX
    want = max(DENSITY_MIN_BIN_PX, DENSITY_TILE_PX_PER_BIN / scale)
    k = max(1, 2 ** int(math.ceil(math.log2(want / base))))  # bin = base * k, a power of two
    out_h, out_w = img.shape
    # output pixel centres -> base squares -> bins
    xs = x0 + (np.arange(out_w) + 0.5) / scale
    ys = y0 + (np.arange(out_h) + 0.5) / scale
    bx = (xs // (base * k)).astype(np.int64)
    by = (ys // (base * k)).astype(np.int64)
    gx0, gx1 = int(bx.min()), int(bx.max())
    gy0, gy1 = int(by.min()), int(by.max())
    sub = grid[gy0 * k:(gy1 + 1) * k, gx0 * k:(gx1 + 1) * k]
    counts = _block_sum(sub, k)
    ny, nx = counts.shape
    dens = counts / float((base * k) ** 2)
    vmax = o.density_vmax.get(code, 1.0) or 1.0
    levels = (1 + np.minimum(254, np.floor(254 * dens / vmax))).astype(np.uint8)
    levels[counts == 0] = 0
    ry = np.clip(by - gy0, 0, max(ny - 1, 0))
    rx = np.clip(bx - gx0, 0, max(nx - 1, 0))
    if ny == 0 or nx == 0:
        return img
    inside = ((ys < o.height)[:, None]) & ((xs < o.width)[None, :])
    img[...] = np.where(inside, levels[ry[:, None], rx[None, :]], 0)
    return img


def codes_to_rgba(codes: np.ndarray, palette: Sequence[tuple[int, int, int]], alpha: Sequence[int]) -> np.ndarray:
    lut = np.zeros((256, 4), dtype=np.uint8)
    lut[: len(palette), :3] = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    lut[: len(alpha), 3] = np.asarray(alpha, dtype=np.uint8)
    return lut[codes]


def render_tile_png(o: RunOverlay, layer: str, *, x0, y0, w0, h0, out_w, out_h,
                    contour_source: ContourSource | None = None, scale: float | None = None) -> tuple[bytes, bool]:
    """(PNG bytes, empty?) of one overlay tile."""
    codes = render_tile_codes(o, layer, x0=x0, y0=y0, w0=w0, h0=h0, out_w=out_w, out_h=out_h,
                              contour_source=contour_source, scale=scale)
    if not codes.any():
        return transparent_png(out_w, out_h), True
    rgb, alpha = layer_palette(o, layer)
    return palette_png(codes, rgb, alpha), False


# --------------------------------------------------------------------------- layer summary


def layer_summary(*, cells: pd.DataFrame, pair_labels: Sequence[str] | pd.Series | None, stain: str, width: int,
                  height: int) -> dict:
    """What the layer list needs, without keeping the run in memory: counts per class, HER2
    class and pair type, the top density of every class (cells per level-0 px^2), id_is_row."""
    o = run_overlay_build(cells=cells, edges=None, stain=stain, width=width, height=height)
    summary = layer_summary_of(o)
    if pair_labels is not None:
        labels = pair_labels if isinstance(pair_labels, pd.Series) else pd.Series(np.asarray(pair_labels, dtype=object))
        counts = labels.value_counts()
        pairs = pair_types(stain)
        pairs = pairs + sorted(set(counts.index.astype(str)) - set(pairs))
        counts.index = counts.index.astype(str)
        summary["pairs"] = pairs
        summary["pair_counts"] = {p: int(counts.get(p, 0)) for p in pairs}
    return summary


def layer_summary_of(o: RunOverlay) -> dict:
    """The layer summary of a loaded run (pairs None when it was built without edges)."""
    return {
        "class_counts": {CLASS_ORDER[k].value: v for k, v in o.class_counts.items()},
        "her2_counts": {HER2_ORDER[k].value: v for k, v in o.her2_counts.items()},
        # Cells the HER2 layer does not grade (non-tumour, or a ring too small to measure).
        "her2_not_graded": int((o.her2 == HER2_NONE).sum()) if o.stain == "ihc" else 0,
        "pairs": list(o.pairs) if o.has_edges else None,
        "pair_counts": {p: o.pair_counts.get(i, 0) for i, p in enumerate(o.pairs)} if o.has_edges else {},
        "density_vmax": {CLASS_ORDER[k].value: v for k, v in o.density_vmax.items()},
        "id_is_row": o.id_is_row,
    }


# --------------------------------------------------------------------------- QC layer

# QC raster codes (analysis.core.slides.qc) -> palette index 1 + code; analysed tiles' outlines QC_TILE.
# Every QC pixel is opaque: translucent washes are drawn differently by OpenSeadragon's canvas and
# WebGL drawers (the WebGL one treats straight alpha as premultiplied and brightens the slide), so
# tissue is an outline and the exclusions are hatched (QuPath / HistoQC style), the slide visible
# between the lines.
QC_TILE = 10
QC_STYLE = {  # code: (colour, hatch period in tile px, 0 = outline only)
    0: ("#7A7A7A", 10),  # background glass (excluded): sparse grey hatch
    1: ("#009E73", 0),   # tissue analysed: green outline
    2: ("#CC00CC", 3),   # pen ink (excluded): dense magenta hatch
    3: ("#E69F00", 4),   # fragments below the minimum area (excluded): orange hatch
}
QC_TILE_COLOUR = "#0072B2"


def qc_palette() -> tuple[list[tuple[int, int, int]], list[int]]:
    rgb = [(0, 0, 0)] * 256
    alpha = [0] * 256
    for code, (colour, _) in QC_STYLE.items():
        rgb[1 + code], alpha[1 + code] = hex_rgb(colour), 255
    rgb[QC_TILE], alpha[QC_TILE] = hex_rgb(QC_TILE_COLOUR), 255
    return rgb, alpha


def render_qc_codes(*, qc: np.ndarray, downsample: float, tiles: np.ndarray, x0: float, y0: float, out_w: int,
                    out_h: int, scale: float, slide_w: int, slide_h: int) -> np.ndarray:
    """Palette indices of the QC layer over level-0 (x0, y0) at `scale` output px per level-0 px:
    the QC raster (nearest pixel; nothing beyond the slide) and the outline of every analysed tile
    ((n, 4) x, y, w, h level-0 cores)."""
    img = np.zeros((out_h, out_w), dtype=np.uint8)
    gx = x0 + (np.arange(out_w) + 0.5) / scale  # level-0 centre of each output pixel
    gy = y0 + (np.arange(out_h) + 0.5) / scale
    cols = np.clip((gx / downsample).astype(np.int64), 0, qc.shape[1] - 1)
    rows = np.clip((gy / downsample).astype(np.int64), 0, qc.shape[0] - 1)
    inside = (gy[:, None] < slide_h) & (gx[None, :] < slide_w)
    codes = np.where(inside, qc[rows[:, None], cols[None, :]].astype(np.int16), -1)
    # Hatch in slide-wide output px (no seam between tiles); outlines where a 4-neighbour differs.
    ii = int(round(y0 * scale)) + np.arange(out_h)[:, None]
    jj = int(round(x0 * scale)) + np.arange(out_w)[None, :]
    padded = np.pad(codes, 1, mode="edge")
    edge = ((padded[1:-1, 1:-1] != padded[:-2, 1:-1]) | (padded[1:-1, 1:-1] != padded[2:, 1:-1])
            | (padded[1:-1, 1:-1] != padded[1:-1, :-2]) | (padded[1:-1, 1:-1] != padded[1:-1, 2:]))
    edge[1:, :] |= edge[:-1, :]  # 2 px wide: a 1 px outline vanishes when a tile is drawn scaled down
    edge[:, 1:] |= edge[:, :-1]
    for code, (_, period) in QC_STYLE.items():
        mine = codes == code
        draw = mine & edge if code != 0 else np.zeros_like(mine)  # glass has no outline of its own
        if period:
            draw |= mine & (((ii - jj) % period) == 0 if code else ((ii + jj) % period) == 0)
        img[draw] = 1 + code
    if len(tiles) and scale * float(np.median(tiles[:, 2])) >= 6:  # outlines only where a tile is >= 6 px wide
        tx, ty, tw, th = (tiles[:, i].astype(np.float64) for i in range(4))
        x1, y1 = x0 + out_w / scale, y0 + out_h / scale
        near = (tx < x1) & (tx + tw > x0) & (ty < y1) & (ty + th > y0)
        tx, ty, tw, th = tx[near], ty[near], tw[near], th[near]
        ax = np.concatenate([tx, tx + tw, tx + tw, tx]) - x0
        ay = np.concatenate([ty, ty, ty + th, ty + th]) - y0
        bx = np.concatenate([tx + tw, tx + tw, tx, tx]) - x0
        by = np.concatenate([ty, ty + th, ty + th, ty]) - y0
        # 2 px: a 1 px line vanishes when the viewer draws a tile scaled down.
        draw_lines(img, ax=ax * scale, ay=ay * scale, bx=bx * scale, by=by * scale,
                   values=np.full(len(ax), QC_TILE, np.uint8), thick=True)
    return img
