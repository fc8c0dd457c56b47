"""fast_metrics: bit equality with igraph's own calls (random graphs, small cases) and the sc-MTOP files.

The random-graph tests compare to the last bit with no tolerance: they fail loudly if igraph
or numba ever changes its arithmetic or its order of operations.
"""
from __future__ import annotations

import igraph
import numpy as np
import pytest
from scipy.spatial import cKDTree

from analysis.core.graph import graphs, scmtop
from analysis.core.graph.fast_metrics import csr_from_edges, hop_metrics, sweep_metrics

CASE = "scmtop/cmu-1-small-region"


def igraph_metrics(g: igraph.Graph, component_size: np.ndarray) -> dict[str, np.ndarray]:
    """The igraph-only body ``graphs._metrics_from_igraph`` had before fast_metrics."""
    n = component_size.astype(np.float64)
    betweenness = np.asarray(g.betweenness(directed=False), dtype=np.float64)
    pairs = (n - 1.0) * (n - 2.0) / 2.0
    harmonic = np.asarray(g.harmonic_centrality(normalized=False), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        harmonic = np.where(n > 1, harmonic / (n - 1.0), 0.0)
        betweenness_normed = np.where(n > 2, betweenness / np.where(n > 2, pairs, 1.0), betweenness)
    eccentricity = np.asarray(g.eccentricity(), dtype=np.float64)
    closeness = np.asarray(g.closeness(normalized=True), dtype=np.float64)
    return {
        "Nsubgraph": n,
        "Degrees": np.asarray(g.degree(), dtype=np.float64),
        "Coreness": np.asarray(g.coreness(), dtype=np.float64),
        "ClusteringCoefficient": np.asarray(g.transitivity_local_undirected(mode="nan"), dtype=np.float64),
        "Eccentricity": eccentricity,
        "Eccentricity_normed": eccentricity / n,
        "HarmonicCentrality": harmonic,
        "Closeness": closeness,
        "Betweenness": betweenness,
        "Betweenness_normed": betweenness_normed,
    }


def _bits(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return np.where(np.isnan(a), np.int64(0x7FF8000000000000), a.view(np.int64))


def assert_bit_equal(mine, theirs, what=""):
    mine, theirs = np.asarray(mine, np.float64), np.asarray(theirs, np.float64)
    assert mine.shape == theirs.shape, what
    np.testing.assert_array_equal(_bits(mine), _bits(theirs), err_msg=what)


def igraph_raw(g: igraph.Graph) -> dict[str, np.ndarray]:
    return {
        "betweenness": np.asarray(g.betweenness(directed=False), dtype=np.float64),
        "harmonic": np.asarray(g.harmonic_centrality(normalized=False), dtype=np.float64),
        "closeness": np.asarray(g.closeness(normalized=True), dtype=np.float64),
        "eccentricity": np.asarray(g.eccentricity(), dtype=np.float64),
    }


def random_graph(rng, kind: str, n: int) -> list[tuple[int, int]]:
    if kind == "knn":  # sc-MTOP-like: symmetric-OR kNN within a radius (many components)
        xy = rng.random((n, 2)) * np.sqrt(n)
        _, pos = cKDTree(xy).query(xy, k=min(6, n), distance_upper_bound=float(rng.uniform(0.5, 3.0)))
        pos = pos.reshape(n, -1)
        edges = {(min(i, int(j)), max(i, int(j))) for i in range(n) for j in pos[i] if j < n and j != i}
    elif kind == "grid":  # many equal-length shortest paths: fractional betweenness
        side = max(1, int(np.sqrt(n)))
        edges = set()
        for i in range(side * side):
            r, c = divmod(i, side)
            if c + 1 < side:
                edges.add((i, i + 1))
            if r + 1 < side:
                edges.add((i, i + side))
    else:  # Erdos-Renyi, with duplicates/self-pairs dropped
        m = int(rng.integers(0, 3 * n + 1))
        a, b = rng.integers(0, n, m), rng.integers(0, n, m)
        edges = {(min(x, y), max(x, y)) for x, y in zip(a.tolist(), b.tolist()) if x != y}
    edges = sorted(edges)
    rng.shuffle(edges)  # edge order must not matter
    return edges


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", ["knn", "er", "grid"])
def test_sweep_is_bit_equal_to_igraph_on_random_graphs(seed, kind):
    rng = np.random.default_rng(seed)
    for _ in range(4):
        n = int(rng.integers(1, 300 if kind != "er" else 120))
        edges = random_graph(rng, kind, n)
        n = max([n] + [max(e) + 1 for e in edges])
        g = igraph.Graph(n=n, edges=edges, directed=False)
        e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
        indptr, indices = csr_from_edges(n, e[:, 0], e[:, 1])
        for threads, block in ((1, 1), (2, 3), (2, None), (3, 7)):
            mine = sweep_metrics(indptr, indices, n_threads=threads, block=block)
            for key, expected in igraph_raw(g).items():
                assert_bit_equal(mine[key], expected, f"{kind} n={n} m={len(edges)} {key} threads={threads}")


@pytest.mark.parametrize(
    "n, edges",
    [
        (1, []),  # single isolated vertex: closeness NaN, harmonic 0, ecc 0, betweenness 0
        (2, []),  # two isolated vertices
        (2, [(0, 1)]),  # a pair
        (3, [(0, 1)]),  # pair + isolated
        (4, [(0, 1), (1, 2), (2, 3)]),  # path
        (5, [(0, 1), (0, 2), (0, 3), (0, 4)]),  # star
        (6, [(0, 1), (1, 2), (2, 0), (3, 4)]),  # triangle + pair + isolated
        (8, [(i, (i + 1) % 8) for i in range(8)]),  # even cycle: two geodesics per antipode
    ],
)
def test_small_graphs_by_igraph(n, edges):
    g = igraph.Graph(n=n, edges=edges, directed=False)
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    mine = sweep_metrics(*csr_from_edges(n, e[:, 0], e[:, 1]))
    for key, expected in igraph_raw(g).items():
        assert_bit_equal(mine[key], expected, key)


def test_metrics_equal_igraph_on_scmtop_like_pair_graphs():
    rng = np.random.default_rng(7)
    xy = rng.random((3000, 2)) * 900.0
    types = rng.integers(1, 4, 3000)
    for a, b in ((1, None), (1, 2), (3, None)):
        graph = graphs.build_pair_graph(
            xy=xy, source_cells=types == a, target_cells=None if b is None else types == b, threshold=40.0
        )
        su, sv = graph.local_edges()
        g = igraph.Graph(n=graph.vertices.size, edges=np.column_stack([su, sv]).tolist(), directed=False)
        _, _, sizes = graphs.degrees_and_component_sizes(graph=graph)
        old = igraph_metrics(g, sizes)
        new = graphs._metrics_from_igraph(g, sizes)
        assert list(new) == list(old)
        for key in old:
            assert_bit_equal(new[key], old[key], key)
        hop = hop_metrics(n=graph.vertices.size, su=su, sv=sv, component_size=sizes)
        for key in hop:
            assert_bit_equal(hop[key], old[key], key)


@pytest.mark.slow
def test_reference_case_csvs_byte_identical_to_igraph_metrics(shared_file, tmp_path, monkeypatch):
    """write_scmtop_outputs with fast_metrics gives the same bytes as with igraph's own calls."""
    kwargs = dict(
        hovernet_json=shared_file(f"{CASE}/cmu-1-small-region.json"),
        slide_path=shared_file("slides/CMU-1-Small-Region.svs"),
        sample="cmu-1-small-region",
    )
    new = scmtop.write_scmtop_outputs(out_dir=tmp_path / "new", **kwargs)
    monkeypatch.setattr(graphs, "metrics_from_igraph", igraph_metrics)
    old = scmtop.write_scmtop_outputs(out_dir=tmp_path / "old", **kwargs)
    assert sorted(new) == sorted(old)
    for key in old:
        assert new[key].read_bytes() == old[key].read_bytes(), key
