"""Slide-level HER2-LADDER features: 69 H&E + 70 IHC, from sc-MTOP cell graphs (schema v1).

The seed study (HER2-LADDER, FUSCC) publishes no list of its 69 H&E and 70 IHC features;
this is the faithful design of DESIGN.md 2.4, kept in the versioned schema
``feature_schema_v1.json`` (``build_schema_v1`` writes it; a test keeps both in step):

- 4 graph types per stain; for each ordered pair (a, b), the sc-MTOP graph a-b
  (analysis.core.graph.graphs: k = 5, symmetric OR, 25 um = sc-MTOP's 100 px at 40x, cross-type
  graphs bipartite) and, averaged over the cells of type a: minEdgeLength and
  meanEdgeLength (um; a cell with no partner within 25 um counts as 25 um), Nsubgraph
  (component size; never missing, an isolated cell counts 1) and Degrees (never missing,
  0 when isolated) -> 4 x 4 x 4 = 64 features. A slide without type-a cells gets the
  imputation values (25 um / 1 / 0), i.e. "every type-a cell isolated";
- H&E: types T (tumour), S (stroma), L (lymphocyte), N (neutrophil) + 5 proportions
  (T, S, L, N, M over all cells of the five H&E classes; "other" nuclei excluded) = 69;
- IHC: tumour cells split by HER2 membrane intensity, the quantity ASCO/CAP 2018/2023
  scoring turns on: Tstrong (strong_*), Tweak (weak_*), Tnull (null_*), plus nonT
  (every non-tumour nucleus: stroma, immune and "other"); + 6 proportions of the Her2Class values over tumour cells = 70.
  Completeness is left to the proportions: splitting the graph types by it would give
  6 + 1 graph types (196 features), beyond the study's 70.

Everything is vectorised (scipy cKDTree + csgraph): no per-cell Python loop, so 1M cells
take well under a minute (benchmarks/features.py). Lengths are measured in micrometres
through the slide's mpp, so a 20x and a 40x scan of the same tissue give the same values.
"""
from __future__ import annotations

import json
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.core.cells.classes import CellClass, Her2Class
from analysis.core.graph.graphs import (
    DEFAULT_K,
    DEFAULT_THRESHOLD_UM,
    build_pair_graph,
    component_metrics,
    degrees_and_component_sizes,
    threshold_px,
)

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("feature_schema_v1.json")
STAINS = ("he", "ihc")
GRAPH_STATS = ("minEdgeLength", "meanEdgeLength", "Nsubgraph", "Degrees")

_IMMUNE = (CellClass.LYMPHOCYTE, CellClass.NEUTROPHIL, CellClass.MACROPHAGE)

# Cell-type codes per stain: code -> (cell classes, HER2 classes or None for "any").
HE_TYPES: dict[str, tuple[tuple[CellClass, ...], tuple[Her2Class, ...] | None]] = {
    "T": ((CellClass.TUMOUR,), None),
    "S": ((CellClass.STROMA,), None),
    "L": ((CellClass.LYMPHOCYTE,), None),
    "N": ((CellClass.NEUTROPHIL,), None),
    "M": ((CellClass.MACROPHAGE,), None),
}
HE_GRAPH_TYPES = ("T", "S", "L", "N")
HE_PROPORTION_TYPES = ("T", "S", "L", "N", "M")
IHC_TYPES: dict[str, tuple[tuple[CellClass, ...], tuple[Her2Class, ...] | None]] = {
    "Tstrong": ((CellClass.TUMOUR,), (Her2Class.STRONG_COMPLETE, Her2Class.STRONG_INCOMPLETE)),
    "Tweak": ((CellClass.TUMOUR,), (Her2Class.WEAK_COMPLETE, Her2Class.WEAK_INCOMPLETE)),
    "Tnull": ((CellClass.TUMOUR,), (Her2Class.NULL_COMPLETE, Her2Class.NULL_INCOMPLETE)),
    # Every non-tumour nucleus, "other" included: on IHC the hematoxylin counterstain does not type
    # non-tumour cells reliably (the classical IHC segmenter calls them all "other", as QuPath's
    # positive cell detection does), and the IHC block contrasts HER2 tumour classes with
    # non-tumour cells as a whole. With "other" left out, such slides had no nonT cell at all.
    "nonT": ((CellClass.STROMA, *_IMMUNE, CellClass.OTHER), None),
}
IHC_GRAPH_TYPES = ("Tstrong", "Tweak", "Tnull", "nonT")

