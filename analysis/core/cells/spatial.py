"""The spatial key of cell and edge tables: Morton (Z-order) codes of a square bucket grid.

Rows of a table are sorted by the code of the bucket that holds them, so a 2-D neighbourhood
lies in few contiguous row ranges, and Parquet's per-row-group min/max statistics of the
code are the index: a viewport query computes the codes of the buckets it covers
(`rect_buckets`) and reads only the row groups whose range holds one of them
(analysis.core.cells.table).
"""
from __future__ import annotations

import numpy as np


def _spread_bits(values: np.ndarray) -> np.ndarray:
    """Insert a zero bit between the low 32 bits of each value (Morton 'part1by1')."""
    v = values.astype(np.uint64) & np.uint64(0xFFFFFFFF)
    v = (v | (v << np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
    v = (v | (v << np.uint64(8))) & np.uint64(0x00FF00FF00FF00FF)
    v = (v | (v << np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    v = (v | (v << np.uint64(2))) & np.uint64(0x3333333333333333)
    v = (v | (v << np.uint64(1))) & np.uint64(0x5555555555555555)
    return v


def morton_bucket(*, x: np.ndarray, y: np.ndarray, bucket_px: int) -> np.ndarray:
    """Morton (Z-order) code of the `bucket_px` grid cell holding each (x, y), as uint64."""
    bx = np.floor_divide(np.maximum(np.asarray(x, dtype=np.float64), 0), bucket_px)
    by = np.floor_divide(np.maximum(np.asarray(y, dtype=np.float64), 0), bucket_px)
    return _spread_bits(bx.astype(np.uint64)) | (_spread_bits(by.astype(np.uint64)) << np.uint64(1))


def rect_buckets(*, x0: float, y0: float, x1: float, y1: float, bucket_px: int) -> np.ndarray:
    bx = np.arange(int(max(x0, 0) // bucket_px), int(max(x1 - 1e-9, 0) // bucket_px) + 1)
    by = np.arange(int(max(y0, 0) // bucket_px), int(max(y1 - 1e-9, 0) // bucket_px) + 1)
    gx, gy = np.meshgrid(bx, by)
    codes = _spread_bits(gx.ravel().astype(np.uint64)) | (
        _spread_bits(gy.ravel().astype(np.uint64)) << np.uint64(1)
    )
    return np.sort(codes)
