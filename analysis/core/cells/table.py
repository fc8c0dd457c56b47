"""Cell and edge tables of a run: spatially sorted Parquet and viewport queries.

Cell table (one Parquet file per run, written atomically):

| column            | type          | meaning                                                     |
|-------------------|---------------|-------------------------------------------------------------|
| id                | int64         | cell id, unique in the run (HoVer-Net key on import)        |
| x, y              | float64       | centroid, level-0 pixels (x right, y down)                  |
| contour           | list<int16>   | boundary, flattened [dx0, dy0, dx1, dy1, ...] relative to   |
|                   |               | (round(x), round(y)); level-0 pixels, rounded to integers   |
| cls               | string        | analysis.core.cells.classes.CellClass value                       |
| prob              | float64       | class probability (1.0 where a method has none)             |
| area              | float32       | area in level-0 px^2 (segmenter pixel count, or shoelace)   |
| her2_od           | float32       | IHC: mean DAB optical density of the membrane ring          |
| her2_stained_od   | float32       | IHC: mean DAB OD over the ring sectors that are stained     |
| her2_completeness | float32       | IHC: fraction of angular ring sectors above the faint level |
| her2_class        | string        | IHC: analysis.core.cells.classes.Her2Class value (null on H&E)    |
| bucket            | uint64        | spatial key: Morton (Z-order) code of the bucket grid cell  |

Spatial index: rows are sorted by (bucket, y, x, id), where the bucket grid has square
cells of `bucket_px` level-0 pixels. Morton order keeps a 2-D neighbourhood in few
contiguous row ranges, and Parquet's per-row-group min/max statistics of `bucket` are the
index: a viewport query computes the Morton codes of the buckets it covers and reads only
the row groups whose [min, max] range holds one of them (no side file to keep in step).

The same layout serves the edge table (source, target, pair_type, length, bucket of the
source cell). Every write is atomic (analysis.core.files: temporary file in the destination
folder, fsync, rename, fsync of the folder), so a reader never sees a half-written table.

The spatial key (Morton codes) is in analysis.core.cells.spatial; HoVer-Net JSON and QuPath
GeoJSON import/export in analysis.core.cells.interchange.

Size: ~560 lines, one file format: the writer (streamed, partitioned, sorted) and the
readers (footer index, row-group selection) share the schema and metadata private to it.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.core.cells.spatial import morton_bucket, rect_buckets
from analysis.core.files import atomic_path
from analysis.core.cells.classes import CellClass, Her2Class

TABLE_VERSION = 1
DEFAULT_BUCKET_PX = 512
DEFAULT_ROW_GROUP_ROWS = 1024  # small groups: a viewport over-reads less (footer parsed once, cached)
_META_KEY = b"ladder.table"

CELL_SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("x", pa.float64()),
        ("y", pa.float64()),
        ("contour", pa.list_(pa.int16())),
        ("cls", pa.string()),
        ("prob", pa.float64()),
        ("area", pa.float32()),
        ("her2_od", pa.float32()),
        ("her2_stained_od", pa.float32()),
        ("her2_completeness", pa.float32()),
        ("her2_class", pa.string()),
        ("bucket", pa.uint64()),
    ]
)
EDGE_SCHEMA = pa.schema(
    [
        ("source", pa.int64()),
        ("target", pa.int64()),
        ("pair_type", pa.string()),
        ("length", pa.float64()),
        ("bucket", pa.uint64()),
    ]
)
CELL_COLUMNS = tuple(n for n in CELL_SCHEMA.names if n != "bucket")
EDGE_COLUMNS = ("source", "target", "pair_type", "length")
_HER2_FLOAT_COLUMNS = ("her2_od", "her2_stained_od", "her2_completeness")
_CLASS_VALUES = frozenset(c.value for c in CellClass)
_HER2_VALUES = frozenset(c.value for c in Her2Class)


class CellTableError(ValueError):
    """A cell or edge table is malformed, or a query on it is invalid."""


# --------------------------------------------------------------------------- encoding


def _encode_contours(*, contours: Sequence, cx: np.ndarray, cy: np.ndarray) -> pa.Array:
    lengths = np.fromiter((len(c) for c in contours), dtype=np.int64, count=len(contours))
    if len(contours) == 0:
        return pa.array([], type=pa.list_(pa.int16()))
    if (lengths == 0).any():
        bad = int(np.flatnonzero(lengths == 0)[0])
        raise CellTableError(f"cell at row {bad} has an empty contour")
    flat = np.concatenate([np.asarray(c, dtype=np.float64).reshape(-1, 2) for c in contours])
    origin = np.stack([np.repeat(cx, lengths), np.repeat(cy, lengths)], axis=1)
    rel = np.rint(flat) - origin
    if np.abs(rel).max() > 32767:
        row = int(np.searchsorted(np.cumsum(lengths), np.argmax(np.abs(rel).max(axis=1)), side="right"))
        raise CellTableError(
            f"cell at row {row} has a contour point more than 32767 px from its centroid; "
            "that is not a cell (was a region imported as a detection?)"
        )
    offsets = np.zeros(len(contours) + 1, dtype=np.int32)
    np.cumsum(lengths * 2, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(rel.astype(np.int16).ravel()))


def _decode_contours(*, column: pa.ChunkedArray | pa.Array, cx: np.ndarray, cy: np.ndarray) -> list:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(arr) == 0:
        return []
    offsets = arr.offsets.to_numpy().astype(np.int64)
    values = arr.values.to_numpy(zero_copy_only=False).astype(np.int32).reshape(-1, 2)
    # `values` spans the whole parent buffer; slice to this array's rows.
    values = values[offsets[0] // 2 : offsets[-1] // 2]
    starts = (offsets - offsets[0]) // 2
    counts = np.diff(starts)
    values = values + np.stack([np.repeat(cx, counts), np.repeat(cy, counts)], axis=1).astype(np.int32)
    # Plain slicing: views, several times faster than np.split for thousands of rows.
    return [values[a:b] for a, b in zip(starts[:-1].tolist(), starts[1:].tolist())]


def require_columns(frame: pd.DataFrame, required: Iterable[str], what: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise CellTableError(f"{what} lacks column(s) {missing}; it has {list(frame.columns)}")


def cells_to_arrow(*, cells: pd.DataFrame, bucket_px: int = DEFAULT_BUCKET_PX) -> pa.Table:
    """Encode a cell frame (CELL_COLUMNS; HER2 columns optional) as an unsorted Arrow table."""
    require_columns(cells, ("id", "x", "y", "contour", "cls"), "cell frame")
    n = len(cells)
    x = cells["x"].to_numpy(dtype=np.float64)
    y = cells["y"].to_numpy(dtype=np.float64)
    if n and not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise CellTableError("cell centroids must be finite numbers")
    ids = cells["id"].to_numpy()
    if n and pd.Index(ids).has_duplicates:
        dup = pd.Index(ids)[pd.Index(ids).duplicated()][0]
        raise CellTableError(f"cell ids must be unique; id {dup} occurs more than once")
    cls = cells["cls"].map(lambda c: c.value if isinstance(c, CellClass) else c).astype(object)
    unknown = set(cls.unique()) - _CLASS_VALUES
    if unknown:
        raise CellTableError(f"unknown cell class(es) {sorted(map(str, unknown))}; use CellClass values")
    contours = _encode_contours(contours=list(cells["contour"]), cx=np.rint(x), cy=np.rint(y))
    prob = cells["prob"].to_numpy(dtype=np.float64) if "prob" in cells else np.ones(n)
    if "area" in cells:
        area = cells["area"].to_numpy(dtype=np.float32)
    elif "area_px" in cells:
        area = cells["area_px"].to_numpy(dtype=np.float32)
    else:
        area = np.fromiter((polygon_area(c) for c in cells["contour"]), dtype=np.float32, count=n)
    columns = {
        "id": pa.array(ids.astype(np.int64)),
        "x": pa.array(x),
        "y": pa.array(y),
        "contour": contours,
        "cls": pa.array(list(cls), type=pa.string()),
        "prob": pa.array(prob),
        "area": pa.array(area),
    }
    for name in _HER2_FLOAT_COLUMNS:
        columns[name] = (
            pa.array(cells[name].to_numpy(dtype=np.float32), from_pandas=True)
            if name in cells
            else pa.nulls(n, pa.float32())
        )
    if "her2_class" in cells:
        her2 = cells["her2_class"].map(lambda c: c.value if isinstance(c, Her2Class) else c)
        her2 = her2.where(her2.notna(), None)
        unknown = set(her2.dropna().unique()) - _HER2_VALUES
        if unknown:
            raise CellTableError(f"unknown HER2 class(es) {sorted(map(str, unknown))}; use Her2Class values")
        columns["her2_class"] = pa.array(list(her2), type=pa.string())
    else:
        columns["her2_class"] = pa.nulls(n, pa.string())
    columns["bucket"] = pa.array(morton_bucket(x=x, y=y, bucket_px=bucket_px))
    return pa.table(columns, schema=CELL_SCHEMA)


def arrow_to_cells(*, table: pa.Table) -> pd.DataFrame:
    """Decode an Arrow cell table (any subset of columns) into a cell frame."""
    out = {}
    for name in table.column_names:
        if name == "contour":
            if "x" not in table.column_names or "y" not in table.column_names:
                raise CellTableError("decoding contours needs the x and y columns too")
            out[name] = _decode_contours(
                column=table["contour"],
                cx=np.rint(table["x"].to_numpy()).astype(np.int64),
                cy=np.rint(table["y"].to_numpy()).astype(np.int64),
            )
        else:
            out[name] = table[name].to_numpy(zero_copy_only=False)
    return pd.DataFrame(out, columns=table.column_names)


def polygon_area(contour) -> float:
    """Shoelace area of a closed polygon [[x, y], ...] (0 for fewer than 3 points)."""
    pts = np.asarray(contour, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 3:
        return 0.0
    x, y = pts[:, 0], pts[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def _polygon_centroid(pts: np.ndarray) -> tuple[float, float]:
    x, y = pts[:, 0], pts[:, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    a = cross.sum() / 2.0
    if abs(a) < 1e-12:
        return float(x.mean()), float(y.mean())
    return (
        float(((x + np.roll(x, -1)) * cross).sum() / (6 * a)),
        float(((y + np.roll(y, -1)) * cross).sum() / (6 * a)),
    )


def _schema_with_meta(schema: pa.Schema, meta: dict) -> pa.Schema:
    return schema.with_metadata({_META_KEY: json.dumps(meta).encode()})


def _sort_by_space(table: pa.Table, *, tie: Sequence[str]) -> pa.Table:
    keys = [("bucket", "ascending")] + [(k, "ascending") for k in tie]
    return table.sort_by(keys)


def _write_sorted_atomic(
    *, path: Path, table: pa.Table, schema: pa.Schema, meta: dict, row_group_rows: int
) -> None:
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, _schema_with_meta(schema, meta), compression="zstd") as writer:
            writer.write_table(table.cast(schema), row_group_size=row_group_rows)


# --------------------------------------------------------------------------- cell tables


def write_cells(
    *,
    path: Path,
    cells: pd.DataFrame,
    bucket_px: int = DEFAULT_BUCKET_PX,
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
    metadata: Mapping | None = None,
) -> int:
    """Write an in-memory cell frame as a spatially sorted Parquet table, atomically.

    Returns the number of rows. For tables that do not fit in memory use CellTableWriter.
    """
    table = _sort_by_space(cells_to_arrow(cells=cells, bucket_px=bucket_px), tie=("y", "x", "id"))
    meta = {"kind": "cells", "version": TABLE_VERSION, "bucket_px": bucket_px, **(metadata or {})}
    _write_sorted_atomic(path=path, table=table, schema=CELL_SCHEMA, meta=meta, row_group_rows=row_group_rows)
    return table.num_rows


class CellTableWriter:
    """Stream cells of any number into one sorted table with bounded memory.

    `add()` buffers up to `flush_rows` rows, then spreads them over partition files
    keyed by the top bits of the Morton code (each partition is one quadtree block of
    the slide, so partitions in key order are also in global Morton order). `finish()`
    sorts one partition at a time into the final file and renames it into place.
    Peak memory is about max(flush_rows, largest partition) rows.
    """

    def __init__(
        self,
        *,
        path: Path,
        slide_width: int,
        slide_height: int,
        bucket_px: int = DEFAULT_BUCKET_PX,
        row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
        flush_rows: int = 200_000,
        partitions_per_side: int = 8,
        metadata: Mapping | None = None,
    ) -> None:
        self.path = Path(path)
        self.bucket_px = bucket_px
        self.row_group_rows = row_group_rows
        self.flush_rows = flush_rows
        self.metadata = dict(metadata or {})
        buckets_per_side = max(
            1, int(np.ceil(max(slide_width, slide_height, 1) / bucket_px))
        )
        bits = int(np.ceil(np.log2(buckets_per_side))) if buckets_per_side > 1 else 0
        part_bits = int(np.ceil(np.log2(max(partitions_per_side, 1))))
        # Morton codes of this slide use 2*bits bits; keep the top 2*part_bits of them.
        self._shift = np.uint64(2 * max(bits - part_bits, 0))
        self._work = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.parts-", dir=self.path.parent))
        self._writers: dict[int, pq.ParquetWriter] = {}
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self.rows = 0
        self._closed = False

    def add(self, cells: pd.DataFrame) -> None:
        """Queue a cell frame (level-0 coordinates)."""
        if self._closed:
            raise CellTableError("CellTableWriter is already finished or aborted")
        if len(cells) == 0:
            return
        table = cells_to_arrow(cells=cells, bucket_px=self.bucket_px)
        self._buffer.append(table)
        self._buffered += table.num_rows
        self.rows += table.num_rows
        if self._buffered >= self.flush_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        table = pa.concat_tables(self._buffer)
        self._buffer, self._buffered = [], 0
        part = table["bucket"].to_numpy() >> self._shift
        order = np.argsort(part, kind="stable")
        part_sorted = part[order]
        table = table.take(pa.array(order))
        bounds = np.flatnonzero(np.diff(part_sorted)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(part_sorted)]])
        for s, e in zip(starts, ends):
            key = int(part_sorted[s])
            writer = self._writers.get(key)
            if writer is None:
                writer = pq.ParquetWriter(self._work / f"{key:020d}.parquet", CELL_SCHEMA, compression="lz4")
                self._writers[key] = writer
            writer.write_table(table.slice(s, e - s))

    def finish(self) -> int:
        """Sort the partitions into the final table, rename it into place; return the row count."""
        if self._closed:
            raise CellTableError("CellTableWriter is already finished or aborted")
        try:
            self._flush()
            for writer in self._writers.values():
                writer.close()
            meta = {"kind": "cells", "version": TABLE_VERSION, "bucket_px": self.bucket_px, **self.metadata}
            with atomic_path(self.path) as tmp:
                with pq.ParquetWriter(tmp, _schema_with_meta(CELL_SCHEMA, meta), compression="zstd") as out:
                    if not self._writers:
                        out.write_table(CELL_SCHEMA.empty_table())
                    for key in sorted(self._writers):
                        part = pq.read_table(self._work / f"{key:020d}.parquet", schema=CELL_SCHEMA)
                        out.write_table(
                            _sort_by_space(part, tie=("y", "x", "id")), row_group_size=self.row_group_rows
                        )
                        del part
        finally:
            self._cleanup()
        return self.rows

    def abort(self) -> None:
        """Drop everything written so far."""
        if not self._closed:
            for writer in self._writers.values():
                try:
                    writer.close()
                except Exception:  # closing a half-written partition we delete anyway
                    pass
            self._cleanup()

    def _cleanup(self) -> None:
        self._closed = True
        self._buffer = []
        shutil.rmtree(self._work, ignore_errors=True)

    def __enter__(self) -> "CellTableWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


@dataclass(frozen=True)
class _TableIndex:
    kind: str
    bucket_px: int
    names: tuple
    rg_min: np.ndarray
    rg_max: np.ndarray
    metadata: dict
    footer: pq.FileMetaData  # parsed once: re-parsing the footer costs more than a small read


@lru_cache(maxsize=64)
def _load_index(path: str, mtime_ns: int, size: int) -> _TableIndex:
    pf = pq.ParquetFile(path)
    raw = (pf.schema_arrow.metadata or {}).get(_META_KEY)
    if raw is None:
        raise CellTableError(f"{path} is not a HER2-LADDER cell/edge table (no {_META_KEY.decode()} metadata)")
    meta = json.loads(raw)
    md = pf.metadata
    col = pf.schema_arrow.get_field_index("bucket")
    mins = np.zeros(md.num_row_groups, dtype=np.uint64)
    maxs = np.zeros(md.num_row_groups, dtype=np.uint64)
    for i in range(md.num_row_groups):
        stats = md.row_group(i).column(col).statistics
        if stats is None or not stats.has_min_max:
            mins[i], maxs[i] = 0, np.iinfo(np.uint64).max  # no statistics: always read
        else:
            mins[i], maxs[i] = stats.min, stats.max
    return _TableIndex(
        kind=meta.get("kind", ""),
        bucket_px=int(meta["bucket_px"]),
        names=tuple(pf.schema_arrow.names),
        rg_min=mins,
        rg_max=maxs,
        metadata=meta,
        footer=md,
    )


def _index(path: Path) -> _TableIndex:
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CellTableError(f"no table at {path}") from None
    return _load_index(str(path), st.st_mtime_ns, st.st_size)


def table_metadata(*, path: Path) -> dict:
    """The metadata stored with a cell or edge table (kind, version, bucket_px, run info)."""
    return dict(_index(path).metadata)


def _check_columns(columns: Sequence[str] | None, allowed: Sequence[str]) -> list[str]:
    if columns is None:
        return list(allowed)
    unknown = [c for c in columns if c not in allowed and c != "bucket"]
    if unknown:
        raise CellTableError(f"unknown column(s) {unknown}; choose from {list(allowed)}")
    return list(columns)


def _rect_row_groups(index: _TableIndex, *, x0, y0, x1, y1) -> list[int]:
    if not (x1 >= x0 and y1 >= y0):
        raise CellTableError(f"rectangle must have x0 <= x1 and y0 <= y1, got ({x0}, {y0}, {x1}, {y1})")
    if x1 == x0 or y1 == y0 or x1 <= 0 or y1 <= 0:
        return []
    codes = rect_buckets(x0=x0, y0=y0, x1=x1, y1=y1, bucket_px=index.bucket_px)
    pos = np.searchsorted(codes, index.rg_min, side="left")
    hit = pos < len(codes)
    hit[hit] = codes[pos[hit]] <= index.rg_max[hit]
    return np.flatnonzero(hit).tolist()


def read_cells(*, path: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a whole cell table (in spatial order) as a cell frame."""
    index = _index(path)
    cols = _check_columns(columns, CELL_COLUMNS)
    need = list(dict.fromkeys(cols + (["x", "y"] if "contour" in cols else [])))
    table = pq.read_table(path, columns=need)
    return arrow_to_cells(table=table)[cols]


