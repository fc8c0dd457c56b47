"""sc-MTOP cell graphs: symmetric-OR k-nearest-neighbour graphs per pair of cell types.

Follows fuscc-deep-path/sc_MTOP, WSIGraph.py @ 33ff31f (Zhao et al., Nat Commun 2023), as
pinned down in ../shared/data/scmtop/SEMANTICS.md:

- same-type graph X-X: every X cell links to its up to k nearest OTHER X cells closer than
  the threshold (strictly ``d < threshold``; scipy cKDTree ``query(k=k+1,
  distance_upper_bound=threshold)`` with the cell itself removed);
- cross-type graph X-Y: every X cell links to its up to k nearest Y cells, then every Y
  cell to its up to k nearest X cells; no X-X or Y-Y edge;
- the union is a simple undirected graph; an edge found twice is kept at its first
  discovery (query cells in ascending index, neighbours by increasing distance, X->Y pass
  before Y->X), stored with ``source < target`` exactly as sc-MTOP's ``_Edges.csv``;
- ``minEdgeLength`` / ``meanEdgeLength`` of a cell are the min / mean of its OWN kNN
  distances below the threshold (NaN if none), not of its final edge set.

The threshold is sc-MTOP's 100 px at 40x. The product works in micrometres: 25 um
(100 px x 0.25 um/px); ``threshold_px(mpp=...)`` converts it to level-0 pixels.

One deliberate deviation: sc-MTOP drops the first kNN column as "self". With two cells on
the same centroid that column can be the other cell, leaving a self-loop and dropping a
real neighbour. Here the query cell itself is removed wherever it sits in the row (the
last column is dropped when it is absent); without duplicate centroids both rules agree.

Everything here is vectorised (no Python loop per cell). The hop-based metrics that need
all-pairs shortest paths (betweenness, closeness, eccentricity, harmonic centrality) are
in ``graph_metrics`` (igraph) and ``cell_graph_metrics`` (one cell's component, on demand).
"""
from __future__ import annotations

from dataclasses import dataclass

import igraph
import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from analysis.core.graph.fast_metrics import metrics_from_igraph

# sc-MTOP: k = 5 neighbours within 100 px at 40x; HoVer-Net's 40x is 0.25 um/px.
DEFAULT_K = 5
DEFAULT_THRESHOLD_UM = 25.0
REFERENCE_40X_MPP = 0.25

# The 12 per-cell graph metrics, in sc-MTOP's column order (WSIGraph.py).
GRAPH_METRICS = (
    "minEdgeLength",
    "meanEdgeLength",
    "Nsubgraph",
    "Degrees",
    "Coreness",
    "ClusteringCoefficient",
    "Eccentricity",
    "Eccentricity_normed",
    "HarmonicCentrality",
    "Closeness",
    "Betweenness",
    "Betweenness_normed",
)

EDGE_COLUMNS = ("source", "target", "pair_type", "length")


class GraphInputError(ValueError):
    """Cell coordinates, type sets or graph parameters are unusable."""


def threshold_px(*, mpp: float | None, threshold_um: float = DEFAULT_THRESHOLD_UM) -> float:
    """The sc-MTOP distance threshold in level-0 pixels of a slide with `mpp` um/px."""
    if mpp is None or not np.isfinite(mpp) or mpp <= 0:
        raise GraphInputError(
            f"cell-graph distances need a known resolution: mpp must be a positive number "
            f"of micrometres per pixel, got {mpp!r}"
        )
    if not np.isfinite(threshold_um) or threshold_um <= 0:
        raise GraphInputError(f"threshold_um must be positive, got {threshold_um!r}")
    return float(threshold_um) / float(mpp)


