"""HER2 membrane grading (QuPath-style ring + sectors) and the ASCO/CAP slide score."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from analysis.core.cells import stain as stain_mod
from analysis.core.cells.classes import Her2Class
from analysis.core.her2.grading import (
    Her2InputError,
    Her2Params,
    NoTumourCellsError,
    asco_cell_category,
    classify_membranes,
    grade_her2_image,
    grade_membranes,
    h_score,
    her2_slide_score,
    keep_tumour_grades,
    score_cells,
)

MPP = 0.5
SC, SI, WC, WI, NC, NI = (c.value for c in Her2Class)


# ----------------------------------------------------------------------------- synthetic cells


def _draw_cells(cells: list[dict], *, size: int = 200) -> tuple[np.ndarray, pd.DataFrame]:
    """Beer-Lambert H-DAB image (Ruifrok vectors, log10 OD as stain.py): hematoxylin disk
    nuclei of radius 4 um, DAB membrane line (1 um wide) at radius 7 um over `arc` of the
    circumference with peak OD `od`."""
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    h = np.zeros((size, size))
    dab = np.zeros((size, size))
    rows = []
    for c in cells:
        r = np.hypot(xx - c["x"], yy - c["y"])
        phi = np.arctan2(yy - c["y"], xx - c["x"])
        h += 0.6 * (r <= 4 / MPP)
        in_arc = (np.mod(phi - c.get("start", 0.0), 2 * np.pi) <= 2 * np.pi * c["arc"] + 1e-9)
        dab += c["od"] * np.exp(-0.5 * ((r - 7 / MPP) / (0.5 / MPP)) ** 2) * in_arc
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        rows.append({"x": c["x"], "y": c["y"],
                     "contour": np.c_[c["x"] + 4 / MPP * np.cos(t), c["y"] + 4 / MPP * np.sin(t)]})
    od = h[..., None] * stain_mod.HDAB_DEFAULT.vectors[0] + dab[..., None] * stain_mod.HDAB_DEFAULT.vectors[1]
    rgb = np.clip(np.rint(255 * 10 ** (-od)), 0, 255).astype(np.uint8)
    return rgb, pd.DataFrame(rows)


def test_complete_and_half_rings_are_measured_as_drawn():
    spec = [
        {"x": 50, "y": 50, "od": 0.5, "arc": 1.0},
        {"x": 150, "y": 50, "od": 0.5, "arc": 0.5},
        {"x": 50, "y": 150, "od": 0.12, "arc": 1.0},
        {"x": 150, "y": 150, "od": 0.0, "arc": 1.0},
    ]
    rgb, nuclei = _draw_cells(spec)
    g = grade_membranes(rgb=rgb, mpp=MPP, nuclei=nuclei, params=Her2Params(expand_um=6))
    assert g["her2_completeness"].iloc[0] == 1.0
    assert 0.4 <= g["her2_completeness"].iloc[1] <= 0.6
    # The brightest quarter of the ring sits on the membrane line: close to its peak.
    assert 0.35 <= g["her2_stained_od"].iloc[0] <= 0.5
    assert 0.08 <= g["her2_stained_od"].iloc[2] <= 0.12
    assert g["her2_class"].tolist() == [SC, SI, WC, NI]


def test_ring_only_reaches_as_far_as_expansion():
    rgb, nuclei = _draw_cells([{"x": 100, "y": 100, "od": 0.5, "arc": 1.0}])
    # Cell boundary 1.5 um beyond the 4 um nucleus: the membrane at 7 um (sigma 0.5 um) is outside.
    g = grade_membranes(rgb=rgb, mpp=MPP, nuclei=nuclei, params=Her2Params(expand_um=1.5, membrane_um=1.5))
    assert g["her2_class"].iloc[0] == NI


def test_neighbour_membrane_does_not_complete_an_incomplete_cell():
    # Strong complete neighbour 13 um away; the cell itself has a strong 40 % arc facing away.
    spec = [{"x": 60, "y": 100, "od": 0.5, "arc": 0.4, "start": np.pi * 0.8},
            {"x": 60 + 13 / MPP, "y": 100, "od": 0.5, "arc": 1.0}]
    rgb, nuclei = _draw_cells(spec)
    g = grade_membranes(rgb=rgb, mpp=MPP, nuclei=nuclei)
    assert g["her2_class"].tolist() == [SI, SC]


def test_empty_and_squeezed_cells():
    rgb = np.full((50, 50, 3), 255, np.uint8)
    empty = grade_membranes(rgb=rgb, mpp=MPP, nuclei=pd.DataFrame({"x": [], "y": [], "contour": []}))
    assert list(empty.columns) == ["her2_od", "her2_stained_od", "her2_completeness", "her2_class"]
    assert len(empty) == 0
    # A nucleus covering the whole tile leaves no ring: ungraded, not null.
    square = np.array([[0, 0], [49, 0], [49, 49], [0, 49]])
    g = grade_membranes(rgb=rgb, mpp=MPP, nuclei=pd.DataFrame({"x": [25.0], "y": [25.0], "contour": [square]}))
    assert g["her2_class"].iloc[0] is None and np.isnan(g["her2_od"].iloc[0])


@pytest.mark.parametrize("kwargs, message", [
    ({"rgb": np.zeros((10, 10), np.uint8)}, "RGB"),
    ({"mpp": -1}, "mpp"),
    ({"nuclei": pd.DataFrame({"x": [1.0]})}, "contour"),
    ({"stain_matrix": stain_mod.HE_DEFAULT}, "dab"),
])
def test_bad_grading_input(kwargs, message):
    args = {"rgb": np.zeros((10, 10, 3), np.uint8), "mpp": MPP,
            "nuclei": pd.DataFrame({"x": [], "y": [], "contour": []}), **kwargs}
    with pytest.raises(Her2InputError, match=message):
        grade_membranes(**args)


def test_bad_params():
    with pytest.raises(Her2InputError, match="faint_od <= weak_od"):
        Her2Params(faint_od=0.3, weak_od=0.2)
    with pytest.raises(Her2InputError, match="sectors"):
        Her2Params(sectors=2)


def test_classify_membranes_thresholds():
    p = Her2Params()
    od = [p.strong_od, p.strong_od, p.weak_od, p.weak_od - 1e-6, 0.0, np.nan]
    comp = [p.complete_fraction, p.complete_fraction - 0.01, 1.0, 1.0, 0.0, 1.0]
    assert classify_membranes(stained_od=od, completeness=comp, params=p).tolist() == [SC, SI, WC, NC, NI, None]


# ----------------------------------------------------------------------------- ASCO/CAP score


def _classes(**counts) -> list:
    names = {"sc": SC, "si": SI, "wc": WC, "wi": WI, "nc": NC, "ni": NI}
    return [names[k] for k, n in counts.items() for _ in range(n)]


@pytest.mark.parametrize("counts, score, category", [
    ({"sc": 11, "ni": 89}, "3+", "HER2-positive"),
    ({"sc": 10, "ni": 90}, "0", "HER2-ultralow"),  # exactly 10 % is not > 10 %
    ({"sc": 6, "wc": 5, "ni": 89}, "2+", "HER2-equivocal"),
    ({"wc": 11, "ni": 89}, "2+", "HER2-equivocal"),
    ({"wc": 10, "ni": 90}, "0", "HER2-ultralow"),
    ({"wi": 8, "si": 3, "wc": 2, "ni": 87}, "1+", "HER2-low"),
    ({"wi": 5, "wc": 5, "nc": 40, "ni": 50}, "0", "HER2-ultralow"),
    ({"nc": 60, "ni": 40}, "0", "HER2-null"),
    ({"ni": 20}, "0", "HER2-null"),
])
def test_asco_cap_rules(counts, score, category):
    result = her2_slide_score(her2_class=_classes(**counts))
    assert (result.score, result.category) == (score, category)
    assert result.her2_low == (score in ("1+", "2+"))
    assert result.needs_ish == (score == "2+")
    assert result.ultralow == (category == "HER2-ultralow")
    assert abs(sum(result.percent.values()) - 100) < 1e-9
    assert abs(sum(result.class_percent.values()) - 100) < 1e-9
    assert result.rule.startswith(score)
    assert "Wolff" in result.citation


def test_score_reports_the_deciding_percentages_and_ignores_ungraded():
    result = her2_slide_score(her2_class=_classes(sc=30, wi=20, ni=50) + [None, np.nan])
    assert result.n_cells == 100
    assert result.percent == {"3+": 30.0, "2+": 0.0, "1+": 20.0, "0": 50.0}
    assert "30.0% > 10%" in result.rule


def test_asco_categories_match_phantom_reading():
    from analysis.core.demo.phantom import expected_her2_score

    rng = np.random.default_rng(0)
    for _ in range(200):
        counts = dict(zip(["sc", "si", "wc", "wi", "nc", "ni"], rng.integers(0, 30, 6)))
        classes = _classes(**counts)
        if not classes:
            continue
        ours = her2_slide_score(her2_class=classes).score
        theirs = expected_her2_score(counts={Her2Class(c): classes.count(c) for c in set(classes)})
        assert ours == ("0", "1+", "2+", "3+")[theirs]
    assert asco_cell_category(her2_class=[SC, WC, SI, WI, NC, NI]).tolist() == ["3+", "2+", "1+", "1+", "0", "0"]


def test_score_errors():
    with pytest.raises(NoTumourCellsError):
        her2_slide_score(her2_class=[])
    with pytest.raises(NoTumourCellsError, match="only 19 graded"):
        her2_slide_score(her2_class=[SC] * 19 + [None] * 30)
    assert her2_slide_score(her2_class=[SC] * 3, min_cells=1).score == "3+"
    with pytest.raises(NoTumourCellsError):
        score_cells(cells=pd.DataFrame({"cls": ["stroma"], "her2_class": [SC]}))
    with pytest.raises(Her2InputError, match="unknown HER2"):
        her2_slide_score(her2_class=["mega"])


# ----------------------------------------------------------------------------- phantoms


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    from analysis.core.demo.phantom import generate_phantom_pair

    out = tmp_path_factory.mktemp("phantoms")
    return {score: generate_phantom_pair(out_dir=out, width=2048, height=2048, seed=seed, her2_score=score,
                                         name=f"p{score}")
            for score, seed in ((1, 3), (2, 4))}


def _phantom_ihc(pair):
    import openslide
    import pyarrow.parquet as pq

    slide = openslide.OpenSlide(str(pair.ihc_path))
    rgb = np.asarray(slide.read_region((0, 0), 0, slide.dimensions).convert("RGB"))
    return rgb, pq.read_table(pair.truth_path).to_pandas()


@pytest.mark.parametrize("score", [1, 2])
def test_phantom_grades_at_least_95_percent_right(phantoms, score):
    """Grader on the phantom's tumour nuclei (drawn position and radius): >= 95 % right.

    The nuclei come from the truth so that this measures the membrane grading alone;
    segmentation quality is tested with the segmenter (and end to end below)."""
    rgb, truth = _phantom_ihc(phantoms[score])
    estimate = stain_mod.estimate_stain_matrix(rgb=rgb, default=stain_mod.HDAB_DEFAULT)
    tumour = truth[truth["cls"] == "tumour"]
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    nuclei = pd.DataFrame({
        "x": tumour["ihc_x"].to_numpy(), "y": tumour["ihc_y"].to_numpy(),
        "contour": [np.c_[x + r / MPP * np.cos(t), y + r / MPP * np.sin(t)]
                    for x, y, r in zip(tumour["ihc_x"], tumour["ihc_y"], tumour["radius_um"])],
    })
    graded = grade_membranes(rgb=rgb, mpp=MPP, nuclei=nuclei, stain_matrix=estimate.matrix)
    truth_classes = tumour["her2_class"].to_numpy()
    accuracy = float((graded["her2_class"].to_numpy() == truth_classes).mean())
    assert len(set(truth_classes)) >= 4  # several grades present, not one
    assert accuracy >= 0.95, pd.crosstab(truth_classes, graded["her2_class"].to_numpy())
    assert her2_slide_score(her2_class=graded["her2_class"]).score == f"{score}+"


def test_phantom_end_to_end_with_classical_nuclei(phantoms):
    """Whole pipeline (Macenko, segment_ihc_nuclei, grading): detected tumour nuclei that
    match a drawn tumour cell are graded >= 90 % right (measured 96 %)."""
    from scipy.spatial import cKDTree

    rgb, truth = _phantom_ihc(phantoms[1])
    result = grade_her2_image(rgb=rgb, mpp=MPP)
    assert result.stain.matrix.names[:2] == ("hematoxylin", "dab")
    tumour = truth[truth["cls"] == "tumour"]
    distance, index = cKDTree(result.cells[["x", "y"]].to_numpy()).query(tumour[["ihc_x", "ihc_y"]].to_numpy())
    matched = distance < 4 / MPP
    assert matched.sum() > 100
    graded = result.cells["her2_class"].to_numpy()[index[matched]]
    assert float((graded == tumour["her2_class"].to_numpy()[matched]).mean()) >= 0.90


# ----------------------------------------------------------------------------- real IHC images


def test_real_skimage_ihc_gives_sane_fractions(shared_file):
    rgb = np.asarray(Image.open(shared_file("ihc/skimage-ihc.png")).convert("RGB"))
    result = grade_her2_image(rgb=rgb, mpp=0.5)
    cells = result.cells
    assert len(cells) > 50
    graded = cells["her2_class"].dropna()
    tumour = cells["cls"] == "tumour"
    assert len(graded) > 0.8 * tumour.sum()
    assert cells.loc[~tumour, "her2_class"].isna().all()  # ASCO/CAP: tumour cells only
    assert set(graded) <= {c.value for c in Her2Class}
    assert cells["her2_completeness"].dropna().between(0, 1).all()
    assert (cells["her2_od"].dropna() >= 0).all() and (cells["her2_od"].dropna() < 2.5).all()
    # A brown-stained image (FHL2, 62 % brown pixels): most cells carry DAB at the membrane.
    assert (graded != NI).mean() > 0.3
    assert result.score is not None and result.score.n_cells > 20
    assert abs(sum(result.score.percent.values()) - 100) < 1e-9


def test_real_kidney_ihc_runs(shared_file):
    # A small section on a large field of glass at low magnification: no nuclei resolve,
    # and the result says so instead of inventing a score.
    rgb = np.asarray(Image.open(shared_file("ihc/kidney-ihc-48-5.tif")).convert("RGB"))
    result = grade_her2_image(rgb=rgb, mpp=0.5)
    assert len(result.cells) < 20
    assert result.score is None


# ----------------------------------------------------------------------------- tumour cells only


def test_only_tumour_cells_are_graded():
    """A stained ring around a fibroblast nucleus is not graded (ASCO/CAP score tumour cells);
    the tumour cell beside it keeps its grade, measured with the fibroblast present."""
    rgb, nuclei = _draw_cells([{"x": 50, "y": 100, "arc": 1.0, "od": 0.5},
                               {"x": 150, "y": 100, "arc": 1.0, "od": 0.5}])
    nuclei["cls"] = ["tumour", "stroma"]
    graded = pd.concat([nuclei, grade_membranes(rgb=rgb, mpp=MPP, nuclei=nuclei)], axis=1)
    assert graded["her2_class"].tolist() == [SC, SC]  # measured alike
    kept = keep_tumour_grades(graded)
    assert kept["her2_class"].tolist() == [SC, None]
    assert np.isnan(kept.loc[1, ["her2_od", "her2_stained_od", "her2_completeness"]].astype(float)).all()
    assert kept.loc[0, "her2_od"] == graded.loc[0, "her2_od"]
    assert graded["her2_class"].tolist() == [SC, SC]  # the input is not changed
    with pytest.raises(Her2InputError):
        keep_tumour_grades(nuclei.drop(columns=["cls"]))


def test_h_score():
    # strong 3, weak 2, faint complete 1, none 0; ungraded cells left out.
    assert h_score(her2_class=[SC, WI, NC, NI, None]) == pytest.approx((3 + 2 + 1 + 0) * 100 / 4)
    assert h_score(her2_class=[SC] * 5) == 300.0
    assert h_score(her2_class=[NI, NI]) == 0.0
    assert h_score(her2_class=[None, float("nan")]) is None
    with pytest.raises(Her2InputError):
        h_score(her2_class=["purple"])


def test_named_threshold_sets():
    from analysis.core.her2.grading import HER2_THRESHOLD_SETS, her2_params_named

    assert her2_params_named("phantom") == Her2Params()
    bci = her2_params_named("bci-provisional")
    assert (bci.faint_od, bci.weak_od, bci.strong_od) == (0.06, 0.18, 0.60) and set(HER2_THRESHOLD_SETS) == {"phantom", "bci-provisional"}
    with pytest.raises(Her2InputError, match="bci-provisional"):
        her2_params_named("lab-x")


# ----------------------------------------------------------------------------- membrane ring


def test_ring_band_by_dilation_is_the_distance_transforms_band(shared_file):
    """`within_distance` (one dilation) selects exactly the pixels the Euclidean distance
    transform puts closer than the radius: on random masks, image borders and fractional radii,
    and on the cell boundaries of a real IHC image."""
    from scipy import ndimage as ndi
    from skimage.segmentation import expand_labels, find_boundaries

    from analysis.core.cells.segmentation.classical import segment_ihc_nuclei
    from analysis.core.her2.grading import rasterize_nuclei, within_distance

    rng = np.random.default_rng(0)
    masks = [rng.random((97, 131)) < p for p in (0.002, 0.02, 0.2)]
    rgb = np.asarray(Image.open(shared_file("ihc/skimage-ihc.png")).convert("RGB"))
    nuclei = segment_ihc_nuclei(rgb=rgb, mpp=MPP)
    labels = expand_labels(rasterize_nuclei(shape=rgb.shape[:2], contours=nuclei["contour"]), distance=4 / MPP)
    masks.append(find_boundaries(labels, mode="inner"))
    assert len(nuclei) > 30 and masks[-1].sum() > 1000
    for mask in masks:
        for radius in (0.5, 1.0, 2.0, 2 / 0.499, 3.7, 6.0):
            expected = ndi.distance_transform_edt(~mask) < radius
            assert np.array_equal(within_distance(mask, radius), expected), (mask.mean(), radius)
