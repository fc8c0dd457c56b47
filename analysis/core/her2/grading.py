"""HER2 IHC membrane grading per cell and the ASCO/CAP slide score.

Per-cell method (the open QuPath-style method of DESIGN.md 2.2; docs/her2.md):

1. H-DAB colour deconvolution (Ruifrok & Johnston 2001; analysis.core.cells.stain), with the
   slide's own stain vectors when the caller estimated them (Macenko), giving the DAB
   concentration in optical-density (OD) units per pixel.
2. Nuclei on hematoxylin (analysis.core.cells.segmentation.classical.segment_ihc_nuclei or any
   segmenter's contours), rasterised into a label image.
3. Cell = nucleus expanded by `expand_um` (QuPath's "cell expansion", default 5 um there;
   skimage.segmentation.expand_labels, which splits the gap between neighbours at the
   midpoint as QuPath's Voronoi-limited expansion does).
4. Membrane = the outer ring of the cell, `membrane_um` wide (pixels of the cell within
   that distance of the cell's boundary, nucleus pixels excluded).
5. The ring is cut into `sectors` equal angular sectors around the nucleus centroid. The
   membrane is a ~1 um line somewhere in the ring (expansion only guesses the true cell
   size), so a sector's membrane intensity is the mean DAB OD of its brightest
   `membrane_top_fraction` of ring pixels. A sector is stained when that intensity is
   >= faint_od and >= relative_od x the cell's own membrane intensity (its 3 brightest
   sectors), so that a neighbour's membrane bleeding over the boundary does not make an
   incomplete cell complete. Per cell: her2_completeness = stained / measured sectors;
   her2_stained_od = mean intensity of the stained sectors (the intensity of what is
   stained, which is what the ASCO/CAP intensity words describe; 0 when none);
   her2_od = mean over all sectors (QuPath's "Membrane: DAB OD mean" analogue).
6. Class (analysis.core.cells.classes.Her2Class): intensity strong (stained_od >= strong_od),
   weak (>= weak_od) or null (below weak: faint or none) x complete (completeness >=
   complete_fraction) or incomplete. Thresholds and their calibration: docs/her2.md.

Slide score: ASCO/CAP HER2 testing guideline, Wolff AC et al., J Clin Oncol 2018;36:
2105-2122 ("Human Epidermal Growth Factor Receptor 2 Testing in Breast Cancer: ASCO/CAP
Clinical Practice Guideline Focused Update"), and the 2023 update (Wolff AC et al., J Clin
Oncol 2023;41:3867-3872, affirming 2018 and defining reporting of HER2-low / 0), with
the CAP 2023 template's "HER2-ultralow" (IHC 0 with faint/barely perceptible incomplete
staining in >0 % and <=10 % of tumour cells). See `her2_slide_score`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable

import numpy as np
import pandas as pd

from analysis.core.cells import stain as stain_mod
from analysis.core.cells.classes import CellClass, Her2Class

HER2_COLUMNS = ("her2_od", "her2_stained_od", "her2_completeness", "her2_class")


class Her2InputError(ValueError):
    """An image, nucleus table or parameter set the grader cannot use."""


class NoTumourCellsError(Her2InputError):
    """A slide score was asked for, but no (or too few) graded tumour cells exist."""


@dataclass(frozen=True)
class Her2Params:
    """Membrane grading parameters; lengths in micrometres, intensities in DAB OD units.

    OD thresholds are in log10 DAB optical density (as QuPath reports them) of the
    membrane line (the brightest quarter of the ring per sector). They sit at the
    geometric midpoints between the levels measured on the analysis.core.demo.phantom
    membranes (none ~0.006, faint null-complete ring ~0.03, weak ~0.11, strong ~0.35;
    docs/her2.md), so that strong / weak / faint / none separate as drawn. They are
    settings, not truths: calibrate them per laboratory and antibody against pathologist
    scores (QuPath's generic cell DAB defaults, 0.2 / 0.4 / 0.6, are for whole-cell means
    of brighter stains and are not comparable).
    """

    expand_um: float = 5.0  # nucleus -> cell (QuPath's default cell expansion)
    membrane_um: float = 4.0  # width of the ring, inward from the cell boundary
    sectors: int = 16  # angular sectors for completeness
    faint_od: float = 0.02  # a sector is stained at or above this membrane DAB OD
    weak_od: float = 0.06  # stained-membrane OD at or above: weak-to-moderate
    strong_od: float = 0.20  # stained-membrane OD at or above: strong (intense)
    complete_fraction: float = 0.75  # stained / measured sectors at or above: complete
    # A sector is stained when it reaches faint_od AND this fraction of the cell's own
    # membrane intensity (its 3 brightest sectors): a neighbour's membrane bleeding over the
    # boundary must not make an incomplete cell look complete.
    relative_od: float = 0.5
    membrane_top_fraction: float = 0.25  # per sector, the brightest quarter of ring pixels
    min_ring_pixels: int = 8  # fewer ring pixels: cell not graded (her2_class null)

    def __post_init__(self) -> None:
        if not (self.expand_um > 0 and self.membrane_um > 0):
            raise Her2InputError("expand_um and membrane_um must be > 0")
        if self.sectors < 4:
            raise Her2InputError(f"sectors must be >= 4, got {self.sectors}")
        if not (0 <= self.faint_od <= self.weak_od <= self.strong_od):
            raise Her2InputError(
                f"need 0 <= faint_od <= weak_od <= strong_od, got {self.faint_od}, {self.weak_od}, {self.strong_od}"
            )
        if not 0 < self.membrane_top_fraction <= 1:
            raise Her2InputError(f"membrane_top_fraction must be in (0, 1], got {self.membrane_top_fraction}")
        if not 0 < self.complete_fraction <= 1:
            raise Her2InputError(f"complete_fraction must be in (0, 1], got {self.complete_fraction}")


# Named threshold sets (LADDER_HER2_THRESHOLDS). "phantom" (default): the midpoints of the phantom's
# drawn levels (Her2Params' defaults). "bci-provisional": the same set x 3, the uniform scaling that
# agreed best with the pathologists' slide scores of 8 real BCI HER2 patches (benchmarks/her2_bci.py:
# 5/8 exact, 8/8 within one step, against 2/8 and 5/8 for "phantom"; docs/her2.md). Real scans put
# unstained membranes at 0.05-0.09 OD (background, JPEG), above the phantom set's weak level. Eight
# patches with slide-level labels are too few to make it the default: calibrate per laboratory.
HER2_THRESHOLD_SETS = {
    "phantom": Her2Params(),
    "bci-provisional": Her2Params(faint_od=0.06, weak_od=0.18, strong_od=0.60),
}


def her2_params_named(name: str) -> Her2Params:
    """The named threshold set (HER2_THRESHOLD_SETS); Her2InputError for an unknown name."""
    try:
        return HER2_THRESHOLD_SETS[name]
    except KeyError:
        raise Her2InputError(f"unknown HER2 threshold set {name!r}; choose from {', '.join(HER2_THRESHOLD_SETS)}") from None


def rasterize_nuclei(*, shape: tuple[int, int], contours: Iterable) -> np.ndarray:
    """Label image (int32, 0 = background) with nucleus i filled as label i + 1.

    Filled with OpenCV's fillPoly (boundary pixels included, as the contours of
    segmentation/classical.py come from cv2.findContours on the label mask).
    """
    import cv2

    labels = np.zeros(shape, dtype=np.int32)
    for i, contour in enumerate(contours):
        pts = np.rint(np.asarray(contour, dtype=np.float64).reshape(-1, 2)).astype(np.int32)
        if len(pts) == 0:
            continue
        cv2.fillPoly(labels, [pts.reshape(-1, 1, 2)], color=int(i + 1))
    return labels


def classify_membranes(
    *, stained_od: np.ndarray, completeness: np.ndarray, params: Her2Params = Her2Params()
) -> np.ndarray:
    """Her2Class value per cell from the stained-membrane OD and completeness (None if NaN)."""
    stained_od = np.asarray(stained_od, dtype=np.float64)
    completeness = np.asarray(completeness, dtype=np.float64)
    complete = completeness >= params.complete_fraction
    strong = stained_od >= params.strong_od
    weak = (stained_od >= params.weak_od) & ~strong
    out = np.select(
        [strong & complete, strong, weak & complete, weak, complete],
        [Her2Class.STRONG_COMPLETE.value, Her2Class.STRONG_INCOMPLETE.value,
         Her2Class.WEAK_COMPLETE.value, Her2Class.WEAK_INCOMPLETE.value, Her2Class.NULL_COMPLETE.value],
        default=Her2Class.NULL_INCOMPLETE.value,
    ).astype(object)
    out[~(np.isfinite(stained_od) & np.isfinite(completeness))] = None
    return out


@dataclass(frozen=True)
class MembraneSectors:
    """Per-cell, per-sector membrane measurements of one tile (n cells x `sectors`)."""

    sums: np.ndarray  # sum of DAB OD over the sector's membrane pixels
    counts: np.ndarray  # number of membrane pixels in the sector (0: sector not measured)
    ring_pixels: np.ndarray  # (n,) ring pixels per cell before the top-fraction pick


def _check_tile(*, rgb: np.ndarray, mpp: float, nuclei: pd.DataFrame, stain_matrix) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3 or rgb.dtype != np.uint8:
        raise Her2InputError(f"expected an (H, W, 3) uint8 RGB tile, got shape {rgb.shape} dtype {rgb.dtype}")
    if mpp is None or not np.isfinite(mpp) or mpp <= 0:
        raise Her2InputError(f"mpp must be a positive resolution in um/px, got {mpp!r}")
    missing = [c for c in ("x", "y", "contour") if c not in nuclei.columns]
    if missing:
        raise Her2InputError(f"nuclei frame lacks column(s) {missing}")
    if "dab" not in stain_matrix.names:
        raise Her2InputError(f"stain matrix has no 'dab' stain (stains: {', '.join(stain_matrix.names)})")
    return rgb


def within_distance(mask: np.ndarray, radius: float) -> np.ndarray:
    """Pixels whose Euclidean distance to the nearest True pixel of `mask` is < `radius`.

    The same set as `ndi.distance_transform_edt(~mask) < radius`, to the last pixel (the disk
    of offsets is tested with the same float64 square root), but by one dilation with that
    disk: a few milliseconds instead of a full distance transform per tile (~80 ms on 2,300 px).
    """
    import cv2

    reach = int(np.ceil(radius))
    dy, dx = np.mgrid[-reach:reach + 1, -reach:reach + 1]
    disk = (np.sqrt((dy * dy + dx * dx).astype(np.float64)) < radius).astype(np.uint8)
    # outside the image counts as nothing (dilation's default border), as for the distance transform
    return cv2.dilate(mask.astype(np.uint8), disk).astype(bool)


def membrane_sectors(
    *,
    rgb: np.ndarray,
    mpp: float,
    nuclei: pd.DataFrame,
    stain_matrix: stain_mod.StainMatrix = stain_mod.HDAB_DEFAULT,
    params: Her2Params = Her2Params(),
) -> MembraneSectors:
    """Steps 1-5 of the module docstring up to the per-sector membrane sums."""
    from skimage.segmentation import expand_labels, find_boundaries

    rgb = _check_tile(rgb=rgb, mpp=mpp, nuclei=nuclei, stain_matrix=stain_matrix)
    n, s = len(nuclei), params.sectors
    if n == 0:
        return MembraneSectors(sums=np.zeros((0, s)), counts=np.zeros((0, s), np.int64), ring_pixels=np.zeros(0, np.int64))
    # DAB concentration; negatives are noise outside the stain cone, not negative stain.
    dab = np.maximum(stain_mod.stain_channel(rgb=rgb[..., :3], stain="dab", stain_matrix=stain_matrix), 0)
    nuclei_labels = rasterize_nuclei(shape=rgb.shape[:2], contours=nuclei["contour"])
    cells = expand_labels(nuclei_labels, distance=params.expand_um / mpp)
    boundary = find_boundaries(cells, mode="inner")
    # Boundary pixels have distance 0, so a ring `membrane_um` wide keeps distances < width.
    ring = (cells > 0) & (nuclei_labels == 0) & within_distance(boundary, params.membrane_um / mpp)
    rr, cc = np.nonzero(ring)
    lab = cells[rr, cc] - 1
    values = dab[rr, cc].astype(np.float64)
    cx = nuclei["x"].to_numpy(dtype=np.float64)
    cy = nuclei["y"].to_numpy(dtype=np.float64)
    angle = np.arctan2(rr - cy[lab], cc - cx[lab])
    sector = np.floor((angle + np.pi) / (2 * np.pi) * s).astype(np.int64) % s
    key = lab * s + sector
    ring_pixels = np.bincount(lab, minlength=n)
    # The membrane is a line ~1 um wide somewhere in the ring (where exactly depends on
    # the true cell size, which expansion only guesses): per sector, average the
    # brightest `membrane_top_fraction` of the ring's pixels, i.e. the membrane line.
    order = np.lexsort((-values, key))
    key_sorted, values_sorted = key[order], values[order]
    all_counts = np.bincount(key_sorted, minlength=n * s)
    starts = np.concatenate([[0], np.cumsum(all_counts)[:-1]])
    rank = np.arange(len(key_sorted)) - starts[key_sorted]
    top = rank < np.ceil(params.membrane_top_fraction * all_counts[key_sorted])
    sums = np.bincount(key_sorted[top], weights=values_sorted[top], minlength=n * s).reshape(n, s)
    counts = np.bincount(key_sorted[top], minlength=n * s).reshape(n, s)
    return MembraneSectors(sums=sums, counts=counts, ring_pixels=ring_pixels)


def summarize_sectors(*, sectors: MembraneSectors, params: Her2Params = Her2Params()) -> pd.DataFrame:
    """her2_od, her2_stained_od, her2_completeness and her2_class from sector sums (step 5-6)."""
    sums, counts = sectors.sums, sectors.counts
    with np.errstate(invalid="ignore", divide="ignore"):
        sector_mean = sums / counts
        measured = counts > 0
        # The cell's own membrane intensity: mean of its 3 brightest sectors.
        ranked = np.sort(np.where(measured, sector_mean, -np.inf), axis=1)[:, ::-1][:, :3]
        finite = np.isfinite(ranked)
        reference = np.where(finite, ranked, 0).sum(axis=1) / np.maximum(finite.sum(axis=1), 1)
        threshold = np.maximum(params.faint_od, params.relative_od * reference)
        stained = measured & (sector_mean >= threshold[:, None])
        completeness = stained.sum(axis=1) / measured.sum(axis=1)
        her2_od = sums.sum(axis=1) / counts.sum(axis=1)
        stained_sum = np.where(stained, sums, 0).sum(axis=1)
        stained_n = np.where(stained, counts, 0).sum(axis=1)
        stained_od = np.where(stained_n > 0, stained_sum / np.maximum(stained_n, 1), 0.0)
    ungraded = sectors.ring_pixels < params.min_ring_pixels
    for values in (her2_od, completeness, stained_od):
        values[ungraded] = np.nan
    return pd.DataFrame(
        {
            "her2_od": her2_od.astype(np.float32),
            "her2_stained_od": stained_od.astype(np.float32),
            "her2_completeness": completeness.astype(np.float32),
            "her2_class": classify_membranes(stained_od=stained_od, completeness=completeness, params=params),
        }
    )


def grade_membranes(
    *,
    rgb: np.ndarray,
    mpp: float,
    nuclei: pd.DataFrame,
    stain_matrix: stain_mod.StainMatrix = stain_mod.HDAB_DEFAULT,
    params: Her2Params = Her2Params(),
) -> pd.DataFrame:
    """Grade the membrane of every nucleus of one IHC tile.

    `nuclei` has x, y (centroid) and contour ((N, 2) [x, y]) in this tile's pixels.
    Returns a frame indexed like `nuclei` with her2_od, her2_stained_od,
    her2_completeness (float) and her2_class (Her2Class value; None, with NaN numbers,
    when the ring has fewer than `min_ring_pixels` pixels, e.g. a cell squeezed to
    nothing by its neighbours).
    """
    sectors = membrane_sectors(rgb=rgb, mpp=mpp, nuclei=nuclei, stain_matrix=stain_matrix, params=params)
    out = summarize_sectors(sectors=sectors, params=params)
    out.index = nuclei.index
    return out


def keep_tumour_grades(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells with their HER2 columns cleared (NaN / None: "not graded") where cls is not tumour.

    ASCO/CAP 2018/2023 score the membrane of invasive tumour cells only (Wolff et al. 2018,
    J Clin Oncol 36:2105, "percentage of tumour cells"); a fibroblast or lymphocyte next to a
    stained membrane is not HER2-null, it is not graded. Membranes are still measured with
    every nucleus present (the cell expansion of a tumour cell stops at its neighbours,
    whatever their class); only the grades of non-tumour cells are dropped.
    """
    missing = [c for c in ("cls", "her2_class") if c not in cells.columns]
    if missing:
        raise Her2InputError(f"cell frame lacks column(s) {missing}")
    out = cells.copy()
    other = (out["cls"].astype(object) != CellClass.TUMOUR.value).to_numpy()
    if other.any():
        for column in ("her2_od", "her2_stained_od", "her2_completeness"):
            if column in out.columns:
                out[column] = out[column].astype(np.float32)
                out.loc[other, column] = np.nan
        klass = out["her2_class"].astype(object).to_numpy(copy=True)
        klass[other] = None
        out["her2_class"] = klass
    return out