_TYPE_WORDS = {
    "T": "tumour cells",
    "S": "stromal cells",
    "L": "lymphocytes",
    "N": "neutrophils",
    "M": "macrophages",
    "Tstrong": "tumour cells with strong HER2 membrane staining (strong_complete or strong_incomplete)",
    "Tweak": "tumour cells with weak-moderate HER2 membrane staining (weak_complete or weak_incomplete)",
    "Tnull": "tumour cells with no or faint HER2 membrane staining (null_complete or null_incomplete)",
    "nonT": "non-tumour cells (stroma, lymphocytes, neutrophils, macrophages and other non-tumour nuclei)",
}


class SlideFeatureError(ValueError):
    """The cell table, resolution or stain cannot give slide features."""


def _types_for(stain: str) -> tuple[dict, tuple[str, ...]]:
    if stain == "he":
        return HE_TYPES, HE_GRAPH_TYPES
    if stain == "ihc":
        return IHC_TYPES, IHC_GRAPH_TYPES
    raise SlideFeatureError(f"stain must be one of {STAINS}, got {stain!r}")


def _selector(code: str, stain: str) -> dict:
    types, _ = _types_for(stain)
    classes, her2 = types[code]
    selector: dict = {"cls": [c.value for c in classes]}
    if her2 is not None:
        selector["her2_class"] = [h.value for h in her2]
    return selector


def build_schema_v1() -> dict:
    """The feature schema v1 (what ``feature_schema_v1.json`` holds)."""
    features: list[dict] = []
    all_he = {"cls": [HE_TYPES[c][0][0].value for c in HE_PROPORTION_TYPES]}
    for code in HE_PROPORTION_TYPES:
        features.append(
            {
                "name": f"he_prop_{code}",
                "group": "he",
                "definition": f"Fraction of {_TYPE_WORDS[code]} among all H&E cells of the five classes "
                "(tumour, stroma, lymphocyte, neutrophil, macrophage; 'other' nuclei excluded).",
                "unit": "fraction",
                "imputation": "none (a slide without any classified cell is an error)",
                "source_cells": {"pair_type": None, "cells": _selector(code, "he"), "denominator": all_he},
            }
        )
    tumour = {"cls": [CellClass.TUMOUR.value]}
    for her2 in Her2Class:
        features.append(
            {
                "name": f"ihc_prop_{her2.value}",
                "group": "ihc",
                "definition": f"Fraction of IHC tumour cells whose HER2 membrane class is {her2.value} "
                "(intensity x circumferential completeness, ASCO/CAP wording).",
                "unit": "fraction",
                "imputation": "0 when the slide has no tumour cell",
                "source_cells": {
                    "pair_type": None,
                    "cells": {**tumour, "her2_class": [her2.value]},
                    "denominator": tumour,
                },
            }
        )
    for stain, graph_types in (("he", HE_GRAPH_TYPES), ("ihc", IHC_GRAPH_TYPES)):
        for a, b in product(graph_types, repeat=2):
            graph = "same-type graph" if a == b else "cross-type (bipartite) graph"
            partner = f"{_TYPE_WORDS[b]}" if a != b else f"other {_TYPE_WORDS[a]}"
            common = (
                f"sc-MTOP {graph} {a}-{b} (k = 5 nearest {partner} closer than 25 um, edge if either "
                f"end chose the other). Mean over {_TYPE_WORDS[a]} of "
            )
            stats = {
                "minEdgeLength": (
                    "the distance to the nearest of its own k nearest partners within 25 um.",
                    "um",
                    "25 um (the threshold) for a cell without partner within 25 um, and for a slide without such cells",
                ),
                "meanEdgeLength": (
                    "the mean distance to its own (up to 5) nearest partners within 25 um.",
                    "um",
                    "25 um (the threshold) for a cell without partner within 25 um, and for a slide without such cells",
                ),
                "Nsubgraph": (
                    "the number of cells in its connected component of the graph.",
                    "cells",
                    "1 (isolated) for a slide without such cells",
                ),
                "Degrees": (
                    "its number of edges in the graph.",
                    "edges",
                    "0 (isolated) for a slide without such cells",
                ),
            }
            for stat, (text, unit, imputation) in stats.items():
                features.append(
                    {
                        "name": f"{stain}_{a}_{b}_{stat}",
                        "group": stain,
                        "definition": common + text,
                        "unit": unit,
                        "imputation": imputation,
                        "source_cells": {
                            "pair_type": f"{a}-{b}",
                            "cells": _selector(a, stain),
                            "partners": _selector(b, stain),
                        },
                    }
                )
    he = [f for f in features if f["group"] == "he"]
    ihc = [f for f in features if f["group"] == "ihc"]
    return {
        "version": SCHEMA_VERSION,
        "description": "HER2-LADDER slide features: 69 H&E + 70 IHC from sc-MTOP cell graphs "
        "(analysis/core/graph/slide_features.py, docs/features.md). Graph: k = 5, threshold 25 um "
        "(sc-MTOP's 100 px at 40x), symmetric OR, cross-type graphs bipartite.",
        "graph": {"k": DEFAULT_K, "threshold_um": DEFAULT_THRESHOLD_UM},
        "features": he + ihc,
    }


