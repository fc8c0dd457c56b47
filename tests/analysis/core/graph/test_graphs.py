"""sc-MTOP graph construction and metrics: hand-worked graphs and the reference case."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis.core.graph.graphs import (
    GRAPH_METRICS,
    GraphInputError,
    build_pair_graph,
    component_metrics,
    degrees_and_component_sizes,
    graph_metrics,
    threshold_px,
)

CASE = "scmtop/cmu-1-small-region"
PAIRS = ("T-T", "I-I", "S-S", "T-I", "T-S", "I-S")
CODES = {"T": 1, "I": 2, "S": 3}


def test_threshold_px_scales_25_um_with_mpp():
    assert threshold_px(mpp=0.25) == 100.0  # sc-MTOP: 100 px at 40x
    assert threshold_px(mpp=0.5) == 50.0
    for bad in (None, 0.0, -0.25, float("nan")):
        with pytest.raises(GraphInputError, match="mpp"):
            threshold_px(mpp=bad)


def test_same_type_graph_edges_lengths_and_order_by_hand():
    # Cells 0..3 on a line at x = 0, 3, 7, 20 (threshold 10): edges 0-1 (3), 1-2 (4),
    # 0-2 (7); cell 3 is 13 from cell 2 -> isolated. Cell 4 sits exactly at 10 from
    # cell 3: d == threshold is NOT an edge (sc-MTOP keeps d < threshold).
    xy = np.array([[0, 0], [3, 0], [7, 0], [20, 0], [30, 0]], dtype=float)
    graph = build_pair_graph(xy=xy, source_cells=np.arange(5), threshold=10.0, k=5)
    # Discovery order: cell 0 -> 1 (3), 2 (7); cell 1 -> 0 (dup), 2 (4); cell 2 -> ...
    assert graph.sources.tolist() == [0, 0, 1]
    assert graph.targets.tolist() == [1, 2, 2]
    assert graph.lengths.tolist() == [3.0, 7.0, 4.0]
    np.testing.assert_array_equal(graph.min_edge_length, [3.0, 3.0, 4.0, np.nan, np.nan])
    np.testing.assert_array_equal(graph.mean_edge_length, [5.0, 3.5, 5.5, np.nan, np.nan])
    degree, _, size = degrees_and_component_sizes(graph=graph)
    assert degree.tolist() == [2, 2, 2, 0, 0]
    assert size.tolist() == [3, 3, 3, 1, 1]


def test_k_limits_own_neighbours_and_symmetric_or_adds_edges():
    # Hub 0 at the origin with 6 cells at distances 1..6 (k = 5): the hub picks 1..5, but
    # cell 6 picks the hub among its own 5 nearest, so the OR graph holds edge 0-6 too.
    # The hub's own minEdgeLength / meanEdgeLength use only its 5 picks: 1 and 3.
    angles = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    ring = np.column_stack([np.cos(angles), np.sin(angles)]) * np.arange(1, 7)[:, None]
    xy = np.vstack([[0.0, 0.0], ring])
    graph = build_pair_graph(xy=xy, source_cells=np.arange(7), threshold=100.0, k=5)
    hub_edges = {int(t) for s, t in zip(graph.sources, graph.targets) if s == 0}
    assert hub_edges == {1, 2, 3, 4, 5, 6}
    assert graph.min_edge_length[0] == pytest.approx(1.0)
    assert graph.mean_edge_length[0] == pytest.approx(3.0)


def test_cross_type_graph_is_bipartite_and_orders_passes():
    # A cells 0 (0,0), 2 (1,0); B cells 1 (0,2), 3 (50,0). Threshold 10.
    # A->B pass: 0 -> 1 (2); 2 -> 1 (sqrt 5). B->A pass: 1 -> 0, 2 (both duplicates);
    # 3 has nothing within 10. A-A edge 0-2 (distance 1) must not appear.
    xy = np.array([[0, 0], [0, 2], [1, 0], [50, 0]], dtype=float)
    graph = build_pair_graph(xy=xy, source_cells=[0, 2], target_cells=[1, 3], threshold=10.0, pair_type="A-B")
    assert list(zip(graph.sources.tolist(), graph.targets.tolist())) == [(0, 1), (1, 2)]
    np.testing.assert_allclose(graph.min_edge_length, [2.0, 2.0, math.sqrt(5), np.nan])
    np.testing.assert_allclose(graph.mean_edge_length, [2.0, (2 + math.sqrt(5)) / 2, math.sqrt(5), np.nan])
    frame = graph.edges_frame()
    assert list(frame.columns) == ["source", "target", "pair_type", "length"]
    assert set(frame["pair_type"]) == {"A-B"}


def test_duplicate_centroids_make_no_self_loop():
    # Deviation from sc-MTOP (documented): it drops kNN column 0 as "self"; with cells 0
    # and 1 on the same point, cell 1's column 0 may be cell 0, leaving a self-loop 1-1.
    xy = np.array([[5, 5], [5, 5], [8, 5]], dtype=float)
    graph = build_pair_graph(xy=xy, source_cells=np.arange(3), threshold=10.0)
    assert not np.any(graph.sources == graph.targets)
    assert sorted(zip(graph.sources.tolist(), graph.targets.tolist())) == [(0, 1), (0, 2), (1, 2)]
    assert graph.min_edge_length.tolist() == [0.0, 0.0, 3.0]


def test_twelve_metrics_on_a_path_and_an_isolated_cell_by_hand():
    # Path 0-1-2-3 (spacing 5, threshold 6, k = 1 so no shortcut), cell 4 isolated.
    xy = np.array([[0, 0], [5, 0], [10, 0], [15, 0], [100, 0]], dtype=float)
    graph = build_pair_graph(xy=xy, source_cells=np.arange(5), threshold=6.0, k=1)
    m = graph_metrics(graph=graph)
    assert list(m.columns) == list(GRAPH_METRICS)
    assert m["Nsubgraph"].tolist() == [4, 4, 4, 4, 1]
    assert m["Degrees"].tolist() == [1, 2, 2, 1, 0]
    assert m["Coreness"].tolist() == [1, 1, 1, 1, 0]
    cc = m["ClusteringCoefficient"].to_numpy()
    assert np.isnan(cc[[0, 3, 4]]).all() and cc[1] == 0.0 and cc[2] == 0.0
    assert m["Eccentricity"].tolist() == [3, 2, 2, 3, 0]
    assert m["Eccentricity_normed"].tolist() == pytest.approx([0.75, 0.5, 0.5, 0.75, 0.0])
    # harmonic: end (1 + 1/2 + 1/3) / 3; inner (1 + 1 + 1/2) / 3; isolated 0
    assert m["HarmonicCentrality"].tolist() == pytest.approx([11 / 18, 5 / 6, 5 / 6, 11 / 18, 0.0])
    # closeness: (n - 1) / sum of distances: end 3/6, inner 3/4; isolated NaN
    close = m["Closeness"].to_numpy()
    assert close[:4].tolist() == pytest.approx([0.5, 0.75, 0.75, 0.5]) and np.isnan(close[4])
    # betweenness: inner cells lie on 2 of the 3 pairs not involving them; normed by 3
    assert m["Betweenness"].tolist() == [0, 2, 2, 0, 0]
    assert m["Betweenness_normed"].tolist() == pytest.approx([0, 2 / 3, 2 / 3, 0, 0])
    assert m["minEdgeLength"].tolist()[:4] == [5.0, 5.0, 5.0, 5.0]
    # the on-demand single-cell version gives the same numbers
    for cell in range(5):
        single = component_metrics(graph=graph, cell=cell)
        for metric in GRAPH_METRICS:
            np.testing.assert_allclose(single[metric], m.loc[cell, metric], rtol=1e-12)


def test_bad_input_raises_readable_errors():
    with pytest.raises(GraphInputError, match=r"\(N, 2\)"):
        build_pair_graph(xy=np.zeros((3, 3)), source_cells=[0], threshold=1.0)
    with pytest.raises(GraphInputError, match="NaN"):
        build_pair_graph(xy=np.array([[0, np.nan]]), source_cells=[0], threshold=1.0)
    with pytest.raises(GraphInputError, match="both types"):
        build_pair_graph(xy=np.zeros((2, 2)), source_cells=[0, 1], target_cells=[1], threshold=1.0)
    with pytest.raises(GraphInputError, match="indices"):
        build_pair_graph(xy=np.zeros((2, 2)), source_cells=[0, 5], threshold=1.0)
    with pytest.raises(GraphInputError, match="threshold"):
        build_pair_graph(xy=np.zeros((2, 2)), source_cells=[0, 1], threshold=0.0)
    graph = build_pair_graph(xy=np.zeros((2, 2)), source_cells=[0], threshold=1.0)
    with pytest.raises(GraphInputError, match="not a vertex"):
        component_metrics(graph=graph, cell=1)


def test_empty_and_single_cell_types_give_empty_graphs():
    xy = np.array([[0, 0], [1, 1]], dtype=float)
    graph = build_pair_graph(xy=xy, source_cells=[0], target_cells=np.array([], dtype=int), threshold=5.0)
    assert graph.n_edges == 0 and graph.vertices.tolist() == [0]
    assert np.isnan(graph.min_edge_length[0])


def test_reference_edges_and_graph_columns_match_scmtop(shared_file):
    """All 6 graphs of the reference case: edges in order, all 12 metrics of every cell."""
    data = json.loads(shared_file(f"{CASE}/cmu-1-small-region.json").read_text())
    nuclei = list(data["nuc"].values())
    xy = np.array([n["centroid"] for n in nuclei], dtype=float)
    types = np.array([n["type"] for n in nuclei])
    threshold = 100 / (40 / data["mag"])
    assert threshold == 50.0
    edges, metrics = [], {}
    for pair in PAIRS:
        a, b = pair.split("-")
        graph = build_pair_graph(
            xy=xy, source_cells=types == CODES[a], target_cells=None if a == b else types == CODES[b],
            threshold=threshold, pair_type=pair,
        )
        edges.append(pd.DataFrame({"source": graph.sources, "target": graph.targets, "featype": pair}))
        metrics[pair] = graph_metrics(graph=graph)
    ours = pd.concat(edges, ignore_index=True)
    reference = pd.read_csv(shared_file(f"{CASE}/cmu-1-small-region_Edges.csv"))
    assert len(ours) == len(reference) == 9959
    pd.testing.assert_frame_equal(ours, reference, check_dtype=False)
    checked = 0
    for letter in "TIS":
        ref = pd.read_csv(shared_file(f"{CASE}/cmu-1-small-region_Feats_{letter}.csv")).set_index("name")
        for column in [c for c in ref.columns if c.startswith("Graph_")]:
            _, pair, metric = column.split("_", 2)
            mine = metrics[pair].loc[ref.index, metric].to_numpy()
            expected = ref[column].to_numpy(dtype=float)
            np.testing.assert_array_equal(np.isnan(mine), np.isnan(expected), err_msg=column)
            np.testing.assert_allclose(mine, expected, rtol=1e-6, equal_nan=True, err_msg=column)
            checked += 1
    assert checked == 3 * 36
