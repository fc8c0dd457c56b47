"""sc-MTOP's Morph_* and Texture_* for a batch of nuclei: features.py's doubles, bit for bit, faster.

features.py measures one nucleus the way sc-MTOP does (an OpenCV-drawn mask, scikit-image
``regionprops``, the literal ``getCurvature``, an skimage GLCM) and stays the readable
definition. Per nucleus that is ~1.5 ms, almost all of it Python and small-array overhead.
Here the same values come from:

- **integers in numba**: the OpenCV fill (features.fill_contour's algorithm), bounding box,
  area, first raw moments, the perimeter's 3x3 neighbourhood codes, the convex hull count,
  the curvature's point thinning and the GLCM pair counts. Integer sums are exact in any
  order, so these cannot differ.
- **floats through the very operations scikit-image and numpy perform**, in the same
  order on the same operands: the central moments as the two ``matmul`` calls that
  ``np.einsum(..., optimize='greedy')`` reduces to inside ``skimage.measure.moments_central``
  (operand layouts included: BLAS results depend on them), the perimeter as the 50-bin
  histogram ``@`` the weights row by row, ``eigvalsh`` on the stacked 2 x 2 inertia tensors
  (one LAPACK call per matrix, as before), elementwise IEEE arithmetic on all nuclei's
  points at once (elementwise results do not depend on how an array is cut), and per-nucleus
  sums by numpy's own pairwise summation replayed on each nucleus's segment
  (``_pairwise_sum``; ``np.add.reduceat`` would add sequentially and differ in the last bits).

Nothing here is approximated. tests/analysis/core/cells/test_features_batch.py compares every
column bit for bit with features.py (the per-nucleus path) on the sc-MTOP reference nuclei,
on random and degenerate polygons and, in benchmarks/scmtop_dense.py, on 17,604 dense
nuclei; a numpy, BLAS or scikit-image change that moved a bit would fail there.

Compiled on first use and cached (``cache=True``; NUMBA_CACHE_DIR for a read-only install).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from analysis.core.cells.convex import convex_area

_XY_SHIFT = 16  # OpenCV drawing.cpp fixed point, as features._XY_SHIFT
CROP_MARGIN = 2  # sc-MTOP pads the contour's box by 2 px on each side (features.nucleus_mask)
_PERIMETER_WEIGHTS = np.zeros(50, dtype=np.float64)  # skimage.measure.perimeter, neighborhood 4
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1
_PERIMETER_WEIGHTS[[21, 33]] = math.sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + math.sqrt(2)) / 2
_MOMENT_ORDERS = np.arange(4, dtype=np.float64)  # regionprops' moments_central(order=3)


class CellFeatureError(ValueError):
    """A nucleus contour or image crop cannot be measured (features.py re-exports it)."""


@njit(cache=True)
def _fill(xs, ys, height, width):
    """features.fill_contour on int64 x / y: (uint8 mask, True), or (mask, False) on an odd crossing."""
    mask = np.zeros((height, width), dtype=np.uint8)
    n = xs.size
    # Outline: OpenCV's 8-connected Line from v[i-1] to v[i], walked from its left end.
    for i in range(n):
        x0, y0, x1, y1 = xs[i - 1], ys[i - 1], xs[i], ys[i]
        if x1 < x0:
            sx, sy, ex, ey = x1, y1, x0, y0
        else:
            sx, sy, ex, ey = x0, y0, x1, y1
        dx, dy = ex - sx, ey - sy
        y_major = abs(dy) > abs(dx)
        dmaj = abs(dy) if y_major else abs(dx)
        dmin = abs(dx) if y_major else abs(dy)
        step_x = (dx > 0) - (dx < 0)
        step_y = (dy > 0) - (dy < 0)
        den = 2 * max(dmaj, 1)
        for j in range(dmaj + 1):
            m = -((dmaj - 2 * dmin * j) // den)
            if m < 0:
                m = 0
            if y_major:
                px, py = sx + m * step_x, sy + j * step_y
            else:
                px, py = sx + j * step_x, sy + m * step_y
            if 0 <= px < width and 0 <= py < height:
                mask[py, px] = 1
    # Scanline fill between pairs of active edges (lower vertex row excluded), 16.16 fixed point.
    n_sloped = 0
    total = 0
    top = 1 << 62
    bottom = -(1 << 62)
    for i in range(n):
        if ys[i - 1] != ys[i]:
            n_sloped += 1
            total += abs(ys[i] - ys[i - 1])
            top = min(top, ys[i - 1], ys[i])
            bottom = max(bottom, ys[i - 1], ys[i])
    if n_sloped < 2:
        return mask, True
    span = bottom - top
    per_row = np.zeros(span + 1, dtype=np.int64)
    for i in range(n):
        if ys[i - 1] != ys[i]:
            for r in range(min(ys[i - 1], ys[i]), max(ys[i - 1], ys[i])):
                per_row[r - top + 1] += 1
    for r in range(span):
        per_row[r + 1] += per_row[r]  # now: start offset of each row's crossings
    fill_at = per_row.copy()
    crossings = np.empty(total, dtype=np.int64)
    for i in range(n):
        ax, ay, bx, by = xs[i - 1], ys[i - 1], xs[i], ys[i]
        if ay == by:
            continue
        num = (bx - ax) << _XY_SHIFT
        den = by - ay
        # C division: truncation toward zero.
        slope = ((num > 0) - (num < 0)) * ((den > 0) - (den < 0)) * (abs(num) // abs(den))
        top_x = (ax if ay < by else bx) << _XY_SHIFT
        top_y = min(ay, by)
        for step in range(abs(den)):
            r = top_y + step - top
            crossings[fill_at[r]] = top_x + step * slope
            fill_at[r] += 1
    for r in range(span):
        a, b = per_row[r], per_row[r + 1]
        if (b - a) % 2:
            return mask, False
        row = r + top
        if row < 0 or row >= height:
            continue
        xs_row = np.sort(crossings[a:b])
        for k in range(0, b - a, 2):
            left = (xs_row[k] + (1 << _XY_SHIFT) - 1) >> _XY_SHIFT
            right = xs_row[k + 1] >> _XY_SHIFT
            if right < 0 or left >= width:
                continue
            left = max(left, 0)
            right = min(right, width - 1)
            for c in range(left, right + 1):
                mask[row, c] = 1
    return mask, True


@njit(cache=True)
def _shape_integers(mask, histogram):
    """Integer shape measures of the mask's foreground (regionprops' ``image``: its bounding box).

    Returns (r0, r1, c0, c1, area, sum of local rows, sum of local columns, convex area) and
    fills `histogram` with skimage.measure.perimeter's codes (4-neighbourhood erosion, border
    convolved with [[10, 2, 10], [2, 1, 2], [10, 2, 10]], zero outside, one count per pixel
    of the box).
    """
    height, width = mask.shape
    r0, r1, c0, c1 = height, -1, width, -1
    for r in range(height):
        for c in range(width):
            if mask[r, c]:
                r0 = min(r0, r)
                r1 = max(r1, r)
                c0 = min(c0, c)
                c1 = max(c1, c)
    if r1 < 0:
        return 0, 0, 0, 0, 0, 0, 0, 0
    h, w = r1 - r0 + 1, c1 - c0 + 1
    image = np.zeros((h + 2, w + 2), dtype=np.uint8)  # the box, one zero pixel around it
    area = 0
    m10 = 0
    m01 = 0
    for r in range(h):
        for c in range(w):
            if mask[r0 + r, c0 + c]:
                image[r + 1, c + 1] = 1
                area += 1
                m10 += r
                m01 += c
    border = np.zeros((h + 2, w + 2), dtype=np.uint8)
    for r in range(1, h + 1):
        for c in range(1, w + 1):
            if image[r, c] and not (image[r - 1, c] and image[r + 1, c] and image[r, c - 1] and image[r, c + 1]):
                border[r, c] = 1
    histogram[:] = 0
    for r in range(1, h + 1):
        for c in range(1, w + 1):
            code = (border[r, c] + 2 * (border[r - 1, c] + border[r + 1, c] + border[r, c - 1] + border[r, c + 1])
                    + 10 * (border[r - 1, c - 1] + border[r - 1, c + 1] + border[r + 1, c - 1] + border[r + 1, c + 1]))
            histogram[code] += 1
    hull = convex_area(image[1 : h + 1, 1 : w + 1])
    return r0, r1 + 1, c0, c1 + 1, area, m10, m01, hull


@njit(cache=True)
def _thin_contour(points, out):
    """getCurvature's point thinning: keep a point when |dx| + |dy| > 2 from the last kept one."""
    out[0, 0] = points[0, 0]
    out[0, 1] = points[0, 1]
    kept = 1
    for i in range(1, points.shape[0]):
        if abs(points[i, 0] - out[kept - 1, 0]) + abs(points[i, 1] - out[kept - 1, 1]) > 2:
            out[kept, 0] = points[i, 0]
            out[kept, 1] = points[i, 1]
            kept += 1
    return kept