# --------------------------------------------------------------------------- slide score

ASCO_CAP_CITATION = (
    "Wolff AC et al. HER2 testing in breast cancer: ASCO/CAP clinical practice guideline focused "
    "update. J Clin Oncol 2018;36:2105-2122; ASCO/CAP guideline update, J Clin Oncol 2023;41:3867-3872"
)


@dataclass(frozen=True)
class Her2Score:
    """ASCO/CAP IHC score of a slide and the numbers that decided it."""

    score: str  # "0", "1+", "2+", "3+"
    category: str  # "HER2-positive", "HER2-equivocal", "HER2-low", "HER2-ultralow", "HER2-null"
    her2_low: bool  # IHC 1+ or 2+ (2+ counts as HER2-low only if ISH is negative)
    ultralow: bool  # IHC 0 with faint staining in >0 % and <= 10 % of tumour cells
    needs_ish: bool  # IHC 2+: reflex in-situ hybridisation
    rule: str  # the rule that fired, in the guideline's words with our numbers
    n_cells: int  # graded invasive tumour cells
    percent: dict = field(default_factory=dict)  # ASCO/CAP cell categories, % of n_cells
    class_percent: dict = field(default_factory=dict)  # Her2Class values, % of n_cells
    citation: str = ASCO_CAP_CITATION

    def to_dict(self) -> dict:
        return asdict(self)