def load_schema(*, path: Path = SCHEMA_PATH) -> dict:
    """Read a feature schema file."""
    with Path(path).open() as handle:
        return json.load(handle)


def feature_names(*, stain: str) -> list[str]:
    """Names of the slide features of `stain`, in schema order."""
    _types_for(stain)
    return [f["name"] for f in build_schema_v1()["features"] if f["group"] == stain]


def cell_type_codes(*, cells: pd.DataFrame, stain: str) -> np.ndarray:
    """The graph/proportion type code of every cell ('' when it has none), as object array."""
    types, _ = _types_for(stain)
    if "cls" not in cells.columns:
        raise SlideFeatureError("the cell table needs a 'cls' column of CellClass values")
    cls = cells["cls"].astype(object).to_numpy()
    known = {c.value for c in CellClass}
    unknown = set(pd.unique(cls)) - known
    if unknown:
        raise SlideFeatureError(f"unknown cell classes {sorted(map(str, unknown))}; expected {sorted(known)}")
    codes = np.full(len(cells), "", dtype=object)
    her2 = None
    if stain == "ihc":
        if "her2_class" not in cells.columns:
            raise SlideFeatureError("an IHC cell table needs a 'her2_class' column (Her2Class values; empty for non-tumour)")
        her2 = cells["her2_class"].astype(object).to_numpy()
        tumour = cls == CellClass.TUMOUR.value
        graded = pd.notna(her2)
        if (tumour & ~graded).any():
            raise SlideFeatureError(f"{int((tumour & ~graded).sum())} IHC tumour cells have no her2_class")
        bad = set(pd.unique(her2[tumour])) - {h.value for h in Her2Class}
        if bad:
            raise SlideFeatureError(f"unknown her2_class values {sorted(map(str, bad))}")
    for code, (classes, her2_classes) in types.items():
        match = np.isin(cls, [c.value for c in classes])
        if her2_classes is not None:
            match &= np.isin(her2, [h.value for h in her2_classes])
        codes[match] = code
    return codes


def _coordinates(cells: pd.DataFrame) -> np.ndarray:
    missing = {"x", "y"} - set(cells.columns)
    if missing:
        raise SlideFeatureError(f"the cell table lacks columns {sorted(missing)} (level-0 px centroids)")
    xy = cells[["x", "y"]].to_numpy(dtype=np.float64)
    if not np.isfinite(xy).all():
        raise SlideFeatureError("cell centroids contain NaN or infinite values")
    return xy


