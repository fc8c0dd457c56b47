"""Colour deconvolution (H&E, H-DAB), per-slide stain vectors (Macenko), DAB presence.

Optical density (Beer-Lambert, Ruifrok & Johnston 2001): for an 8-bit channel value I,
    OD = -log10(max(I, 1) / I0),  I0 = 255,
so white glass is OD 0 and the darkest representable pixel OD log10(255) = 2.41 (the
max(I, 1) avoids log(0)). A pixel's OD vector is a non-negative mix of unit stain vectors,
OD = c @ M (M: one unit RGB-OD row per stain); deconvolution solves c = OD @ inv(M).

Default stain vectors are Ruifrok & Johnston, Anal Quant Cytol Histol 23:291-299, 2001
(the values in scikit-image's ``hed_from_rgb`` and ImageJ's Colour Deconvolution):
    hematoxylin (0.650, 0.704, 0.286), eosin (0.072, 0.990, 0.105), DAB (0.268, 0.570, 0.776).
When a matrix has two stains, the third row is their normalised cross product (as QuPath
and scikit-image's ``rgb_from_hdx`` do), which picks up what neither stain explains.

Stain-vector estimation follows Macenko et al., ISBI 2009, "A method for normalizing
histology slides for quantitative analysis" (reference code: mitkovetta/staining-
normalization): keep OD pixels with every channel above beta = 0.15, take the plane of
the two largest eigenvectors of their covariance, measure each pixel's angle in it, and
take the 1st and 99th angle percentiles (alpha = 1) as the two stain directions. We
assign the two directions to the stains by their cosine to the defaults, and fall back
to the defaults when the estimate is degenerate (see ``estimate_stain_matrix``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

I0 = 255.0
MAX_OD = float(np.log10(I0))  # OD of a pixel value of 1 (we clip 0 to 1)


class StainError(ValueError):
    """Invalid image or stain vectors for colour deconvolution."""


def _unit(vector) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float64)
    norm = np.linalg.norm(v)
    if v.shape != (3,) or not np.isfinite(v).all() or norm == 0:
        raise StainError(f"a stain vector must be 3 finite numbers, not all 0; got {vector!r}")
    return v / norm


@dataclass(frozen=True)
class StainMatrix:
    """Unit RGB optical-density vectors of the stains, one row each (3 x 3)."""

    names: tuple[str, str, str]
    vectors: np.ndarray  # (3, 3) float64, rows unit-norm

    @classmethod
    def from_vectors(cls, *, names: tuple[str, ...], vectors) -> "StainMatrix":
        """Two or three stains; a missing third is the cross product (named "residual")."""
        rows = [_unit(v) for v in vectors]
        names = tuple(names)
        if len(rows) != len(names) or len(rows) not in (2, 3):
            raise StainError(
                f"need 2 or 3 stain vectors with one name each, got {len(rows)} vectors "
                f"and names {names}"
            )
        if len(rows) == 2:
            third = np.cross(rows[0], rows[1])
            if np.linalg.norm(third) < 1e-6:
                raise StainError("the two stain vectors are parallel; cannot separate them")
            rows.append(_unit(third))
            names = (*names, "residual")
        matrix = np.vstack(rows)
        if abs(np.linalg.det(matrix)) < 1e-6:
            raise StainError(f"stain vectors {matrix.tolist()} are linearly dependent")
        return cls(names=names, vectors=matrix)  # type: ignore[arg-type]

    @property
    def inverse(self) -> np.ndarray:
        return np.linalg.inv(self.vectors)

    def index(self, *, stain: str) -> int:
        if stain not in self.names:
            raise StainError(f"stain {stain!r} not in this matrix ({', '.join(self.names)})")
        return self.names.index(stain)


HEMATOXYLIN = (0.650, 0.704, 0.286)
EOSIN = (0.072, 0.990, 0.105)
DAB = (0.268, 0.570, 0.776)

HE_DEFAULT = StainMatrix.from_vectors(names=("hematoxylin", "eosin"), vectors=(HEMATOXYLIN, EOSIN))
HDAB_DEFAULT = StainMatrix.from_vectors(names=("hematoxylin", "dab"), vectors=(HEMATOXYLIN, DAB))
# Three real stains: lets one image be checked for both eosin and DAB (dab_presence).
HED_DEFAULT = StainMatrix.from_vectors(
    names=("hematoxylin", "eosin", "dab"), vectors=(HEMATOXYLIN, EOSIN, DAB)
)


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
        raise StainError(f"expected an (H, W, 3) RGB image, got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise StainError(f"expected uint8 RGB (0-255), got dtype {rgb.dtype}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise StainError("the image is empty")
    return rgb[..., :3]


# Lookup table: OD of every 8-bit value (faster than log10 on every pixel).
_OD_LUT = (-np.log10(np.maximum(np.arange(256, dtype=np.float64), 1.0) / I0)).astype(np.float32)


def rgb_to_od(*, rgb: np.ndarray) -> np.ndarray:
    """Optical density per channel, OD = -log10(max(I, 1) / 255); (H, W, 3) float32."""
    return _OD_LUT[_check_rgb(rgb)]


def od_to_rgb(*, od: np.ndarray) -> np.ndarray:
    """Inverse of ``rgb_to_od`` (rounded, clipped to 0-255); for rendering stain channels."""
    od = np.asarray(od, dtype=np.float64)
    return np.clip(np.rint(I0 * np.power(10.0, -od)), 0, 255).astype(np.uint8)


def deconvolve(*, rgb: np.ndarray, stain_matrix: StainMatrix = HE_DEFAULT) -> np.ndarray:
    """Stain concentrations (OD units) per pixel, (H, W, 3) float32 in the matrix's stain order.

    Concentrations can be slightly negative where a pixel's colour lies outside the cone
    of the stains (noise, other pigments); callers threshold, they need not clip.
    """
    od = rgb_to_od(rgb=rgb)
    return od @ stain_matrix.inverse.astype(np.float32)


def stain_channel(*, rgb: np.ndarray, stain: str, stain_matrix: StainMatrix) -> np.ndarray:
    """One stain's concentration image (H, W) float32, e.g. stain="hematoxylin"."""
    column = stain_matrix.inverse[:, stain_matrix.index(stain=stain)].astype(np.float32)
    return rgb_to_od(rgb=rgb) @ column


