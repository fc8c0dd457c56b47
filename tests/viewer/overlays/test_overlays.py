"""Overlay routes on a really analysed phantom slide: layers, DZI, PNG tiles (Django and the
ASGI fast path), viewport records, the 413 cap, the cell inspector, feature sources, access."""
from __future__ import annotations

import io

import numpy as np
import pytest

from django.core.cache import caches
from PIL import Image

from analysis.core import overlay as ov
from analysis.core.cells.table import cells_in_rect, read_cells
from analysis.jobs.runner import job_claim, job_execute
from analysis.models import JobStatus
from analysis.results import run_path
from analysis.services import analysis_enqueue
from tests.viewer.asgi import asgi_get
from cases.models import Stain

# Tiles are rendered on the tile thread pool, with its own database connections: data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_caches():
    from viewer.overlays.services import overlay_cache_forget
    from viewer.tiles.services import tile_source_forget
    from viewer.tiles.asgi import forget_credentials

    for name in ("tiles", "default"):
        caches[name].clear()
    tile_source_forget()
    overlay_cache_forget()
    forget_credentials()
    yield
    overlay_cache_forget()


def analysed(slide):
    job = job_execute(job_claim(job_id=analysis_enqueue(slide=slide).pk, worker="test"))
    assert job.status == JobStatus.SUCCEEDED, job.error
    return slide.runs.order_by("-created_at").first()




