"""Statistics of a drawn region: the cells whose centroid lies inside a GeoJSON polygon.

What QuPath shows in an annotation's measurement list (Bankhead et al., Sci Rep 2017;7:16878:
area, detections per class, and for IHC the positive-cell percentages and H-score), computed
from a run's cell table:

- area in mm2 (shoelace area of the outer ring minus the holes, times the slide's um/px);
- cells per class (analysis.core.cells.classes.CellClass) whose centroid is inside;
- HER2 membrane classes among the inside tumour cells (ASCO/CAP grade tumour cells only), the
  region's ASCO/CAP score (analysis.core.her2.grading.her2_slide_score, null below its
  20-cell minimum) and H-score (grading.h_score).

Fast on slides of a million cells: only the row groups of the cell table that meet the
polygon's bounding box are read (the table's Morton-bucket index, cells.table.cells_in_rect);
the polygon is rasterised once (Pillow) at up to RASTER_MAX px a side, so a cell in a pixel
well inside or outside is decided by one lookup, and only the cells in pixels the outline
crosses are tested exactly (skimage.measure.points_in_poly, per ring; holes even-odd).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image, ImageDraw

from analysis.core.cells.classes import CellClass, Her2Class
from analysis.core.cells.table import cells_in_rect_arrow
from analysis.core.her2.grading import NoTumourCellsError, h_score, her2_slide_score

RASTER_MAX = 2048  # px a side of the polygon's mask
OUTLINE_PX = 3  # mask px around the outline that get the exact test


class RegionError(ValueError):
    """A geometry the statistics cannot use."""


@dataclass(frozen=True)
class RegionStatistics:
    area_mm2: float | None  # None: a point, or a slide of unknown resolution
    cells: dict = field(default_factory=dict)  # CellClass value -> count
    her2: dict = field(default_factory=dict)  # Her2Class value -> count, tumour cells only
    asco_cap: str | None = None  # "0" / "1+" / "2+" / "3+"; None off IHC or below the cell minimum
    h_score: float | None = None  # 0-300 over graded tumour cells; None off IHC or when none is graded
    n_cells: int = 0
    area_px: float | None = None  # level-0 px^2

    def to_dict(self) -> dict:
        return asdict(self)


def polygon_rings(geometry: dict) -> list[np.ndarray]:
    """The rings of a GeoJSON Polygon as (N, 2) float arrays (first = outer); [] for a Point."""
    kind = (geometry or {}).get("type")
    if kind == "Point":
        return []
    if kind != "Polygon":
        raise RegionError(f"statistics need a Polygon or Point geometry, got {kind!r}")
    rings = []
    for ring in geometry.get("coordinates") or []:
        pts = np.asarray(ring, dtype=np.float64).reshape(-1, 2)
        if len(pts) >= 3 and np.isfinite(pts).all():
            rings.append(pts)
    if not rings:
        raise RegionError("the polygon has no ring of 3 or more vertices")
    return rings


def ring_area(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def points_in_rings(*, x: np.ndarray, y: np.ndarray, rings: list[np.ndarray]) -> np.ndarray:
    """Exact even-odd test of points against the rings (outer ring and holes)."""
    from skimage.measure import points_in_poly

    points = np.column_stack([x, y])
    inside = np.zeros(len(points), dtype=bool)
    for ring in rings:
        inside ^= points_in_poly(points, ring)
    return inside


def points_in_polygon(*, x: np.ndarray, y: np.ndarray, rings: list[np.ndarray]) -> np.ndarray:
    """points_in_rings, fast: a raster lookup for every point but those near the outline."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) == 0:
        return np.zeros(0, dtype=bool)
    allpts = np.concatenate(rings)
    x0, y0 = allpts.min(axis=0)
    x1, y1 = allpts.max(axis=0)
    scale = min(1.0, RASTER_MAX / max(x1 - x0, y1 - y0, 1.0))  # mask px per level-0 px
    w = int(math.ceil((x1 - x0) * scale)) + 1
    h = int(math.ceil((y1 - y0) * scale)) + 1
    fill = Image.new("L", (w, h), 0)
    edge = Image.new("L", (w, h), 0)
    draw_fill, draw_edge = ImageDraw.Draw(fill), ImageDraw.Draw(edge)
    for i, ring in enumerate(rings):
        flat = [tuple(p) for p in ((ring - (x0, y0)) * scale).tolist()]
        draw_fill.polygon(flat, fill=255 if i == 0 else 0)  # holes cut out of the outer ring
        draw_edge.line(flat + [flat[0]], fill=255, width=OUTLINE_PX)
    fill_mask = np.asarray(fill) > 0
    edge_mask = np.asarray(edge) > 0
    px = np.floor((x - x0) * scale).astype(np.int64)
    py = np.floor((y - y0) * scale).astype(np.int64)
    within = (px >= 0) & (px < w) & (py >= 0) & (py < h)
    inside = np.zeros(len(x), dtype=bool)
    cx, cy = px[within], py[within]
    inside[within] = fill_mask[cy, cx]
    unsure = np.zeros(len(x), dtype=bool)
    unsure[within] = edge_mask[cy, cx]
    if unsure.any():
        inside[unsure] = points_in_rings(x=x[unsure], y=y[unsure], rings=rings)
    return inside


