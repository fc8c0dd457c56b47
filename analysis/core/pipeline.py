"""Streamed whole-slide analysis: tissue -> tiles -> nuclei (-> HER2 grades) -> cell table.

`analyze_slide` walks the tissue tiles of a slide of any size with bounded memory and
writes one run folder:

    <out_dir>/cells.parquet   the cell table (analysis.core.cells.table; spatially sorted)
    <out_dir>/tissue.png      the tissue mask (1 px = summary.tissue.downsample level-0 px)
    <out_dir>/qc.png          QC codes at the mask's resolution (analysis.core.slides.qc: tissue
                              analysed, pen ink and small fragments excluded, glass); summary.qc
                              lists the analysed tiles. Cells whose centroid lies on pen ink are dropped.
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
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import pandas as pd
from PIL import Image

from analysis.core.files import fsync_file, publish_folder
from analysis.core.memory import release_free_memory
from analysis.core.cells import stain as stain_mod
from analysis.core.cells.segmentation.base import is_two_phase
from analysis.core.cells.table import CellTableWriter, DEFAULT_BUCKET_PX
from analysis.core.cells.classes import CellClass, Her2Class
from analysis.core.her2.grading import (
    Her2Params,
    NoTumourCellsError,
    estimate_hdab,
    grade_membranes,
    h_score,
    her2_slide_score,
    keep_tumour_grades,
)
from analysis.core.slides import qc as qc_mod
from analysis.core.slides.tissue import TissueParams, detect_tissue, tissue_tiles

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
                                                 "summary": "summary.json", "qc": "qc.png"})
    # tiles ([x, y, w, h] level-0 cores analysed), pen_fraction / small_fraction (of the mask),
    # cells_on_pen (dropped), focus (not assessed)
    qc: dict | None = None
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


@dataclass(frozen=True)
class _Plan:
    """Where and how the slide is read: checked arguments and the tiling geometry."""

    width: int
    height: int
    mpp: float
    scale: float  # level-0 px per analysis px (1.0 when within 2 %)
    tile_px: int
    overlap_px: int
    level: int
    level_ds: float
    out_dir: Path


class _HeSteps:
    """What differs per stain, H&E: nuclei and their classes only."""

    stain = "he"

    def __init__(self, *, segmenter, her2_params: Her2Params) -> None:
        self.segmenter = segmenter
        self.her2_params = her2_params
        self.matrix: stain_mod.StainMatrix | None = None
        self.estimate_reason = ""

    def stain_warning(self, presence) -> str | None:
        if presence.looks_like == "ihc":
            return f"analysed as H&E but the slide looks like IHC (brown {presence.dab_fraction:.1%} of tissue)"
        return None

    def prepare(self, *, thumb: np.ndarray, tissue, stain_matrix) -> list[str]:
        """Slide-level set-up once the tissue is known; returns warnings."""
        return []

    def annotate(self, found: pd.DataFrame, *, rgb: np.ndarray, mpp: float) -> pd.DataFrame:
        """Per tile: what is added to the segmenter's nuclei (tile pixel coordinates)."""
        return found

    def collect(self, cells: pd.DataFrame) -> None:
        """Per tile: what the slide-level result needs from the kept cells."""

    def slide_result(self) -> dict | None:
        return None

    def params(self) -> dict | None:
        return None