def _graph_block(
    *, xy: np.ndarray, codes: np.ndarray, graph_types: tuple[str, ...], mpp: float, threshold_um: float, k: int,
    stain: str, workers: int,
) -> dict[str, float]:
    threshold = threshold_px(mpp=mpp, threshold_um=threshold_um)
    members = {code: np.flatnonzero(codes == code) for code in graph_types}
    values: dict[str, float] = {}
    for i, a in enumerate(graph_types):
        for b in graph_types[i:]:
            graph = build_pair_graph(
                xy=xy,
                source_cells=members[a],
                target_cells=None if a == b else members[b],
                threshold=threshold,
                k=k,
                pair_type=f"{a}-{b}",
                workers=workers,
            )
            degree, _, size = degrees_and_component_sizes(graph=graph)
            vertex_codes = codes[graph.vertices]
            for side, partner in ((a, b), (b, a)) if a != b else ((a, a),):
                on_side = vertex_codes == side
                n = int(on_side.sum())
                prefix = f"{stain}_{side}_{partner}_"
                if n == 0:
                    values.update({prefix + "minEdgeLength": threshold_um, prefix + "meanEdgeLength": threshold_um,
                                   prefix + "Nsubgraph": 1.0, prefix + "Degrees": 0.0})
                    continue
                # px -> um; no partner within the threshold counts as the threshold itself.
                min_um = np.where(np.isnan(graph.min_edge_length[on_side]), threshold_um, graph.min_edge_length[on_side] * mpp)
                mean_um = np.where(np.isnan(graph.mean_edge_length[on_side]), threshold_um, graph.mean_edge_length[on_side] * mpp)
                values[prefix + "minEdgeLength"] = float(min_um.mean())
                values[prefix + "meanEdgeLength"] = float(mean_um.mean())
                values[prefix + "Nsubgraph"] = float(size[on_side].mean())
                values[prefix + "Degrees"] = float(degree[on_side].mean())
    return values


def compute_slide_features(
    *,
    cells: pd.DataFrame,
    mpp: float | None,
    stain: str,
    threshold_um: float = DEFAULT_THRESHOLD_UM,
    k: int = DEFAULT_K,
    workers: int = 1,
) -> dict[str, float]:
    """All slide features of one slide (69 for "he", 70 for "ihc"), in schema order.

    `cells`: columns x, y (level-0 px centroids), cls (CellClass values) and, for IHC,
    her2_class (Her2Class values; NaN/None for non-tumour cells). `mpp`: level-0 um/px.
    `workers`: threads for the kNN queries (-1 = all cores).
    """
    types, graph_types = _types_for(stain)
    if mpp is None or not np.isfinite(mpp) or mpp <= 0:
        raise SlideFeatureError(
            f"slide features need a known resolution (mpp, micrometres per level-0 pixel); got {mpp!r}. "
            "Set the slide's mpp before computing features."
        )
    xy = _coordinates(cells)
    codes = cell_type_codes(cells=cells, stain=stain)
    values: dict[str, float] = {}
    if stain == "he":
        counts = {code: int((codes == code).sum()) for code in HE_PROPORTION_TYPES}
        total = sum(counts.values())
        if total == 0:
            raise SlideFeatureError("the cell table has no tumour, stromal or immune cell: no H&E features")
        values.update({f"he_prop_{code}": counts[code] / total for code in HE_PROPORTION_TYPES})
    else:
        tumour = cells["cls"].astype(object).to_numpy() == CellClass.TUMOUR.value
        her2 = cells["her2_class"].astype(object).to_numpy()[tumour]
        n_tumour = int(tumour.sum())
        if len(cells) == 0:
            raise SlideFeatureError("the cell table is empty: no IHC features")
        values.update(
            {f"ihc_prop_{h.value}": (float((her2 == h.value).sum()) / n_tumour if n_tumour else 0.0) for h in Her2Class}
        )
    values.update(
        _graph_block(xy=xy, codes=codes, graph_types=graph_types, mpp=float(mpp), threshold_um=threshold_um, k=k, stain=stain,
                     workers=workers)
    )
    return {name: values[name] for name in feature_names(stain=stain)}


