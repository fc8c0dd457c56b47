"""sc-MTOP's per-cell feature files, reproduced: ``<sample>_Feats_{T,I,S}.csv`` and ``_Edges.csv``.

Same files, columns, rows, orders and values as ``python main.py feature`` of
fuscc-deep-path/sc_MTOP (F3_FeatureExtract.py / WSIGraph.py @ 33ff31f) writes, as pinned
down in ../shared/data/scmtop/SEMANTICS.md:

- input: HoVer-Net JSON ``{"mag": m, "nuc": {id: {"centroid", "contour", "type", ...}}}``;
  ``name`` is the 0-based position in the JSON's ``nuc`` order; types 1 (T), 2 (I) and
  3 (S) are graphed and written, other types only consume names;
- graphs per pair type T-T, I-I, S-S, T-I, T-S, I-S with k = 5 and the threshold
  ``100 / (40 / mag)`` px (analysis.core.graph.graphs);
- Morph_* / Texture_* per nucleus (analysis.core.cells.features), texture pixels from
  OpenSlide level 0;
- ``stromaBlocker`` for I cells: r = distance to the nearest T cell (no cap); the number
  of S cells within r (``<=``) of both the I cell and that T cell.

Differences from the reference code, all outside what its own inputs exercise: a type with
no cells gives empty graphs (sc-MTOP crashes), fewer than 8 nuclei work, duplicate
centroids do not make self-loops (see analysis.core.graph.graphs), stromaBlocker is NaN when a
slide has no T cell.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from analysis.core.files import atomic_path
from analysis.core.cells.features import (
    MORPH_FEATURES,
    TEXTURE_FEATURES,
    RegionReader,
    nucleus_features,
    openslide_region_reader,
)
from analysis.core.graph.graphs import DEFAULT_K, GRAPH_METRICS, PairGraph, build_pair_graph, graph_metrics

SCMTOP_TYPES = {"T": 1, "I": 2, "S": 3}  # HoVer-Net PanNuke codes (SOURCES.md)
SCMTOP_PAIR_TYPES = ("T-T", "I-I", "S-S", "T-I", "T-S", "I-S")
SCMTOP_THRESHOLD_PX_AT_40X = 100.0


class ScmtopInputError(ValueError):
    """The HoVer-Net JSON or the slide cannot be turned into sc-MTOP features."""


@dataclass(frozen=True)
class HoverNetNuclei:
    """Nuclei of a HoVer-Net JSON, in file order (index = sc-MTOP ``name``)."""

    mag: float | None
    keys: list[str]
    centroids: list[list[float]]  # JSON values kept as parsed, for a byte-exact Centroid column
    contours: list[np.ndarray]
    types: np.ndarray

    @property
    def xy(self) -> np.ndarray:
        return np.asarray(self.centroids, dtype=np.float64).reshape(-1, 2)


def load_hovernet_json(*, path: Path) -> HoverNetNuclei:
    """Read a HoVer-Net JSON as sc-MTOP does (key order kept; bbox field ignored)."""
    path = Path(path)
    try:
        with path.open() as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise ScmtopInputError(f"HoVer-Net JSON not found: {path}") from None
    except json.JSONDecodeError as error:
        raise ScmtopInputError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("nuc"), dict):
        raise ScmtopInputError(f'{path} has no "nuc" object: not a HoVer-Net JSON')
    keys, centroids, contours, types = [], [], [], []
    for key, nucleus in data["nuc"].items():
        try:
            centroid = list(nucleus["centroid"])
            contour = np.asarray(nucleus["contour"], dtype=np.int64)
            cell_type = int(nucleus["type"]) if nucleus["type"] is not None else 0
        except (KeyError, TypeError, ValueError) as error:
            raise ScmtopInputError(f"nucleus {key!r} in {path} lacks a usable centroid/contour/type: {error}") from None
        if len(centroid) != 2 or contour.ndim != 2 or contour.shape[1] != 2 or len(contour) == 0:
            raise ScmtopInputError(f"nucleus {key!r} in {path}: centroid must be [x, y] and contour [[x, y], ...]")
        keys.append(key)
        centroids.append(centroid)
        contours.append(contour)
        types.append(cell_type)
    mag = data.get("mag")
    return HoverNetNuclei(
        mag=float(mag) if mag is not None else None,
        keys=keys,
        centroids=centroids,
        contours=contours,
        types=np.asarray(types, dtype=np.int64),
    )


def scmtop_threshold_px(*, mag: float) -> float:
    """sc-MTOP's distance threshold: 100 px at 40x, i.e. ``100 / (40 / mag)`` px."""
    if mag is None or not np.isfinite(mag) or mag <= 0:
        raise ScmtopInputError(f"sc-MTOP needs the scan magnification to scale its 100 px threshold, got {mag!r}")
    return SCMTOP_THRESHOLD_PX_AT_40X / (40.0 / float(mag))


def scmtop_graphs(*, xy: np.ndarray, types: np.ndarray, threshold: float, k: int = DEFAULT_K) -> dict[str, PairGraph]:
    """The six sc-MTOP pair graphs, keyed by pair type, in sc-MTOP order."""
    graphs = {}
    for pair in SCMTOP_PAIR_TYPES:
        a, b = pair.split("-")
        graphs[pair] = build_pair_graph(
            xy=xy,
            source_cells=types == SCMTOP_TYPES[a],
            target_cells=None if a == b else types == SCMTOP_TYPES[b],
            threshold=threshold,
            k=k,
            pair_type=pair,
        )
    return graphs