class _IhcSteps(_HeSteps):
    """HER2 IHC: nuclei on this slide's hematoxylin, membrane grades per cell, ASCO/CAP score."""

    stain = "ihc"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._her2_codes: list[np.ndarray] = []

    def stain_warning(self, presence) -> str | None:
        if presence.looks_like == "he":
            return (f"analysed as IHC but the slide looks like H&E (brown {presence.dab_fraction:.1%} "
                    f"of tissue, pink {presence.eosin_fraction:.1%}); HER2 grades are meaningless")
        return None

    def prepare(self, *, thumb: np.ndarray, tissue, stain_matrix) -> list[str]:
        if stain_matrix is not None:
            self.matrix, self.estimate_reason = stain_matrix, "given"
        else:
            est = estimate_hdab(rgb=np.ascontiguousarray(thumb), tissue_mask=tissue.mask)
            self.matrix, self.estimate_reason = est.matrix, est.reason
        if hasattr(self.segmenter, "for_stain_matrix"):
            self.segmenter = self.segmenter.for_stain_matrix(self.matrix)  # nuclei on this slide's hematoxylin
        # Chosen by capability: a segmenter that declares its stains and not IHC gets a warning.
        stains = getattr(self.segmenter, "stains", None)
        if stains is not None and "ihc" not in stains:
            label = getattr(self.segmenter, "label", type(self.segmenter).__name__)
            return [f"the H&E {label} segmenter was used on IHC: DAB membranes can leak into its "
                    "nuclei; use analysis.core.her2.grading.IhcNucleusSegmenter"]
        return []

    def annotate(self, found: pd.DataFrame, *, rgb: np.ndarray, mpp: float) -> pd.DataFrame:
        grades = grade_membranes(rgb=rgb, mpp=mpp, nuclei=found, stain_matrix=self.matrix, params=self.her2_params)
        # Graded with every nucleus present (expansion stops at neighbours); kept for tumour cells only.
        return keep_tumour_grades(pd.concat([found.reset_index(drop=True), grades.reset_index(drop=True)], axis=1))

    def collect(self, cells: pd.DataFrame) -> None:
        tumour = (cells["cls"] == CellClass.TUMOUR.value).to_numpy()
        codes = cells["her2_class"].map({v: i for i, v in enumerate(_HER2_CODES)})
        self._her2_codes.append(codes[tumour].fillna(-1).to_numpy(np.int8))  # one int8 per tumour cell

    def slide_result(self) -> dict | None:
        codes = np.concatenate(self._her2_codes) if self._her2_codes else np.zeros(0, np.int8)
        names = np.array(_HER2_CODES + [None], dtype=object)[codes]  # -1 -> None (ungraded)
        try:
            result = her2_slide_score(her2_class=names).to_dict()
        except NoTumourCellsError:
            return None
        result["h_score"] = h_score(her2_class=names)
        return result

    def params(self) -> dict | None:
        return asdict(self.her2_params)


