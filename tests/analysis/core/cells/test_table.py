"""Cell / edge tables (spatial Parquet) and HoVer-Net JSON / QuPath GeoJSON interchange."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.core.cells import interchange, spatial
from analysis.core.cells import table as C
from analysis.core.cells.classes import CellClass, Her2Class

SCMTOP_JSON = "scmtop/cmu-1-small-region/cmu-1-small-region.json"


def _synthetic_cells(n: int, *, side: float = 5000.0, seed: int = 0, start_id: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, side, n)
    y = rng.uniform(0, side, n)
    ring = np.stack([np.cos(np.linspace(0, 2 * np.pi, 8, endpoint=False)),
                     np.sin(np.linspace(0, 2 * np.pi, 8, endpoint=False))], axis=1) * 6
    classes = np.array([c.value for c in CellClass])
    her2 = np.array([h.value for h in Her2Class] + [None], dtype=object)
    return pd.DataFrame({
        "id": np.arange(start_id, start_id + n, dtype=np.int64),
        "x": x, "y": y,
        "contour": [np.rint(ring + [a, b]).astype(np.int32) for a, b in zip(x, y)],
        "cls": classes[rng.integers(0, len(classes), n)],
        "prob": rng.uniform(0.5, 1, n),
        "area": rng.uniform(50, 150, n).astype(np.float32),
        "her2_od": rng.uniform(0, 1, n).astype(np.float32),
        "her2_stained_od": rng.uniform(0, 1, n).astype(np.float32),
        "her2_completeness": rng.uniform(0, 1, n).astype(np.float32),
        "her2_class": her2[rng.integers(0, len(her2), n)],
    })


# ----------------------------------------------------------------------------- spatial key


def test_morton_codes_interleave_x_then_y():
    x = np.array([0, 512, 0, 512, 1024, 0]) + 1.0
    y = np.array([0, 0, 512, 512, 0, 1024]) + 1.0
    assert spatial.morton_bucket(x=x, y=y, bucket_px=512).tolist() == [0, 1, 2, 3, 4, 8]


# ----------------------------------------------------------------------------- cell tables


def test_write_read_round_trip_sorted_and_exact(tmp_path):
    cells = _synthetic_cells(3000)
    path = tmp_path / "cells.parquet"
    assert C.write_cells(path=path, cells=cells, row_group_rows=256) == 3000
    back = C.read_cells(path=path)
    assert list(back.columns) == list(C.CELL_COLUMNS)
    bucket = spatial.morton_bucket(x=back["x"].to_numpy(), y=back["y"].to_numpy(), bucket_px=C.DEFAULT_BUCKET_PX)
    assert (np.diff(bucket.astype(np.int64)) >= 0).all()  # spatially sorted
    merged = back.set_index("id").loc[cells["id"]]
    assert np.array_equal(merged["x"].to_numpy(), cells["x"].to_numpy())
    assert np.array_equal(merged["prob"].to_numpy(), cells["prob"].to_numpy())
    assert list(merged["cls"]) == list(cells["cls"])
    assert list(merged["her2_class"]) == list(cells["her2_class"])
    for a, b in zip(merged["contour"], cells["contour"]):
        assert np.array_equal(a, b)
    assert C.table_metadata(path=path)["bucket_px"] == C.DEFAULT_BUCKET_PX


@pytest.mark.parametrize("rect", [
    (1000, 1000, 3000, 3000), (0, 0, 512, 512), (511.5, 100, 1537.2, 4999), (4800, 4800, 9000, 9000),
    (-100, -100, 50, 50), (6000, 6000, 7000, 7000), (2000, 2000, 2000, 2500),
])
def test_cells_in_rect_matches_brute_force(tmp_path, rect):
    cells = _synthetic_cells(4000)
    path = tmp_path / "cells.parquet"
    C.write_cells(path=path, cells=cells, row_group_rows=128)
    x0, y0, x1, y1 = rect
    got = C.cells_in_rect(path=path, x0=x0, y0=y0, x1=x1, y1=y1, columns=["id", "x", "y", "contour"])
    want = cells[(cells.x >= x0) & (cells.x < x1) & (cells.y >= y0) & (cells.y < y1)]
    assert sorted(got["id"]) == sorted(want["id"])
    by_id = want.set_index("id")
    for cid, contour in zip(got["id"], got["contour"]):
        assert np.array_equal(contour, by_id.loc[cid, "contour"])


def test_viewport_query_reads_only_some_row_groups(tmp_path):
    path = tmp_path / "cells.parquet"
    C.write_cells(path=path, cells=_synthetic_cells(20000, side=20000), row_group_rows=256)
    index = C._index(path)
    groups = C._rect_row_groups(index, x0=8000, y0=8000, x1=10000, y1=10000)
    assert 0 < len(groups) <= 0.1 * len(index.rg_min)


def test_streamed_writer_equals_in_memory_writer_and_cleans_up(tmp_path):
    cells = _synthetic_cells(5000, side=30000)
    streamed = tmp_path / "streamed.parquet"
    writer = C.CellTableWriter(path=streamed, slide_width=30000, slide_height=30000, flush_rows=700)
    for start in range(0, 5000, 900):
        writer.add(cells.iloc[start:start + 900])
    assert writer.finish() == 5000
    direct = tmp_path / "direct.parquet"
    C.write_cells(path=direct, cells=cells)
    a, b = C.read_cells(path=streamed), C.read_cells(path=direct)
    assert a["id"].tolist() == b["id"].tolist()  # same global spatial order
    assert sorted(p.name for p in tmp_path.iterdir()) == ["direct.parquet", "streamed.parquet"]


def test_streamed_writer_abort_and_empty(tmp_path):
    path = tmp_path / "cells.parquet"
    with pytest.raises(RuntimeError):
        with C.CellTableWriter(path=path, slide_width=100, slide_height=100) as writer:
            writer.add(_synthetic_cells(10, side=100))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    empty = C.CellTableWriter(path=path, slide_width=100, slide_height=100)
    assert empty.finish() == 0
    assert len(C.read_cells(path=path)) == 0
    assert len(C.cells_in_rect(path=path, x0=0, y0=0, x1=100, y1=100)) == 0


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "cells.parquet"
    C.write_cells(path=path, cells=_synthetic_cells(50))
    before = path.read_bytes()
    bad = _synthetic_cells(50)
    bad.loc[3, "cls"] = "goblin"
    with pytest.raises(C.CellTableError, match="goblin"):
        C.write_cells(path=path, cells=bad)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["cells.parquet"]


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.assign(id=0), "unique"),
    (lambda d: d.assign(x=np.nan), "finite"),
    (lambda d: d.assign(contour=[np.array([[0, 0], [40000, 0], [0, 1]])] * len(d)), "32767"),
    (lambda d: d.assign(her2_class="very_strong"), "very_strong"),
    (lambda d: d.drop(columns=["contour"]), "contour"),
])
def test_bad_cell_frames_raise_readable_errors(tmp_path, mutate, message):
    with pytest.raises(C.CellTableError, match=message):
        C.write_cells(path=tmp_path / "c.parquet", cells=mutate(_synthetic_cells(5)))


def test_query_errors(tmp_path):
    path = tmp_path / "cells.parquet"
    C.write_cells(path=path, cells=_synthetic_cells(10))
    with pytest.raises(C.CellTableError, match="x0 <= x1"):
        C.cells_in_rect(path=path, x0=10, y0=0, x1=5, y1=5)
    with pytest.raises(C.CellTableError, match="unknown column"):
        C.cells_in_rect(path=path, x0=0, y0=0, x1=5, y1=5, columns=["nope"])
    with pytest.raises(C.CellTableError, match="no table"):
        C.read_cells(path=tmp_path / "missing.parquet")
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"bucket": pa.array([1], pa.uint64())}), plain)
    with pytest.raises(C.CellTableError, match="not a HER2-LADDER"):
        C.read_cells(path=plain)


# ----------------------------------------------------------------------------- edges


def test_edges_round_trip_sorted_by_source_bucket(tmp_path):
    cells = _synthetic_cells(500, side=3000)
    rng = np.random.default_rng(1)
    edges = pd.DataFrame({
        "source": rng.choice(cells["id"], 2000), "target": rng.choice(cells["id"], 2000),
        "pair_type": rng.choice(["T-T", "T-I", "S-S"], 2000), "length": rng.uniform(1, 50, 2000),
    })
    path = tmp_path / "edges.parquet"
    assert C.write_edges(path=path, edges=edges, cells=cells, row_group_rows=128) == 2000
    back = C.read_edges(path=path)
    pos = cells.set_index("id")
    bucket = spatial.morton_bucket(x=pos.loc[back["source"], "x"].to_numpy(), y=pos.loc[back["source"], "y"].to_numpy(),
                             bucket_px=C.DEFAULT_BUCKET_PX)
    assert (np.diff(bucket.astype(np.int64)) >= 0).all()
    key = lambda d: sorted(zip(d.source, d.target, d.pair_type, np.round(d.length, 9)))  # noqa: E731
    assert key(back) == key(edges)
    got = C.edges_in_rect(path=path, x0=600, y0=600, x1=1200, y1=1200)
    src_xy = pos.loc[edges["source"]]
    inside = (src_xy.x.to_numpy() >= 600) & (src_xy.x.to_numpy() < 1200) & (src_xy.y.to_numpy() >= 600) & (src_xy.y.to_numpy() < 1200)
    assert set(zip(edges.source[inside], edges.target[inside])) <= set(zip(got.source, got.target))
    assert len(got) < len(edges)
    with pytest.raises(C.CellTableError, match="not a cell id"):
        C.write_edges(path=path, edges=edges.assign(target=10**9), cells=cells)


# ----------------------------------------------------------------------------- HoVer-Net JSON


def test_hovernet_json_reads_scmtop_input(shared_file):
    imported = interchange.read_hovernet_json(path=shared_file(SCMTOP_JSON))
    cells = imported.cells
    assert imported.mag == 20 and imported.source_format == "hovernet-json"
    assert len(cells) == 2394
    first = cells.iloc[0]
    assert first["id"] == 1 and first["cls"] == CellClass.TUMOUR.value and first["prob"] == 0.701
    assert (first["x"], first["y"]) == (19.747191011235955, 86.01685393258427)
    assert first["contour"][0].tolist() == [12, 76]
    assert set(cells["cls"]) <= {c.value for c in CellClass}


def test_hovernet_json_round_trip_is_exact(shared_file, tmp_path):
    src = shared_file(SCMTOP_JSON)
    imported = interchange.read_hovernet_json(path=src)
    out = tmp_path / "out.json"
    interchange.write_hovernet_json(path=out, cells=imported.cells, mag=imported.mag)
    assert json.loads(out.read_text()) == json.loads(src.read_text())  # bbox, order, floats, types


def test_hovernet_through_cell_table_keeps_geometry(shared_file, tmp_path):
    imported = interchange.read_hovernet_json(path=shared_file(SCMTOP_JSON))
    table = tmp_path / "cells.parquet"
    C.write_cells(path=table, cells=imported.cells)
    back = C.read_cells(path=table).set_index("id").loc[imported.cells["id"]].reset_index()
    out = tmp_path / "out.json"
    interchange.write_hovernet_json(path=out, cells=back, mag=20)
    a = json.loads(shared_file(SCMTOP_JSON).read_text())["nuc"]
    b = json.loads(out.read_text())["nuc"]
    for key in a:  # types 4/5 collapse to OTHER without the JSON's raw code; the rest is exact
        for field in ("bbox", "centroid", "contour", "type_prob"):
            assert a[key][field] == b[key][field], (key, field)


@pytest.mark.parametrize("text, message", [
    ('{"mag": 20, "nuc": {"1": {"centroid": [1, 2], "contour": [[1, 2]], "type": 1}', "line 1"),
    ('{"mag": 20}', '"nuc"'),
    ('{"mag": 20, "nuc": {"7": {"centroid": [1, 2], "type": 1}}}', 'nucleus "7": missing "contour"'),
    ('{"mag": 20, "nuc": {"7": {"centroid": [1], "contour": [[1, 2]], "type": 1}}}', 'nucleus "7": centroid'),
    ('{"mag": 20, "nuc": {"7": {"centroid": [1, 2], "contour": [1, 2], "type": 1}}}', 'nucleus "7": contour'),
    ('{"mag": 20, "nuc": {"7": {"centroid": [1, 2], "contour": [[1, 2]], "type": 9}}}', "PanNuke code"),
    ('{"mag": 20, "nuc": {"x7": {"centroid": [1, 2], "contour": [[1, 2]], "type": 1}}}', "integer id"),
    ('{"mag": "high", "nuc": {}}', '"mag"'),
])
def test_hovernet_json_errors_name_the_place(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(interchange.InterchangeFormatError, match=message):
        interchange.read_hovernet_json(path=path)


def test_hovernet_json_multiline_error_names_the_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"mag": 20,\n "nuc": {\n  "1": {"centroid": [1, 2],, }\n }\n}')
    with pytest.raises(interchange.InterchangeFormatError, match="line 3"):
        interchange.read_hovernet_json(path=path)


# ----------------------------------------------------------------------------- QuPath GeoJSON


def test_qupath_round_trip_with_her2_classes(tmp_path):
    cells = _synthetic_cells(200)
    out = tmp_path / "cells.geojson"
    interchange.write_qupath_geojson(path=out, cells=cells)
    doc = json.loads(out.read_text())
    feature = doc["features"][0]
    assert doc["type"] == "FeatureCollection"
    assert feature["properties"]["objectType"] == "detection"
    assert feature["geometry"]["type"] == "Polygon"
    ring = feature["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1]  # closed, as GeoJSON requires
    assert len(feature["properties"]["classification"]["color"]) == 3
    back = interchange.read_qupath_geojson(path=out).cells
    assert list(back["cls"]) == list(cells["cls"])
    assert list(back["her2_class"]) == list(cells["her2_class"])
    np.testing.assert_allclose(back["her2_od"], cells["her2_od"], rtol=1e-6)
    np.testing.assert_allclose(back["prob"], cells["prob"])
    for a, b in zip(back["contour"], cells["contour"]):
        assert np.array_equal(a, b)
    from shapely.geometry import Polygon  # independent area-weighted centroid (QuPath's "Centroid X px")
    np.testing.assert_allclose(back["x"], [Polygon(c).centroid.x for c in cells["contour"]], atol=1e-9)
    np.testing.assert_allclose(back["y"], [Polygon(c).centroid.y for c in cells["contour"]], atol=1e-9)


def test_qupath_reads_real_gbm_annotations(shared_file):
    path = shared_file("nuclei/gbm/01.geojson")
    doc = json.loads(path.read_text())
    n_detections = sum(f["properties"].get("objectType") == "detection" for f in doc["features"])
    cells = interchange.read_qupath_geojson(path=path).cells
    assert len(cells) == n_detections > 50
    assert (cells["cls"] == CellClass.OTHER.value).all()  # "Nucleus" is no class of ours
    assert cells["x"].between(0, 512).all() and cells["y"].between(0, 512).all()
    assert (cells["area"] > 5).all()


def test_qupath_old_measurement_list_and_cell_objects(tmp_path):
    square = [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]
    doc = [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": square},
         "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [40, 0], [40, 40], [0, 40], [0, 0]]]},
         "properties": {"objectType": "cell", "classification": {"name": "Tumor: weak_complete"},
                        "nucleusGeometry": {"type": "Polygon", "coordinates": square},
                        "measurements": [{"name": "probability", "value": 0.8}]}},
        {"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [square, [[[20, 20], [21, 20], [21, 21], [20, 20]]]]},
         "properties": {"objectType": "detection", "classification": {"name": "Immune cells"}}},
    ]
    path = tmp_path / "old.geojson"
    path.write_text(json.dumps(doc))
    cells = interchange.read_qupath_geojson(path=path).cells
    assert len(cells) == 2  # the annotation is skipped
    assert cells["cls"].tolist() == ["tumour", "lymphocyte"]
    assert cells["her2_class"].tolist()[0] == "weak_complete"
    assert cells["prob"].tolist() == [0.8, 1.0]
    assert cells["area"].tolist() == [100.0, 100.0]  # nucleus geometry; largest part
    assert (cells["x"].tolist(), cells["y"].tolist()) == ([5.0, 5.0], [5.0, 5.0])


@pytest.mark.parametrize("doc, message", [
    ({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}}]}, "feature 0: geometry"),
    ({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 1], [0, 0]]]}},
        {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [1, 2]}}]}, "feature 1: geometry type 'Point'"),
    ({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},
                                                 "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}}]}, "3 distinct"),
    ({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"classification": {"name": 3}},
                                                 "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 1]]]}}]}, "name must be a string"),
    ({"type": "FeatureCollection", "features": [{"type": "Thing"}]}, "feature 0: not a GeoJSON Feature"),
    ({"type": "Topology"}, "expected a GeoJSON"),
])
def test_qupath_errors_name_the_feature(tmp_path, doc, message):
    path = tmp_path / "bad.geojson"
    path.write_text(json.dumps(doc))
    with pytest.raises(interchange.InterchangeFormatError, match=message):
        interchange.read_qupath_geojson(path=path)
