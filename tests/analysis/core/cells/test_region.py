"""Region statistics (analysis.core.cells.region) against brute-force counts on real cell tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.core.cells.region import (
    RegionError,
    points_in_polygon,
    points_in_rings,
    region_statistics,
)
from analysis.core.cells.table import write_cells
from analysis.core.her2.grading import h_score, her2_slide_score

STAR = np.array([[500 + r * np.cos(t), 500 + r * np.sin(t)]
                 for t, r in zip(np.linspace(0, 2 * np.pi, 41)[:-1], [400, 150] * 20)])
HOLE = np.array([[450, 450], [550, 450], [550, 550], [450, 550]], dtype=float)


def test_raster_shortcut_equals_the_exact_test():
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-50, 1050, 200_000), rng.uniform(-50, 1050, 200_000)
    for rings in ([STAR], [STAR, HOLE]):
        fast = points_in_polygon(x=x, y=y, rings=rings)
        assert (fast == points_in_rings(x=x, y=y, rings=rings)).all()
        assert 0 < fast.sum() < len(x)
    # a hole is outside
    assert not points_in_polygon(x=np.array([500.0]), y=np.array([500.0]), rings=[STAR, HOLE])[0]


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(0)
    n = 20_000
    x, y = rng.uniform(0, 1000, n), rng.uniform(0, 1000, n)
    cls = rng.choice(["tumour", "stroma", "lymphocyte", "other"], n, p=[0.5, 0.3, 0.15, 0.05])
    her2 = rng.choice(["strong_complete", "weak_complete", "weak_incomplete", "null_incomplete", None], n)
    her2 = np.where(cls == "tumour", her2, None)
    cells = pd.DataFrame({"id": np.arange(n), "x": x, "y": y, "contour": [np.array([[0, 0], [2, 0], [2, 2]])] * n,
                          "cls": cls, "prob": 1.0, "area": 50.0, "her2_class": her2})
    path = tmp_path / "cells.parquet"
    write_cells(path=path, cells=cells, bucket_px=64, row_group_rows=500)  # many row groups: the index is used
    return path, cells


def test_statistics_equal_a_direct_count(table):
    path, cells = table
    geometry = {"type": "Polygon", "coordinates": [STAR.tolist() + [STAR[0].tolist()], HOLE.tolist()]}
    stats = region_statistics(cells_path=path, geometry=geometry, mpp_x=0.5, stain="ihc")
    inside = points_in_rings(x=cells["x"].to_numpy(), y=cells["y"].to_numpy(), rings=[STAR, HOLE])
    truth = cells[inside]
    assert stats.n_cells == len(truth) > 1000
    assert stats.cells == {c: int((truth["cls"] == c).sum()) for c in
                           ("tumour", "stroma", "lymphocyte", "neutrophil", "macrophage", "other")}
    graded = truth.loc[truth["cls"] == "tumour", "her2_class"].dropna()
    assert sum(stats.her2.values()) == len(graded)
    assert stats.her2["weak_complete"] == int((graded == "weak_complete").sum())
    assert stats.asco_cap == her2_slide_score(her2_class=graded).score
    assert stats.h_score == pytest.approx(h_score(her2_class=graded))
    shoelace = 0.5 * abs(np.dot(STAR[:, 0], np.roll(STAR[:, 1], -1)) - np.dot(STAR[:, 1], np.roll(STAR[:, 0], -1)))
    assert stats.area_mm2 == pytest.approx((shoelace - 100 * 100) * 0.25 / 1e6)


def test_he_point_no_run_and_bad_geometry(table):
    path, cells = table
    square = {"type": "Polygon", "coordinates": [[[0, 0], [100, 0], [100, 100], [0, 100], [0, 0]]]}
    he = region_statistics(cells_path=path, geometry=square, mpp_x=None, stain="he")
    assert he.area_mm2 is None and he.area_px == 10_000 and he.her2 == {} and he.asco_cap is None and he.h_score is None
    assert he.n_cells == int(((cells.x < 100) & (cells.y < 100)).sum())
    point = region_statistics(cells_path=path, geometry={"type": "Point", "coordinates": [5, 5]}, mpp_x=0.5, stain="ihc")
    assert point.area_mm2 is None and point.cells == {} and point.n_cells == 0
    no_run = region_statistics(cells_path=None, geometry=square, mpp_x=0.5, stain="ihc")
    assert no_run.area_mm2 == pytest.approx(0.0025) and no_run.cells == {}
    with pytest.raises(RegionError):
        region_statistics(cells_path=path, geometry={"type": "LineString", "coordinates": []}, stain="he")