STAIN_STEPS = {"he": _HeSteps, "ihc": _IhcSteps}


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
    segmenter: analysis.core.cells.segmentation.base.Segmenter (its target_mpp sets the
    analysis resolution); for IHC use analysis.core.her2.grading.IhcNucleusSegmenter (or any
    segmenter with `for_stain_matrix(matrix)`, which receives the slide's vectors). For
    IHC the H-DAB stain vectors are estimated once per slide (her2.estimate_hdab: Macenko
    on the tissue of the thumbnail, with fallback) unless `stain_matrix` is given.
    Raises NoTissueError (no tissue), Cancelled (should_cancel), WsiAnalysisError.

    The steps: plan the tiling, find the tissue, prepare the stain's steps (_HeSteps,
    _IhcSteps), segment (and grade) tile by tile into the cell table, score the slide,
    write the summary, publish the folder.
    """
    started = time.perf_counter()
    plan = _plan(reader=reader, stain=stain, segmenter=segmenter, out_dir=out_dir, mpp=mpp, tile_um=tile_um,
                 overlap_um=overlap_um)
    progress = progress or (lambda done, total, message: None)
    should_cancel = should_cancel or (lambda: False)
    steps = STAIN_STEPS[stain](segmenter=segmenter, her2_params=her2_params)

    tmp = plan.out_dir.parent / f"{plan.out_dir.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    writer = None
    try:
        progress(0, 1, "detecting tissue")
        thumb, tissue, tiles, n_grid, qc_codes = _find_tissue(reader=reader, plan=plan, tissue_params=tissue_params,
                                                              thumbnail_px=thumbnail_px)
        warning = steps.stain_warning(stain_mod.dab_presence(rgb=np.ascontiguousarray(thumb)))
        warnings = ([warning] if warning else []) + steps.prepare(thumb=thumb, tissue=tissue,
                                                                  stain_matrix=stain_matrix)
        info = getattr(steps.segmenter, "info", None)
        seg_info = asdict(info) if info is not None else {"name": type(steps.segmenter).__name__}
        writer = CellTableWriter(
            path=tmp / "cells.parquet",
            slide_width=plan.width,
            slide_height=plan.height,
            bucket_px=bucket_px,
            flush_rows=flush_rows,
            metadata={"stain": stain, "mpp": mpp, "segmenter": seg_info.get("name", "")},
        )
        dropped = {"cells_on_pen": 0}
        class_counts = _segment_tiles(reader=reader, plan=plan, tiles=tiles, steps=steps, writer=writer,
                                      progress=progress, should_cancel=should_cancel,
                                      excluded=(qc_codes == qc_mod.PEN, tissue.downsample), dropped=dropped)
        total = len(tiles)
        progress(total, total, "sorting cell table")
        n_cells = writer.finish()
        writer = None
        her2 = steps.slide_result()
        _write_png_mask(tmp / "tissue.png", tissue.mask)
        Image.fromarray(qc_codes).save(tmp / "qc.png", format="PNG", optimize=True)
        summary = RunSummary(
            out_dir=str(plan.out_dir),
            stain=stain,
            slide_width=plan.width,
            slide_height=plan.height,
            mpp=float(mpp),
            analysis_mpp=float(mpp * plan.scale),
            read_level=int(plan.level),
            tile_px=plan.tile_px,
            overlap_px=plan.overlap_px,
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
            stain_vectors=None if steps.matrix is None else np.round(steps.matrix.vectors, 6).tolist(),
            stain_estimate=steps.estimate_reason,
            her2=her2,
            her2_params=steps.params(),
            elapsed_s=time.perf_counter() - started,
            warnings=warnings,
            qc={"tiles": [list(map(int, t)) for t in tiles],
                "pen_fraction": float((qc_codes == qc_mod.PEN).mean()),
                "small_fraction": float((qc_codes == qc_mod.SMALL).mean()),
                "cells_on_pen": int(dropped["cells_on_pen"]), "focus": "not assessed",
                "codes": {str(k): v for k, v in qc_mod.QC_CODES.items()}},
        )
        _publish_run(tmp=tmp, out_dir=plan.out_dir, summary=summary)
        progress(total, total, f"done: {n_cells} cells")
        return summary
    except BaseException:
        if writer is not None:
            writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _plan(*, reader, stain: str, segmenter, out_dir: Path, mpp: float, tile_um: float, overlap_um: float) -> _Plan:
    """Check the arguments; the tiling in level-0 px and the pyramid level read."""
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
    # Level-0 px per analysis px; a scale within 2 % of 1 is read as is (no resampling).
    scale = target_mpp / mpp
    if abs(scale - 1.0) < 0.02:
        scale = 1.0
    level, level_ds = _read_level(reader, scale)
    return _Plan(width=width, height=height, mpp=mpp, scale=scale, tile_px=max(1, int(round(tile_um / mpp))),
                 overlap_px=int(round(overlap_um / mpp)), level=level, level_ds=level_ds, out_dir=out_dir)


def _find_tissue(*, reader, plan: _Plan, tissue_params: TissueParams, thumbnail_px: int):
    """(thumbnail, tissue mask, tissue tiles, tiles in the whole grid)."""
    thumb = np.asarray(reader.thumbnail(thumbnail_px))[..., :3]
    downsample = max(plan.width / thumb.shape[1], plan.height / thumb.shape[0])
    tissue = detect_tissue(thumbnail=thumb, downsample=downsample, mpp=plan.mpp, params=tissue_params)
    # Pen ink is cut out of the tissue (its tiles are not analysed unless tissue remains; cells on it are
    # dropped); what the threshold saw but the clean-up dropped is recorded as small fragments.
    pen = qc_mod.pen_mask(rgb=thumb, px_um=plan.mpp * tissue.downsample)
    foreground = stain_mod.rgb_to_od(rgb=np.ascontiguousarray(thumb)).sum(axis=2) > tissue.threshold_od
    qc_codes = qc_mod.qc_raster(tissue=tissue.mask, pen=pen, foreground=foreground)
    if pen.any() and (tissue.mask & ~pen).any():
        from dataclasses import replace

        tissue = replace(tissue, mask=tissue.mask & ~pen)
    tiles = tissue_tiles(tissue=tissue, slide_width=plan.width, slide_height=plan.height, tile_px=plan.tile_px)
    n_grid = math.ceil(plan.width / plan.tile_px) * math.ceil(plan.height / plan.tile_px)
    return thumb, tissue, tiles, n_grid, qc_codes


def _segment_tiles(*, reader, plan: _Plan, tiles, steps: _HeSteps, writer: CellTableWriter, progress,
                   should_cancel, excluded: tuple[np.ndarray, float] | None = None, dropped: dict | None = None) -> dict:
    """Every tissue tile: read (grown by the overlap), segment, annotate per stain, keep the cells
    whose centroid lies in the tile's core, number them, write them. Returns the class counts.

    With a two-phase segmenter (base.TwoPhaseSegmenter: the nucleus model) the network of the
    next tile runs in a thread while this tile is post-processed, so both cores stay busy; tiles
    are still finished, numbered and written in order, and at most two are in memory."""
    segmenter = steps.segmenter
    next_id = 0
    class_counts = {c.value: 0 for c in CellClass}
    total = len(tiles)

    def read(tile):
        x, y, w, h = tile
        x0, y0 = max(0, x - plan.overlap_px), max(0, y - plan.overlap_px)
        x1, y1 = min(plan.width, x + w + plan.overlap_px), min(plan.height, y + h + plan.overlap_px)
        rgb, fx, fy = _read_tile(reader, x0=x0, y0=y0, x1=x1, y1=y1, scale=plan.scale, level=plan.level,
                                 level_ds=plan.level_ds)
        return {"tile": tile, "x0": x0, "y0": y0, "fx": fx, "fy": fy, "rgb": rgb, "mpp": plan.mpp * (fx + fy) / 2}

    def keep(read_tile: dict, found: pd.DataFrame, done: int) -> None:
        nonlocal next_id
        x, y, w, h = read_tile["tile"]
        if len(found):
            found = steps.annotate(found, rgb=read_tile["rgb"], mpp=read_tile["mpp"])
            cells = _to_level0(found.reset_index(drop=True), x0=read_tile["x0"], y0=read_tile["y0"],
                               fx=read_tile["fx"], fy=read_tile["fy"])
            cx, cy = cells["x"].to_numpy(), cells["y"].to_numpy()
            core = (cx >= x) & (cx < x + w) & (cy >= y) & (cy < y + h)
            if excluded is not None and excluded[0].any():  # centroid on pen ink: not a cell
                mask, ds = excluded
                on = mask[np.clip((cy / ds).astype(np.int64), 0, mask.shape[0] - 1),
                          np.clip((cx / ds).astype(np.int64), 0, mask.shape[1] - 1)]
                if dropped is not None:
                    dropped["cells_on_pen"] += int((core & on).sum())
                core &= ~on
            cells = cells[core].reset_index(drop=True)
            if len(cells):
                cells.insert(0, "id", np.arange(next_id, next_id + len(cells), dtype=np.int64))
                next_id += len(cells)
                for value, count in cells["cls"].value_counts().items():
                    class_counts[str(value)] = class_counts.get(str(value), 0) + int(count)
                steps.collect(cells)
                writer.add(cells)
        read_tile.clear()  # the tile's pixels and maps go now, not with the next tile
        del found
        release_free_memory()  # the tile's buffers, or the heap keeps growing (analysis/core/memory.py)
        progress(done + 1, total, f"tile {done + 1}/{total}: {next_id} cells")

    if is_two_phase(segmenter):
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="network") as network:
            pending = None  # (read tile, its network pass in flight)
            for done, tile in enumerate(tiles):
                if should_cancel():
                    raise Cancelled(f"cancelled after {done} of {total} tiles")
                current = read(tile)
                running = network.submit(segmenter.predict, rgb=current["rgb"], mpp=current["mpp"])
                if pending is not None:
                    keep(pending[0], segmenter.finish(pending[1].result()), done - 1)
                pending = (current, running)
            if pending is not None:
                keep(pending[0], segmenter.finish(pending[1].result()), total - 1)
    else:
        for done, tile in enumerate(tiles):
            if should_cancel():
                raise Cancelled(f"cancelled after {done} of {total} tiles")
            current = read(tile)
            keep(current, segmenter.segment(rgb=current["rgb"], mpp=current["mpp"]), done)
    if should_cancel():
        raise Cancelled(f"cancelled after {total} of {total} tiles")
    return class_counts


def _publish_run(*, tmp: Path, out_dir: Path, summary: RunSummary) -> None:
    """Write summary.json, make the folder's files durable, rename the folder into place."""
    (tmp / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2), encoding="utf-8")
    for name in ("summary.json", "tissue.png", "qc.png"):
        fsync_file(tmp / name)
    publish_folder(tmp, out_dir)


def read_summary(*, run_dir: Path) -> dict:
    """The summary.json of a published run folder."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        raise WsiAnalysisError(f"no run at {run_dir} (summary.json missing)")
    return json.loads(path.read_text(encoding="utf-8"))