@dataclass(frozen=True)
class PairGraph:
    """One sc-MTOP pair-type graph over cells indexed 0..N-1 in a shared cell table.

    `vertices` is the vertex set (all source-type and target-type cells, ascending);
    per-vertex arrays are aligned with it. Edges use the shared cell indices with
    ``source < target``, in sc-MTOP's discovery order; `lengths` are in the units of the
    coordinates.
    """

    pair_type: str
    vertices: np.ndarray
    sources: np.ndarray
    targets: np.ndarray
    lengths: np.ndarray
    min_edge_length: np.ndarray
    mean_edge_length: np.ndarray

    @property
    def n_edges(self) -> int:
        return int(self.sources.size)

    def local_edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Edges as positions in `vertices` (vertex ids of the igraph subgraph)."""
        if self.sources.size == 0:
            return self.sources.copy(), self.targets.copy()
        # A dense lookup beats searchsorted at a million cells.
        position = np.empty(int(self.vertices[-1]) + 1, dtype=np.int64)
        position[self.vertices] = np.arange(self.vertices.size)
        return position[self.sources], position[self.targets]

    def edges_frame(self) -> pd.DataFrame:
        """Edge table (source, target, pair_type, length) in discovery order."""
        return pd.DataFrame(
            {
                "source": self.sources,
                "target": self.targets,
                "pair_type": pd.Categorical([self.pair_type] * self.n_edges),
                "length": self.lengths,
            }
        )


def _check_xy(xy: np.ndarray) -> np.ndarray:
    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise GraphInputError(f"cell coordinates must be an (N, 2) array of x, y; got shape {xy.shape}")
    if not np.isfinite(xy).all():
        raise GraphInputError("cell coordinates contain NaN or infinite values")
    return xy


def _check_index(index: np.ndarray, n_cells: int, what: str) -> np.ndarray:
    index = np.asarray(index)
    if index.dtype == bool:
        if index.size != n_cells:
            raise GraphInputError(f"{what} mask has {index.size} entries for {n_cells} cells")
        return np.flatnonzero(index)
    index = np.sort(index.astype(np.int64))  # ascending: sc-MTOP queries cells in name order
    index = index[np.r_[True, index[1:] != index[:-1]]] if index.size else index
    if index.size and (index[0] < 0 or index[-1] >= n_cells):
        raise GraphInputError(f"{what} indices must lie in 0..{n_cells - 1}")
    return index


def _knn_pass(
    *, xy: np.ndarray, query: np.ndarray, partners: np.ndarray, threshold: float, k: int, same: bool, workers: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each query cell's up to k nearest partners with d < threshold.

    Returns (neighbour index (n, k), distance (n, k), valid mask (n, k)), indices global.
    """
    n = query.size
    if n == 0 or partners.size == 0 or (same and partners.size < 2):
        empty_i = np.zeros((n, k), dtype=np.int64)
        return empty_i, np.full((n, k), np.inf), np.zeros((n, k), dtype=bool)
    tree = cKDTree(xy[partners])
    n_query = k + 1 if same else k
    dist, pos = tree.query(xy[query], k=n_query, distance_upper_bound=threshold, workers=workers)
    dist = np.asarray(dist, dtype=np.float64).reshape(n, n_query)
    pos = np.asarray(pos).reshape(n, n_query)
    missing = pos >= partners.size
    neighbour = np.where(missing, -1, partners[np.minimum(pos, partners.size - 1)])
    if same:
        # Remove the query cell itself wherever it sits; drop the last column if absent
        # (only with >= k+1 duplicate centroids). sc-MTOP drops column 0 blindly.
        is_self = neighbour == query[:, None]
        first_self = np.where(is_self.any(axis=1), is_self.argmax(axis=1), n_query - 1)
        keep = np.ones_like(is_self)
        keep[np.arange(n), first_self] = False
        neighbour = neighbour[keep].reshape(n, k)
        dist = dist[keep].reshape(n, k)
    valid = (neighbour >= 0) & (dist < threshold)
    return neighbour, dist, valid


def build_pair_graph(
    *,
    xy: np.ndarray,
    source_cells: np.ndarray,
    target_cells: np.ndarray | None = None,
    threshold: float,
    k: int = DEFAULT_K,
    pair_type: str = "",
    workers: int = 1,
) -> PairGraph:
    """Build sc-MTOP's graph between `source_cells` and `target_cells` (None: same type).

    `xy` is (N, 2) centroids of all cells; `source_cells` / `target_cells` are index arrays
    or boolean masks into it. `threshold` is in the units of `xy` (use `threshold_px`).
    `workers` threads run the kNN queries (scipy cKDTree; -1 = all cores).
    """
    xy = _check_xy(xy)
    if k < 1:
        raise GraphInputError(f"k must be at least 1, got {k}")
    if not np.isfinite(threshold) or threshold <= 0:
        raise GraphInputError(f"threshold must be positive, got {threshold!r}")
    a = _check_index(source_cells, len(xy), "source_cells")
    same = target_cells is None
    b = a if same else _check_index(target_cells, len(xy), "target_cells")
    if same:
        vertices = a
    else:
        in_a = np.zeros(len(xy), dtype=bool)
        in_a[a] = True
        if in_a[b].any():
            raise GraphInputError(f"pair type {pair_type!r}: a cell cannot be of both types of a cross-type graph")
        in_a[b] = True
        vertices = np.flatnonzero(in_a)

    passes = [(a, a)] if same else [(a, b), (b, a)]
    src_parts, dst_parts, len_parts = [], [], []
    own_min = np.full(vertices.size, np.nan)
    own_mean = np.full(vertices.size, np.nan)
    for query, partners in passes:
        neighbour, dist, valid = _knn_pass(
            xy=xy, query=query, partners=partners, threshold=threshold, k=k, same=same, workers=workers
        )
        counts = valid.sum(axis=1)
        has = counts > 0
        where = np.searchsorted(vertices, query[has]) if not same else np.flatnonzero(has)
        own_min[where] = np.where(valid, dist, np.inf).min(axis=1)[has]
        own_mean[where] = np.where(valid, dist, 0.0).sum(axis=1)[has] / counts[has]
        rows = np.broadcast_to(query[:, None], neighbour.shape)
        src_parts.append(rows[valid])  # row-major: query order, then increasing distance
        dst_parts.append(neighbour[valid])
        len_parts.append(dist[valid])
    u = np.concatenate(src_parts) if src_parts else np.zeros(0, np.int64)
    v = np.concatenate(dst_parts) if dst_parts else np.zeros(0, np.int64)
    length = np.concatenate(len_parts) if len_parts else np.zeros(0)
    lo, hi = np.minimum(u, v), np.maximum(u, v)
    # Keep each undirected edge at its first discovery, as igraph is_multiple + delete_edges.
    key = lo.astype(np.int64) * np.int64(len(xy)) + hi
    order = np.argsort(key, kind="stable")  # stable: the first discovery leads each run
    sorted_key = key[order]
    first = np.sort(order[np.r_[True, sorted_key[1:] != sorted_key[:-1]]]) if key.size else order
    return PairGraph(
        pair_type=pair_type,
        vertices=vertices,
        sources=lo[first].astype(np.int64),
        targets=hi[first].astype(np.int64),
        lengths=length[first],
        min_edge_length=own_min,
        mean_edge_length=own_mean,
    )