def asco_cell_category(*, her2_class: Iterable) -> np.ndarray:
    """Per-cell ASCO/CAP category: "3+", "2+", "1+" or "0".

    3+: intense complete (strong_complete); 2+: weak-to-moderate complete (weak_complete);
    1+: incomplete staining above the weak threshold (weak_incomplete, strong_incomplete;
    our "weak" level spans the guideline's "faint/barely perceptible" to "moderate");
    0: null_complete / null_incomplete (membrane below the weak threshold), the same
    reading as analysis.core.demo.phantom.expected_her2_score.
    """
    klass = np.asarray(list(her2_class), dtype=object)
    return np.select(
        [klass == Her2Class.STRONG_COMPLETE.value,
         klass == Her2Class.WEAK_COMPLETE.value,
         np.isin(klass, [Her2Class.STRONG_INCOMPLETE.value, Her2Class.WEAK_INCOMPLETE.value])],
        ["3+", "2+", "1+"],
        default="0",
    ).astype(object)


def her2_slide_score(*, her2_class: Iterable, cutoff_percent: float = 10.0, min_cells: int = 20) -> Her2Score:
    """ASCO/CAP 2018 / 2023 IHC score from the graded invasive tumour cells of a slide.

    Pass only tumour cells (the guideline counts invasive tumour cells); ungraded cells
    (her2_class None / NaN) are left out. With p3, p2, p1 the percentages of cells in
    categories 3+, 2+, 1+ (asco_cell_category):
      3+  if p3 > 10 %  ("circumferential membrane staining that is complete, intense, in
          >10 % of tumour cells")
      2+  elif p3 + p2 > 10 %  ("weak to moderate complete membrane staining in >10 %"; intense
          complete cells below the 3+ cut-off count with them, as in the 2013 2+ definition)
      1+  elif p3 + p2 + p1 > 10 %  ("incomplete membrane staining that is faint/barely
          perceptible, in >10 %")
      0   otherwise ("no staining, or incomplete faint staining in <=10 %"); 2023 reporting:
          HER2-ultralow when 0 < p1 + p2 + p3 <= 10 %, HER2-null when no cell is stained.
    HER2-low = 1+ or 2+ (2+ provided ISH is negative: needs_ish).
    Fewer than `min_cells` graded cells raise NoTumourCellsError: the guideline sets no
    minimum, but a percentage of a handful of cells is noise, not a score.
    """
    klass = pd.Series(list(her2_class), dtype=object)
    klass = klass[klass.notna().to_numpy()]
    unknown = set(klass.unique()) - {c.value for c in Her2Class}
    if unknown:
        raise Her2InputError(f"unknown HER2 class(es) {sorted(map(str, unknown))}")
    n = len(klass)
    if n == 0:
        raise NoTumourCellsError("no graded tumour cells: the slide cannot be scored")
    if n < min_cells:
        raise NoTumourCellsError(f"only {n} graded tumour cells (need {min_cells}): the slide cannot be scored")
    cats = asco_cell_category(her2_class=klass)
    pct = {c: float((cats == c).sum() * 100.0 / n) for c in ("3+", "2+", "1+", "0")}
    class_pct = {c.value: float((klass == c.value).sum() * 100.0 / n) for c in Her2Class}
    p3, p2, p1 = pct["3+"], pct["2+"], pct["1+"]
    stained = p3 + p2 + p1
    cut = cutoff_percent
    if p3 > cut:
        score, category = "3+", "HER2-positive"
        rule = f"3+: complete intense membrane staining in {p3:.1f}% > {cut:g}% of tumour cells"
    elif p3 + p2 > cut:
        score, category = "2+", "HER2-equivocal"
        rule = (f"2+: weak-to-moderate complete membrane staining in {p3 + p2:.1f}% > {cut:g}% "
                f"(intense complete {p3:.1f}% <= {cut:g}%); reflex ISH")
    elif stained > cut:
        score, category = "1+", "HER2-low"
        rule = (f"1+: faint/barely perceptible or incomplete membrane staining in {stained:.1f}% > "
                f"{cut:g}% (complete staining {p3 + p2:.1f}% <= {cut:g}%)")
    elif stained > 0:
        score, category = "0", "HER2-ultralow"
        rule = f"0 (ultralow): faint incomplete membrane staining in 0% < {stained:.1f}% <= {cut:g}%"
    else:
        score, category = "0", "HER2-null"
        rule = "0 (null): no membrane staining in any tumour cell"
    return Her2Score(
        score=score,
        category=category,
        her2_low=score in ("1+", "2+"),
        ultralow=category == "HER2-ultralow",
        needs_ish=score == "2+",
        rule=rule,
        n_cells=n,
        percent=pct,
        class_percent=class_pct,
    )


