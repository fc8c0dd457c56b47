"""Per-nucleus Morph_* (14) and Texture_* (9) features, exactly as sc-MTOP computes them.

Follows fuscc-deep-path/sc_MTOP, WSIGraph.py @ 33ff31f, as pinned down in
../shared/data/scmtop/SEMANTICS.md, without OpenCV:

- the nucleus mask is ``cv2.drawContours(canvas, [contour], 0, 1, -1)`` on a canvas of
  ``(ymax-ymin+4, xmax-xmin+4)``: OpenCV 4's ``CollectPolyEdges`` (imgproc/drawing.cpp)
  draws every side as an 8-connected ``LineIterator`` line (left to right, an exact tie
  stays on the minor axis) and ``FillEdgeCollection`` fills each scanline between pairs
  of active edges in 16.16 fixed point, from ``ceil(left)`` to ``floor(right)``, the lower
  vertex row of an edge excluded. Checked pixel for pixel against OpenCV 4.14 on every
  reference nucleus and 6,000 random (also self-intersecting) polygons;
- shape measures are ``skimage.measure.regionprops`` of that mask (same library sc-MTOP
  calls); curvature follows ``getCurvature`` literally, on the raw contour;
- grey levels are OpenCV 4's fixed-point ``COLOR_RGB2GRAY`` for uint8:
  ``(9798 R + 19235 G + 3735 B + 2**14) >> 15``. SEMANTICS.md gives the 14-bit table
  formula ``(4899 R + 9617 G + 1868 B + 8192) >> 14``, which differs by one grey level on
  about 0.3 % of colours and breaks Texture_* on ~10 % of the reference cells; the 15-bit
  one matches OpenCV 4.14 on every colour tested and the reference on every cell. The GLCM is skimage's ``graycomatrix(gray,
  [1], [0])`` (horizontal right neighbour, 256 levels) with row 0 and column 0 zeroed,
  and the properties are skimage ``graycoprops`` formulas plus sum entropy.
"""
from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from skimage.measure import regionprops

from analysis.core.cells.convex import convex_area
from analysis.core.cells.features_batch import CROP_MARGIN as _CROP_MARGIN
from analysis.core.cells.features_batch import CellFeatureError, measure_batch

MORPH_FEATURES = (
    "Morph_Area",
    "Morph_AreaBbox",
    "Morph_CellEccentricities",
    "Morph_Circularity",
    "Morph_Elongation",
    "Morph_Extent",
    "Morph_MajorAxisLength",
    "Morph_MinorAxisLength",
    "Morph_Perimeter",
    "Morph_Solidity",
    "Morph_CurvMean",
    "Morph_CurvStd",
    "Morph_CurvMax",
    "Morph_CurvMin",
)
TEXTURE_FEATURES = (
    "Texture_ASM",
    "Texture_Contrast",
    "Texture_Correlation",
    "Texture_Entropy",
    "Texture_Homogeneity",
    "Texture_IntensityMean",
    "Texture_IntensityStd",
    "Texture_IntensityMax",
    "Texture_IntensityMin",
)

_XY_SHIFT = 16  # OpenCV drawing.cpp fixed point

def _check_contour(contour: np.ndarray) -> np.ndarray:
    points = np.asarray(contour)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 1:
        raise CellFeatureError(f"a contour must be an (N, 2) array of [x, y] points, got shape {points.shape}")
    if not np.issubdtype(points.dtype, np.integer):
        if not np.all(np.isfinite(points)) or not np.all(points == np.round(points)):
            raise CellFeatureError("contour points must be integer pixel coordinates (as HoVer-Net writes them)")
    return points.astype(np.int64)