def degrees_and_component_sizes(*, graph: PairGraph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per vertex: degree, component label and component size (vectorised, scipy)."""
    n = graph.vertices.size
    su, sv = graph.local_edges()
    degree = np.bincount(su, minlength=n) + np.bincount(sv, minlength=n)
    adjacency = sparse.coo_matrix((np.ones(su.size, dtype=np.int8), (su, sv)), shape=(n, n)).tocsr()
    _, labels = connected_components(adjacency, directed=False)
    sizes = np.bincount(labels)[labels] if n else np.zeros(0, np.int64)
    return degree.astype(np.int64), labels, sizes.astype(np.int64)


def _metrics_from_igraph(g: igraph.Graph, component_size: np.ndarray) -> dict[str, np.ndarray]:
    """All hop-based sc-MTOP metrics on `g` (simple, undirected); normalised per component.

    Degree, coreness and clustering come from igraph; betweenness, harmonic centrality,
    closeness and eccentricity from one parallel BFS sweep per source
    (`fast_metrics`), bit-identical to igraph's own four calls.
    """
    return metrics_from_igraph(g, component_size)


def graph_metrics(*, graph: PairGraph) -> pd.DataFrame:
    """The 12 sc-MTOP metrics for every vertex of `graph` (exact; igraph + fast_metrics, all pairs).

    Index = cell index (`graph.vertices`); columns `GRAPH_METRICS`. Betweenness costs
    O(n m) per component: fine for a region, slow for a 100k-cell component.
    """
    su, sv = graph.local_edges()
    g = igraph.Graph(n=graph.vertices.size, edges=np.column_stack([su, sv]).tolist(), directed=False)
    _, _, sizes = degrees_and_component_sizes(graph=graph)
    metrics = _metrics_from_igraph(g, sizes)
    frame = pd.DataFrame({"minEdgeLength": graph.min_edge_length, "meanEdgeLength": graph.mean_edge_length, **metrics})
    frame.index = pd.Index(graph.vertices, name="cell")
    return frame[list(GRAPH_METRICS)]


def component_metrics(*, graph: PairGraph, cell: int) -> dict[str, float]:
    """The 12 sc-MTOP metrics of one cell, computed on its connected component only."""
    position = np.searchsorted(graph.vertices, cell)
    if position >= graph.vertices.size or graph.vertices[position] != cell:
        raise GraphInputError(f"cell {cell} is not a vertex of graph {graph.pair_type!r}")
    _, labels, _ = degrees_and_component_sizes(graph=graph)
    members = np.flatnonzero(labels == labels[position])  # positions, ascending
    su, sv = graph.local_edges()
    local = np.full(graph.vertices.size, -1, dtype=np.int64)
    local[members] = np.arange(members.size)
    inside = local[su] >= 0
    edges = np.column_stack([local[su[inside]], local[sv[inside]]])
    g = igraph.Graph(n=members.size, edges=edges.tolist(), directed=False)
    me = int(local[position])
    n = float(members.size)
    ecc = float(g.eccentricity(vertices=[me])[0])
    closeness = g.closeness(vertices=[me], normalized=True)[0]
    betweenness = float(g.betweenness(vertices=[me], directed=False)[0])
    harmonic = float(g.harmonic_centrality(vertices=[me], normalized=False)[0])
    transitivity = g.transitivity_local_undirected(vertices=[me], mode="nan")[0]
    return {
        "minEdgeLength": float(graph.min_edge_length[position]),
        "meanEdgeLength": float(graph.mean_edge_length[position]),
        "Nsubgraph": n,
        "Degrees": float(g.degree(me)),
        "Coreness": float(g.coreness()[me]),
        "ClusteringCoefficient": float(transitivity) if transitivity is not None else float("nan"),
        "Eccentricity": ecc,
        "Eccentricity_normed": ecc / n,
        "HarmonicCentrality": harmonic / (n - 1.0) if n > 1 else 0.0,
        "Closeness": float(closeness) if closeness is not None else float("nan"),
        "Betweenness": betweenness,
        "Betweenness_normed": betweenness / ((n - 1.0) * (n - 2.0) / 2.0) if n > 2 else betweenness,
    }