# H-score intensity of each membrane class (0-3). Our classes carry intensity x completeness;
# the H-score (McCarty et al., Cancer Res 1986;46:4244s; used for HER2 by e.g. Rüschoff et al.
# and QuPath's "H-score" = 1 x %1+ + 2 x %2+ + 3 x %3+ over tumour cells) needs intensity only:
# strong -> 3, weak-to-moderate -> 2, a faint ring all round (null_complete) -> 1, none -> 0.
H_SCORE_INTENSITY = {
    Her2Class.STRONG_COMPLETE.value: 3, Her2Class.STRONG_INCOMPLETE.value: 3,
    Her2Class.WEAK_COMPLETE.value: 2, Her2Class.WEAK_INCOMPLETE.value: 2,
    Her2Class.NULL_COMPLETE.value: 1, Her2Class.NULL_INCOMPLETE.value: 0,
}


def h_score(*, her2_class: Iterable) -> float | None:
    """H-score (0-300) of graded tumour cells: sum over intensity i of i x % of cells at i.

    Pass tumour cells only; ungraded cells (None / NaN) are left out; None when none is graded.
    """
    klass = pd.Series(list(her2_class), dtype=object)
    klass = klass[klass.notna().to_numpy()]
    if len(klass) == 0:
        return None
    intensity = klass.map(H_SCORE_INTENSITY)
    if intensity.isna().any():
        raise Her2InputError(f"unknown HER2 class(es) {sorted(map(str, set(klass[intensity.isna()])))}")
    return float(intensity.sum() * 100.0 / len(klass))