@dataclass(frozen=True)
class StainEstimate:
    matrix: StainMatrix
    estimated: bool  # False: the defaults were returned
    reason: str  # why the defaults were used, or "macenko"
    n_pixels: int  # tissue pixels the estimate used


def estimate_stain_matrix(
    *,
    rgb: np.ndarray,
    default: StainMatrix = HE_DEFAULT,
    tissue_mask: np.ndarray | None = None,
    beta: float = 0.15,
    alpha: float = 1.0,
    min_pixels: int = 500,
    max_angle_to_default_deg: float = 30.0,
    min_angle_between_deg: float = 10.0,
    max_pixels: int = 200_000,
    seed: int = 0,
) -> StainEstimate:
    """Macenko (2009) estimate of the first two stains of ``default``, with fallback.

    The estimate is degenerate, and ``default`` is returned with the reason, when fewer
    than ``min_pixels`` tissue pixels pass the OD threshold beta, when the two directions
    are less than ``min_angle_between_deg`` apart (a single-stain image), or when either
    lies more than ``max_angle_to_default_deg`` from the stain it is assigned to (the
    image is not stained as ``default`` says, e.g. an IHC slide sent as H&E). At most
    ``max_pixels`` pixels (a seeded random subset) enter the eigen-decomposition.
    """
    od = rgb_to_od(rgb=rgb).reshape(-1, 3)
    keep = (od > beta).all(axis=1)
    if tissue_mask is not None:
        tissue_mask = np.asarray(tissue_mask, dtype=bool)
        if tissue_mask.shape != np.asarray(rgb).shape[:2]:
            raise StainError(
                f"tissue_mask shape {tissue_mask.shape} differs from the image's {np.asarray(rgb).shape[:2]}"
            )
        keep &= tissue_mask.reshape(-1)
    od = od[keep].astype(np.float64)
    n_pixels = len(od)

    def fallback(reason: str) -> StainEstimate:
        return StainEstimate(matrix=default, estimated=False, reason=reason, n_pixels=n_pixels)

    if n_pixels < min_pixels:
        return fallback(f"only {n_pixels} stained pixels (need {min_pixels})")
    if n_pixels > max_pixels:
        od = od[np.random.default_rng(seed).choice(n_pixels, size=max_pixels, replace=False)]
    _, eigenvectors = np.linalg.eigh(np.cov(od, rowvar=False))
    plane = eigenvectors[:, [2, 1]]  # two largest eigenvalues (eigh sorts ascending)
    plane[:, 0] *= np.sign(plane[:, 0].sum()) or 1.0  # point into positive OD
    projected = od @ plane
    angles = np.arctan2(projected[:, 1], projected[:, 0])
    low, high = np.percentile(angles, [alpha, 100.0 - alpha])
    candidates = [plane @ np.array([np.cos(a), np.sin(a)]) for a in (low, high)]
    candidates = [c * (np.sign(c.sum()) or 1.0) for c in candidates]  # OD vectors are positive
    candidates = [c / np.linalg.norm(c) for c in candidates]

    between = np.degrees(np.arccos(np.clip(candidates[0] @ candidates[1], -1.0, 1.0)))
    if between < min_angle_between_deg:
        return fallback(f"stain directions only {between:.1f} deg apart (one stain?)")
    targets = default.vectors[:2]
    cos = np.array([[c @ t for t in targets] for c in candidates])
    # Pair candidates with the default stains the way that maximises total cosine.
    order = (0, 1) if cos[0, 0] + cos[1, 1] >= cos[0, 1] + cos[1, 0] else (1, 0)
    assigned = [candidates[order.index(k)] for k in range(2)]
    for k, vector in enumerate(assigned):
        angle = np.degrees(np.arccos(np.clip(vector @ targets[k], -1.0, 1.0)))
        if angle > max_angle_to_default_deg or (vector < -0.05).any():
            return fallback(
                f"{default.names[k]} estimate {np.round(vector, 3).tolist()} is {angle:.0f} deg "
                f"from the default (limit {max_angle_to_default_deg:.0f})"
            )
    matrix = StainMatrix.from_vectors(names=default.names[:2], vectors=assigned)
    return StainEstimate(matrix=matrix, estimated=True, reason="macenko", n_pixels=n_pixels)


