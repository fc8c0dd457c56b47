"""Streamed whole-slide analysis: tissue -> tiles -> nuclei (-> HER2 grades) -> cell table.

`analyze_slide` walks the tissue tiles of a slide of any size with bounded memory and
writes one run folder:

    <out_dir>/cells.parquet   the cell table (analysis.core.cells; spatially sorted)
    <out_dir>/tissue.png      the tissue mask (1 px = summary.tissue.downsample level-0 px)
    <out_dir>/summary.json    RunSummary: what ran, on what, with which settings, counts,
                              and for IHC the ASCO/CAP slide score

Tiling. The slide is cut into a level-0 grid of `tile_um` squares (the tile *cores*);
only cores that touch tissue are analysed. Each core is read grown by `overlap_um` on
every side (clipped to the slide), at the segmenter's resolution: from the pyramid level
nearest below target_mpp / mpp (when the reader has `level_downsamples`), resized to
target_mpp. Seams: a cell is kept only by the tile whose core holds its centroid
(half-open [x0, x1) x [y0, y1) cores tile the plane exactly), so a cell on a seam is
segmented in both neighbouring tiles but kept once; with overlap_um above the largest
cell radius (nucleus + HER2 cell expansion) the kept copy was seen whole.

Bounded memory: one tile in memory at a time; cells stream into a CellTableWriter
(chunked Parquet partitions, sorted one partition at a time); for IHC only one int8
per tumour cell (its HER2 class code) is kept for the slide score.

Atomicity: everything is built in `<out_dir>.tmp-<uuid>` beside out_dir and renamed to
out_dir at the end (an existing out_dir is swapped out and then deleted), so no reader
ever sees a half-written run. Cancelling (should_cancel() -> True, checked before every
tile) or any error removes the temporary folder and leaves nothing behind.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import pandas as pd
from PIL import Image

from analysis.core import stain as stain_mod
from analysis.core.cells import CellTableWriter, DEFAULT_BUCKET_PX
from analysis.core.classes import CellClass, Her2Class
from analysis.core.her2 import Her2Params, NoTumourCellsError, estimate_hdab, grade_membranes, her2_slide_score
from analysis.core.tissue import TissueParams, detect_tissue, tissue_tiles

SUMMARY_VERSION = 1
STAINS = ("he", "ihc")
_HER2_CODES = [c.value for c in Her2Class]


class Cancelled(Exception):
    """The run was cancelled by should_cancel(); nothing was left behind."""


class WsiAnalysisError(ValueError):
    """Bad arguments to analyze_slide (reader, resolution, tiling, output folder)."""


class SlideReaderLike(Protocol):
    dimensions: tuple[int, int]

    def read_region(self, *, x: int, y: int, width: int, height: int, level: int = 0) -> np.ndarray: ...

    def thumbnail(self, max_size: int) -> np.ndarray: ...


@dataclass(frozen=True)
class RunSummary:
    out_dir: str
    stain: str
    slide_width: int
    slide_height: int
    mpp: float  # slide level-0 um/px
    analysis_mpp: float  # um/px the segmenter saw
    read_level: int
    tile_px: int  # level-0 core size
    overlap_px: int  # level-0 overlap on each side
    n_tiles: int  # tissue tiles analysed
    n_grid_tiles: int  # all tiles of the grid
    n_cells: int
    class_counts: dict
    segmenter: dict  # SegmenterInfo as a dict
    tissue: dict  # threshold_od, tissue_fraction, downsample, bbox_level0
    stain_vectors: list | None  # IHC: H-DAB matrix rows used
    stain_estimate: str  # "macenko", "given" or why the defaults were used
    her2: dict | None  # IHC: Her2Score.to_dict(), None if no tumour cell was graded
    her2_params: dict | None
    elapsed_s: float
    warnings: list = field(default_factory=list)  # e.g. an "ihc" run on a slide that looks like H&E
    files: dict = field(default_factory=lambda: {"cells": "cells.parquet", "tissue": "tissue.png",
                                                 "summary": "summary.json"})
    version: int = SUMMARY_VERSION

    def to_dict(self) -> dict:
        return asdict(self)


def _read_level(reader, downsample: float) -> tuple[int, float]:
    """Pyramid level (and its downsample) nearest below `downsample`; 0 if the reader has none."""
    downsamples = getattr(reader, "level_downsamples", None)
    if not downsamples:
        return 0, 1.0
    best, best_ds = 0, 1.0
    for level, ds in enumerate(downsamples):
        if ds <= downsample * 1.0001 and ds >= best_ds:
            best, best_ds = level, float(ds)
    return best, best_ds


def _read_tile(
    reader, *, x0: int, y0: int, x1: int, y1: int, scale: float, level: int, level_ds: float
) -> tuple[np.ndarray, float, float]:
    """Level-0 box [x0, x1) x [y0, y1) at `scale` level-0 px per output px; returns the
    image and the exact level-0 px per output px along x and y."""
    out_w = max(1, int(round((x1 - x0) / scale)))
    out_h = max(1, int(round((y1 - y0) / scale)))
    lw = max(1, int(math.ceil((x1 - x0) / level_ds)))
    lh = max(1, int(math.ceil((y1 - y0) / level_ds)))
    rgb = np.asarray(reader.read_region(x=x0, y=y0, width=lw, height=lh, level=level))
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise WsiAnalysisError(f"reader returned an array of shape {rgb.shape} for a region; need (H, W, 3)")
    rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
    if rgb.shape[:2] != (out_h, out_w):
        image = Image.fromarray(rgb)
        factor = min(image.size[0] // out_w, image.size[1] // out_h)
        if factor >= 2:
            image = image.reduce(factor)  # box filter: fast and alias-free for big factors
        rgb = np.asarray(image.resize((out_w, out_h), Image.Resampling.BILINEAR))
    return rgb, (x1 - x0) / out_w, (y1 - y0) / out_h


def _to_level0(cells: pd.DataFrame, *, x0: int, y0: int, fx: float, fy: float) -> pd.DataFrame:
    # Pixel centres: output pixel i covers level-0 [x0 + i fx, x0 + (i+1) fx), centre at
    # x0 + (i + 0.5) fx, and level-0 pixel j has its centre at coordinate j + 0.5.
    out = cells.copy()
    out["x"] = x0 + (cells["x"].to_numpy(np.float64) + 0.5) * fx - 0.5
    out["y"] = y0 + (cells["y"].to_numpy(np.float64) + 0.5) * fy - 0.5
    # All contours in one array: one vectorised transform instead of one per cell.
    contours = [np.asarray(c).reshape(-1, 2) for c in cells["contour"]]
    if contours:
        lengths = np.fromiter((len(c) for c in contours), dtype=np.int64, count=len(contours))
        flat = np.concatenate(contours).astype(np.float64)
        flat = flat * np.array([fx, fy]) + np.array([x0 - 0.5 + 0.5 * fx, y0 - 0.5 + 0.5 * fy])
        flat = np.rint(flat).astype(np.int32)
        ends = np.cumsum(lengths)
        out["contour"] = [flat[e - n:e] for e, n in zip(ends.tolist(), lengths.tolist())]
    area = cells["area"] if "area" in cells else cells["area_px"]
    out["area"] = area.to_numpy(np.float32) * np.float32(fx * fy)
    return out.drop(columns=[c for c in ("area_px",) if c in out.columns])


def _write_png_mask(path: Path, mask: np.ndarray) -> None:
    Image.fromarray(mask.astype(np.uint8) * 255).save(path, format="PNG", optimize=True)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _publish(tmp: Path, out_dir: Path) -> None:
    """Rename the finished temporary folder to out_dir (swapping out an old run)."""
    old = None
    if out_dir.exists():
        old = out_dir.parent / f"{out_dir.name}.old-{uuid.uuid4().hex}"
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    try:
        fd = os.open(out_dir.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def analyze_slide(
    *,
    reader: SlideReaderLike,
    stain: str,
    segmenter,
    out_dir: Path,
    mpp: float,
    tile_um: float = 512.0,
    overlap_um: float = 32.0,
    progress: Callable[[int, int, str], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    stain_matrix: stain_mod.StainMatrix | None = None,
    her2_params: Her2Params = Her2Params(),
    tissue_params: TissueParams = TissueParams(),
    thumbnail_px: int = 2048,
    bucket_px: int = DEFAULT_BUCKET_PX,
    flush_rows: int = 200_000,
) -> RunSummary:
    """Analyse a whole slide tile by tile and publish the run folder `out_dir` atomically.

    stain: "he" (cells only) or "ihc" (cells + HER2 membrane grades + ASCO/CAP score).
    segmenter: analysis.core.segmentation.base.Segmenter (its target_mpp sets the
    analysis resolution); for IHC use analysis.core.her2.IhcNucleusSegmenter (or any
    segmenter with `for_stain_matrix(matrix)`, which receives the slide's vectors). For
    IHC the H-DAB stain vectors are estimated once per slide (her2.estimate_hdab: Macenko
    on the tissue of the thumbnail, with fallback) unless `stain_matrix` is given.
    Raises NoTissueError (no tissue), Cancelled (should_cancel), WsiAnalysisError.
    """
    started = time.perf_counter()
    if stain not in STAINS:
        raise WsiAnalysisError(f"stain must be one of {STAINS}, got {stain!r}")
    if mpp is None or not np.isfinite(mpp) or mpp <= 0:
        raise WsiAnalysisError(f"mpp must be a positive number of um per level-0 pixel, got {mpp!r}")
    if not (tile_um > 0 and overlap_um >= 0):
        raise WsiAnalysisError(f"need tile_um > 0 and overlap_um >= 0, got {tile_um}, {overlap_um}")
    target_mpp = float(getattr(segmenter, "target_mpp", mpp) or mpp)
    try:
        width, height = (int(v) for v in reader.dimensions)
    except (TypeError, ValueError, AttributeError):
        raise WsiAnalysisError("reader must have dimensions (width, height)") from None
    if width < 1 or height < 1:
        raise WsiAnalysisError(f"slide dimensions must be positive, got {width}x{height}")
    out_dir = Path(out_dir)
    if not out_dir.parent.is_dir():
        raise WsiAnalysisError(f"parent folder of out_dir does not exist: {out_dir.parent}")
    progress = progress or (lambda done, total, message: None)
    should_cancel = should_cancel or (lambda: False)

    # Level-0 px per analysis px; a scale within 2 % of 1 is read as is (no resampling).
    scale = target_mpp / mpp
    if abs(scale - 1.0) < 0.02:
        scale = 1.0
    tile_px = max(1, int(round(tile_um / mpp)))
    overlap_px = int(round(overlap_um / mpp))
    level, level_ds = _read_level(reader, scale)

    tmp = out_dir.parent / f"{out_dir.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    writer = None
    try:
        progress(0, 1, "detecting tissue")
        thumb = np.asarray(reader.thumbnail(thumbnail_px))[..., :3]
        downsample = max(width / thumb.shape[1], height / thumb.shape[0])
        tissue = detect_tissue(thumbnail=thumb, downsample=downsample, mpp=mpp, params=tissue_params)
        tiles = tissue_tiles(tissue=tissue, slide_width=width, slide_height=height, tile_px=tile_px)
        n_grid = math.ceil(width / tile_px) * math.ceil(height / tile_px)

        warnings = []
        presence = stain_mod.dab_presence(rgb=np.ascontiguousarray(thumb))
        if stain == "ihc" and presence.looks_like == "he":
            warnings.append(f"analysed as IHC but the slide looks like H&E (brown {presence.dab_fraction:.1%} "
                            f"of tissue, pink {presence.eosin_fraction:.1%}); HER2 grades are meaningless")
        if stain == "he" and presence.looks_like == "ihc":
            warnings.append(f"analysed as H&E but the slide looks like IHC (brown {presence.dab_fraction:.1%} of tissue)")
        matrix, estimate_reason = None, ""
        if stain == "ihc":
            if stain_matrix is not None:
                matrix, estimate_reason = stain_matrix, "given"
            else:
                est = estimate_hdab(rgb=np.ascontiguousarray(thumb), tissue_mask=tissue.mask)
                matrix, estimate_reason = est.matrix, est.reason

        if stain == "ihc" and hasattr(segmenter, "for_stain_matrix"):
            segmenter = segmenter.for_stain_matrix(matrix)  # nuclei on this slide's hematoxylin
        if stain == "ihc" and getattr(getattr(segmenter, "info", None), "name", "") == "classical-v1":
            warnings.append("the H&E classical segmenter was used on IHC: DAB membranes can leak into its "
                            "nuclei; use analysis.core.her2.IhcNucleusSegmenter")
        info = getattr(segmenter, "info", None)
        seg_info = asdict(info) if info is not None else {"name": type(segmenter).__name__}
        writer = CellTableWriter(
            path=tmp / "cells.parquet",
            slide_width=width,
            slide_height=height,
            bucket_px=bucket_px,
            flush_rows=flush_rows,
            metadata={"stain": stain, "mpp": mpp, "segmenter": seg_info.get("name", "")},
        )
        next_id = 0
        class_counts = {c.value: 0 for c in CellClass}
        her2_codes: list[np.ndarray] = []
        total = len(tiles)
        analysis_mpp = mpp * scale
        for done, (x, y, w, h) in enumerate(tiles):
            if should_cancel():
                raise Cancelled(f"cancelled after {done} of {total} tiles")
            x0, y0 = max(0, x - overlap_px), max(0, y - overlap_px)
            x1, y1 = min(width, x + w + overlap_px), min(height, y + h + overlap_px)
            rgb, fx, fy = _read_tile(reader, x0=x0, y0=y0, x1=x1, y1=y1, scale=scale, level=level, level_ds=level_ds)
            tile_mpp = mpp * (fx + fy) / 2
            found = segmenter.segment(rgb=rgb, mpp=tile_mpp)
            if len(found):
                if stain == "ihc":
                    grades = grade_membranes(rgb=rgb, mpp=tile_mpp, nuclei=found, stain_matrix=matrix, params=her2_params)
                    found = pd.concat([found.reset_index(drop=True), grades.reset_index(drop=True)], axis=1)
                cells = _to_level0(found.reset_index(drop=True), x0=x0, y0=y0, fx=fx, fy=fy)
                cx, cy = cells["x"].to_numpy(), cells["y"].to_numpy()
                core = (cx >= x) & (cx < x + w) & (cy >= y) & (cy < y + h)
                cells = cells[core].reset_index(drop=True)
                if len(cells):
                    cells.insert(0, "id", np.arange(next_id, next_id + len(cells), dtype=np.int64))
                    next_id += len(cells)
                    for value, count in cells["cls"].value_counts().items():
                        class_counts[str(value)] = class_counts.get(str(value), 0) + int(count)
                    if stain == "ihc":
                        tumour = (cells["cls"] == CellClass.TUMOUR.value).to_numpy()
                        codes = cells["her2_class"].map({v: i for i, v in enumerate(_HER2_CODES)})
                        her2_codes.append(codes[tumour].fillna(-1).to_numpy(np.int8))
                    writer.add(cells)
            progress(done + 1, total, f"tile {done + 1}/{total}: {next_id} cells")
        if should_cancel():
            raise Cancelled(f"cancelled after {total} of {total} tiles")
        progress(total, total, "sorting cell table")
        n_cells = writer.finish()
        writer = None

        her2 = None
        if stain == "ihc":
            codes = np.concatenate(her2_codes) if her2_codes else np.zeros(0, np.int8)
            names = np.array(_HER2_CODES + [None], dtype=object)[codes]  # -1 -> None (ungraded)
            try:
                her2 = her2_slide_score(her2_class=names).to_dict()
            except NoTumourCellsError:
                her2 = None
        _write_png_mask(tmp / "tissue.png", tissue.mask)
        summary = RunSummary(
            out_dir=str(out_dir),
            stain=stain,
            slide_width=width,
            slide_height=height,
            mpp=float(mpp),
            analysis_mpp=float(analysis_mpp),
            read_level=int(level),
            tile_px=tile_px,
            overlap_px=overlap_px,
            n_tiles=total,
            n_grid_tiles=int(n_grid),
            n_cells=int(n_cells),
            class_counts=class_counts,
            segmenter=json.loads(json.dumps(seg_info, default=str)),
            tissue={
                "threshold_od": tissue.threshold_od,
                "tissue_fraction": tissue.tissue_fraction,
                "downsample": tissue.downsample,
                "bbox_level0": list(tissue.bbox_level0()),
            },
            stain_vectors=None if matrix is None else np.round(matrix.vectors, 6).tolist(),
            stain_estimate=estimate_reason,
            her2=her2,
            her2_params=asdict(her2_params) if stain == "ihc" else None,
            elapsed_s=time.perf_counter() - started,
            warnings=warnings,
        )
        (tmp / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2), encoding="utf-8")
        for name in ("summary.json", "tissue.png"):
            _fsync_file(tmp / name)
        _publish(tmp, out_dir)
        progress(total, total, f"done: {n_cells} cells")
        return summary
    except BaseException:
        if writer is not None:
            writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_summary(*, run_dir: Path) -> dict:
    """The summary.json of a published run folder."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        raise WsiAnalysisError(f"no run at {run_dir} (summary.json missing)")
    return json.loads(path.read_text(encoding="utf-8"))