def score_cells(*, cells: pd.DataFrame, **kwargs) -> Her2Score:
    """her2_slide_score over the tumour cells (cls == tumour) of a cell frame."""
    missing = [c for c in ("cls", "her2_class") if c not in cells.columns]
    if missing:
        raise Her2InputError(f"cell frame lacks column(s) {missing}")
    tumour = cells[cells["cls"] == CellClass.TUMOUR.value]
    return her2_slide_score(her2_class=tumour["her2_class"], **kwargs)


def estimate_hdab(*, rgb: np.ndarray, tissue_mask: np.ndarray | None = None) -> stain_mod.StainEstimate:
    """Per-slide H-DAB stain vectors: Macenko (analysis.core.cells.stain) with stricter sanity limits.

    On HER2 slides the hematoxylin counterstain is pale next to strong DAB, and Macenko's
    low-angle extreme is then a hematoxylin-DAB mixture: the "hematoxylin" direction is
    pulled towards DAB and deconvolution turns ill-conditioned (seen on the phantoms:
    an estimate 10 deg from DAB). We accept an estimate only when each vector lies within
    20 deg of Ruifrok & Johnston's and the two are at least 25 deg apart (the defaults
    are 37 deg apart); otherwise the defaults are used and the reason is reported.
    """
    return stain_mod.estimate_stain_matrix(
        rgb=rgb, default=stain_mod.HDAB_DEFAULT, tissue_mask=tissue_mask,
        max_angle_to_default_deg=20.0, min_angle_between_deg=25.0,
    )