def _line_pixels(x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of OpenCV's 8-connected ``Line`` for every segment (vectorised).

    LineIterator(leftToRight=True): start at the end with the smaller x; one step along the
    major axis each pixel, a minor step when ``err < 0``, i.e. minor offset
    ``m_j = ceil(j * dmin / dmaj - 1/2)`` (an exact tie does not step).
    """
    swap = x1 < x0
    sx = np.where(swap, x1, x0)
    sy = np.where(swap, y1, y0)
    ex = np.where(swap, x0, x1)
    ey = np.where(swap, y0, y1)
    dx, dy = ex - sx, ey - sy
    y_major = np.abs(dy) > np.abs(dx)
    dmaj = np.where(y_major, np.abs(dy), np.abs(dx))
    dmin = np.where(y_major, np.abs(dx), np.abs(dy))
    counts = dmaj + 1
    seg = np.repeat(np.arange(len(sx)), counts)
    j = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    dmaj_s, dmin_s = dmaj[seg], dmin[seg]
    num = 2 * dmin_s * j - dmaj_s
    den = 2 * np.maximum(dmaj_s, 1)
    m = np.maximum(-((-num) // den), 0)
    step_x = np.sign(dx)[seg]
    step_y = np.sign(dy)[seg]
    ym = y_major[seg]
    px = sx[seg] + np.where(ym, m * step_x, j * step_x)
    py = sy[seg] + np.where(ym, j * step_y, m * step_y)
    return px, py


def fill_contour(*, points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``cv2.drawContours(zeros(shape), [points], 0, 1, -1)`` reproduced (uint8 0/1)."""
    pts = _check_contour(points)
    height, width = shape
    mask = np.zeros((height, width), dtype=np.uint8)
    x1, y1 = pts[:, 0], pts[:, 1]
    x0, y0 = np.roll(x1, 1), np.roll(y1, 1)  # CollectPolyEdges: pt0 = v[i-1], pt1 = v[i]
    px, py = _line_pixels(x0, y0, x1, y1)
    inside = (px >= 0) & (px < width) & (py >= 0) & (py < height)
    mask[py[inside], px[inside]] = 1

    sloped = y0 != y1
    if sloped.sum() < 2:
        return mask
    ax, ay, bx, by = x0[sloped], y0[sloped], x1[sloped], y1[sloped]
    # int64 C division truncates toward zero; numerator and denominator flip together.
    num = (bx - ax) << _XY_SHIFT
    den = by - ay
    slope = np.sign(num) * np.sign(den) * (np.abs(num) // np.abs(den))
    top_x = np.where(ay < by, ax, bx) << _XY_SHIFT
    top_y = np.minimum(ay, by)
    rows = np.abs(den)  # rows y0 .. y1-1: the lower vertex row is excluded
    edge = np.repeat(np.arange(len(ax)), rows)
    step = np.arange(rows.sum()) - np.repeat(np.cumsum(rows) - rows, rows)
    row = top_y[edge] + step
    x_fixed = top_x[edge] + step * slope[edge]
    order = np.lexsort((x_fixed, row))
    row, x_fixed = row[order], x_fixed[order]
    # Consecutive active edges on a scanline pair up: fill ceil(left) .. floor(right).
    left = (x_fixed[0::2] + (1 << _XY_SHIFT) - 1) >> _XY_SHIFT
    right = x_fixed[1::2] >> _XY_SHIFT
    span_row = row[0::2]
    if not np.array_equal(span_row, row[1::2]):
        raise CellFeatureError("contour has an odd number of edge crossings on a scanline")
    keep = (span_row >= 0) & (span_row < height) & (right >= 0) & (left < width)
    left = np.clip(left[keep], 0, width - 1)
    right = np.clip(right[keep], 0, width - 1)
    span_row = span_row[keep]
    diff = np.zeros((height, width + 1), dtype=np.int32)
    np.add.at(diff, (span_row, left), 1)
    np.add.at(diff, (span_row, right + 1), -1)
    mask[np.cumsum(diff, axis=1)[:, :width] > 0] = 1
    return mask


def nucleus_mask(*, contour: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """sc-MTOP's nucleus mask and the level-0 (x, y) of its top-left pixel."""
    pts = _check_contour(contour)
    xmin, ymin = pts.min(axis=0)
    xmax, ymax = pts.max(axis=0)
    shape = (int(ymax - ymin + 2 * _CROP_MARGIN), int(xmax - xmin + 2 * _CROP_MARGIN))
    shifted = pts - np.array([xmin - _CROP_MARGIN, ymin - _CROP_MARGIN])
    return fill_contour(points=shifted, shape=shape), (int(xmin - _CROP_MARGIN), int(ymin - _CROP_MARGIN))


def curvature_features(*, contour: np.ndarray) -> dict[str, float]:
    """Mean, std (ddof 0), max and min of sc-MTOP's ``getCurvature`` on the raw contour."""
    pts = _check_contour(contour).astype(np.float64)
    kept = [pts[0]]
    for point in pts[1:]:  # short contours: a plain loop is clearest and cheap
        if np.abs(point - kept[-1]).sum() > 2:
            kept.append(point)
    p = np.asarray(kept)
    d = np.roll(p, -1, axis=0) - p
    s = np.sqrt((d**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        t = d / s[:, None]
        s_bar = (s + np.roll(s, 1)) / 2.0
        c = (np.roll(t, -1, axis=0) - t) / s_bar[:, None]
        c_bar = (c + np.roll(c, 1, axis=0)) / 2.0
        k = (t[:, 1] * c_bar[:, 0] - t[:, 0] * c_bar[:, 1]) / ((t**2).sum(axis=1)) ** 1.5
    return {
        "Morph_CurvMean": float(np.mean(k)),
        "Morph_CurvStd": float(np.std(k)),
        "Morph_CurvMax": float(np.max(k)),
        "Morph_CurvMin": float(np.min(k)),
    }


def morph_features(*, contour: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """The 14 Morph_* features of one nucleus (regionprops of the sc-MTOP mask)."""
    if mask is None:
        mask, _ = nucleus_mask(contour=contour)
    if not mask.any():
        raise CellFeatureError("the nucleus mask is empty")
    props = regionprops(mask)[0]
    area = float(props.area)
    perimeter = float(props.perimeter)
    major, minor = float(props.axis_major_length), float(props.axis_minor_length)
    with np.errstate(divide="ignore", invalid="ignore"):
        elongation = major / minor if minor != 0 else float("inf")
        circularity = 4.0 * np.pi * area / perimeter**2 if perimeter != 0 else float("inf")
        # = props.solidity (skimage: np.sum(image) * 1.0 / np.sum(convex_hull_image)), the hull
        # pixels counted exactly without qhull: same integer, same double.
        solidity = np.float64(props.area) / np.float64(float(convex_area(props.image)))
    return {
        "Morph_Area": area,
        "Morph_AreaBbox": float(props.area_bbox),
        "Morph_CellEccentricities": float(props.eccentricity),
        "Morph_Circularity": float(circularity),
        "Morph_Elongation": float(elongation),
        "Morph_Extent": area / float(props.area_bbox),
        "Morph_MajorAxisLength": major,
        "Morph_MinorAxisLength": minor,
        "Morph_Perimeter": perimeter,
        "Morph_Solidity": float(solidity),
        **curvature_features(contour=contour),
    }


def rgb_to_gray(*, rgb: np.ndarray) -> np.ndarray:
    """OpenCV ``COLOR_RGB2GRAY`` for uint8 (fixed point, rounded); extra channels ignored."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3 or rgb.dtype != np.uint8:
        raise CellFeatureError(f"expected an (H, W, 3 or 4) uint8 image, got {rgb.dtype} {rgb.shape}")
    r, g, b = (rgb[..., i].astype(np.int32) for i in range(3))
    return ((9798 * r + 19235 * g + 3735 * b + 16384) >> 15).astype(np.uint8)


def texture_features(*, gray: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """The 9 Texture_* features of one nucleus from its grey crop and mask (same shape)."""
    if gray.shape != mask.shape:
        raise CellFeatureError(f"grey crop {gray.shape} and mask {mask.shape} differ in shape")
    inside = mask.astype(bool)
    if not inside.any():
        raise CellFeatureError("the nucleus mask is empty")
    g = np.where(inside, gray, 0).astype(np.int64)
    left, right = g[:, :-1].ravel(), g[:, 1:].ravel()
    pair = (left > 0) & (right > 0)  # GLCM row 0 / column 0 zeroed
    codes, counts = np.unique(left[pair] * 256 + right[pair], return_counts=True)
    i, j = (codes // 256).astype(np.float64), (codes % 256).astype(np.float64)
    total = counts.sum()
    p = counts / (total if total else 1)
    asm = float((p**2).sum())
    contrast = float((p * (i - j) ** 2).sum())
    homogeneity = float((p / (1.0 + (i - j) ** 2)).sum())
    mean_i, mean_j = (p * i).sum(), (p * j).sum()
    std_i = np.sqrt((p * (i - mean_i) ** 2).sum())
    std_j = np.sqrt((p * (j - mean_j) ** 2).sum())
    if std_i < 1e-15 or std_j < 1e-15:
        correlation = 1.0  # skimage graycoprops convention
    else:
        correlation = float((p * (i - mean_i) * (j - mean_j)).sum() / (std_i * std_j))
    sums = np.bincount((i + j).astype(np.int64), weights=p, minlength=511)
    entropy = float(-(sums * np.log(sums + 1e-15)).sum())
    values = gray[inside].astype(np.float64)
    return {
        "Texture_ASM": asm,
        "Texture_Contrast": contrast,
        "Texture_Correlation": correlation,
        "Texture_Entropy": entropy,
        "Texture_Homogeneity": homogeneity,
        "Texture_IntensityMean": float(values.mean()),
        "Texture_IntensityStd": float(values.std()),
        "Texture_IntensityMax": int(values.max()),
        "Texture_IntensityMin": int(values.min()),
    }


RegionReader = Callable[[int, int, int, int], np.ndarray]  # (x, y, width, height) -> RGB(A) uint8


def openslide_region_reader(*, slide_path: Path) -> tuple[RegionReader, Callable[[], None]]:
    """A level-0 region reader over OpenSlide (outside the slide reads as 0) and its closer."""
    import openslide  # imported here: the rest of the module has no slide dependency

    slide = openslide.OpenSlide(str(slide_path))

    def read(x: int, y: int, width: int, height: int) -> np.ndarray:
        return np.asarray(slide.read_region((int(x), int(y)), 0, (int(width), int(height))))

    return read, slide.close


def measure_each(contours: list[np.ndarray], crops: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Morph_* and Texture_* nucleus by nucleus with the functions above: the definition
    that features_batch.measure_batch reproduces bit for bit (kept for its tests and benchmark)."""
    rows = []
    for contour, crop in zip(contours, crops):
        mask, _ = nucleus_mask(contour=contour)
        rows.append({**morph_features(contour=contour, mask=mask), **texture_features(gray=crop, mask=mask)})
    return {name: np.array([row[name] for row in rows]) for name in MORPH_FEATURES + TEXTURE_FEATURES}


def _measure(args: tuple[list[np.ndarray], list[np.ndarray]]) -> dict[str, np.ndarray]:
    """Morph_* and Texture_* columns of a chunk of nuclei from their checked contours and grey crops."""
    contours, crops = args
    if _MEASURE is not None:
        return _MEASURE(contours, crops)
    return measure_batch(contours, crops)


_MEASURE: Callable | None = None  # benchmarks/scmtop_dense.py sets measure_each to time the old path


def _default_signals() -> None:
    """Pool workers take SIGTERM / SIGINT as the defaults, not the forking process's handlers."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _default_workers() -> int:
    if multiprocessing.current_process().daemon:
        return 1  # a daemonic process (e.g. a Celery prefork child) may not start children
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def nucleus_features(
    *, contours: list[np.ndarray], read_region: RegionReader, block_px: int = 1024, workers: int | None = None
) -> pd.DataFrame:
    """Morph_* and Texture_* for every contour (level-0 [x, y] points), one row each.

    Pixels come from `read_region` in blocks of about `block_px` so each image tile is
    decoded once, not once per nucleus (sc-MTOP reads one region per nucleus); only this
    process reads (a forked OpenSlide handle would share its file offset). The measures
    come from features_batch.measure_batch (the functions above, batched, the same doubles)
    in `workers` forked processes (default: the cores this process may use; 1 inside a
    daemonic process, and serial under 256 nuclei), in contiguous chunks re-assembled in
    input order: every value depends only on its own nucleus, so the table is the same to
    the bit for any `workers`.
    """
    n = len(contours)
    if workers is None:
        workers = _default_workers()
    boxes = np.zeros((n, 4), dtype=np.int64)  # x0, y0 (nucleus_mask's origin), width, height
    contours = [_check_contour(contour) for contour in contours]  # int64 (N, 2), as measure_batch takes them
    for index, pts in enumerate(contours):
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        boxes[index] = (lo[0] - _CROP_MARGIN, lo[1] - _CROP_MARGIN, hi[0] - lo[0] + 2 * _CROP_MARGIN,
                        hi[1] - lo[1] + 2 * _CROP_MARGIN)
    crops: list[np.ndarray | None] = [None] * n
    if n:
        block = boxes[:, :2] // block_px
        order = np.lexsort((block[:, 0], block[:, 1]))
        keys = block[order]
        starts = np.flatnonzero(np.r_[True, (np.diff(keys, axis=0) != 0).any(axis=1)])
        for start, stop in zip(starts, np.r_[starts[1:], n]):
            members = order[start:stop]
            x0 = int(boxes[members, 0].min())
            y0 = int(boxes[members, 1].min())
            x1 = int((boxes[members, 0] + boxes[members, 2]).max())
            y1 = int((boxes[members, 1] + boxes[members, 3]).max())
            gray = rgb_to_gray(rgb=read_region(x0, y0, x1 - x0, y1 - y0))
            for m in members:
                ox, oy = boxes[m, 0] - x0, boxes[m, 1] - y0
                crops[m] = gray[oy : oy + boxes[m, 3], ox : ox + boxes[m, 2]].copy()
    if workers <= 1 or n < 256:
        parts = [_measure((contours, crops))] if n else []
    else:
        bounds = np.linspace(0, n, 4 * workers + 1).astype(int)  # a few chunks per worker
        chunks = [(contours[a:b], crops[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        # close + join (not the context manager's terminate): idle workers get their sentinel and
        # exit, so no SIGTERM is needed, whatever handlers the forking process had installed.
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=_default_signals)
        try:
            parts = pool.map(_measure, chunks)
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
    names = MORPH_FEATURES + TEXTURE_FEATURES
    frame = pd.DataFrame({name: np.concatenate([part[name] for part in parts]) if parts else np.zeros(0)
                          for name in names}, columns=list(names))
    for column in ("Texture_IntensityMax", "Texture_IntensityMin"):
        frame[column] = frame[column].astype(np.int64)
    return frame
