"""Streamed whole-slide runner: tiling, seams, resolution, atomic output, cancel."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from analysis.core.cells import stain as stain_mod
from analysis.core.her2.grading import IhcNucleusSegmenter
from analysis.core.cells.table import cells_in_rect, read_cells, table_metadata
from analysis.core.cells.segmentation.base import OnePhaseView
from analysis.core.cells.segmentation.classical import ClassicalSegmenter
from analysis.core.slides.tissue import NoTissueError
from analysis.core.pipeline import Cancelled, WsiAnalysisError, analyze_slide, read_summary


class OpenSlideReader:
    """The reader interface over openslide.OpenSlide (the lead's slide module has the same methods)."""

    def __init__(self, path: Path):
        import openslide

        self._slide = openslide.OpenSlide(str(path))
        self.dimensions = self._slide.dimensions
        self.level_downsamples = self._slide.level_downsamples

    def read_region(self, *, x, y, width, height, level=0):
        return np.asarray(self._slide.read_region((x, y), level, (width, height)).convert("RGB"))

    def thumbnail(self, max_size):
        return np.asarray(self._slide.get_thumbnail((max_size, max_size)).convert("RGB"))


class ArrayReader:
    """The reader interface over in-memory pyramid levels (level 0 first); white outside."""

    def __init__(self, levels: list[np.ndarray]):
        self.levels = levels
        self.dimensions = (levels[0].shape[1], levels[0].shape[0])
        self.level_downsamples = [levels[0].shape[1] / lv.shape[1] for lv in levels]
        self.reads: list[tuple] = []

    def read_region(self, *, x, y, width, height, level=0):
        self.reads.append((x, y, width, height, level))
        ds = self.level_downsamples[level]
        x0, y0 = int(round(x / ds)), int(round(y / ds))
        out = np.full((height, width, 3), 255, np.uint8)
        crop = self.levels[level][y0:y0 + height, x0:x0 + width]
        out[:crop.shape[0], :crop.shape[1]] = crop
        return out

    def thumbnail(self, max_size):
        image = Image.fromarray(self.levels[-1])
        image.thumbnail((max_size, max_size))
        return np.asarray(image)


def _he_image(size: int, centres: np.ndarray, *, radius_px: float) -> np.ndarray:
    """Pale stroma with hematoxylin disk nuclei (Beer-Lambert, Ruifrok H&E vectors)."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    h = np.zeros((size, size))
    for cx, cy in centres:
        h = np.maximum(h, 0.9 * (np.hypot(xx - cx, yy - cy) <= radius_px))
    eosin = np.full((size, size), 0.25)
    od = h[..., None] * stain_mod.HE_DEFAULT.vectors[0] + eosin[..., None] * stain_mod.HE_DEFAULT.vectors[1]
    return np.clip(np.rint(255 * 10 ** (-od)), 0, 255).astype(np.uint8)


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# ----------------------------------------------------------------------------- seams


def test_cell_on_a_seam_is_kept_once(tmp_path):
    mpp, tile_um = 0.5, 64.0  # 128 px cores
    # A lattice of nuclei 40 px apart, shifted so that several sit exactly on seams
    # (x or y = 128, 256, 384) and one on a four-tile corner (256, 256).
    grid = np.arange(16, 512, 40)
    centres = np.array([(x, y) for x in grid for y in grid], dtype=float)
    centres = np.vstack([centres[(np.abs(centres[:, 0] - 256) > 20) | (np.abs(centres[:, 1] - 256) > 20)],
                         [[256.0, 256.0], [128.0, 60.0], [384.0, 450.0]]])
    keep = np.min(np.hypot(*(centres[:, None] - centres[None]).transpose(2, 0, 1)) + np.eye(len(centres)) * 1e9, axis=1) > 20
    centres = centres[keep]
    reader = ArrayReader([_he_image(512, centres, radius_px=10)])
    summary = analyze_slide(reader=reader, stain="he", segmenter=ClassicalSegmenter(), out_dir=tmp_path / "run",
                            mpp=mpp, tile_um=tile_um, overlap_um=16.0)
    assert summary.n_tiles == 16 and summary.tile_px == 128 and summary.overlap_px == 32
    cells = read_cells(path=tmp_path / "run" / "cells.parquet")
    xy = cells[["x", "y"]].to_numpy()
    distance = np.hypot(*(centres[:, None] - xy[None]).transpose(2, 0, 1))
    assert (distance.min(axis=1) < 2).all()  # every nucleus found ...
    assert ((distance < 5).sum(axis=1) == 1).all()  # ... exactly once, seams included
    assert len(cells) == len(centres)
    assert cells["id"].is_unique
    # The same as segmenting the whole image in one piece.
    whole = ClassicalSegmenter().segment(rgb=reader.levels[0], mpp=mpp)
    assert len(whole) == len(cells)


# ----------------------------------------------------------------------------- resolution


def test_reads_at_the_nearest_level_and_maps_back_to_level0(tmp_path):
    # A 0.25 um/px slide with a 2x level; the segmenter works at 0.5 um/px, so tiles come
    # from level 1 as they are and the cells are mapped back to level-0 pixels.
    rng = np.random.default_rng(3)
    centres = np.array([(x, y) for x in range(60, 1024, 110) for y in range(60, 1024, 110)], float)
    centres += rng.uniform(-10, 10, centres.shape)
    level0 = _he_image(1024, centres, radius_px=20)
    level1 = np.asarray(Image.fromarray(level0).reduce(2))
    reader = ArrayReader([level0, level1])
    summary = analyze_slide(reader=reader, stain="he", segmenter=ClassicalSegmenter(), out_dir=tmp_path / "run",
                            mpp=0.25, tile_um=128, overlap_um=16)
    assert summary.read_level == 1 and summary.analysis_mpp == 0.5
    assert {r[4] for r in reader.reads} == {1}
    cells = read_cells(path=tmp_path / "run" / "cells.parquet")
    assert len(cells) == len(centres)
    distance = np.hypot(*(centres[:, None] - cells[["x", "y"]].to_numpy()[None]).transpose(2, 0, 1)).min(axis=1)
    assert distance.max() < 1.5  # level-0 px
    area = np.pi * 20**2
    assert np.all(np.abs(cells["area"] - area) / area < 0.15)  # areas in level-0 px^2
    contour = cells["contour"].iloc[0]
    assert np.abs(np.hypot(*(contour - cells[["x", "y"]].to_numpy()[0]).T) - 20).max() < 3


def test_resamples_when_no_level_fits(tmp_path):
    rng = np.random.default_rng(4)
    centres = np.array([(x, y) for x in range(40, 600, 80) for y in range(40, 600, 80)], float)
    centres += rng.uniform(-8, 8, centres.shape)
    reader = ArrayReader([_he_image(600, centres, radius_px=13)])  # 0.33 um/px, no pyramid
    summary = analyze_slide(reader=reader, stain="he", segmenter=ClassicalSegmenter(), out_dir=tmp_path / "run",
                            mpp=0.33, tile_um=100, overlap_um=16)
    assert summary.read_level == 0 and abs(summary.analysis_mpp - 0.5) < 1e-9
    cells = read_cells(path=tmp_path / "run" / "cells.parquet")
    assert len(cells) == len(centres)
    distance = np.hypot(*(centres[:, None] - cells[["x", "y"]].to_numpy()[None]).transpose(2, 0, 1)).min(axis=1)
    assert distance.max() < 2.0


# ----------------------------------------------------------------------------- real slide, phantom


def test_real_cmu1_small_region(shared_file, tmp_path):
    reader = OpenSlideReader(shared_file("slides/CMU-1-Small-Region.svs"))
    calls = []
    summary = analyze_slide(reader=reader, stain="he", segmenter=ClassicalSegmenter(), out_dir=tmp_path / "run",
                            mpp=0.499, progress=lambda done, total, message: calls.append((done, total, message)))
    run = tmp_path / "run"
    assert _leftovers(tmp_path, {"run"}) == []
    assert sorted(p.name for p in run.iterdir()) == ["cells.parquet", "qc.png", "summary.json", "tissue.png"]
    assert summary.slide_width == 2220 and summary.slide_height == 2967
    assert summary.n_tiles < summary.n_grid_tiles  # glass tiles skipped
    assert summary.n_cells > 500 and sum(summary.class_counts.values()) == summary.n_cells
    assert summary.segmenter["name"] == "classical-v1" and summary.segmenter["approximate"] is True
    assert summary.her2 is None and summary.warnings == []
    assert read_summary(run_dir=run)["n_cells"] == summary.n_cells
    cells = read_cells(path=run / "cells.parquet")
    assert len(cells) == summary.n_cells and cells["id"].is_unique
    assert cells["x"].between(0, 2220).all() and cells["y"].between(0, 2967).all()
    assert len(np.unique(np.round(cells[["x", "y"]].to_numpy(), 1), axis=0)) == len(cells)
    view = cells_in_rect(path=run / "cells.parquet", x0=800, y0=800, x1=1600, y1=1600)
    assert 0 < len(view) < len(cells)
    assert table_metadata(path=run / "cells.parquet")["segmenter"] == "classical-v1"
    done = [c[0] for c in calls]
    assert done == sorted(done) and calls[-1][0] == calls[-1][1] and "done" in calls[-1][2]
    mask = np.asarray(Image.open(run / "tissue.png"))
    assert mask.dtype == np.uint8 and 0.2 < (mask > 0).mean() < 0.7
    # QC (issue 14 item 20): the blue-green ink flecks at the tissue's edge are found and excluded,
    # no nucleus is kept on them, and the analysed tiles are listed.
    qc = np.asarray(Image.open(run / "qc.png"))
    assert qc.shape == mask.shape and set(np.unique(qc)) <= {0, 1, 2, 3}
    assert 0.001 < summary.qc["pen_fraction"] < 0.05 and (qc == 2).mean() == summary.qc["pen_fraction"]
    assert not ((qc == 2) & (mask > 0)).any()  # ink is cut out of the tissue mask
    ds = summary.tissue["downsample"]
    on_pen = qc[(cells["y"] / ds).astype(int).clip(0, qc.shape[0] - 1), (cells["x"] / ds).astype(int).clip(0, qc.shape[1] - 1)] == 2
    assert not on_pen.any()
    assert summary.qc["cells_on_pen"] > 0 and summary.qc["focus"] == "not assessed"
    assert len(summary.qc["tiles"]) == summary.n_tiles and all(len(t) == 4 for t in summary.qc["tiles"])


def test_ihc_run_on_a_phantom_scores_her2(tmp_path):
    from analysis.core.demo.phantom import generate_phantom_pair

    pair = generate_phantom_pair(out_dir=tmp_path / "phantom", width=1536, height=1536, seed=1, her2_score=3,
                                 name="p3")
    reader = OpenSlideReader(pair.ihc_path)
    summary = analyze_slide(reader=reader, stain="ihc", segmenter=IhcNucleusSegmenter(), out_dir=tmp_path / "run",
                            mpp=pair.mpp, tile_um=256)
    assert summary.n_tiles > 1 and summary.warnings == []
    assert summary.segmenter["name"] == "classical-ihc-v1"
    assert summary.segmenter["params"]["stain_vectors"] == np.round(summary.stain_vectors, 4).tolist()
    assert summary.stain_vectors is not None and summary.stain_estimate
    assert summary.her2 is not None and summary.her2["score"] == "3+"
    assert summary.her2_params["sectors"] == 16
    cells = read_cells(path=tmp_path / "run" / "cells.parquet")
    graded = cells["her2_class"].dropna()
    assert len(graded) > 0.8 * len(cells)
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["her2"]["rule"] == summary.her2["rule"]


def test_ihc_run_on_he_slide_warns(tmp_path):
    centres = np.array([(x, y) for x in range(30, 300, 60) for y in range(30, 300, 60)], float)
    reader = ArrayReader([_he_image(300, centres, radius_px=10)])
    summary = analyze_slide(reader=reader, stain="ihc", segmenter=ClassicalSegmenter(), out_dir=tmp_path / "run",
                            mpp=0.5)
    assert any("looks like H&E" in w for w in summary.warnings)
    assert any("H&E classical segmenter was used on IHC" in w for w in summary.warnings)


# ----------------------------------------------------------------------------- atomic output


def _small_reader() -> ArrayReader:
    centres = np.array([(x, y) for x in range(30, 400, 50) for y in range(30, 400, 50)], float)
    return ArrayReader([_he_image(400, centres, radius_px=10)])


def test_cancel_leaves_nothing_behind(tmp_path):
    asked = []

    def should_cancel() -> bool:
        asked.append(1)
        return len(asked) >= 3

    with pytest.raises(Cancelled, match="cancelled after 2"):
        analyze_slide(reader=_small_reader(), stain="he", segmenter=ClassicalSegmenter(), out_dir=tmp_path / "run",
                      mpp=0.5, tile_um=50, should_cancel=should_cancel)
    assert list(tmp_path.iterdir()) == []


def test_rerun_replaces_the_old_run_atomically(tmp_path):
    run = tmp_path / "run"
    first = analyze_slide(reader=_small_reader(), stain="he", segmenter=ClassicalSegmenter(), out_dir=run, mpp=0.5)
    (run / "stale.txt").write_text("from the old run")
    second = analyze_slide(reader=_small_reader(), stain="he", segmenter=ClassicalSegmenter(), out_dir=run, mpp=0.5,
                           tile_um=50)
    assert first.n_cells == second.n_cells == 64
    assert not (run / "stale.txt").exists()
    assert _leftovers(tmp_path, {"run"}) == []
    # A failing run leaves the published one untouched.
    with pytest.raises(ZeroDivisionError):
        analyze_slide(reader=_small_reader(), stain="he", segmenter=ClassicalSegmenter(), out_dir=run, mpp=0.5,
                      progress=lambda done, total, message: 1 / 0 if done else None)
    assert read_summary(run_dir=run)["tile_px"] == 100
    assert _leftovers(tmp_path, {"run"}) == []


def test_no_tissue_raises_and_leaves_nothing(tmp_path):
    blank = ArrayReader([np.full((300, 300, 3), 250, np.uint8)])
    with pytest.raises(NoTissueError):
        analyze_slide(reader=blank, stain="he", segmenter=ClassicalSegmenter(), out_dir=tmp_path / "run", mpp=0.5)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, message", [
    ({"stain": "pas"}, "stain"),
    ({"mpp": 0}, "mpp"),
    ({"tile_um": 0}, "tile_um"),
    ({"out_dir": Path("/nonexistent/dir/run")}, "parent"),
])
def test_bad_arguments(tmp_path, kwargs, message):
    args = {"reader": _small_reader(), "stain": "he", "segmenter": ClassicalSegmenter(),
            "out_dir": tmp_path / "run", "mpp": 0.5, **kwargs}
    with pytest.raises(WsiAnalysisError, match=message):
        analyze_slide(**args)


# ----------------------------------------------------------------------------- two-phase segmenters


@pytest.fixture(scope="module")
def nucleus_model():
    from analysis.core.cells.segmentation.nucleus_model.segmenter import NucleusModelSegmenter

    return NucleusModelSegmenter()


@pytest.fixture(scope="module")
def her2st_reader(shared_file):
    Image.MAX_IMAGE_PIXELS = None
    section = np.asarray(Image.open(shared_file("slides/her2st-C2-HE.jpg")).convert("RGB"))
    return lambda: ArrayReader([np.ascontiguousarray(section[5000:5900, 5200:6100])])  # tumour nests and stroma


def test_the_network_overlapped_with_post_processing_gives_the_sequential_cells(tmp_path, nucleus_model, her2st_reader):
    """The nucleus model runs the next tile's network in a thread while this tile is post-processed:
    the same cells, ids, classes and outlines as one tile after another, on real tissue."""
    from analysis.core.cells.segmentation.base import is_two_phase

    assert is_two_phase(nucleus_model) and not is_two_phase(OnePhaseView(nucleus_model))
    runs = {}
    for name, segmenter in (("overlapped", nucleus_model), ("sequential", OnePhaseView(nucleus_model))):
        summary = analyze_slide(reader=her2st_reader(), stain="he", segmenter=segmenter, out_dir=tmp_path / name,
                                mpp=0.7, tile_um=150)
        assert summary.n_tiles >= 4  # several tiles, so the overlap happens
        runs[name] = read_cells(path=tmp_path / name / "cells.parquet")
    a, b = runs["overlapped"], runs["sequential"]
    assert len(a) > 500 and len(a) == len(b)
    for column in ("id", "x", "y", "cls", "prob"):
        assert (a[column].to_numpy() == b[column].to_numpy()).all(), column


def test_a_cancelled_or_failing_network_pass_stops_the_overlapped_run_cleanly(tmp_path, nucleus_model, her2st_reader):
    asked = []
    with pytest.raises(Cancelled, match="cancelled after 2"):
        analyze_slide(reader=her2st_reader(), stain="he", segmenter=nucleus_model, out_dir=tmp_path / "run",
                      mpp=0.7, tile_um=150, should_cancel=lambda: asked.append(1) or len(asked) >= 3)
    assert list(tmp_path.iterdir()) == []

    class Failing(OnePhaseView):
        calls = 0

        def predict(self, *, rgb, mpp):
            Failing.calls += 1
            if Failing.calls == 3:
                raise RuntimeError("network failed on tile 3")
            return self._segmenter.predict(rgb=rgb, mpp=mpp)

        def finish(self, prediction):
            return self._segmenter.finish(prediction)

    with pytest.raises(RuntimeError, match="network failed on tile 3"):
        analyze_slide(reader=her2st_reader(), stain="he", segmenter=Failing(nucleus_model), out_dir=tmp_path / "run",
                      mpp=0.7, tile_um=150)
    assert list(tmp_path.iterdir()) == []