class IhcNucleusSegmenter:
    """The Segmenter interface (segmentation/base.py) over segment_ihc_nuclei: nuclei on
    the hematoxylin of H-DAB deconvolution, so that brown membranes stay out of them.

    The H&E ClassicalSegmenter must not be used on IHC: with H&E vectors a strong DAB ring
    deconvolves partly into hematoxylin and the "nucleus" swallows its own membrane.
    `for_stain_matrix` gives the same segmenter with a slide's estimated vectors (the
    whole-slide runner calls it once the vectors are known).
    """

    target_mpp = 0.5
    stains = ("ihc",)
    label = "classical IHC"

    def __init__(self, *, stain_matrix: stain_mod.StainMatrix = stain_mod.HDAB_DEFAULT) -> None:
        from analysis.core.cells.segmentation.base import SegmenterInfo
        from analysis.core.cells.segmentation.classical import VERSION

        self.stain_matrix = stain_matrix
        self.info = SegmenterInfo(
            name="classical-ihc-v1",
            version=VERSION,
            approximate=True,
            params={"stain_vectors": np.round(stain_matrix.vectors, 4).tolist()},
        )

    def for_stain_matrix(self, matrix: stain_mod.StainMatrix) -> "IhcNucleusSegmenter":
        return IhcNucleusSegmenter(stain_matrix=matrix)

    def segment(self, *, rgb: np.ndarray, mpp: float) -> pd.DataFrame:
        from analysis.core.cells.segmentation.classical import segment_ihc_nuclei

        return segment_ihc_nuclei(rgb=rgb, mpp=mpp, stain_matrix=self.stain_matrix)


