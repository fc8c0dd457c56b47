"""Writes of analysis results: runs, slide features. Handlers and commands call these."""
from __future__ import annotations

import json
import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction

from analysis.models import AnalysisRun, FeatureStatus, SlideFeatures
from cases.audit import audit_record

logger = logging.getLogger(__name__)

# Graph edges kept for the overlays: every pair of the H&E types including macrophages.
EDGE_TYPES = {"he": ("T", "S", "L", "N", "M"), "ihc": None}
FEATURE_SCHEMA = Path(__file__).resolve().parent / "core" / "graph" / "feature_schema_v1.json"


def runs_root() -> Path:
    root = Path(settings.LADDER_RUNS_DIR)
    root.mkdir(parents=True, exist_ok=True)
    return root


def run_dir_new(*, slide) -> tuple[Path, str]:
    """A fresh, not yet existing run folder for a slide: (absolute path, path under the runs root)."""
    relative = f"slide-{slide.pk}/run-{uuid.uuid4().hex[:12]}"
    path = runs_root() / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    return path, relative


def run_path(run: AnalysisRun) -> Path:
    return runs_root() / run.run_dir


def schema_version() -> str:
    return str(json.loads(FEATURE_SCHEMA.read_text())["version"])


@dataclass(frozen=True)
class PreparedFeatures:
    """Slide features of a run folder, computed but not yet recorded: values, or why there are none."""
    schema_version: str
    values: dict | None
    reason: str = ""


def slide_features_prepare(*, slide, folder: Path, log=lambda line: None) -> PreparedFeatures:
    """Slide-level features of the cells in `folder`, and the graph edges written beside them.

    Runs before the run is recorded, so that a run is never visible without its edges and
    features (viewers would show, and cache, an edge-less run). Without a known mpp nothing is
    computed and the reason is kept: features in micrometres cannot come from pixels of unknown size.
    """
    from analysis.core.cells.table import read_cells, write_edges
    from analysis.core.graph.slide_features import SlideFeatureError, cell_graph_edges, compute_slide_features

    version = schema_version()
    if not slide.mpp_x:
        return PreparedFeatures(version, None, "The slide's resolution (µm per pixel) is unknown: set it on the "
                                               "case page, then re-run.")
    cells = read_cells(path=folder / "cells.parquet")
    try:
        values = compute_slide_features(cells=cells, mpp=slide.mpp_x, stain=slide.stain)
        edges = cell_graph_edges(cells=cells, mpp=slide.mpp_x, stain=slide.stain, types=EDGE_TYPES.get(slide.stain))
    except SlideFeatureError as exc:
        return PreparedFeatures(version, None, str(exc)[:255])
    # Row positions -> cell ids; lengths in µm (the edge table's unit).
    ids = cells["id"].to_numpy()
    edges = edges.assign(source=ids[edges["source"].to_numpy()], target=ids[edges["target"].to_numpy()])
    edges = edges.rename(columns={"length_um": "length"})
    write_edges(edges=edges, path=folder / "edges.parquet", cells=cells, metadata={"length_unit": "um"})
    log(f"{len(values)} slide features, {len(edges):,} graph edges")
    clean = {name: (None if value != value else float(value)) for name, value in values.items()}  # NaN -> null
    return PreparedFeatures(version, clean)


def slide_features_record(*, slide, run: AnalysisRun, prepared: PreparedFeatures) -> SlideFeatures:
    if prepared.values is None:
        return SlideFeatures.objects.create(slide=slide, run=run, schema_version=prepared.schema_version,
                                            status=FeatureStatus.UNAVAILABLE, reason=prepared.reason)
    return SlideFeatures.objects.create(slide=slide, run=run, schema_version=prepared.schema_version,
                                        values=prepared.values)


def analysis_run_publish(*, slide, job, run_dir: str, summary: dict, prepared: PreparedFeatures,
                         source: str = "segmentation") -> tuple[AnalysisRun, SlideFeatures]:
    """Record a complete run folder and its slide features in one transaction: readers see both or neither."""
    with transaction.atomic():
        run = analysis_run_record(slide=slide, job=job, run_dir=run_dir, summary=summary, source=source)
        return run, slide_features_record(slide=slide, run=run, prepared=prepared)