def test_he_overlays(phantom_case, client_for, pathologist, settings):
    slide = phantom_case.slide_for(Stain.HE)
    client = client_for(pathologist)
    assert client.get(f"/api/slides/{slide.pk}/").json()["overlays"] == []
    assert client.get(f"/slides/{slide.pk}/overlays/cells.dzi").status_code == 404
    run = analysed(slide)
    folder = run_path(run)
    cells = read_cells(path=folder / "cells.parquet")

    layers = {layer["name"]: layer for layer in client.get(f"/api/slides/{slide.pk}/").json()["overlays"]}
    assert {"cells", "edges", "density-tumour"} <= set(layers) and "her2" not in layers
    cell_layer = layers["cells"]
    assert cell_layer["kind"] == "cells" and cell_layer["record_bytes"] == 12 and cell_layer["run"] == run.pk
    assert cell_layer["approximate"] is True and cell_layer["segmenter"] == run.segmenter
    assert [e["key"] for e in cell_layer["legend"]] == [c.value for c in ov.CLASS_ORDER]
    assert [e["code"] for e in cell_layer["legend"]] == list(range(6))
    assert {e["key"]: e["count"] for e in cell_layer["legend"]} == {
        c.value: int((cells["cls"] == c.value).sum()) for c in ov.CLASS_ORDER}
    edge_layer = layers["edges"]
    assert edge_layer["record_bytes"] == 20 and [e["code"] for e in edge_layer["legend"]] == list(range(15))
    assert sum(e["count"] for e in edge_layer["legend"]) > 0
    assert "viewport_url" not in layers["density-tumour"]

    # DZI: the slide's geometry, PNG tiles
    dzi = client.get(cell_layer["dzi_url"])
    assert dzi.status_code == 200 and b'Format="png"' in dzi.content and b'TileSize="256"' in dzi.content
    assert f'Width="{slide.width}"'.encode() in dzi.content

    # a full-resolution tile under a tumour cell: palette PNG, the cell's colour there, transparent elsewhere
    tumour = cells[cells["cls"] == "tumour"].iloc[0]
    level = int(np.ceil(np.log2(max(slide.width, slide.height))))
    col, row = int(tumour.x // 256), int(tumour.y // 256)
    url = f"/slides/{slide.pk}/overlays/cells_files/{level}/{col}_{row}.png"
    tile = client.get(url)
    assert tile.status_code == 200 and tile["Content-Type"] == "image/png" and tile["ETag"]
    image = Image.open(io.BytesIO(tile.content))
    assert image.mode == "P" and image.size == (256, 256) and "transparency" in image.info
    rgba = np.asarray(image.convert("RGBA"))
    cx, cy = int(tumour.x) - col * 256, int(tumour.y) - row * 256
    assert rgba[cy, cx, 3] > 0 and "#%02X%02X%02X" % tuple(rgba[cy, cx, :3]) == cell_layer["legend"][0]["color"]
    assert (rgba[..., 3] == 0).mean() > 0.3  # transparent background
    assert client.get(url, HTTP_IF_NONE_MATCH=tile["ETag"]).status_code == 304
    assert client.get(f"/slides/{slide.pk}/overlays/cells_files/{level}/99_0.png").status_code == 404
    assert client.get(f"/slides/{slide.pk}/overlays/her2.dzi").status_code == 404  # H&E has no HER2 layer
    for name in ("edges", "density-tumour"):
        low = client.get(f"/slides/{slide.pk}/overlays/{name}_files/{level - 3}/0_0.png")
        assert low.status_code == 200 and np.asarray(Image.open(io.BytesIO(low.content))).any()

    # the ASGI fast path answers the same URL, with the session cookie
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    status, headers, body = asgi_get(url, [(b"cookie", cookie)])
    assert status == 200 and headers[b"content-type"] == b"image/png" and body == tile.content
    assert asgi_get(url, [])[0] == 401

    # ?hide=<legend codes>: the tumour cells left out (transparent), everything else as it was
    hidden = client.get(url, {"hide": "0"})
    assert hidden.status_code == 200 and hidden["ETag"] != tile["ETag"]
    rgba_hidden = np.asarray(Image.open(io.BytesIO(hidden.content)).convert("RGBA"))
    assert rgba_hidden[cy, cx, 3] == 0
    others = (np.asarray(image) != 0) & ~np.isin(np.asarray(image), [1, ov.FILL_OFFSET + 1])
    assert np.array_equal(rgba_hidden[others], rgba[others])
    status, headers, body = asgi_get(url, [(b"cookie", cookie)], query=b"hide=0")
    assert status == 200 and body == hidden.content and headers[b"etag"].decode() == hidden["ETag"]
    assert asgi_get(url, [(b"cookie", cookie)], query=b"hide=tumour")[0] == 400
    assert client.get(url, {"hide": "0,x"}).status_code == 400

    # viewport records = cells_in_rect of the same rectangle
    x, y, w, h = tumour.x - 300, tumour.y - 200, 600, 400
    response = client.get(cell_layer["viewport_url"], {"x": x, "y": y, "width": w, "height": h})
    assert response.status_code == 200 and response["Content-Type"] == "application/octet-stream"
    expected = cells_in_rect(path=folder / "cells.parquet", x0=x, y0=y, x1=x + w, y1=y + h)
    assert int(response["X-Cell-Count"]) == len(expected) > 0 and len(response.content) == 12 * len(expected)
    records = ov.unpack_cells(response.content)
    assert sorted(records["id"].tolist()) == sorted(expected["id"].tolist())
    by_id = expected.set_index("id")
    for i in range(len(records["id"])):
        cell = by_id.loc[int(records["id"][i])]
        assert records["x"][i] == pytest.approx(cell.x, abs=1e-3)
        assert ov.CLASS_ORDER[records["class_code"][i]].value == cell.cls and records["her2_code"][i] == 15
    edges = client.get(edge_layer["viewport_url"], {"x": x, "y": y, "width": w, "height": h})
    assert edges.status_code == 200 and int(edges["X-Edge-Count"]) * 20 == len(edges.content) > 0
    assert set(ov.unpack_edges(edges.content)["code"].tolist()) <= set(range(15))
    assert client.get(cell_layer["viewport_url"], {"x": 0, "y": 0}).status_code == 400
    settings.LADDER_OVERLAY_MAX_RECORDS = 5
    too_many = client.get(cell_layer["viewport_url"], {"x": 0, "y": 0, "width": slide.width, "height": slide.height})
    assert too_many.status_code == 413 and too_many.json() == {"detail": "zoom in"}

    # cell inspector
    detail = client.get(f"/api/slides/{slide.pk}/cells/{int(tumour.id)}/").json()
    assert detail["id"] == int(tumour.id) and detail["cls"] == "tumour"
    assert detail["x"] == pytest.approx(tumour.x) and detail["y"] == pytest.approx(tumour.y)
    assert detail["area_um2"] == pytest.approx(tumour.area * slide.mpp_x * slide.mpp_y)
    assert detail["contour"] == np.asarray(tumour.contour).tolist()
    assert detail["morphology"]["Morph_Area"] > 0 and "Texture_IntensityMean" in detail["morphology"]
    assert detail["her2"] is None
    assert set(detail["graph"]) == {"T-T", "T-S", "T-L", "T-N", "T-M"}
    assert {"minEdgeLength", "meanEdgeLength", "Nsubgraph", "Degrees"} <= set(detail["graph"]["T-T"])
    assert detail["metric_labels"]["Nsubgraph"] == "connected-group size (cells)"  # plain names for the inspector
    assert client.get(f"/api/slides/{slide.pk}/cells/99999999/").status_code == 404

    # snapshot for the tumour board
    from viewer.overlays.services import overlay_render_region

    snapshot = overlay_render_region(slide, ["density-tumour", "cells"], 0, 0, slide.width, slide.height, 300, 300)
    assert snapshot.mode == "RGBA" and snapshot.size == (300, 300)
    assert np.asarray(snapshot)[..., 3].max() == 255
    assert overlay_render_region(slide, ["her2"], 0, 0, 100, 100, 10, 10) is None
    close = np.asarray(overlay_render_region(slide, ["cells"], int(tumour.x) - 50, int(tumour.y) - 50, 100, 100, 100, 100))
    assert "#%02X%02X%02X" % tuple(close[50, 50, :3]) == cell_layer["legend"][0]["color"]
    assert close[50, 50, 3] == ov.FILL_ALPHA and close[0, 0, 3] in (0, 255, ov.FILL_ALPHA)
    # the presenter unticked tumour cells: the snapshot leaves them out too
    no_tumour = np.asarray(overlay_render_region(slide, ["cells"], int(tumour.x) - 50, int(tumour.y) - 50, 100, 100,
                                                 100, 100, hidden={"cells": ["tumour"], "edges": ["no-such-pair"]}))
    assert no_tumour[50, 50, 3] == 0


def test_ihc_her2_layer(phantom_case, client_for, pathologist):
    slide = phantom_case.slide_for(Stain.IHC)
    run = analysed(slide)
    cells = read_cells(path=run_path(run) / "cells.parquet")
    client = client_for(pathologist)
    layers = {layer["name"]: layer for layer in client.get(f"/api/slides/{slide.pk}/").json()["overlays"]}
    her2 = layers["her2"]
    # ASCO/CAP grade tumour cells only: the run grades no other class, and the legend counts tumour cells.
    tumour_cells = cells["cls"] == "tumour"
    assert (~tumour_cells).any() and cells.loc[~tumour_cells, "her2_class"].isna().all()
    assert cells.loc[~tumour_cells, "her2_od"].isna().all()
    counts = {e["key"]: e["count"] for e in her2["legend"]}
    assert counts == {**{h.value: int((cells["her2_class"][tumour_cells] == h.value).sum()) for h in ov.HER2_ORDER},
                      "not_graded": int(cells["her2_class"].isna().sum())}
    not_graded = her2["legend"][-1]
    assert not_graded["toggle"] is False and not_graded["code"] == -1
    assert run.her2["n_cells"] == int(cells["her2_class"][tumour_cells].notna().sum())
    assert 0 <= run.her2["h_score"] <= 300
    assert layers["edges"]["legend"][0]["key"] == "Tstrong-Tstrong"
    response = client.get(her2["viewport_url"], {"x": 0, "y": 0, "width": slide.width, "height": slide.height})
    graded = cells[cells["her2_class"].notna()]
    assert (graded["cls"] == "tumour").all()
    assert int(response["X-Cell-Count"]) == len(graded)
    records = ov.unpack_cells(response.content)
    truth = graded.set_index("id")["her2_class"]
    assert [ov.HER2_ORDER[c].value for c in records["her2_code"]] == truth.loc[records["id"].astype(int)].tolist()
    tumour = graded[graded["cls"] == "tumour"].iloc[0]
    detail = client.get(f"/api/slides/{slide.pk}/cells/{int(tumour.id)}/").json()
    assert detail["her2"]["class"] == tumour.her2_class
    assert detail["her2"]["completeness"] == pytest.approx(tumour.her2_completeness, abs=1e-6)
    assert detail["graph"] and all("-" in pair for pair in detail["graph"])
    # IHC graph (issue 14 item 4): non-tumour cells (the IHC segmenter calls them "other") have edges
    edge_counts = {e["key"]: e["count"] for e in layers["edges"]["legend"]}
    assert sum(n for pair, n in edge_counts.items() if "nonT" in pair) > 0, edge_counts

    # A run written before grading was limited to tumour cells (non-tumour cells graded too) reads the same.
    from analysis.core.cells.table import write_cells
    from viewer.overlays.services import overlay_cache_forget

    full = read_cells(path=run_path(run) / "cells.parquet")
    other = full["cls"] != "tumour"
    full.loc[other, "her2_class"] = "null_incomplete"
    full.loc[other, ["her2_od", "her2_stained_od", "her2_completeness"]] = 0.01
    write_cells(path=run_path(run) / "cells.parquet", cells=full)
    for name in ("tiles", "default"):
        caches[name].clear()
    overlay_cache_forget()
    old_layers = {layer["name"]: layer for layer in client.get(f"/api/slides/{slide.pk}/").json()["overlays"]}
    assert {e["key"]: e["count"] for e in old_layers["her2"]["legend"]} == counts
    stroma = full[other].iloc[0]
    assert client.get(f"/api/slides/{slide.pk}/cells/{int(stroma.id)}/").json()["her2"] is None


def test_feature_sources(client_for, pathologist):
    client = client_for(pathologist)
    data = client.get("/api/features/he_T_L_minEdgeLength/").json()
    assert data["group"] == "he" and data["unit"] == "um" and "T-L" in data["definition"]
    assert data["source_cells"]["pair_type"] == "T-L" and data["source_cells"]["cells"] == {"cls": ["tumour"]}
    assert data["source_cells"]["edge_pair_type"] == "T-L"
    reverse = client.get("/api/features/he_L_T_Degrees/").json()["source_cells"]
    assert reverse["pair_type"] == "L-T" and reverse["edge_pair_type"] == "T-L"
    ihc = client.get("/api/features/ihc_Tstrong_nonT_Nsubgraph/").json()
    assert ihc["group"] == "ihc" and ihc["source_cells"]["cells"]["her2_class"] == ["strong_complete", "strong_incomplete"]
    prop = client.get("/api/features/he_prop_L/").json()
    assert prop["source_cells"]["pair_type"] is None and prop["source_cells"]["cells"] == {"cls": ["lymphocyte"]}
    clinical = client.get("/api/features/age/").json()
    assert clinical["group"] == "clinical" and clinical["source_cells"] is None
    assert client.get("/api/features/no_such_feature/").status_code == 404


def test_edges_written_after_the_run_is_listed_appear(phantom_case, client_for, pathologist, monkeypatch):
    """The overlay caches are keyed by what the run folder holds: edges that appear after a
    listing (or after the run was loaded into memory) are shown within the lookup's few seconds.
    (Runs are now published with their edges; CI once caught an edge-less run cached for good.)"""
    import viewer.overlays.services as overlays

    slide = phantom_case.slide_for(Stain.HE)
    run = analysed(slide)
    edges = run_path(run) / "edges.parquet"
    aside = edges.with_name("edges.parquet.aside")
    edges.rename(aside)
    client = client_for(pathologist)
    names = {layer["name"] for layer in client.get(f"/api/slides/{slide.pk}/").json()["overlays"]}
    assert "cells" in names and "edges" not in names
    overlays.run_overlay_get(overlays.overlay_run_info(slide.pk))  # the in-memory run, edge-less

    aside.rename(edges)
    monkeypatch.setattr(overlays, "RUN_INFO_TTL_SECONDS", 0.0)  # the run lookup's few seconds are over
    layers = {layer["name"]: layer for layer in client.get(f"/api/slides/{slide.pk}/").json()["overlays"]}
    assert "edges" in layers and sum(e["count"] for e in layers["edges"]["legend"]) > 0
    response = client.get(layers["edges"]["viewport_url"], {"x": 0, "y": 0, "width": slide.width,
                                                            "height": slide.height})
    assert response.status_code == 200 and int(response["X-Edge-Count"]) > 0


def test_anonymous_gets_401(client, phantom_case):
    slide = phantom_case.slide_for(Stain.HE)
    for url in (f"/api/slides/{slide.pk}/overlays/cells/viewport?x=0&y=0&width=10&height=10",
                f"/api/slides/{slide.pk}/cells/1/", "/api/features/age/",
                f"/slides/{slide.pk}/overlays/cells.dzi", f"/slides/{slide.pk}/overlays/cells_files/11/0_0.png"):
        assert client.get(url).status_code == 401, url


def test_qc_layer_shows_tissue_tiles_and_the_ink_left_out(he_slide, client_for, pathologist):
    """Issue 14 item 20 on the real CMU-1-Small-Region (blue-green ink at the tissue's edge): the QC
    layer is listed with what was analysed and left out, and its tiles draw tissue, tile outlines,
    ink and glass in their legend colours."""
    run = analysed(he_slide)
    client = client_for(pathologist)
    layers = {layer["name"]: layer for layer in client.get(f"/api/slides/{he_slide.pk}/").json()["overlays"]}
    qc = layers["qc"]
    assert qc["kind"] == "qc" and "viewport_url" not in qc
    keys = [e["key"] for e in qc["legend"]]
    assert keys == ["tissue", "tiles", "pen", "small", "background", "focus"]
    assert all(e["toggle"] is False for e in qc["legend"])
    summary = run.summary["qc"]
    assert f"Tiles analysed: {len(summary['tiles']):,}" == qc["legend"][1]["label"]
    assert summary["pen_fraction"] > 0.001 and "Pen ink" in qc["legend"][2]["label"]
    # the whole slide in one tile of a low DZI level: every code present, in the palette colours
    level = int(np.ceil(np.log2(max(he_slide.width, he_slide.height)))) - 3  # 1/8: 278 x 371 px
    tile = client.get(f"/slides/{he_slide.pk}/overlays/qc_files/{level}/0_0.png")
    assert tile.status_code == 200 and tile["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(b"".join(tile.streaming_content) if tile.streaming else tile.content))
    assert image.mode == "P"
    indices = set(np.unique(np.asarray(image)).tolist())
    assert {1 + 0, 1 + 1, 1 + 2, ov.QC_TILE} <= indices, indices  # glass, tissue, pen, tile outlines
    palette = image.getpalette()
    assert "#%02X%02X%02X" % tuple(palette[3 * 3:3 * 3 + 3]) == qc["legend"][2]["color"]  # pen: palette 1 + 2
    # a region snapshot (tumour board) composes it too
    from viewer.overlays.services import overlay_render_region

    region = overlay_render_region(he_slide, ["qc"], 0, 0, he_slide.width, he_slide.height, 200, 267)
    assert region is not None and np.asarray(region)[..., 3].max() > 0


def test_contour_records_are_the_stored_outlines(phantom_case, client_for, pathologist):
    """Nucleus outlines (issue 14 item 2): the contour records of a viewport are the cell table's
    contours (collinear vertices dropped), with the cell records' ids and codes; 400 / 404 / 413."""
    slide = phantom_case.slide_for(Stain.HE)
    run = analysed(slide)
    client = client_for(pathologist)
    layers = {layer["name"]: layer for layer in client.get(f"/api/slides/{slide.pk}/").json()["overlays"]}
    url = layers["cells"]["contours_url"]
    assert "contours_url" not in layers["edges"] and "contours_url" not in layers["density-tumour"]
    x, y, w, h = slide.width * 0.25, slide.height * 0.25, slide.width * 0.5, slide.height * 0.5
    response = client.get(url, {"x": x, "y": y, "width": w, "height": h})
    assert response.status_code == 200 and response["Content-Type"] == "application/octet-stream"
    records = ov.unpack_contours(response.content)
    truth = cells_in_rect(path=run_path(run) / "cells.parquet", x0=x, y0=y, x1=x + w, y1=y + h)
    assert len(records) == len(truth) == int(response["X-Cell-Count"]) > 0
    assert sum(len(r["points"]) for r in records) == int(response["X-Vertex-Count"])
    cells = client.get(layers["cells"]["viewport_url"], {"x": x, "y": y, "width": w, "height": h})
    packed = set(np.frombuffer(cells.content, dtype=ov.CELL_RECORD)["packed"].tolist())
    assert {r["packed"] for r in records} == packed  # same ids and codes as the cell records
    by_id = truth.set_index("id")
    for record in records[:200]:
        cell = by_id.loc[record["packed"] >> 8]
        stored = np.asarray(cell["contour"], dtype=np.int64)
        # every vertex sent is a stored vertex, and the outline is the same polygon (same area)
        assert {tuple(p) for p in record["points"].tolist()} <= {tuple(p) for p in stored.tolist()}
        assert ov.CLASS_ORDER[record["packed"] & 15].value == cell["cls"]
        shoelace = lambda p: abs(np.dot(p[:, 0], np.roll(p[:, 1], -1)) - np.dot(p[:, 1], np.roll(p[:, 0], -1))) / 2
        assert shoelace(record["points"]) == pytest.approx(shoelace(stored), abs=1e-6)
    # the inspector's probability: none for a segmenter without one (the classical rules store 1.0)
    detail = client.get(f"/api/slides/{slide.pk}/cells/{int(truth.iloc[0].id)}/").json()
    if run.segmenter.startswith("classical"):
        assert detail["prob"] is None
    else:
        assert detail["prob"] == pytest.approx(float(truth.iloc[0].prob))
    assert client.get(url, {"x": 0, "y": 0}).status_code == 400
    assert client.get(f"/api/slides/{slide.pk}/overlays/edges/contours", {"x": 0, "y": 0, "width": 9, "height": 9}).status_code == 404
    from django.test import override_settings
    with override_settings(LADDER_OVERLAY_MAX_CONTOURS=3):
        assert client.get(url, {"x": 0, "y": 0, "width": slide.width, "height": slide.height}).status_code == 413


def test_simplify_rings_keeps_corners_only():
    square = np.array([[0, 0], [1, 0], [2, 0], [2, 1], [2, 2], [1, 2], [0, 2], [0, 1]])
    tri = np.array([[0, 0], [5, 0], [0, 5]])
    offsets, values = ov.simplify_rings(offsets=np.array([0, 8, 11]), values=np.concatenate([square, tri]))
    assert offsets.tolist() == [0, 4, 7]
    assert values[:4].tolist() == [[0, 0], [2, 0], [2, 2], [0, 2]] and values[4:].tolist() == tri.tolist()
    body = ov.pack_contours(ox=np.array([10.0, 20.0]), oy=np.array([30.0, 40.0]), packed=np.array([7 << 8, 9 << 8]),
                            offsets=offsets, values=values)
    assert len(body) == 2 * 16 + 7 * 4
    back = ov.unpack_contours(body)
    assert back[0]["points"].tolist() == [[10, 30], [12, 30], [12, 32], [10, 32]] and back[1]["packed"] == 9 << 8