@dataclass(frozen=True)
class Her2ImageResult:
    cells: pd.DataFrame  # RESULT_COLUMNS + HER2_COLUMNS, tile pixel coordinates
    score: Her2Score | None  # None when no tumour cell was graded
    stain: stain_mod.StainEstimate


def grade_her2_image(
    *,
    rgb: np.ndarray,
    mpp: float,
    stain_matrix: stain_mod.StainMatrix | None = None,
    params: Her2Params = Her2Params(),
) -> Her2ImageResult:
    """Whole pipeline on one in-memory IHC image: stain vectors (Macenko on the image
    unless given), nuclei (segment_ihc_nuclei), membrane grades, slide score."""
    from analysis.core.cells.segmentation.classical import segment_ihc_nuclei

    if stain_matrix is None:
        estimate = estimate_hdab(rgb=np.asarray(rgb)[..., :3])
    else:
        estimate = stain_mod.StainEstimate(matrix=stain_matrix, estimated=False, reason="given", n_pixels=0)
    nuclei = segment_ihc_nuclei(rgb=rgb, mpp=mpp, stain_matrix=estimate.matrix)
    grades = grade_membranes(rgb=rgb, mpp=mpp, nuclei=nuclei, stain_matrix=estimate.matrix, params=params)
    cells = keep_tumour_grades(pd.concat([nuclei, grades], axis=1))
    try:
        score = score_cells(cells=cells)
    except NoTumourCellsError:
        score = None
    return Her2ImageResult(cells=cells, score=score, stain=estimate)