@njit(cache=True)
def _glcm_counts(gray, mask, codes, counts):
    """Horizontal right-neighbour pairs (i, j), both > 0 inside the mask, as sorted codes i*256+j and counts.

    Pixels outside the mask are 0 (sc-MTOP multiplies the crop by the mask), and GLCM row 0 /
    column 0 are dropped, so a pair counts only when both grey levels are > 0 inside the mask.
    Returns how many distinct codes were written.
    """
    height, width = gray.shape
    n = 0
    for r in range(height):
        for c in range(width - 1):
            a = gray[r, c] if mask[r, c] else 0
            b = gray[r, c + 1] if mask[r, c + 1] else 0
            if a > 0 and b > 0:
                codes[n] = np.int64(a) * 256 + b
                n += 1
    if n == 0:
        return 0
    ordered = np.sort(codes[:n])
    m = 0
    for k in range(n):
        if m > 0 and ordered[k] == codes[m - 1]:
            counts[m - 1] += 1
        else:
            codes[m] = ordered[k]
            counts[m] = 1
            m += 1
    return m


@njit(cache=True)
def _pairwise_sum(values, start, n):
    """numpy's float64 ``add.reduce`` of values[start:start+n]: its pairwise summation
    (numpy/_core/src/umath/loops_utils.h.src ``pairwise_sum``: 8 accumulators up to 128
    elements, halves above, -0.0 start). np.add.reduceat adds sequentially instead."""
    if n < 8:
        total = -0.0
        for i in range(n):
            total += values[start + i]
        return total
    if n <= 128:
        r = values[start : start + 8].copy()
        i = 8
        while i < n - (n % 8):
            for lane in range(8):
                r[lane] += values[start + i + lane]
            i += 8
        total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while i < n:
            total += values[start + i]
            i += 1
        return total
    half = n // 2
    half -= half % 8
    return _pairwise_sum(values, start, half) + _pairwise_sum(values, start + half, n - half)