def stroma_blocker(*, xy: np.ndarray, types: np.ndarray) -> np.ndarray:
    """sc-MTOP's stromaBlocker per cell (NaN except for I cells; NaN if no T cell exists)."""
    result = np.full(len(xy), np.nan)
    inflammatory = np.flatnonzero(types == SCMTOP_TYPES["I"])
    tumour = np.flatnonzero(types == SCMTOP_TYPES["T"])
    stroma = np.flatnonzero(types == SCMTOP_TYPES["S"])
    if inflammatory.size == 0 or tumour.size == 0:
        return result
    radius, nearest = cKDTree(xy[tumour]).query(xy[inflammatory], k=1)
    if stroma.size == 0:
        result[inflammatory] = 0.0
        return result
    stroma_tree = cKDTree(xy[stroma])
    around_i = stroma_tree.query_ball_point(xy[inflammatory], r=radius)
    around_t = stroma_tree.query_ball_point(xy[tumour[nearest]], r=radius)
    result[inflammatory] = [float(len(set(a).intersection(b))) for a, b in zip(around_i, around_t)]
    return result


def _bbox_text(contour: np.ndarray) -> str:
    # sc-MTOP writes the repr of numpy-2 scalars; kept so the files are drop-in identical.
    (xmin, ymin), (xmax, ymax) = contour.min(axis=0), contour.max(axis=0)
    return f"[[np.int64({xmin}), np.int64({ymin})], [np.int64({xmax}), np.int64({ymax})]]"


def scmtop_tables(
    *, nuclei: HoverNetNuclei, read_region: RegionReader, threshold: float | None = None
) -> dict[str, pd.DataFrame]:
    """The four sc-MTOP tables: keys "T", "I", "S" (per-cell features) and "Edges"."""
    if threshold is None:
        threshold = scmtop_threshold_px(mag=nuclei.mag)
    xy, types = nuclei.xy, nuclei.types
    graphs = scmtop_graphs(xy=xy, types=types, threshold=threshold)
    metrics = {pair: graph_metrics(graph=graph) for pair, graph in graphs.items()}
    blocker = stroma_blocker(xy=xy, types=types)
    graphed = np.flatnonzero(np.isin(types, list(SCMTOP_TYPES.values())))
    # sc-MTOP measures every nucleus; only T/I/S rows are written, so measure only those.
    features = nucleus_features(contours=[nuclei.contours[i] for i in graphed], read_region=read_region)
    features.index = graphed
    tables: dict[str, pd.DataFrame] = {}
    for letter, code in SCMTOP_TYPES.items():
        cells = np.flatnonzero(types == code)
        frame = pd.DataFrame(
            {
                "name": cells,
                "Bbox": [_bbox_text(nuclei.contours[i]) for i in cells],
                "Centroid": [str(nuclei.centroids[i]) for i in cells],
                "CellType": types[cells],
            }
        )
        for column in MORPH_FEATURES + TEXTURE_FEATURES:
            frame[column] = features.loc[cells, column].to_numpy()
        for pair in SCMTOP_PAIR_TYPES:
            if letter not in pair.split("-"):
                continue
            values = metrics[pair].loc[cells]
            for metric in GRAPH_METRICS:
                frame[f"Graph_{pair}_{metric}"] = values[metric].to_numpy(dtype=np.float64)
        frame["stromaBlocker"] = blocker[cells]
        tables[letter] = frame
    tables["Edges"] = pd.concat(
        [
            pd.DataFrame({"source": g.sources, "target": g.targets, "featype": g.pair_type})
            for g in graphs.values()
        ],
        ignore_index=True,
    )
    return tables


def _write_csv_atomic(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def _slide_magnification(slide_path: Path) -> float | None:
    import openslide

    with openslide.OpenSlide(str(slide_path)) as slide:
        value = slide.properties.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER)
    return float(value) if value else None


def write_scmtop_outputs(
    *, hovernet_json: Path, slide_path: Path, out_dir: Path, sample: str | None = None
) -> dict[str, Path]:
    """Write sc-MTOP's four files for one slide; return {"T", "I", "S", "Edges"} -> path.

    `sample` defaults to the slide file name up to its first '.', as sc-MTOP names them.
    The magnification comes from the JSON's "mag" (as sc-MTOP), else from the slide.
    """
    hovernet_json, slide_path, out_dir = Path(hovernet_json), Path(slide_path), Path(out_dir)
    if not slide_path.is_file():
        raise ScmtopInputError(f"slide not found: {slide_path}")
    nuclei = load_hovernet_json(path=hovernet_json)
    mag = nuclei.mag if nuclei.mag is not None else _slide_magnification(slide_path)
    if mag is None:
        raise ScmtopInputError(
            f"neither {hovernet_json.name} (\"mag\") nor the slide states the magnification that "
            f"sc-MTOP's 100 px threshold scales with"
        )
    threshold = scmtop_threshold_px(mag=mag)
    sample = sample or slide_path.name.split(".")[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    read_region, close = openslide_region_reader(slide_path=slide_path)
    try:
        tables = scmtop_tables(nuclei=nuclei, read_region=read_region, threshold=threshold)
    finally:
        close()
    paths = {}
    for key, suffix in (("T", "Feats_T"), ("I", "Feats_I"), ("S", "Feats_S"), ("Edges", "Edges")):
        paths[key] = out_dir / f"{sample}_{suffix}.csv"
        _write_csv_atomic(tables[key], paths[key])
    return paths