def region_statistics(*, cells_path: Path | None, geometry: dict, mpp_x: float | None = None,
                      mpp_y: float | None = None, stain: str = "he") -> RegionStatistics:
    """Statistics of the cells of `cells_path` (a run's cell table; None: no run) inside `geometry`
    (GeoJSON Polygon or Point in level-0 px). A Point has no area and holds no cell."""
    rings = polygon_rings(geometry)
    if not rings:
        return RegionStatistics(area_mm2=None)
    area_px = max(0.0, ring_area(rings[0]) - sum(ring_area(r) for r in rings[1:]))
    area_mm2 = area_px * mpp_x * (mpp_y or mpp_x) / 1e6 if mpp_x else None
    if cells_path is None:
        return RegionStatistics(area_mm2=area_mm2, area_px=area_px)
    allpts = np.concatenate(rings)
    (x0, y0), (x1, y1) = allpts.min(axis=0), allpts.max(axis=0)
    columns = ["x", "y", "cls"] + (["her2_class"] if stain == "ihc" else [])
    table = cells_in_rect_arrow(path=cells_path, x0=float(x0), y0=float(y0), x1=float(np.nextafter(x1, np.inf)),
                                y1=float(np.nextafter(y1, np.inf)), columns=columns)
    inside = points_in_polygon(x=table["x"].to_numpy(), y=table["y"].to_numpy(), rings=rings)
    table = table.filter(pa.array(inside))
    cls = _counts(table["cls"])
    by_class = {c.value: cls.get(c.value, 0) for c in CellClass}
    n_cells = table.num_rows
    if stain != "ihc":
        return RegionStatistics(area_mm2=area_mm2, cells=by_class, n_cells=n_cells, area_px=area_px)
    tumour = table.filter(pc.equal(table["cls"].cast(pa.string()), CellClass.TUMOUR.value))
    grades = _counts(tumour["her2_class"])
    her2 = {h.value: grades.get(h.value, 0) for h in Her2Class}
    # The score and H-score need one value per cell; rebuilt from the counts (no per-row strings read).
    graded = np.repeat(np.array(list(grades), dtype=object), list(grades.values())) if grades else []
    try:
        score = her2_slide_score(her2_class=graded).score
    except NoTumourCellsError:
        score = None
    return RegionStatistics(area_mm2=area_mm2, cells=by_class, her2=her2, asco_cap=score,
                            h_score=h_score(her2_class=graded), n_cells=n_cells, area_px=area_px)


def _counts(column) -> dict[str, int]:
    """Non-null value -> count of an Arrow (dictionary or string) column."""
    if len(column) == 0:
        return {}
    counts = pc.value_counts(column.cast(pa.string()) if not pa.types.is_dictionary(column.type) else column)
    out: dict[str, int] = {}
    for value, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()):
        if value is not None:
            out[str(value)] = out.get(str(value), 0) + int(n)
    return out