@njit(cache=True)
def _segment_sums(values, starts, lengths):
    out = np.empty(starts.size, dtype=np.float64)
    for k in range(starts.size):
        out[k] = _pairwise_sum(values, starts[k], lengths[k])
    return out


def _segment_starts(lengths: np.ndarray) -> np.ndarray:
    """Where each of the consecutive segments of these lengths starts."""
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)


def _segment_sum(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``values[a:a + n].sum()`` for every segment (a, n) of `starts`, `lengths`."""
    return _segment_sums(np.ascontiguousarray(values, dtype=np.float64), starts, lengths)


def _segment_mean_std(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x.mean()`` and ``x.std()`` of each segment x, as numpy's _mean / _var compute them."""
    mean = _segment_sum(values, starts, counts) / counts
    centred = values - np.repeat(mean, counts)
    centred = np.multiply(centred, centred, out=centred)
    return mean, np.sqrt(_segment_sum(centred, starts, counts) / counts)


def _segment_rolls(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Segment starts and, per element, the index of np.roll(x, -1) and np.roll(x, 1) within its segment."""
    starts = _segment_starts(lengths)
    ends = starts + lengths
    index = np.arange(int(lengths.sum()), dtype=np.int64)
    seg_start = np.repeat(starts, lengths)
    seg_end = np.repeat(ends, lengths)
    following = np.where(index + 1 == seg_end, seg_start, index + 1)
    preceding = np.where(index == seg_start, seg_end - 1, index - 1)
    return starts, following, preceding


def curvature_batch(contours: list[np.ndarray]) -> dict[str, np.ndarray]:
    """features.curvature_features for every contour (int64 (N, 2) arrays), as columns."""
    thinned = []
    for contour in contours:
        buffer = np.empty(contour.shape, dtype=np.int64)
        thinned.append(buffer[: _thin_contour(contour, buffer)])
    lengths = np.array([len(t) for t in thinned], dtype=np.int64)
    p = np.concatenate(thinned).astype(np.float64)
    starts, following, preceding = _segment_rolls(lengths)
    d = p[following] - p
    s = np.sqrt((d**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        t = d / s[:, None]
        s_bar = (s + s[preceding]) / 2.0
        c = (t[following] - t) / s_bar[:, None]
        c_bar = (c + c[preceding]) / 2.0
        k = (t[:, 1] * c_bar[:, 0] - t[:, 0] * c_bar[:, 1]) / ((t**2).sum(axis=1)) ** 1.5
        mean, std = _segment_mean_std(k, starts, lengths)
    return {
        "Morph_CurvMean": mean,
        "Morph_CurvStd": std,
        "Morph_CurvMax": np.maximum.reduceat(k, starts),
        "Morph_CurvMin": np.minimum.reduceat(k, starts),
    }


def _glcm_batch(grays: list[np.ndarray], masks: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The GLCM columns of features.texture_features (ASM ... Entropy) for every nucleus."""
    n = len(grays)
    codes_all, counts_all, lengths = [], [], np.zeros(n, dtype=np.int64)
    for index, (gray, mask) in enumerate(zip(grays, masks)):
        size = max(gray.shape[0] * (gray.shape[1] - 1), 1)
        codes = np.empty(size, dtype=np.int64)
        counts = np.empty(size, dtype=np.int64)
        m = _glcm_counts(gray, mask, codes, counts)
        codes_all.append(codes[:m])
        counts_all.append(counts[:m])
        lengths[index] = m
    # A nucleus without a single pair (every sum over nothing) is set apart: reduceat, used for the
    # integer totals below, cannot take an empty segment.
    empty = {"Texture_ASM": 0.0, "Texture_Contrast": 0.0, "Texture_Correlation": 1.0, "Texture_Homogeneity": 0.0,
             "Texture_Entropy": float(-(np.zeros(511) * np.log(np.zeros(511) + 1e-15)).sum())}
    out = {name: np.full(n, value) for name, value in empty.items()}
    full = np.flatnonzero(lengths)
    if full.size == 0:
        return out
    lengths_full = lengths[full]
    starts = _segment_starts(lengths_full)
    codes = np.concatenate([codes_all[k] for k in full])
    counts = np.concatenate([counts_all[k] for k in full])
    i, j = (codes // 256).astype(np.float64), (codes % 256).astype(np.float64)
    totals = np.add.reduceat(counts, starts)  # integers: exact
    p = counts / np.repeat(totals, lengths_full)
    out["Texture_ASM"][full] = _segment_sum(p**2, starts, lengths_full)
    out["Texture_Contrast"][full] = _segment_sum(p * (i - j) ** 2, starts, lengths_full)
    out["Texture_Homogeneity"][full] = _segment_sum(p / (1.0 + (i - j) ** 2), starts, lengths_full)
    mean_i = np.repeat(_segment_sum(p * i, starts, lengths_full), lengths_full)
    mean_j = np.repeat(_segment_sum(p * j, starts, lengths_full), lengths_full)
    std_i = np.sqrt(_segment_sum(p * (i - mean_i) ** 2, starts, lengths_full))
    std_j = np.sqrt(_segment_sum(p * (j - mean_j) ** 2, starts, lengths_full))
    covariance = _segment_sum(p * (i - mean_i) * (j - mean_j), starts, lengths_full)
    flat = (std_i < 1e-15) | (std_j < 1e-15)  # skimage graycoprops convention
    with np.errstate(invalid="ignore", divide="ignore"):
        out["Texture_Correlation"][full] = np.where(flat, 1.0, covariance / (std_i * std_j))
    # np.bincount(i + j, weights=p, minlength=511) per nucleus: the same additions in the same order.
    sums = np.zeros((full.size, 511), dtype=np.float64)
    np.add.at(sums, (np.repeat(np.arange(full.size), lengths_full), (i + j).astype(np.int64)), p)
    out["Texture_Entropy"][full] = -(sums * np.log(sums + 1e-15)).sum(axis=1)
    return out


def measure_batch(contours: list[np.ndarray], crops: list[np.ndarray]) -> dict[str, np.ndarray]:
    """features.MORPH_FEATURES + TEXTURE_FEATURES of each nucleus, as columns.

    `contours` are level-0 [x, y] int64 points (features._check_contour'ed); `crops` the grey
    crops of features.nucleus_mask's box (2 px around the contour). Raises CellFeatureError
    (naming the nucleus) where features.morph_features / texture_features would.
    """
    n = len(contours)
    histograms = np.zeros((n, 50), dtype=np.int64)
    integers = np.zeros((n, 8), dtype=np.int64)  # r0, r1, c0, c1, area, m10, m01, convex area
    masks = []
    for index, (pts, crop) in enumerate(zip(contours, crops)):
        lo = pts.min(axis=0)
        hi = pts.max(axis=0)
        shape = (int(hi[1] - lo[1] + 2 * CROP_MARGIN), int(hi[0] - lo[0] + 2 * CROP_MARGIN))
        mask, ok = _fill(pts[:, 0] - (lo[0] - CROP_MARGIN), pts[:, 1] - (lo[1] - CROP_MARGIN), shape[0], shape[1])
        if not ok:
            raise CellFeatureError(f"nucleus {index}: contour has an odd number of edge crossings on a scanline")
        if crop.shape != mask.shape:
            raise CellFeatureError(f"nucleus {index}: grey crop {crop.shape} and mask {mask.shape} differ in shape")
        integers[index] = _shape_integers(mask, histograms[index])
        if integers[index, 4] == 0:
            raise CellFeatureError(f"nucleus {index}: the nucleus mask is empty")
        masks.append(mask)

    # Central moments of regionprops' image: skimage moments_central's two contractions
    # (np.einsum 'CD,CB->DB' then 'CD,AC->AD', optimize='greedy'), i.e. these matmuls.
    mu = np.empty((n, 4, 4), dtype=np.float64)
    for index, mask in enumerate(masks):
        r0, r1, c0, c1, area, m10, m01, _ = integers[index]
        calc = mask[r0:r1, c0:c1].astype(np.float64)
        rows = (np.arange(r1 - r0, dtype=np.float64) * 1.0 - m10 / area)[:, np.newaxis] ** _MOMENT_ORDERS
        cols = (np.arange(c1 - c0, dtype=np.float64) * 1.0 - m01 / area)[:, np.newaxis] ** _MOMENT_ORDERS
        mu[index] = (cols.T @ (rows.T @ calc).T).T
    mu0 = mu[:, 0, 0]
    trace = mu[:, 2, 0] + mu[:, 0, 2]
    tensor = np.empty((n, 2, 2), dtype=np.float64)
    tensor[:, 0, 0] = (trace - mu[:, 2, 0]) / mu0
    tensor[:, 1, 1] = (trace - mu[:, 0, 2]) / mu0
    tensor[:, 0, 1] = tensor[:, 1, 0] = -mu[:, 1, 1] / mu0
    eigen = np.clip(np.linalg.eigvalsh(tensor), 0, None) if n else np.zeros((0, 2))

    columns = {name: np.empty(n, dtype=np.float64) for name in (
        "Morph_Area", "Morph_AreaBbox", "Morph_CellEccentricities", "Morph_Circularity", "Morph_Elongation",
        "Morph_Extent", "Morph_MajorAxisLength", "Morph_MinorAxisLength", "Morph_Perimeter", "Morph_Solidity")}
    for index in range(n):
        r0, r1, c0, c1, area_px, _, _, hull = (int(v) for v in integers[index])
        l1, l2 = eigen[index, 1], eigen[index, 0]
        area = float(area_px)
        perimeter = float(histograms[index] @ _PERIMETER_WEIGHTS)
        major, minor = 4 * math.sqrt(l1), 4 * math.sqrt(l2)
        with np.errstate(divide="ignore", invalid="ignore"):
            elongation = major / minor if minor != 0 else float("inf")
            circularity = 4.0 * np.pi * area / perimeter**2 if perimeter != 0 else float("inf")
            solidity = np.float64(area) / np.float64(float(hull))
        area_bbox = float((r1 - r0) * (c1 - c0))
        columns["Morph_Area"][index] = area
        columns["Morph_AreaBbox"][index] = area_bbox
        columns["Morph_CellEccentricities"][index] = 0 if l1 == 0 else math.sqrt(1 - l2 / l1)
        columns["Morph_Circularity"][index] = circularity
        columns["Morph_Elongation"][index] = elongation
        columns["Morph_Extent"][index] = area / area_bbox
        columns["Morph_MajorAxisLength"][index] = major
        columns["Morph_MinorAxisLength"][index] = minor
        columns["Morph_Perimeter"][index] = perimeter
        columns["Morph_Solidity"][index] = solidity
    columns.update(curvature_batch(contours) if n else {})

    texture = _glcm_batch(crops, masks) if n else {}
    inside = [crop[mask.astype(bool)] for crop, mask in zip(crops, masks)]
    lengths = np.array([v.size for v in inside], dtype=np.int64)
    if n:
        values = np.concatenate(inside).astype(np.float64)
        starts = _segment_starts(lengths)
        mean, std = _segment_mean_std(values, starts, lengths)
        texture.update({
            "Texture_IntensityMean": mean, "Texture_IntensityStd": std,
            "Texture_IntensityMax": np.maximum.reduceat(values, starts).astype(np.int64),
            "Texture_IntensityMin": np.minimum.reduceat(values, starts).astype(np.int64),
        })
    columns.update(texture)
    return columns