@dataclass(frozen=True)
class StainPresence:
    """How much DAB and eosin an image holds, and what it therefore looks like."""

    tissue_fraction: float  # fraction of pixels whose OD sum exceeds tissue_od
    dab_fraction: float  # of tissue pixels: brown (blue OD exceeds green OD by dab_margin)
    eosin_fraction: float  # of tissue pixels: pink (green OD >= eosin_share of the OD sum)
    looks_like: str  # "ihc", "he" or "unknown"


def dab_presence(
    *,
    rgb: np.ndarray,
    tissue_od: float = 0.2,
    dab_margin: float = 0.05,
    eosin_share: float = 0.45,
    min_dab_fraction: float = 0.02,
    min_eosin_fraction: float = 0.10,
    min_tissue_fraction: float = 0.01,
) -> StainPresence:
    """Whether an image carries DAB (IHC) or eosin (H&E), from the shape of pixel OD vectors.

    Why not 3-stain deconvolution: the purple-pink eosin of many H&E scans (CMU-1) falls
    between the eosin and DAB reference vectors and deconvolves partly into DAB. Pixel
    chromaticity separates them cleanly: DAB (0.27, 0.57, 0.78) is the only stain that
    absorbs more blue than green (brown: G > B in RGB), and eosin (0.07, 0.99, 0.11)
    the only one whose green OD is most of its total (hematoxylin 43%, DAB 36%).

    looks_like = "ihc" when brown pixels are >= ``min_dab_fraction`` of tissue; "he" when
    they are fewer and pink pixels are >= ``min_eosin_fraction``; else "unknown" (little
    tissue, or hematoxylin only: an IHC slide with no DAB looks like this). Thresholds were
    set on the project's real images: H&E (5 GBM tiles, CMU-1, her2st): brown <= 0.4%,
    pink 27-99%; IHC skimage: brown 62%, pink 0% (tests/analysis/core/test_stain.py).
    """
    rgb = _check_rgb(rgb)
    od = rgb_to_od(rgb=rgb)
    total = od.sum(axis=2)
    tissue = total > tissue_od
    n_tissue = int(tissue.sum())
    tissue_fraction = n_tissue / tissue.size
    if n_tissue == 0 or tissue_fraction < min_tissue_fraction:
        return StainPresence(
            tissue_fraction=tissue_fraction, dab_fraction=0.0, eosin_fraction=0.0, looks_like="unknown"
        )
    tissue_od_px = od[tissue]
    dab_fraction = float(((tissue_od_px[:, 2] - tissue_od_px[:, 1]) > dab_margin).mean())
    eosin_fraction = float((tissue_od_px[:, 1] >= eosin_share * total[tissue]).mean())
    if dab_fraction >= min_dab_fraction:
        looks_like = "ihc"
    elif eosin_fraction >= min_eosin_fraction:
        looks_like = "he"
    else:
        looks_like = "unknown"
    return StainPresence(
        tissue_fraction=tissue_fraction,
        dab_fraction=dab_fraction,
        eosin_fraction=eosin_fraction,
        looks_like=looks_like,
    )


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold on a 256-bin histogram (vectorised; same as skimage's threshold_otsu).

    Shared by nucleus segmentation (hematoxylin OD) and tissue detection (OD of the thumbnail).
    """
    counts, edges = np.histogram(values, bins=256)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(counts).astype(np.float64)
    w1 = w0[-1] - w0
    m0 = np.cumsum(counts * centres)
    mean0 = m0 / np.maximum(w0, 1)
    mean1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mean0 - mean1) ** 2
    return float(centres[int(np.argmax(between[:-1]))])