def analysis_run_record(*, slide, job, run_dir: str, summary: dict, source: str = "segmentation") -> AnalysisRun:
    segmenter = summary.get("segmenter") or {}
    with transaction.atomic():
        run = AnalysisRun.objects.create(
            slide=slide, job=job, run_dir=run_dir, source=source,
            segmenter=segmenter.get("name", "unknown"), segmenter_version=str(segmenter.get("version", "")),
            weights=segmenter.get("weights", ""), approximate=bool(segmenter.get("approximate", False)),
            n_cells=int(summary.get("n_cells", 0)), class_counts=summary.get("class_counts") or {},
            her2=summary.get("her2"), warnings=summary.get("warnings") or [], summary=summary,
        )
        audit_record(user=job.created_by if job else None, action="analysis.run", case=slide.case, slide=slide,
                     detail={"run": run.pk, "segmenter": run.segmenter, "cells": run.n_cells})
    return run


def run_discard(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def cells_import(*, slide, path: Path, user=None) -> AnalysisRun:
    """Bring your own segmentation: HoVer-Net JSON (sc-MTOP's input) or QuPath GeoJSON detections
    become the cells of a slide, as a run of its own, with graph edges and slide features."""
    from analysis.core.cells.interchange import read_hovernet_json, read_qupath_geojson
    from analysis.core.cells.table import write_cells
    from analysis.core.files import atomic_write_text, publish_folder

    path = Path(path)
    text_start = path.read_bytes()[:4096].lstrip()
    reader = read_qupath_geojson if b'"FeatureCollection"' in text_start or b'"Feature"' in text_start \
        else read_hovernet_json
    imported = reader(path=path)
    cells = imported.cells
    width, height = slide.width, slide.height
    outside = (cells["x"] < 0) | (cells["y"] < 0) | (cells["x"] >= width) | (cells["y"] >= height)
    if outside.any():
        raise ValueError(f"{path.name}: {int(outside.sum())} cell(s) lie outside the slide ({width} x {height} px): "
                         "coordinates must be level-0 pixels of this slide")
    final, relative = run_dir_new(slide=slide)
    staging = final.with_name(final.name + ".tmp")
    staging.mkdir()
    try:
        write_cells(path=staging / "cells.parquet", cells=cells, metadata={"source": imported.source_format})
        counts = cells["cls"].value_counts().to_dict()
        summary = {"segmenter": {"name": f"imported-{imported.source_format}", "version": "", "approximate": False,
                                 "weights": path.name},
                   "n_cells": len(cells), "class_counts": {str(k): int(v) for k, v in counts.items()},
                   "source_file": str(path), "mag": imported.mag, "warnings": []}
        atomic_write_text(staging / "summary.json", json.dumps(summary, indent=1))
        prepared = slide_features_prepare(slide=slide, folder=staging)
        publish_folder(staging, final)
    except BaseException:
        run_discard(staging)
        raise
    try:
        run, _ = analysis_run_publish(slide=slide, job=None, run_dir=relative, summary=summary, prepared=prepared,
                                      source="imported")
    except BaseException:
        run_discard(final)
        raise
    audit_record(user=user, action="cells.import", case=slide.case, slide=slide,
                 detail={"file": str(path), "cells": len(cells), "format": imported.source_format})
    return run


def cells_export(*, run: AnalysisRun, path: Path, fmt: str) -> int:
    """Write a run's cells as QuPath GeoJSON detections or HoVer-Net JSON; returns the count."""
    from analysis.core.cells.interchange import write_hovernet_json, write_qupath_geojson
    from analysis.core.cells.table import read_cells

    cells = read_cells(path=run_path(run) / "cells.parquet")
    if fmt == "geojson":
        return write_qupath_geojson(path=path, cells=cells)
    if fmt == "hovernet":
        mag = 40.0 * 0.25 / run.slide.mpp_x if run.slide.mpp_x else None  # HoVer-Net's mag: 40x = 0.25 µm/px
        return write_hovernet_json(path=path, cells=cells, mag=round(mag, 2) if mag else None)
    raise ValueError(f"unknown cell export format {fmt!r}: use geojson or hovernet")
