"""Slide features (schema v1): hand-worked small slides, scale invariance, schema file."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis.core.cells.classes import CellClass, Her2Class
from analysis.core.graph.slide_features import (
    SCHEMA_PATH,
    SlideFeatureError,
    build_schema_v1,
    cell_graph_edges,
    cell_graph_metrics,
    compute_slide_features,
    feature_names,
    load_schema,
)

T, S, L, N, M, O = (c.value for c in (CellClass.TUMOUR, CellClass.STROMA, CellClass.LYMPHOCYTE,
                                       CellClass.NEUTROPHIL, CellClass.MACROPHAGE, CellClass.OTHER))


def he_slide() -> pd.DataFrame:
    """mpp 0.5: T0 (0,0), T1 (20,0) = 10 um apart, T2 (200,0) far; L3 (0,30) is 15 um from
    T0 and sqrt(20^2+30^2)/2 = 18.03 um from T1; S4, M5 and an 'other' nucleus far away."""
    return pd.DataFrame({
        "x": [0.0, 20.0, 200.0, 0.0, 1000.0, 2000.0, 5.0],
        "y": [0.0, 0.0, 0.0, 30.0, 1000.0, 2000.0, 5.0],
        "cls": [T, T, T, L, S, M, O],
    })


D_T1_L3 = math.hypot(20, 30) * 0.5  # 18.03 um


def test_he_features_by_hand():
    f = compute_slide_features(cells=he_slide(), mpp=0.5, stain="he")
    assert len(f) == 69 and list(f) == feature_names(stain="he")
    # proportions over T, S, L, N, M cells (6; the 'other' nucleus is excluded)
    assert (f["he_prop_T"], f["he_prop_S"], f["he_prop_L"], f["he_prop_N"], f["he_prop_M"]) == \
        pytest.approx((3 / 6, 1 / 6, 1 / 6, 0.0, 1 / 6))
    # T-T: edge T0-T1 (10 um); T2 isolated -> imputed 25 um, component 1, degree 0
    assert f["he_T_T_minEdgeLength"] == pytest.approx((10 + 10 + 25) / 3)
    assert f["he_T_T_meanEdgeLength"] == pytest.approx((10 + 10 + 25) / 3)
    assert f["he_T_T_Nsubgraph"] == pytest.approx((2 + 2 + 1) / 3)
    assert f["he_T_T_Degrees"] == pytest.approx(2 / 3)
    # T-L (bipartite): T0-L3 15 um, T1-L3 18.03 um; component {T0, T1, L3}
    assert f["he_T_L_minEdgeLength"] == pytest.approx((15 + D_T1_L3 + 25) / 3)
    assert f["he_T_L_Nsubgraph"] == pytest.approx((3 + 3 + 1) / 3)
    assert f["he_T_L_Degrees"] == pytest.approx(2 / 3)
    assert f["he_L_T_minEdgeLength"] == pytest.approx(15.0)
    assert f["he_L_T_meanEdgeLength"] == pytest.approx((15 + D_T1_L3) / 2)
    assert f["he_L_T_Nsubgraph"] == 3.0 and f["he_L_T_Degrees"] == 2.0
    # lone L and S cells; no neutrophil at all -> every N feature takes its imputation
    assert (f["he_L_L_minEdgeLength"], f["he_L_L_Nsubgraph"], f["he_L_L_Degrees"]) == (25.0, 1.0, 0.0)
    assert (f["he_N_T_meanEdgeLength"], f["he_N_T_Nsubgraph"], f["he_N_T_Degrees"]) == (25.0, 1.0, 0.0)
    assert f["he_T_N_Degrees"] == 0.0 and f["he_T_N_Nsubgraph"] == 1.0
    assert f["he_S_T_minEdgeLength"] == 25.0


def test_20x_and_40x_scans_of_the_same_tissue_agree():
    cells = he_slide()
    rng = np.random.default_rng(1)
    extra = pd.DataFrame({"x": rng.uniform(0, 400, 300), "y": rng.uniform(0, 400, 300),
                          "cls": rng.choice([T, S, L, N, M], 300)})
    cells20 = pd.concat([cells, extra], ignore_index=True)
    cells40 = cells20.assign(x=cells20.x * 2, y=cells20.y * 2)
    f20 = compute_slide_features(cells=cells20, mpp=0.5, stain="he")
    f40 = compute_slide_features(cells=cells40, mpp=0.25, stain="he")
    assert f20.keys() == f40.keys()
    for name in f20:
        assert f20[name] == pytest.approx(f40[name], rel=1e-12), name
    assert f20["he_T_T_Degrees"] > 0  # the random cells do form graphs


def ihc_slide() -> pd.DataFrame:
    """mpp 0.25: strong tumour cells 0, 1 (40 px = 10 um apart), weak 2 near 1, null 3 far,
    stromal cell 4 near 0."""
    return pd.DataFrame({
        "x": [0.0, 40.0, 40.0, 1000.0, 0.0],
        "y": [0.0, 0.0, 60.0, 1000.0, 80.0],
        "cls": [T, T, T, T, S],
        "her2_class": [Her2Class.STRONG_COMPLETE.value, Her2Class.STRONG_INCOMPLETE.value,
                       Her2Class.WEAK_COMPLETE.value, Her2Class.NULL_INCOMPLETE.value, None],
    })


def test_ihc_features_by_hand():
    f = compute_slide_features(cells=ihc_slide(), mpp=0.25, stain="ihc")
    assert len(f) == 70 and list(f) == feature_names(stain="ihc")
    assert f["ihc_prop_strong_complete"] == 0.25 and f["ihc_prop_strong_incomplete"] == 0.25
    assert f["ihc_prop_weak_complete"] == 0.25 and f["ihc_prop_null_incomplete"] == 0.25
    assert f["ihc_prop_weak_incomplete"] == 0.0 and f["ihc_prop_null_complete"] == 0.0
    # Tstrong pair 0-1 is 10 um apart
    assert f["ihc_Tstrong_Tstrong_minEdgeLength"] == 10.0 and f["ihc_Tstrong_Tstrong_Degrees"] == 1.0
    # Tstrong-Tweak: cell 2 is 15 um from cell 1 and sqrt(40^2+60^2)/4 = 18.03 um from 0
    assert f["ihc_Tweak_Tstrong_meanEdgeLength"] == pytest.approx((15 + math.hypot(40, 60) / 4) / 2)
    assert f["ihc_Tweak_Tstrong_Degrees"] == 2.0 and f["ihc_Tweak_Tstrong_Nsubgraph"] == 3.0
    # nonT (stromal cell 4) is 20 um from cell 0, 22.36 um from 1 -> both its picks < 25 um
    assert f["ihc_nonT_Tstrong_minEdgeLength"] == 20.0
    assert f["ihc_nonT_Tstrong_meanEdgeLength"] == pytest.approx((20 + math.hypot(40, 80) / 4) / 2)
    assert f["ihc_Tnull_nonT_minEdgeLength"] == 25.0 and f["ihc_Tnull_Tnull_Nsubgraph"] == 1.0


def test_bad_input_raises_readable_errors():
    for mpp in (None, 0.0, -1.0, float("nan")):
        with pytest.raises(SlideFeatureError, match="mpp"):
            compute_slide_features(cells=he_slide(), mpp=mpp, stain="he")
    with pytest.raises(SlideFeatureError, match="stain"):
        compute_slide_features(cells=he_slide(), mpp=0.5, stain="pas")
    with pytest.raises(SlideFeatureError, match="her2_class"):
        compute_slide_features(cells=he_slide(), mpp=0.5, stain="ihc")
    ungraded = ihc_slide()
    ungraded.loc[0, "her2_class"] = None
    with pytest.raises(SlideFeatureError, match="no her2_class"):
        compute_slide_features(cells=ungraded, mpp=0.25, stain="ihc")
    with pytest.raises(SlideFeatureError, match="unknown cell classes"):
        compute_slide_features(cells=he_slide().assign(cls="blob"), mpp=0.5, stain="he")
    with pytest.raises(SlideFeatureError, match=r"\['x', 'y'\]"):
        compute_slide_features(cells=he_slide().drop(columns=["x", "y"]), mpp=0.5, stain="he")
    with pytest.raises(SlideFeatureError, match="no tumour, stromal or immune"):
        compute_slide_features(cells=he_slide().iloc[[6]], mpp=0.5, stain="he")


def test_schema_file_is_the_generated_schema_with_69_and_70_features():
    schema = load_schema(path=SCHEMA_PATH)
    assert schema == json.loads(json.dumps(build_schema_v1()))
    assert schema["version"] == 1
    groups = [f["group"] for f in schema["features"]]
    assert groups.count("he") == 69 and groups.count("ihc") == 70
    names = [f["name"] for f in schema["features"]]
    assert len(set(names)) == len(names)
    assert all(name.replace("_", "").isalnum() and name.isascii() for name in names)
    for feature in schema["features"]:
        assert {"name", "group", "definition", "unit", "imputation", "source_cells"} <= feature.keys()
        assert feature["source_cells"]["cells"]["cls"]
    t_l = next(f for f in schema["features"] if f["name"] == "he_T_L_minEdgeLength")
    assert t_l["source_cells"] == {"pair_type": "T-L", "cells": {"cls": [T]}, "partners": {"cls": [L]}}
    assert t_l["unit"] == "um"


def test_cell_graph_metrics_on_demand_by_hand():
    # T-L graph of he_slide: path T0 - L3 - T1; T2 isolated.
    m = cell_graph_metrics(cells=he_slide(), cell_index=0, mpp=0.5, stain="he", pair_type="T-L")
    assert m["Nsubgraph"] == 3 and m["Degrees"] == 1 and m["Eccentricity"] == 2
    assert m["Closeness"] == pytest.approx(2 / 3) and m["HarmonicCentrality"] == pytest.approx(0.75)
    assert m["Betweenness"] == 0 and m["minEdgeLength"] == pytest.approx(15.0)
    hub = cell_graph_metrics(cells=he_slide(), cell_index=3, mpp=0.5, stain="he", pair_type="T-L")
    assert hub["Betweenness"] == 1 and hub["Betweenness_normed"] == 1.0 and hub["Closeness"] == 1.0
    lone = cell_graph_metrics(cells=he_slide(), cell_index=2, mpp=0.5, stain="he", pair_type="T-L")
    assert lone["Nsubgraph"] == 1 and math.isnan(lone["Closeness"]) and math.isnan(lone["minEdgeLength"])
    with pytest.raises(SlideFeatureError, match="not part of graph"):
        cell_graph_metrics(cells=he_slide(), cell_index=4, mpp=0.5, stain="he", pair_type="T-L")
    with pytest.raises(SlideFeatureError, match="pair_type"):
        cell_graph_metrics(cells=he_slide(), cell_index=0, mpp=0.5, stain="he", pair_type="T-X")


def test_cell_graph_edges_table():
    edges = cell_graph_edges(cells=he_slide(), mpp=0.5, stain="he")
    assert list(edges.columns) == ["source", "target", "pair_type", "length_um"]
    assert edges[["source", "target"]].values.tolist() == [[0, 1], [0, 3], [1, 3]]
    assert edges["pair_type"].astype(str).tolist() == ["T-T", "T-L", "T-L"]
    assert edges["length_um"].tolist() == pytest.approx([10.0, 15.0, D_T1_L3])
    with_m = cell_graph_edges(cells=he_slide(), mpp=0.5, stain="he", types=("T", "S", "L", "N", "M"))
    assert set(with_m["pair_type"].cat.categories) >= {"T-T", "T-L"}


def test_ihc_non_tumour_cells_called_other_are_in_the_nonT_graphs():
    """Issue 14 item 4: on IHC the segmenter may call every non-tumour nucleus "other" (the classical
    IHC segmenter always does); they are the non-tumour side of the IHC block, not left out of it."""
    as_other = ihc_slide().assign(cls=[T, T, T, T, "other"])
    f = compute_slide_features(cells=as_other, mpp=0.25, stain="ihc")
    assert f == compute_slide_features(cells=ihc_slide(), mpp=0.25, stain="ihc")  # same as a stromal cell
    assert f["ihc_nonT_Tstrong_Degrees"] == 2.0 and f["ihc_nonT_Tstrong_minEdgeLength"] == 20.0
    edges = cell_graph_edges(cells=as_other, mpp=0.25, stain="ihc")
    non_tumour = edges[edges["pair_type"].astype(str).str.contains("nonT")]
    assert sorted(map(tuple, non_tumour[["source", "target"]].values.tolist())) == [(0, 4), (1, 4), (2, 4)]
    assert set(non_tumour["pair_type"].astype(str)) == {"Tstrong-nonT", "Tweak-nonT"}