def cells_in_rect(
    *, path: Path, x0: float, y0: float, x1: float, y1: float, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Cells whose centroid lies in [x0, x1) x [y0, y1) (level-0 px), reading only the row
    groups whose bucket range meets the rectangle. Contours may reach past the rectangle
    by a cell radius; pad the rectangle to draw cells cut by a viewport edge."""
    index = _index(path)
    if index.kind != "cells":
        raise CellTableError(f"{path} is a {index.kind!r} table, not a cell table")
    cols = _check_columns(columns, CELL_COLUMNS)
    groups = _rect_row_groups(index, x0=x0, y0=y0, x1=x1, y1=y1)
    need = list(dict.fromkeys(cols + ["x", "y"]))
    if not groups:
        return arrow_to_cells(table=CELL_SCHEMA.empty_table().select(need))[cols]
    table = pq.ParquetFile(path, metadata=index.footer).read_row_groups(groups, columns=need, use_threads=False)
    x = table["x"].to_numpy()
    y = table["y"].to_numpy()
    keep = (x >= x0) & (x < x1) & (y >= y0) & (y < y1)
    return arrow_to_cells(table=table.filter(pa.array(keep)))[cols]


def cells_in_rect_arrow(*, path: Path, x0: float, y0: float, x1: float, y1: float,
                        columns: Sequence[str]) -> pa.Table:
    """cells_in_rect as an Arrow table with string columns dictionary-encoded (no Python strings):
    for counting over many cells (region statistics). Contours are not decoded here."""
    index = _index(path)
    if index.kind != "cells":
        raise CellTableError(f"{path} is a {index.kind!r} table, not a cell table")
    cols = _check_columns(columns, CELL_COLUMNS)
    need = list(dict.fromkeys(cols + ["x", "y"]))
    groups = _rect_row_groups(index, x0=x0, y0=y0, x1=x1, y1=y1)
    strings = [c for c in need if c in ("cls", "her2_class")]
    if not groups:
        return CELL_SCHEMA.empty_table().select(need)
    parquet = pq.ParquetFile(path, metadata=index.footer, read_dictionary=strings)
    table = parquet.read_row_groups(groups, columns=need, use_threads=False)
    x = table["x"].to_numpy()
    y = table["y"].to_numpy()
    return table.filter(pa.array((x >= x0) & (x < x1) & (y >= y0) & (y < y1)))


# --------------------------------------------------------------------------- edge tables


def write_edges(
    *,
    path: Path,
    edges: pd.DataFrame,
    cells: pd.DataFrame,
    bucket_px: int = DEFAULT_BUCKET_PX,
    row_group_rows: int = 4 * DEFAULT_ROW_GROUP_ROWS,
    metadata: Mapping | None = None,
) -> int:
    """Write the edge table (source, target, pair_type, length) atomically, sorted
    spatially by the source cell's bucket (then source, target). `cells` gives id, x, y."""
    require_columns(edges, EDGE_COLUMNS, "edge frame")
    require_columns(cells, ("id", "x", "y"), "cell frame")
    lookup = pd.Series(
        morton_bucket(x=cells["x"].to_numpy(), y=cells["y"].to_numpy(), bucket_px=bucket_px),
        index=cells["id"].to_numpy(),
    )
    source = edges["source"].to_numpy(dtype=np.int64)
    target = edges["target"].to_numpy(dtype=np.int64)
    if lookup.index.has_duplicates:
        raise CellTableError("cell ids must be unique")
    for name, ids in (("source", source), ("target", target)):
        missing = ~np.isin(ids, lookup.index.to_numpy())
        if missing.any():
            raise CellTableError(f"edge {name} id {ids[np.argmax(missing)]} is not a cell id")
    table = pa.table(
        {
            "source": pa.array(source),
            "target": pa.array(target),
            "pair_type": pa.array(edges["pair_type"].astype(str).tolist(), type=pa.string()),
            "length": pa.array(edges["length"].to_numpy(dtype=np.float64)),
            "bucket": pa.array(lookup.reindex(source).to_numpy(dtype=np.uint64)),
        },
        schema=EDGE_SCHEMA,
    )
    table = _sort_by_space(table, tie=("source", "target"))
    meta = {"kind": "edges", "version": TABLE_VERSION, "bucket_px": bucket_px, **(metadata or {})}
    _write_sorted_atomic(path=path, table=table, schema=EDGE_SCHEMA, meta=meta, row_group_rows=row_group_rows)
    return table.num_rows


def read_edges(*, path: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a whole edge table."""
    _index(path)
    cols = _check_columns(columns, EDGE_COLUMNS)
    return pq.read_table(path, columns=cols).to_pandas()


def edges_in_rect(
    *, path: Path, x0: float, y0: float, x1: float, y1: float, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Edges whose source cell lies in a bucket that meets [x0, x1) x [y0, y1).

    Bucket-exact, not centroid-exact (the edge table stores no coordinates): a superset of
    the edges whose source centroid is in the rectangle, at most one bucket wider.
    """
    index = _index(path)
    if index.kind != "edges":
        raise CellTableError(f"{path} is a {index.kind!r} table, not an edge table")
    cols = _check_columns(columns, EDGE_COLUMNS)
    groups = _rect_row_groups(index, x0=x0, y0=y0, x1=x1, y1=y1)
    if not groups:
        return EDGE_SCHEMA.empty_table().select(cols).to_pandas()
    table = pq.ParquetFile(path, metadata=index.footer).read_row_groups(
        groups, columns=list(dict.fromkeys(cols + ["bucket"])), use_threads=False
    )
    codes = rect_buckets(x0=x0, y0=y0, x1=x1, y1=y1, bucket_px=index.bucket_px)
    keep = np.isin(table["bucket"].to_numpy(), codes)
    return table.filter(pa.array(keep)).select(cols).to_pandas()
