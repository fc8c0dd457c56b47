"""sc-MTOP output files: the reference case end to end, stromaBlocker by hand, bad input."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis.core.graph.scmtop import (
    ScmtopInputError,
    load_hovernet_json,
    scmtop_threshold_px,
    stroma_blocker,
    write_scmtop_outputs,
)

CASE = "scmtop/cmu-1-small-region"


@pytest.fixture(scope="module")
def written(shared_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("scmtop")
    paths = write_scmtop_outputs(
        hovernet_json=shared_file(f"{CASE}/cmu-1-small-region.json"),
        slide_path=shared_file("slides/CMU-1-Small-Region.svs"),
        out_dir=out,
        sample="cmu-1-small-region",
    )
    return paths


def test_writes_the_four_files_with_scmtop_names(written):
    assert sorted(written) == ["Edges", "I", "S", "T"]
    assert [p.name for p in written.values()] == [
        "cmu-1-small-region_Feats_T.csv",
        "cmu-1-small-region_Feats_I.csv",
        "cmu-1-small-region_Feats_S.csv",
        "cmu-1-small-region_Edges.csv",
    ]


def test_edges_file_is_byte_identical(written, shared_file):
    assert written["Edges"].read_bytes() == shared_file(f"{CASE}/cmu-1-small-region_Edges.csv").read_bytes()


@pytest.mark.parametrize("letter, n_cells", [("T", 1263), ("I", 106), ("S", 970)])
def test_every_column_of_every_cell_matches_the_reference(written, shared_file, letter, n_cells):
    ours = pd.read_csv(written[letter])
    reference = pd.read_csv(shared_file(f"{CASE}/cmu-1-small-region_Feats_{letter}.csv"))
    assert list(ours.columns) == list(reference.columns)
    assert len(ours) == len(reference) == n_cells
    for column in reference.columns:
        if reference[column].dtype == object:  # Bbox, Centroid: text, identical
            assert ours[column].tolist() == reference[column].tolist(), column
            continue
        mine, expected = ours[column].to_numpy(float), reference[column].to_numpy(float)
        np.testing.assert_array_equal(np.isnan(mine), np.isnan(expected), err_msg=column)
        np.testing.assert_allclose(mine, expected, rtol=1e-6, equal_nan=True, err_msg=column)


def test_stroma_blocker_by_hand():
    # I at (0,0); nearest T at (10,0) (another T at (30,0)), so r = 10.
    # S (5,1): 5.1 from I, 5.1 from T -> counts. S (-9,0): 9 from I but 19 from T -> no.
    # S (5,9): 10.3 from I -> no. Count 1; T and S cells get NaN.
    xy = np.array([[0, 0], [10, 0], [30, 0], [5, 1], [-9, 0], [5, 9]], dtype=float)
    types = np.array([2, 1, 1, 3, 3, 3])
    result = stroma_blocker(xy=xy, types=types)
    assert result[0] == 1.0
    assert np.isnan(result[1:]).all()
    assert np.isnan(stroma_blocker(xy=xy[[0, 3]], types=np.array([2, 3]))).all()  # no T cell


def test_threshold_scales_with_magnification():
    assert scmtop_threshold_px(mag=40) == 100.0
    assert scmtop_threshold_px(mag=20) == 50.0
    with pytest.raises(ScmtopInputError, match="magnification"):
        scmtop_threshold_px(mag=0)


def test_load_keeps_json_order_and_rejects_bad_files(tmp_path):
    good = tmp_path / "cells.json"
    good.write_text(json.dumps({"mag": 40, "nuc": {
        "7": {"centroid": [1.5, 2.0], "contour": [[0, 0], [3, 0], [3, 3]], "type": 1},
        "3": {"centroid": [9.0, 9.0], "contour": [[8, 8], [10, 8], [10, 10]], "type": 3},
    }}))
    nuclei = load_hovernet_json(path=good)
    assert nuclei.keys == ["7", "3"] and nuclei.types.tolist() == [1, 3] and nuclei.mag == 40.0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"cells": []}))
    with pytest.raises(ScmtopInputError, match='"nuc"'):
        load_hovernet_json(path=bad)
    bad.write_text("{not json")
    with pytest.raises(ScmtopInputError, match="not valid JSON"):
        load_hovernet_json(path=bad)
    bad.write_text(json.dumps({"nuc": {"1": {"centroid": [1, 2], "type": 1}}}))
    with pytest.raises(ScmtopInputError, match="contour"):
        load_hovernet_json(path=bad)
    with pytest.raises(ScmtopInputError, match="not found"):
        load_hovernet_json(path=tmp_path / "missing.json")


def test_missing_slide_raises(tmp_path):
    with pytest.raises(ScmtopInputError, match="slide not found"):
        write_scmtop_outputs(hovernet_json=tmp_path / "x.json", slide_path=tmp_path / "x.svs", out_dir=tmp_path)