def cell_graph_edges(
    *,
    cells: pd.DataFrame,
    mpp: float | None,
    stain: str,
    types: tuple[str, ...] | None = None,
    threshold_um: float = DEFAULT_THRESHOLD_UM,
    k: int = DEFAULT_K,
) -> pd.DataFrame:
    """Edge table of every pair-type graph: source, target (row positions in `cells`,
    source < target), pair_type ("T-L", ...) and length_um; sc-MTOP discovery order.

    `types` defaults to the stain's four graph types (H&E may add "M" for macrophages).
    """
    stain_types, graph_types = _types_for(stain)
    types = tuple(types or graph_types)
    unknown = set(types) - set(stain_types)
    if unknown:
        raise SlideFeatureError(f"unknown {stain} cell types {sorted(unknown)}; choose from {sorted(stain_types)}")
    threshold = threshold_px(mpp=mpp, threshold_um=threshold_um)
    xy = _coordinates(cells)
    codes = cell_type_codes(cells=cells, stain=stain)
    frames = []
    for i, a in enumerate(types):
        for b in types[i:]:
            graph = build_pair_graph(
                xy=xy,
                source_cells=np.flatnonzero(codes == a),
                target_cells=None if a == b else np.flatnonzero(codes == b),
                threshold=threshold,
                k=k,
                pair_type=f"{a}-{b}",
            )
            frames.append(
                pd.DataFrame(
                    {"source": graph.sources, "target": graph.targets, "pair_type": graph.pair_type,
                     "length_um": graph.lengths * float(mpp)}
                )
            )
    edges = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["source", "target", "pair_type", "length_um"])
    built = [f"{a}-{b}" for i, a in enumerate(types) for b in types[i:]]
    edges["pair_type"] = pd.Categorical(edges["pair_type"], categories=built)  # build order
    return edges


def cell_graph_metrics(
    *,
    cells: pd.DataFrame,
    cell_index: int,
    mpp: float | None,
    stain: str,
    pair_type: str,
    threshold_um: float = DEFAULT_THRESHOLD_UM,
    k: int = DEFAULT_K,
) -> dict[str, float]:
    """All 12 sc-MTOP metrics of one cell (row position `cell_index`) in graph `pair_type`.

    Exact (igraph, hop-based, normalised per component as sc-MTOP); edge lengths in um.
    Only the cell's component is searched, but betweenness there is O(n m): a component
    of 100k cells takes minutes, so call it for the inspector, not for every cell.
    """
    stain_types, _ = _types_for(stain)
    parts = pair_type.split("-")
    if len(parts) != 2 or set(parts) - set(stain_types):
        raise SlideFeatureError(f"pair_type must be 'A-B' with A, B in {sorted(stain_types)}; got {pair_type!r}")
    if not 0 <= cell_index < len(cells):
        raise SlideFeatureError(f"cell_index {cell_index} is outside the table of {len(cells)} cells")
    threshold = threshold_px(mpp=mpp, threshold_um=threshold_um)
    codes = cell_type_codes(cells=cells, stain=stain)
    a, b = parts
    if codes[cell_index] not in (a, b):
        raise SlideFeatureError(
            f"cell {cell_index} is of type {codes[cell_index] or 'none'!r}, not part of graph {pair_type}"
        )
    graph = build_pair_graph(
        xy=_coordinates(cells),
        source_cells=np.flatnonzero(codes == a),
        target_cells=None if a == b else np.flatnonzero(codes == b),
        threshold=threshold,
        k=k,
        pair_type=pair_type,
    )
    metrics = component_metrics(graph=graph, cell=cell_index)
    for length in ("minEdgeLength", "meanEdgeLength"):
        metrics[length] = metrics[length] * float(mpp)
    return metrics
