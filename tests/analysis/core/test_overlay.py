"""Overlay rendering and record packing on tiny hand-made cell tables."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from analysis.core import overlay as ov
from analysis.core.cells.classes import CLASS_COLOURS, HER2_COLOURS, CellClass, Her2Class


def square(cx: int, cy: int, r: int) -> np.ndarray:
    return np.array([[cx - r, cy - r], [cx + r, cy - r], [cx + r, cy + r], [cx - r, cy + r]])


@pytest.fixture
def cells() -> pd.DataFrame:
    rows = [  # id, x, y, class, her2
        (10, 100.0, 100.0, "tumour", "strong_complete"),
        (11, 140.0, 100.0, "lymphocyte", None),
        (12, 600.0, 900.0, "other", "null_incomplete"),
    ]
    return pd.DataFrame({
        "id": [r[0] for r in rows], "x": [r[1] for r in rows], "y": [r[2] for r in rows],
        "cls": [r[3] for r in rows], "her2_class": [r[4] for r in rows],
        "area": [100.0] * 3, "contour": [square(int(r[1]), int(r[2]), 5) for r in rows],
    })


@pytest.fixture
def run(cells) -> ov.RunOverlay:
    edges = pd.DataFrame({"source": [10], "target": [11], "pair_type": ["T-L"]})
    return ov.run_overlay_build(cells=cells, edges=edges, stain="he", width=1024, height=1024)


def contour_source_for(cells: pd.DataFrame, kind: str = "cells"):
    def source(x0, y0, x1, y1):
        inside = cells[(cells.x >= x0) & (cells.x < x1) & (cells.y >= y0) & (cells.y < y1)]
        codes = ov.her2_codes(inside["her2_class"].to_numpy()) if kind == "her2" else ov.class_codes(inside["cls"].to_numpy())
        return list(inside["contour"]), codes
    return source


def decode(png: bytes) -> tuple[np.ndarray, Image.Image]:
    image = Image.open(io.BytesIO(png))
    assert image.mode == "P"
    return np.asarray(image), image


def rgb_of(image: Image.Image, index: int) -> str:
    r, g, b = image.getpalette()[3 * index:3 * index + 3]
    return f"#{r:02X}{g:02X}{b:02X}"


def test_codes_follow_the_enum_order():
    assert ov.class_codes(["tumour", "stroma", "lymphocyte", "neutrophil", "macrophage", "other"]).tolist() == [0, 1, 2, 3, 4, 5]
    assert ov.her2_codes(["strong_complete", None, "null_incomplete", float("nan")]).tolist() == [0, 15, 5, 15]
    assert ov.pair_types("he")[:3] == ["T-T", "T-S", "T-L"] and len(ov.pair_types("he")) == 15
    assert len(ov.pair_types("ihc")) == 10


def test_cell_records_round_trip():
    x, y = np.array([1.5, 50000.25], np.float32), np.array([2.5, 3.0], np.float32)
    data = ov.pack_cells(x=x, y=y, ids=np.array([7, ov.MAX_ID]), class_code=np.array([2, 5]), her2_code=np.array([15, 3]))
    assert len(data) == 24
    back = ov.unpack_cells(data)
    assert back["x"].tolist() == x.tolist() and back["y"].tolist() == y.tolist()
    assert back["id"].tolist() == [7, ov.MAX_ID] and back["class_code"].tolist() == [2, 5]
    assert back["her2_code"].tolist() == [15, 3]
    # little-endian layout, as the browser reads it with DataView(..., true)
    assert np.frombuffer(data[8:12], "<u4")[0] == (7 << 8) | (15 << 4) | 2
    with pytest.raises(ov.OverlayError, match="24 bits"):
        ov.pack_cells(x=x[:1], y=y[:1], ids=np.array([1 << 24]), class_code=np.array([0]), her2_code=np.array([0]))


def test_edge_records_round_trip():
    data = ov.pack_edges(x1=np.array([1.0]), y1=np.array([2.0]), x2=np.array([3.0]), y2=np.array([4.0]), code=np.array([9]))
    assert len(data) == 20
    back = ov.unpack_edges(data)
    assert [back[k][0] for k in ("x1", "y1", "x2", "y2", "code")] == [1.0, 2.0, 3.0, 4.0, 9]


def test_contours_drawn_at_high_zoom_transparent_elsewhere(run, cells):
    png, empty = ov.render_tile_png(run, "cells", x0=0, y0=0, w0=256, h0=256, out_w=256, out_h=256,
                                    contour_source=contour_source_for(cells))
    assert not empty
    codes, image = decode(png)
    alpha = image.info["transparency"]
    assert alpha[0] == 0  # background fully transparent
    inside = codes[100, 100]  # centre of the tumour nucleus: translucent fill of class 0
    assert inside == ov.FILL_OFFSET + 1 + 0 and 0 < alpha[inside] < 255
    assert rgb_of(image, inside) == CLASS_COLOURS[CellClass.TUMOUR]
    assert codes[95, 100] == 1 + 0 and alpha[1] == 255  # outline, opaque
    assert rgb_of(image, codes[100, 140]) == CLASS_COLOURS[CellClass.LYMPHOCYTE]
    assert codes[200, 200] == 0 and codes[100, 120] == 0
    assert (codes > 0).sum() == pytest.approx(2 * 11 * 11, abs=10)


def test_points_drawn_at_low_zoom(run):
    # 1024 x 1024 level-0 px into 128 x 128: scale 1/8, one small disc per cell
    codes = ov.render_tile_codes(run, "cells", x0=0, y0=0, w0=1024, h0=1024, out_w=128, out_h=128)
    assert codes[12, 12] == 1 + 0  # tumour at (100, 100) / 8
    assert codes[12, 17] == 1 + 2  # lymphocyte at (140, 100) / 8
    assert codes[112, 75] == 1 + 5  # other at (600, 900) / 8
    assert (codes > 0).sum() <= 3 * 9 and codes[60, 60] == 0


def test_her2_layer_only_graded_cells(run, cells):
    codes = ov.render_tile_codes(run, "her2", x0=0, y0=0, w0=256, h0=256, out_w=256, out_h=256,
                                 contour_source=contour_source_for(cells, "her2"))
    assert codes[100, 100] == ov.FILL_OFFSET + 1 + 0  # strong_complete
    assert codes[100, 140] == 0  # lymphocyte: no HER2 class
    rgb, _ = ov.layer_palette(run, "her2")
    assert "#%02X%02X%02X" % rgb[1] == HER2_COLOURS[Her2Class.STRONG_COMPLETE]


def test_edges_drawn_as_lines(run):
    codes = ov.render_tile_codes(run, "edges", x0=0, y0=0, w0=256, h0=256, out_w=256, out_h=256)
    t_l = ov.pair_types("he").index("T-L")
    assert (codes[100, 100:141] == 1 + t_l).all()
    assert codes[101:, :].max() <= 1 + t_l and codes[150, 120] == 0


def test_density_counts_per_bin(cells):
    many = pd.concat([cells.assign(id=cells.id + 100 * k, x=cells.x + k % 7, y=cells.y + k // 7) for k in range(49)])
    run = ov.run_overlay_build(cells=many, edges=None, stain="he", width=1024, height=1024)
    codes = ov.render_tile_codes(run, "density-tumour", x0=0, y0=0, w0=1024, h0=1024, out_w=256, out_h=256)
    # bins of 128 level-0 px = 32 tile px; the tumour cells all sit in bin (0, 0)
    assert (codes[:32, :32] == 255).all() and (codes[:, 32:] == 0).all() and (codes[32:, :] == 0).all()
    assert not ov.render_tile_codes(run, "density-stroma", x0=0, y0=0, w0=1024, h0=1024, out_w=256, out_h=256).any()


def test_viewport_records_and_cap(run):
    data, count = ov.viewport_records(run, "cells", x0=90, y0=90, x1=150, y1=110, limit=10)
    assert count == 2
    back = ov.unpack_cells(data)
    assert sorted(back["id"].tolist()) == [10, 11]
    assert ov.viewport_records(run, "cells", x0=0, y0=0, x1=1024, y1=1024, limit=2) is None
    data, count = ov.viewport_records(run, "edges", x0=0, y0=0, x1=120, y1=120, limit=10)
    assert count == 1 and ov.unpack_edges(data)["x2"][0] == 140.0
    data, count = ov.viewport_records(run, "her2", x0=0, y0=0, x1=1024, y1=1024, limit=10)
    # Only the tumour cell: the "other" cell's null_incomplete is not a grade (ASCO/CAP: tumour cells).
    assert count == 1 and ov.unpack_cells(data)["her2_code"].tolist() == [0]


def test_grid_query_matches_brute_force():
    rng = np.random.default_rng(1)
    n = 20000
    frame = pd.DataFrame({"id": np.arange(n), "x": rng.uniform(0, 5000, n), "y": rng.uniform(0, 3000, n),
                          "cls": rng.choice(["tumour", "stroma"], n), "area": 50.0})
    run = ov.run_overlay_build(cells=frame, edges=None, stain="he", width=5000, height=3000)
    for x0, y0, w, h in ((0, 0, 5000, 3000), (1234.5, 777.0, 900, 300), (4900, 2900, 500, 500), (-50, -50, 60, 60)):
        got = np.sort(run.ids[ov.cells_in_view(run, x0=x0, y0=y0, x1=x0 + w, y1=y0 + h)])
        want = frame.id[(frame.x >= x0) & (frame.x < x0 + w) & (frame.y >= y0) & (frame.y < y0 + h)].to_numpy()
        assert got.tolist() == np.sort(want).tolist()


def test_large_ids_fall_back_to_rows(cells):
    run = ov.run_overlay_build(cells=cells.assign(id=cells.id + (1 << 30)), edges=None, stain="he", width=1024,
                               height=1024)
    assert run.id_is_row and sorted(run.ids.tolist()) == [0, 1, 2]


def test_empty_tile_is_a_tiny_transparent_png(run):
    png, empty = ov.render_tile_png(run, "cells", x0=512, y0=0, w0=256, h0=256, out_w=256, out_h=256)
    codes, image = decode(png)
    assert empty and not codes.any() and len(png) < 400
    assert image.size == (256, 256) and image.convert("RGBA").getextrema()[3] == (0, 0)


def test_low_zoom_tiles_are_reduced_from_the_rasters(cells):
    edges = pd.DataFrame({"source": [10], "target": [11], "pair_type": ["T-L"]})
    plain = ov.run_overlay_build(cells=cells, edges=edges, stain="he", width=1024, height=1024)
    rastered = ov.run_overlay_build(cells=cells, edges=edges, stain="he", width=1024, height=1024)
    ov.run_overlay_rasters(rastered)
    assert set(rastered.rasters) == {"cells", "her2", "edges"}
    for layer in ("cells", "her2", "edges"):  # at the raster's own scale: the same pixels as drawing directly
        direct = ov.render_tile_codes(plain, layer, x0=0, y0=0, w0=1024, h0=1024, out_w=32, out_h=32)
        reduced = ov.render_tile_codes(rastered, layer, x0=0, y0=0, w0=1024, h0=1024, out_w=32, out_h=32)
        assert direct.any() and (direct == reduced).all(), layer
    # 1/64: blocks of 2 x 2 raster pixels; the tumour (priority over "other") and the lymphocyte stay visible
    codes = ov.render_tile_codes(rastered, "cells", x0=0, y0=0, w0=1024, h0=1024, out_w=16, out_h=16, scale=1 / 64)
    assert codes[1, 1] == 1 + 0 and codes[1, 2] == 1 + 2 and codes[14, 9] == 1 + 5 and (codes > 0).sum() == 3


def test_hiding_codes_rewrites_only_the_transparency(run, cells):
    """A class left out of a cached tile: its outline and fill entries become transparent,
    every other pixel and the image data stay as they were (PNG spec 11.3.2 tRNS)."""
    tumour = cells[cells["cls"] == "tumour"].iloc[0]
    x0, y0 = int(tumour.x) - 64, int(tumour.y) - 64
    png, empty = ov.render_tile_png(run, "cells", x0=x0, y0=y0, w0=128, h0=128, out_w=256, out_h=256)
    assert not empty
    code = ov.CLASS_ORDER.index(CellClass.TUMOUR)
    indices = ov.palette_indices_of_codes("cells", [code])
    assert indices == [1 + code, ov.FILL_OFFSET + 1 + code]
    hidden = ov.png_palette_hide(png, indices)
    before, after = Image.open(io.BytesIO(png)), Image.open(io.BytesIO(hidden))
    assert np.array_equal(np.asarray(before), np.asarray(after))  # same palette indices
    rgba_before = np.asarray(before.convert("RGBA"))
    rgba_after = np.asarray(after.convert("RGBA"))
    codes = np.asarray(before)
    tumour_px = np.isin(codes, indices)
    assert tumour_px.any() and (rgba_after[tumour_px][:, 3] == 0).all()
    assert np.array_equal(rgba_before[~tumour_px], rgba_after[~tumour_px])
    # a PNG without tRNS gets one (entries beyond it were opaque); unknown entries change nothing
    plain = io.BytesIO()
    small = Image.fromarray(np.array([[0, 1], [1, 2]], dtype=np.uint8), mode="P")
    small.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])
    small.save(plain, format="PNG")
    out = Image.open(io.BytesIO(ov.png_palette_hide(plain.getvalue(), [1]))).convert("RGBA")
    assert np.asarray(out)[..., 3].tolist() == [[255, 0], [0, 255]]
    assert ov.png_palette_hide(plain.getvalue(), [200]) == plain.getvalue()
    assert ov.png_palette_hide(ov.transparent_png(8, 8), [1, 2]) == ov.transparent_png(8, 8)
    assert ov.palette_indices_of_codes("edges", [0, 3, 999]) == [1, 4]
    assert ov.hideable_codes("density-tumour") == 0
    with pytest.raises(ov.OverlayError):
        ov.png_palette_hide(b"GIF89a", [1])


def test_her2_layer_grades_tumour_cells_only(cells):
    """A run written before grading was limited to tumour cells holds HER2 classes on other
    cells: the overlay neither draws nor counts them (ASCO/CAP score tumour cells)."""
    run = ov.run_overlay_build(cells=cells, edges=None, stain="ihc", width=1024, height=1024)
    her2_by_id = dict(zip(run.ids.tolist(), run.her2.tolist()))
    assert her2_by_id == {10: 0, 11: ov.HER2_NONE, 12: ov.HER2_NONE}  # "other" cell 12 had null_incomplete
    summary = ov.layer_summary_of(run)
    assert summary["her2_counts"]["strong_complete"] == 1 and summary["her2_counts"]["null_incomplete"] == 0
    assert summary["her2_not_graded"] == 2
    codes = ov.graded_her2_codes(cells["cls"], cells["her2_class"])
    assert codes.tolist() == [0, ov.HER2_NONE, ov.HER2_NONE]


def test_density_ramps_differ_per_class_and_empty_is_transparent(run):
    """Issue 14 item 11: each class's density in its own hue; empty bins transparent, sparse see-through."""
    tumour_rgb, tumour_alpha = ov.layer_palette(run, "density-tumour")
    lymph_rgb, _ = ov.layer_palette(run, "density-lymphocyte")
    assert tumour_alpha[0] == 0 and tumour_rgb[128] != lymph_rgb[128]
    assert tumour_alpha[1] < 128 < tumour_alpha[255]  # sparse bins see-through, dense ones solid
    r, g, b = tumour_rgb[255]
    assert r > g > b  # tumour vermillion stays orange-red at the top, not navy/yellow
    navy = ov.hex_rgb("#00224E")
    assert all(tuple(c) != navy for c in tumour_rgb[1:256])


@pytest.mark.parametrize("stain", ["he", "ihc"])
def test_every_edge_pair_of_a_stain_has_its_own_colour(stain):
    """A fresh-clone walk found Tumour–Stroma and Lymphocyte–Macrophage both #332288."""
    from analysis.core.overlay import pair_colour, pair_types

    pairs = pair_types(stain)
    colours = [pair_colour(pair, index) for index, pair in enumerate(pairs)]
    assert len(set(colours)) == len(pairs), dict(zip(pairs, colours))
