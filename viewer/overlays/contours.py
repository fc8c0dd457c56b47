"""Nucleus outline records of a rectangle, read from a run's cell table (Django-free, so
benchmarks/contours.py times exactly what the API runs). Format: analysis.core.overlay.pack_contours."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.core import overlay as ov
from analysis.core.cells import table as cell_table


def contour_records(*, cells_path: Path, x0: float, y0: float, x1: float, y1: float, her2_only: bool = False,
                    id_is_row: bool = False) -> tuple[bytes, int, int]:
    """(body, cells, vertices) of the nuclei whose centroid is in [x0, x1) x [y0, y1): their
    stored contours, collinear vertices dropped, packed with the ids (row positions when
    `id_is_row`) and codes of the cell records. Only the row groups that meet the rectangle
    are read (the table's footer index of Morton-bucket ranges)."""
    # The footer index is private to table.py; read-only use here (no second index to keep in step).
    index = cell_table._index(cells_path)
    groups = cell_table._rect_row_groups(index, x0=x0, y0=y0, x1=x1, y1=y1)
    if not groups:
        return b"", 0, 0
    footer = index.footer
    starts = np.concatenate([[0], np.cumsum([footer.row_group(g).num_rows for g in range(footer.num_row_groups)])])
    parquet = pq.ParquetFile(cells_path, metadata=footer)
    tables, rows = [], []
    for group in groups:
        t = parquet.read_row_group(group, columns=["id", "x", "y", "contour", "cls", "her2_class"], use_threads=False)
        cx, cy = t["x"].to_numpy(), t["y"].to_numpy()
        keep = (cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)
        if her2_only:
            keep &= ov.her2_codes(t["her2_class"].to_numpy(zero_copy_only=False)) != ov.HER2_NONE
        if keep.any():
            tables.append(t.filter(pa.array(keep)))
            rows.append(starts[group] + np.flatnonzero(keep))
    if not tables:
        return b"", 0, 0
    t = pa.concat_tables(tables)
    cls = ov.class_codes(t["cls"].to_numpy(zero_copy_only=False))
    her2 = ov.her2_codes(t["her2_class"].to_numpy(zero_copy_only=False))
    ids = np.concatenate(rows) if id_is_row else t["id"].to_numpy()
    packed = (ids.astype(np.uint32) << np.uint32(8)) | (her2.astype(np.uint32) << np.uint32(4)) | cls.astype(np.uint32)
    contour = t["contour"].combine_chunks()
    offsets = contour.offsets.to_numpy().astype(np.int64) // 2
    values = contour.values.to_numpy(zero_copy_only=False).astype(np.int32).reshape(-1, 2)
    offsets, values = ov.simplify_rings(offsets=offsets, values=values)
    body = ov.pack_contours(ox=np.rint(t["x"].to_numpy()), oy=np.rint(t["y"].to_numpy()), packed=packed,
                            offsets=offsets, values=values)
    return body, len(packed), int(offsets[-1] - offsets[0])
