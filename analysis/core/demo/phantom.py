"""Paired H&E / HER2-IHC phantom slides with known cells: the demo case and ground truth.

What is drawn (sizes in micrometres, converted with ``mpp``):

- tissue: a few irregular islands (union of noisy ellipses) on white glass;
- tumour nests (smooth random field above a threshold), stroma elsewhere, immune
  infiltrates (a second field) in the stroma, a clear gap of ~16 um around each nest;
- nuclei at known positions, one class each (analysis.core.cells.classes.CellClass):
  tumour large pale vesicular 8-9.6 um with rim, chromatin and nucleolus; lymphocyte
  small dark round 5-7 um; neutrophil 3-4 lobes ~8 um with pale cytoplasm; macrophage
  oval / kidney ~10-12 um with foamy cytoplasm; stroma spindle ~11-15 x 3-4.5 um
  aligned with the fibres;
- the IHC slide holds the same nuclei (hematoxylin at 0.55x) moved by a known rigid
  transform, and round every tumour nucleus a DAB membrane ring (centre radius 6.5 um,
  Gaussian profile sigma 0.6 um) whose peak OD and circumferential extent encode the
  cell's analysis.core.cells.classes.Her2Class: strong 1.1 / weak 0.40 / null-complete 0.12 /
  null-incomplete none; complete = full ring, incomplete = an arc of 30-50 %.
  Tumour cells fall in 4 Voronoi zones, each with a dominant grade (92 % of its
  cells), chosen so that the slide score (``expected_her2_score``) is ``her2_score``.

Colour is Beer-Lambert absorption with the Ruifrok & Johnston (2001) stain vectors
that scikit-image uses (``skimage.color.rgb_from_hed``): RGB = 255 exp(-OD . M), so
``skimage.color.rgb2hed`` recovers the drawn optical densities (up to its log(1e-6)
scale and 8-bit/JPEG rounding). Hematoxylin-deconvolution segmenters and ring-DAB
graders (DESIGN.md 2.2, QuPath-style) see what the ground truth says.

Memory stays bounded: the smooth fields live on an 8 um grid, fibre angle and collagen
texture on one periodic 3 um patch, the nuclei as one small table bucketed by 256 px;
pixels are rendered region by region as the pyramid writer asks for them
(analysis.core.slides.pyramid). Deterministic for a seed.

Size: one generator (~1,100 lines) kept whole on purpose: the nucleus layout, the class and HER2
truth, the Beer-Lambert rendering of both stains and the pyramid writing share one random
stream and one set of constants; split, a change to one part would silently shift the truth
the HER2 and segmentation tests check against.
"""
from __future__ import annotations

import inspect
import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.core.files import atomic_path, atomic_write_text
from numpy.typing import NDArray
from scipy import ndimage
from scipy.spatial import cKDTree

from analysis.core.cells.classes import CellClass, Her2Class
from analysis.core.slides.pyramid import DEFAULT_JPEG_QUALITY, write_pyramidal_tiff

GENERATOR_VERSION = 2  # bump whenever the drawing changes: ensure_phantom_pair regenerates

# Stain matrix (rows: hematoxylin, eosin, DAB) = skimage.color.rgb_from_hed.
STAIN_RGB_FROM_HED = np.array(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float32
)
STAIN_RGB_FROM_HED /= np.linalg.norm(STAIN_RGB_FROM_HED, axis=1, keepdims=True)

PHANTOM_CLASSES = (
    CellClass.TUMOUR,
    CellClass.STROMA,
    CellClass.LYMPHOCYTE,
    CellClass.NEUTROPHIL,
    CellClass.MACROPHAGE,
)
HER2_CLASSES = tuple(Her2Class)

# Membrane ring geometry and peak DAB optical density (natural-log units) per grade.
MEMBRANE_RADIUS_UM = 6.5
MEMBRANE_SIGMA_UM = 0.6
MEMBRANE_PEAK_OD = {
    Her2Class.STRONG_COMPLETE: 1.10,
    Her2Class.STRONG_INCOMPLETE: 1.10,
    Her2Class.WEAK_COMPLETE: 0.40,
    Her2Class.WEAK_INCOMPLETE: 0.40,
    Her2Class.NULL_COMPLETE: 0.12,
    Her2Class.NULL_INCOMPLETE: 0.0,
}
INCOMPLETE_ARC_FRACTION = (0.30, 0.50)
IHC_HEMATOXYLIN_SCALE = 0.55

# Zone dominant grades per target slide score; the first grade goes to the zones that
# hold at least half of the tumour cells. The remaining 8 % of each zone's cells draw
# from grades that cannot lift the slide above its target, so the score holds by
# construction whatever the phantom's size (see _assign_her2 and expected_her2_score).
_ZONE_GRADES = {
    3: (Her2Class.STRONG_COMPLETE, Her2Class.WEAK_COMPLETE, Her2Class.WEAK_INCOMPLETE),
    2: (Her2Class.WEAK_COMPLETE, Her2Class.WEAK_INCOMPLETE, Her2Class.NULL_COMPLETE),
    1: (Her2Class.WEAK_INCOMPLETE, Her2Class.NULL_INCOMPLETE, Her2Class.STRONG_INCOMPLETE),
    0: (Her2Class.NULL_INCOMPLETE, Her2Class.NULL_COMPLETE, Her2Class.NULL_INCOMPLETE),
}
_MINORITY_GRADES = {
    3: tuple(Her2Class),
    2: tuple(h for h in Her2Class if h is not Her2Class.STRONG_COMPLETE),
    1: (Her2Class.STRONG_INCOMPLETE, Her2Class.WEAK_INCOMPLETE, Her2Class.NULL_COMPLETE, Her2Class.NULL_INCOMPLETE),
    0: (Her2Class.NULL_COMPLETE, Her2Class.NULL_INCOMPLETE),
}
_ZONE_DOMINANCE = 0.92
_ZONES = 4

_BUCKET_PX = 256
_COARSE_UM = 8.0
_FIBRE_UM = 3.0
_FIBRE_ORIENTATIONS = 6


class PhantomError(ValueError):
    """Bad phantom parameters, or a phantom that cannot hold what was asked."""


@dataclass(frozen=True)
class PhantomParameters:
    """Everything the output depends on; stored in the truth JSON for ensure_phantom_pair."""

    width: int
    height: int
    mpp: float
    seed: int
    her2_score: int
    ihc_offset_um: tuple[float, float]
    ihc_rotation_deg: float
    tissue_islands: int
    jpeg_quality: int
    generator_version: int = GENERATOR_VERSION


@dataclass(frozen=True)
class PhantomPair:
    """Paths and headline truth of a generated pair."""

    he_path: Path
    ihc_path: Path
    truth_path: Path  # Parquet, one row per cell
    truth_json_path: Path
    width: int
    height: int
    mpp: float
    expected_her2_score: int
    class_counts: dict[str, int]
    her2_counts: dict[str, int]
    ihc_transform: tuple[tuple[float, float, float], tuple[float, float, float]]
    generated: bool  # False when ensure_phantom_pair found matching outputs


def expected_her2_score(*, counts: Mapping[Her2Class | str, int]) -> int:
    """Slide HER2 IHC score from per-cell membrane classes, ASCO/CAP 2018 (Wolff et al.).

    Over all graded tumour cells: 3+ if strong complete > 10 %; else 2+ if complete
    staining (weak-to-moderate or strong) > 10 %; else 1+ if any perceptible staining
    (complete or incomplete, strong or weak) > 10 %; else 0. NULL_COMPLETE (a ring
    below the weak threshold) and NULL_INCOMPLETE count as no staining.
    """
    c = {Her2Class(k): int(v) for k, v in counts.items()}
    total = sum(c.values())
    if total == 0:
        raise PhantomError("no graded tumour cells: the HER2 score is undefined")
    sc = c.get(Her2Class.STRONG_COMPLETE, 0)
    wc = c.get(Her2Class.WEAK_COMPLETE, 0)
    si = c.get(Her2Class.STRONG_INCOMPLETE, 0)
    wi = c.get(Her2Class.WEAK_INCOMPLETE, 0)
    if sc > 0.10 * total:
        return 3
    if sc + wc > 0.10 * total:
        return 2
    if sc + wc + si + wi > 0.10 * total:
        return 1
    return 0


def ihc_transform_matrix(
    *, width: int, height: int, mpp: float, offset_um: tuple[float, float], rotation_deg: float
) -> NDArray[np.float64]:
    """2 x 3 affine mapping H&E level-0 px (x, y) to IHC level-0 px: rotation about the centre, then shift."""
    theta = math.radians(rotation_deg)
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    centre = np.array([width / 2.0, height / 2.0])
    shift = np.array(offset_um) / mpp
    translation = centre + shift - rot @ centre
    return np.hstack([rot, translation[:, None]])


# --------------------------------------------------------------------------- fields


def _smooth_noise(
    *, rng: np.random.Generator, shape: tuple[int, int], sigma: float | tuple[float, float]
) -> NDArray[np.float32]:
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    field -= field.mean()
    field /= max(float(field.std()), 1e-6)
    return field


def _smoothstep(values: NDArray[np.float32], *, lo: float, hi: float) -> NDArray[np.float32]:
    t = np.clip((values - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class _Grid:
    """A scalar field sampled every ``cell`` level-0 px (grid point k at pixel k * cell).

    ``periodic`` grids wrap around (a texture patch repeated over the canvas); others
    hold their edge values beyond the last grid point.
    """

    def __init__(self, *, values: NDArray[np.float32], cell: float, periodic: bool = False) -> None:
        self.values = values.astype(np.float32)
        self.cell = cell
        self.periodic = periodic

    def at_points(self, *, x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float32]:
        return ndimage.map_coordinates(
            self.values,
            [np.asarray(y, dtype=np.float64) / self.cell, np.asarray(x, dtype=np.float64) / self.cell],
            order=1,
            mode="grid-wrap" if self.periodic else "nearest",
        ).astype(np.float32)

    def _index(
        self, u: NDArray[np.float64], n: int
    ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]:
        i0 = np.floor(u).astype(np.int64)
        frac = (u - i0).astype(np.float32)
        if self.periodic:
            return i0 % n, (i0 + 1) % n, frac
        lo = np.clip(i0, 0, n - 1)
        hi = np.clip(i0 + 1, 0, n - 1)
        return lo, hi, np.where(i0 < 0, 0.0, np.where(i0 >= n - 1, 1.0, frac)).astype(np.float32)

    def on_raster(self, *, xs: NDArray[np.float64], ys: NDArray[np.float64]) -> NDArray[np.float32]:
        """Bilinear values at every (ys[i], xs[j]); separable, so cheap for big regions."""
        ny, nx = self.values.shape
        x0, x1, fx = self._index(xs / self.cell, nx)
        y0, y1, fy = self._index(ys / self.cell, ny)
        rows = np.unique(np.concatenate([y0, y1]))
        sub = self.values[rows]
        along_x = sub[:, x0] * (1.0 - fx) + sub[:, x1] * fx
        fy = fy[:, None]
        return along_x[np.searchsorted(rows, y0)] * (1.0 - fy) + along_x[np.searchsorted(rows, y1)] * fy


@dataclass
class _Fields:
    tissue: _Grid  # > 0 inside tissue
    nest: _Grid  # > NEST_T inside tumour nests
    immune: _Grid  # > IMMUNE_T inside immune infiltrates
    nest_exclusion: _Grid  # 1 within ~16 um of a nest (no stroma / immune cells there)
    orientation: _Grid  # fibre angle, radians (periodic patch)
    fibre: _Grid  # fibre texture, ~unit std (periodic patch)


_NEST_T = 0.35
_IMMUNE_T = 0.85


def _make_fields(*, width: int, height: int, mpp: float, islands: int, rng: np.random.Generator) -> _Fields:
    cell = _COARSE_UM / mpp
    ny, nx = math.ceil(height / cell) + 2, math.ceil(width / cell) + 2
    gy, gx = np.mgrid[0:ny, 0:nx].astype(np.float32) * cell
    short = min(width, height)
    tissue = np.full((ny, nx), -1.0, dtype=np.float32)
    for _ in range(islands):
        cx, cy = rng.uniform(0.25, 0.75) * width, rng.uniform(0.25, 0.75) * height
        a = rng.uniform(0.12, 0.2) * short
        b = a * rng.uniform(0.55, 0.95)
        angle = rng.uniform(0.0, math.pi)
        u = (gx - cx) * math.cos(angle) + (gy - cy) * math.sin(angle)
        v = -(gx - cx) * math.sin(angle) + (gy - cy) * math.cos(angle)
        tissue = np.maximum(tissue, 1.0 - np.sqrt((u / a) ** 2 + (v / b) ** 2))
    # Irregular outlines: large-scale warp plus ~60 um wiggles.
    tissue += 0.22 * _smooth_noise(rng=rng, shape=(ny, nx), sigma=0.05 * short / cell)
    tissue += 0.07 * _smooth_noise(rng=rng, shape=(ny, nx), sigma=60.0 / _COARSE_UM)
    # White margin: tissue fades out over the outer 8 % of the slide, none in the outer 1 %.
    edge = np.minimum.reduce([gx, gy, width - gx, height - gy]) / short
    tissue -= 1.5 * np.clip(1.0 - edge / 0.08, 0.0, 1.0) ** 2
    tissue = np.where(edge < 0.01, np.minimum(tissue, -0.05), tissue)

    nest = _smooth_noise(rng=rng, shape=(ny, nx), sigma=60.0 / _COARSE_UM)
    immune = _smooth_noise(rng=rng, shape=(ny, nx), sigma=45.0 / _COARSE_UM)
    exclusion = ndimage.binary_dilation(nest > _NEST_T - 0.05, iterations=2).astype(np.float32)
    # Fibre angle and collagen texture: one periodic patch (<= 2048 x 3 um, ~6 mm) repeated.
    fcell = _FIBRE_UM / mpp
    side = min(2048, math.ceil(max(width, height) / fcell) + 2)
    orientation = math.pi * _smooth_noise(rng=rng, shape=(side, side), sigma=150.0 / _FIBRE_UM)
    fibre = _oriented_fibres(orientation=orientation, rng=rng)
    return _Fields(
        tissue=_Grid(values=tissue, cell=cell),
        nest=_Grid(values=nest, cell=cell),
        immune=_Grid(values=immune, cell=cell),
        nest_exclusion=_Grid(values=exclusion, cell=cell),
        orientation=_Grid(values=orientation, cell=fcell, periodic=True),
        fibre=_Grid(values=fibre, cell=fcell, periodic=True),
    )


def _oriented_fibres(*, orientation: NDArray[np.float32], rng: np.random.Generator) -> NDArray[np.float32]:
    """Collagen-like streaks that follow the local fibre angle.

    One white noise, filtered in Fourier space by an elongated Gaussian (sigma ~12 um
    along, ~1 um across) at each of a few angles; the results are blended per grid
    point with von Mises weights on the local angle (doubled: fibres have no sign).
    """
    from scipy import fft

    shape = orientation.shape
    noise_hat = fft.rfft2(rng.standard_normal(shape).astype(np.float32), workers=1)
    ky = fft.fftfreq(shape[0]).astype(np.float32)[:, None]
    kx = fft.rfftfreq(shape[1]).astype(np.float32)[None, :]
    along, across = 12.0 / _FIBRE_UM, 1.0 / _FIBRE_UM
    theta = orientation
    fibre = np.zeros(shape, dtype=np.float32)
    total = np.zeros(shape, dtype=np.float32)
    for k in range(_FIBRE_ORIENTATIONS):
        angle = math.pi * k / _FIBRE_ORIENTATIONS
        k_along = kx * math.cos(angle) + ky * math.sin(angle)
        k_across = -kx * math.sin(angle) + ky * math.cos(angle)
        transfer = np.exp(-2 * math.pi**2 * ((along * k_along) ** 2 + (across * k_across) ** 2))
        streaks = fft.irfft2(noise_hat * transfer, s=shape, workers=1).astype(np.float32)
        streaks /= max(float(streaks.std()), 1e-12)
        weight = np.exp(4.0 * np.cos(2.0 * (theta - angle))).astype(np.float32)
        fibre += weight * streaks
        total += weight
    fibre /= total
    fibre /= max(float(fibre.std()), 1e-12)
    return fibre


# --------------------------------------------------------------------------- nuclei templates


@dataclass
class _Template:
    hematoxylin: NDArray[np.float32]  # OD, square, odd side, centre = cell position
    eosin: NDArray[np.float32] | None  # cytoplasm OD (neutrophil, macrophage)
    radius_um: float  # equivalent nuclear radius sqrt(a * b)


def _soft_inside(signed_px: NDArray[np.float32]) -> NDArray[np.float32]:
    """~1 inside, ~0 outside, ~1 px anti-aliased edge; signed_px > 0 inside."""
    return (1.0 / (1.0 + np.exp(-signed_px / 0.45))).astype(np.float32)


def _coords(half: int) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    return x, y


def _textured(rng: np.random.Generator, shape: tuple[int, ...], sigma_px: float) -> NDArray[np.float32]:
    return _smooth_noise(rng=rng, shape=shape, sigma=max(sigma_px, 0.5))


def _ellipse_signed_px(
    x: NDArray[np.float32], y: NDArray[np.float32], *, a: float, b: float, angle: float, wobble: NDArray[np.float64]
) -> NDArray[np.float32]:
    u = x * math.cos(angle) + y * math.sin(angle)
    v = -x * math.sin(angle) + y * math.cos(angle)
    phi = np.arctan2(v, u)
    scale = 1.0 + sum(c * np.cos((k + 2) * phi + p) for k, (c, p) in enumerate(wobble))
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2) / scale
    return ((1.0 - rho) * min(a, b)).astype(np.float32)


def _tumour_template(rng: np.random.Generator, px: float) -> _Template:
    # Semi-axes <= 4.8 um keep the nucleus edge >= 1.7 um inside the membrane ring.
    a_um = rng.uniform(4.0, 4.8)
    b_um = a_um * rng.uniform(0.8, 0.95)
    a, b = a_um * px, b_um * px
    half = math.ceil(a + 3)
    x, y = _coords(half)
    wobble = np.column_stack([rng.normal(0, 0.04, 3), rng.uniform(0, 2 * math.pi, 3)])
    signed = _ellipse_signed_px(x, y, a=a, b=b, angle=rng.uniform(0, math.pi), wobble=wobble)
    inside = _soft_inside(signed)
    depth = np.clip(signed / max(b, 1.0), 0.0, 1.0)
    # Vesicular: pale chromatin, darker rim (nuclear membrane), one nucleolus.
    od = 0.45 + 0.14 * _textured(rng, x.shape, 0.8 * px)
    od += 0.5 * np.exp(-((depth / 0.16) ** 2))
    nx, ny = rng.uniform(-0.3, 0.3) * a, rng.uniform(-0.3, 0.3) * b
    od += 0.9 * _soft_inside((0.7 * px - np.hypot(x - nx, y - ny)).astype(np.float32))
    return _Template(hematoxylin=_blurred(np.clip(od, 0, None) * inside), eosin=None, radius_um=math.sqrt(a_um * b_um))


def _lymphocyte_template(rng: np.random.Generator, px: float) -> _Template:
    a_um = rng.uniform(2.5, 3.4)
    b_um = a_um * rng.uniform(0.88, 1.0)
    a, b = a_um * px, b_um * px
    half = math.ceil(a + 3)
    x, y = _coords(half)
    wobble = np.column_stack([rng.normal(0, 0.02, 3), rng.uniform(0, 2 * math.pi, 3)])
    inside = _soft_inside(_ellipse_signed_px(x, y, a=a, b=b, angle=rng.uniform(0, math.pi), wobble=wobble))
    od = rng.uniform(1.35, 1.6) + 0.08 * _textured(rng, x.shape, 0.6 * px)
    return _Template(hematoxylin=_blurred(od * inside), eosin=None, radius_um=math.sqrt(a_um * b_um))


def _neutrophil_template(rng: np.random.Generator, px: float) -> _Template:
    lobes = int(rng.integers(3, 5))
    lobe_r_um = rng.uniform(1.4, 1.8)
    ring_um = rng.uniform(2.0, 2.5)
    half = math.ceil(5.2 * px + 3)
    x, y = _coords(half)
    start = rng.uniform(0, 2 * math.pi)
    span = rng.uniform(3.6, 4.6)  # a C-shaped chain of lobes
    angles = start + np.linspace(0, span, lobes)
    lobe_x, lobe_y = ring_um * px * np.cos(angles), ring_um * px * np.sin(angles)
    nucleus = np.zeros_like(x)
    for lx, ly in zip(lobe_x, lobe_y):
        nucleus = np.maximum(nucleus, _soft_inside((lobe_r_um * px - np.hypot(x - lx, y - ly)).astype(np.float32)))
    for i in range(lobes - 1):  # thin chromatin strands between lobes
        mx, my = (lobe_x[i] + lobe_x[i + 1]) / 2, (lobe_y[i] + lobe_y[i + 1]) / 2
        nucleus = np.maximum(nucleus, 0.8 * _soft_inside((0.5 * px - np.hypot(x - mx, y - my)).astype(np.float32)))
    cytoplasm = _soft_inside((5.0 * px - np.hypot(x, y)).astype(np.float32))
    od = rng.uniform(1.25, 1.45) * nucleus
    return _Template(
        hematoxylin=_blurred(od + 0.04 * cytoplasm),
        eosin=_blurred(0.12 * cytoplasm * (1.0 + 0.3 * _textured(rng, x.shape, 0.4 * px))),
        radius_um=ring_um + lobe_r_um,
    )


def _macrophage_template(rng: np.random.Generator, px: float) -> _Template:
    a_um = rng.uniform(5.0, 6.0)
    b_um = a_um * rng.uniform(0.62, 0.78)
    a, b = a_um * px, b_um * px
    cyto_um = a_um + 3.5
    half = math.ceil(cyto_um * px + 3)
    x, y = _coords(half)
    angle = rng.uniform(0, 2 * math.pi)
    wobble = np.column_stack([rng.normal(0, 0.03, 3), rng.uniform(0, 2 * math.pi, 3)])
    nucleus = _soft_inside(_ellipse_signed_px(x, y, a=a, b=b, angle=angle, wobble=wobble))
    # Kidney shape: a bite out of one long side.
    bx, by = -math.sin(angle) * 1.25 * b, math.cos(angle) * 1.25 * b
    nucleus *= 1.0 - _soft_inside((0.62 * b - np.hypot(x - bx, y - by)).astype(np.float32))
    od = (0.75 + 0.12 * _textured(rng, x.shape, 0.7 * px)) * nucleus
    cytoplasm = _soft_inside((cyto_um * px - np.hypot(x, y)).astype(np.float32))
    foam = 1.0 + 0.45 * _textured(rng, x.shape, 0.9 * px)
    return _Template(
        hematoxylin=_blurred(od + 0.05 * cytoplasm),
        eosin=_blurred(np.clip(0.16 * cytoplasm * foam, 0, None)),
        radius_um=math.sqrt(a_um * b_um),
    )


def _stroma_template(rng: np.random.Generator, px: float, angle: float) -> _Template:
    a_um = rng.uniform(5.5, 7.5)
    b_um = rng.uniform(1.5, 2.2)
    a, b = a_um * px, b_um * px
    half = math.ceil(a + 3)
    x, y = _coords(half)
    u = x * math.cos(angle) + y * math.sin(angle)
    v = -x * math.sin(angle) + y * math.cos(angle)
    t = np.clip(np.abs(u) / a, 0.0, 1.0)
    # Spindle: half-width tapers from b at the middle to 0 at the tips.
    width = b * (1.0 - t**2) ** 0.8
    inside = _soft_inside(np.minimum(width - np.abs(v), (a - np.abs(u)) * 0.5))
    od = rng.uniform(1.0, 1.25) + 0.1 * _textured(rng, x.shape, 0.6 * px)
    return _Template(hematoxylin=_blurred(od * inside), eosin=None, radius_um=math.sqrt(a_um * b_um))


def _blurred(od: NDArray[np.float32]) -> NDArray[np.float32]:
    # Optical blur of a 20x/40x scan: ~0.7 px Gaussian.
    return ndimage.gaussian_filter(od.astype(np.float32), 0.7, mode="constant")


_STROMA_ANGLES = 24
_VARIANTS = 32


def _make_templates(*, mpp: float, rng: np.random.Generator) -> dict[CellClass, list[_Template]]:
    px = 1.0 / mpp
    return {
        CellClass.TUMOUR: [_tumour_template(rng, px) for _ in range(_VARIANTS)],
        CellClass.STROMA: [
            _stroma_template(rng, px, math.pi * (k // 3) / _STROMA_ANGLES) for k in range(3 * _STROMA_ANGLES)
        ],
        CellClass.LYMPHOCYTE: [_lymphocyte_template(rng, px) for _ in range(_VARIANTS)],
        CellClass.NEUTROPHIL: [_neutrophil_template(rng, px) for _ in range(_VARIANTS)],
        CellClass.MACROPHAGE: [_macrophage_template(rng, px) for _ in range(_VARIANTS)],
    }


def _make_rings(*, mpp: float, rng: np.random.Generator) -> dict[Her2Class, list[NDArray[np.float32]]]:
    px = 1.0 / mpp
    radius, sigma = MEMBRANE_RADIUS_UM * px, MEMBRANE_SIGMA_UM * px
    half = math.ceil(radius + 3.5 * sigma + 1)
    x, y = _coords(half)
    r = np.hypot(x, y)
    phi = np.arctan2(y, x)
    profile = np.exp(-0.5 * ((r - radius) / sigma) ** 2).astype(np.float32)
    rings: dict[Her2Class, list[NDArray[np.float32]]] = {}
    for grade in HER2_CLASSES:
        peak = MEMBRANE_PEAK_OD[grade]
        variants = []
        for _ in range(16):
            psi = rng.uniform(-math.pi, math.pi)
            if grade.value.endswith("_complete"):
                angular = 1.0 + 0.12 * np.cos(2 * phi + psi)
            else:
                half_arc = math.pi * rng.uniform(*INCOMPLETE_ARC_FRACTION)
                off = np.abs(np.angle(np.exp(1j * (phi - psi))))
                # Arc with ~10 degree soft ends.
                angular = 1.0 / (1.0 + np.exp((off - half_arc) / math.radians(4)))
            variants.append((peak * profile * angular).astype(np.float32))
        rings[grade] = variants
    return rings


# --------------------------------------------------------------------------- cells


@dataclass
class _Cells:
    x: NDArray[np.int64]  # H&E level-0 px
    y: NDArray[np.int64]
    ihc_x: NDArray[np.int64]
    ihc_y: NDArray[np.int64]
    cls: NDArray[np.int8]  # index into PHANTOM_CLASSES
    variant: NDArray[np.int16]
    scale: NDArray[np.float32]  # stain intensity jitter
    her2: NDArray[np.int8]  # index into HER2_CLASSES, -1 for non-tumour
    ring_variant: NDArray[np.int16]
    radius_um: NDArray[np.float32]


def _lattice(
    *, width: int, height: int, spacing: float, jitter: float, rng: np.random.Generator
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Hexagonal lattice of the given spacing (px) with uniform jitter, over the slide."""
    row_h = spacing * math.sqrt(3) / 2
    rows = np.arange(0, height / row_h + 1)
    cols = np.arange(0, width / spacing + 1)
    gy, gx = np.meshgrid(rows * row_h, cols * spacing, indexing="ij")
    gx = gx + (np.arange(rows.size)[:, None] % 2) * spacing / 2
    x = gx.ravel() + rng.uniform(-jitter, jitter, gx.size)
    y = gy.ravel() + rng.uniform(-jitter, jitter, gy.size)
    keep = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    return x[keep], y[keep]


def _make_cells(
    *,
    params: PhantomParameters,
    fields: _Fields,
    templates: dict[CellClass, list[_Template]],
    rng: np.random.Generator,
) -> _Cells:
    px = 1.0 / params.mpp
    w, h = params.width, params.height
    xs, ys, classes = [], [], []

    # Tumour nests: hexagonal packing at 16 um, so neighbouring membrane rings stay apart.
    x, y = _lattice(width=w, height=h, spacing=16.0 * px, jitter=1.0 * px, rng=rng)
    keep = (fields.tissue.at_points(x=x, y=y) > 0.04) & (fields.nest.at_points(x=x, y=y) > _NEST_T + 0.04)
    keep &= rng.random(x.size) < 0.93
    xs.append(x[keep]); ys.append(y[keep]); classes.append(np.full(keep.sum(), 0))

    def stroma_ok(x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.bool_]:
        return (fields.tissue.at_points(x=x, y=y) > 0.03) & (fields.nest_exclusion.at_points(x=x, y=y) < 0.5)

    # Immune infiltrates: 10 um lattice, mostly lymphocytes; a sprinkle through all stroma.
    x, y = _lattice(width=w, height=h, spacing=10.0 * px, jitter=0.6 * px, rng=rng)
    ok = stroma_ok(x, y)
    infiltrate = fields.immune.at_points(x=x, y=y) > _IMMUNE_T
    keep = ok & np.where(infiltrate, rng.random(x.size) < 0.75, rng.random(x.size) < 0.035)
    draw = rng.random(x.size)
    immune_cls = np.where(
        infiltrate,
        np.select([draw < 0.80, draw < 0.90], [2, 3], 4),
        np.select([draw < 0.55, draw < 0.75], [2, 3], 4),
    )
    xs.append(x[keep]); ys.append(y[keep]); classes.append(immune_cls[keep])

    # Stroma: spindle cells every ~24 um, where there is no infiltrate.
    x, y = _lattice(width=w, height=h, spacing=24.0 * px, jitter=4.0 * px, rng=rng)
    keep = stroma_ok(x, y) & (fields.immune.at_points(x=x, y=y) < _IMMUNE_T - 0.3)
    keep &= rng.random(x.size) < 0.7
    xs.append(x[keep]); ys.append(y[keep]); classes.append(np.full(keep.sum(), 1))

    x = np.rint(np.concatenate(xs)).astype(np.int64)
    y = np.rint(np.concatenate(ys)).astype(np.int64)
    cls = np.concatenate(classes).astype(np.int8)
    # Drop immune/stroma cells that crowd a neighbour (different lattices can collide).
    x, y, cls = _drop_collisions(x=x, y=y, cls=cls, px=px)
    n = x.size

    variant = rng.integers(0, _VARIANTS, n).astype(np.int16)
    stroma = cls == 1
    if stroma.any():
        angle = fields.orientation.at_points(x=x[stroma].astype(float), y=y[stroma].astype(float)) % math.pi
        bins = np.rint(angle / math.pi * _STROMA_ANGLES).astype(np.int64) % _STROMA_ANGLES
        variant[stroma] = (bins * 3 + rng.integers(0, 3, bins.size)).astype(np.int16)
    radius = np.array(
        [templates[PHANTOM_CLASSES[c]][v].radius_um for c, v in zip(cls, variant)], dtype=np.float32
    )
    scale = rng.uniform(0.9, 1.1, n).astype(np.float32)

    her2, ring_variant = _assign_her2(x=x, y=y, cls=cls, score=params.her2_score, rng=rng)

    matrix = ihc_transform_matrix(
        width=w, height=h, mpp=params.mpp, offset_um=params.ihc_offset_um, rotation_deg=params.ihc_rotation_deg
    )
    ihc = matrix[:, :2] @ np.vstack([x, y]).astype(np.float64) + matrix[:, 2:]
    return _Cells(
        x=x,
        y=y,
        ihc_x=np.rint(ihc[0]).astype(np.int64),
        ihc_y=np.rint(ihc[1]).astype(np.int64),
        cls=cls,
        variant=variant,
        scale=scale,
        her2=her2,
        ring_variant=ring_variant,
        radius_um=radius,
    )


def _drop_collisions(
    *, x: NDArray[np.int64], y: NDArray[np.int64], cls: NDArray[np.int8], px: float
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int8]]:
    tree = cKDTree(np.column_stack([x, y]))
    pairs = tree.query_pairs(r=7.5 * px, output_type="ndarray")
    drop = np.zeros(x.size, dtype=bool)
    # Keep tumour cells (they carry the HER2 truth); otherwise drop the later cell.
    for i, j in pairs:
        if drop[i] or drop[j]:
            continue
        if cls[j] == 0 and cls[i] != 0:
            drop[i] = True
        else:
            drop[j] = True
    keep = ~drop
    return x[keep], y[keep], cls[keep]


def _assign_her2(
    *, x: NDArray[np.int64], y: NDArray[np.int64], cls: NDArray[np.int8], score: int, rng: np.random.Generator
) -> tuple[NDArray[np.int8], NDArray[np.int16]]:
    n = x.size
    her2 = np.full(n, -1, dtype=np.int8)
    ring_variant = rng.integers(0, 16, n).astype(np.int16)
    tumour = np.flatnonzero(cls == 0)
    if tumour.size == 0:
        return her2, ring_variant
    seeds = tumour[rng.choice(tumour.size, size=min(_ZONES, tumour.size), replace=False)]
    d2 = (x[tumour, None] - x[seeds][None]) ** 2 + (y[tumour, None] - y[seeds][None]) ** 2
    zone = np.argmin(d2, axis=1)
    sizes = np.bincount(zone, minlength=seeds.size)
    primary, *others = _ZONE_GRADES[score]
    # Largest zones get the primary grade until they hold >= half of the tumour cells.
    dominant = {}
    held = 0
    for rank, z in enumerate(np.argsort(-sizes, kind="stable")):
        if held < tumour.size / 2:
            dominant[int(z)] = primary
            held += sizes[z]
        else:
            dominant[int(z)] = others[(rank - 1) % len(others)]
    draws = rng.random(tumour.size)
    minority = np.array([HER2_CLASSES.index(g) for g in _MINORITY_GRADES[score]], dtype=np.int8)
    minority_pick = minority[rng.integers(0, minority.size, tumour.size)]
    dominant_code = np.array([HER2_CLASSES.index(dominant[int(z)]) for z in zone], dtype=np.int8)
    codes = np.where(draws < _ZONE_DOMINANCE, dominant_code, minority_pick).astype(np.int8)
    her2[tumour] = codes
    return her2, ring_variant


# --------------------------------------------------------------------------- rendering


class _Renderer:
    """Renders level-0 regions of the H&E (stain="he") or IHC (stain="ihc") phantom."""

    def __init__(
        self,
        *,
        stain: str,
        params: PhantomParameters,
        fields: _Fields,
        cells: _Cells,
        templates: dict[CellClass, list[_Template]],
        rings: dict[Her2Class, list[NDArray[np.float32]]],
    ) -> None:
        self.stain = stain
        self.params = params
        self.fields = fields
        self.templates = templates
        self.rings = rings
        self.cells = cells
        x, y = (cells.x, cells.y) if stain == "he" else (cells.ihc_x, cells.ihc_y)
        self.nbx = math.ceil(params.width / _BUCKET_PX) + 2
        nby = math.ceil(params.height / _BUCKET_PX) + 2
        # Buckets shifted by one so cells just off the canvas (IHC shift) still index.
        bx = np.clip(x // _BUCKET_PX + 1, 0, self.nbx - 1)
        by = np.clip(y // _BUCKET_PX + 1, 0, nby - 1)
        key = by * self.nbx + bx
        self.order = np.argsort(key, kind="stable")
        self.sorted_keys = key[self.order]
        self.nby = nby
        self.px, self.py = x, y
        self.margin = max(
            max(t.hematoxylin.shape[0] for ts in templates.values() for t in ts),
            max(r.shape[0] for rs in rings.values() for r in rs),
        ) // 2 + 1
        matrix = ihc_transform_matrix(
            width=params.width,
            height=params.height,
            mpp=params.mpp,
            offset_um=params.ihc_offset_um,
            rotation_deg=params.ihc_rotation_deg,
        )
        self.inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
        self.slide_code = 0 if stain == "he" else 1
        bank_rng = np.random.default_rng([params.seed, self.slide_code, 7])
        bank = bank_rng.standard_normal((24, 2, _BUCKET_PX, _BUCKET_PX), dtype=np.float32)
        # Camera/stain noise, OD sigma: H&E (H 0.006, E 0.008); IHC (H 0.006, DAB 0.004).
        bank[:, 0] *= 0.006
        bank[:, 1] *= 0.008 if stain == "he" else 0.004
        self.noise_bank = bank
        if stain == "he":
            self.lut = _StainLut(first=STAIN_RGB_FROM_HED[0], second=STAIN_RGB_FROM_HED[1], constant=None)
        else:
            # IHC: no eosin; a constant trace of it keeps the glass the same tint as the H&E.
            self.lut = _StainLut(
                first=STAIN_RGB_FROM_HED[0], second=STAIN_RGB_FROM_HED[2], constant=0.01 * STAIN_RGB_FROM_HED[1]
            )

    def __call__(self, *, x: int, y: int, width: int, height: int) -> NDArray[np.uint8]:
        first, second = self._background(x=x, y=y, width=width, height=height)
        if self.stain == "he":
            self._stamp_cells(h_od=first, e_od=second, d_od=None, x=x, y=y)
        else:
            self._stamp_cells(h_od=first, e_od=None, d_od=second, x=x, y=y)
        return self.lut.rgb(first=first, second=second)

    def _field_values(self, *, grid: _Grid, xs: NDArray[np.float64], ys: NDArray[np.float64]) -> NDArray[np.float32]:
        if self.stain == "he":
            return grid.on_raster(xs=xs, ys=ys)
        m = self.inverse
        if abs(m[0, 1]) < 1e-12 and abs(m[1, 0]) < 1e-12:
            return grid.on_raster(xs=m[0, 0] * xs + m[0, 2], ys=m[1, 1] * ys + m[1, 2])
        gx, gy = np.meshgrid(xs, ys)
        hx = m[0, 0] * gx + m[0, 1] * gy + m[0, 2]
        hy = m[1, 0] * gx + m[1, 1] * gy + m[1, 2]
        return grid.at_points(x=hx, y=hy).reshape(ys.size, xs.size)

    def _add_noise(self, *, od: NDArray[np.float32], channel: int, x: int, y: int) -> None:
        """Add per-pixel noise, fixed per 256 px tile of the canvas whatever regions are asked.

        Tiles come from a bank of noise patches picked by a hash of (seed, tile): far
        cheaper than fresh normals, and no repeat is visible.
        """
        t = _BUCKET_PX
        height, width = od.shape
        for ty in range(y // t, (y + height - 1) // t + 1):
            for tx in range(x // t, (x + width - 1) // t + 1):
                pick = ((ty * 73856093) ^ (tx * 19349663) ^ (self.params.seed * 83492791)) % self.noise_bank.shape[0]
                y0, y1 = max(y, ty * t), min(y + height, (ty + 1) * t)
                x0, x1 = max(x, tx * t), min(x + width, (tx + 1) * t)
                od[y0 - y : y1 - y, x0 - x : x1 - x] += self.noise_bank[
                    pick, channel, y0 - ty * t : y1 - ty * t, x0 - tx * t : x1 - tx * t
                ]

    def _background(
        self, *, x: int, y: int, width: int, height: int
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Stain OD without cells: (hematoxylin, eosin) for H&E, (hematoxylin, DAB) for IHC.

        Smooth parts are computed on a 2 x 2 px raster aligned to even canvas
        coordinates (a quarter of the work, invisible at 0.5 um/px); noise is per pixel.
        """
        ax, ay = x - x % 2, y - y % 2
        lw, lh = (x + width - ax + 1) // 2, (y + height - ay + 1) // 2
        xs = ax + 2.0 * np.arange(lw) + 0.5
        ys = ay + 2.0 * np.arange(lh) + 0.5
        tissue = _smoothstep(self._field_values(grid=self.fields.tissue, xs=xs, ys=ys), lo=0.0, hi=0.05)
        nest = _smoothstep(
            self._field_values(grid=self.fields.nest, xs=xs, ys=ys), lo=_NEST_T - 0.02, hi=_NEST_T + 0.06
        )
        nest *= tissue
        crop = (slice(y - ay, y - ay + height), slice(x - ax, x - ax + width))
        if self.stain == "he":
            fibre = self._field_values(grid=self.fields.fibre, xs=xs, ys=ys)
            fibre *= 0.14
            fibre += 0.40
            np.maximum(fibre, 0.12, out=fibre)
            # Eosin: fibrous stroma, smoother cytoplasm in nests; a trace of hematoxylin.
            first = _upsampled(0.05 * tissue + 0.06 * nest + 0.012, crop)
            second = _upsampled(fibre * (tissue - nest) + 0.30 * nest + 0.015, crop)
        else:
            # IHC counterstain: faint blue tissue, a trace of background chromogen.
            first = _upsampled(0.07 * tissue + 0.02 * nest + 0.012, crop)
            second = _upsampled(0.012 * tissue + 0.006, crop)
        self._add_noise(od=first, channel=0, x=x, y=y)
        self._add_noise(od=second, channel=1, x=x, y=y)
        return first, second

    def _cells_in(self, *, x: int, y: int, width: int, height: int) -> NDArray[np.int64]:
        m = self.margin
        bx0 = max((x - m) // _BUCKET_PX + 1, 0)
        bx1 = min((x + width + m) // _BUCKET_PX + 1, self.nbx - 1)
        by0 = max((y - m) // _BUCKET_PX + 1, 0)
        by1 = min((y + height + m) // _BUCKET_PX + 1, self.nby - 1)
        parts = []
        for by in range(by0, by1 + 1):
            lo = np.searchsorted(self.sorted_keys, by * self.nbx + bx0, side="left")
            hi = np.searchsorted(self.sorted_keys, by * self.nbx + bx1, side="right")
            parts.append(self.order[lo:hi])
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def _stamp_cells(
        self,
        *,
        h_od: NDArray[np.float32],
        e_od: NDArray[np.float32] | None,
        d_od: NDArray[np.float32] | None,
        x: int,
        y: int,
    ) -> None:
        height, width = h_od.shape
        cells = self.cells
        ihc = self.stain == "ihc"
        h_scale = IHC_HEMATOXYLIN_SCALE if ihc else 1.0
        for i in self._cells_in(x=x, y=y, width=width, height=height):
            cx, cy = int(self.px[i]) - x, int(self.py[i]) - y
            template = self.templates[PHANTOM_CLASSES[cells.cls[i]]][cells.variant[i]]
            s = float(cells.scale[i])
            _add(h_od, template.hematoxylin, cx, cy, s * h_scale)
            if template.eosin is not None and e_od is not None:
                _add(e_od, template.eosin, cx, cy, s)
            if ihc and cells.her2[i] >= 0:
                ring = self.rings[HER2_CLASSES[cells.her2[i]]][cells.ring_variant[i]]
                _add(d_od, ring, cx, cy, s)


class _StainLut:
    """Beer-Lambert RGB = 255 exp(-(a va + b vb + c)) for two stains, by table look-up.

    Each OD is quantised on a square-root scale (fine near white, where the eye and
    deconvolution are most sensitive): 512 x 512 entries, error below 1 grey level.
    Three times cheaper than exp per pixel and channel.
    """

    LEVELS = 512
    OD_MAX = 4.0

    def __init__(
        self, *, first: NDArray[np.float32], second: NDArray[np.float32], constant: NDArray[np.float32] | None
    ) -> None:
        centres = self.OD_MAX * (np.arange(self.LEVELS) / (self.LEVELS - 1)) ** 2
        od = centres[:, None, None] * first + centres[None, :, None] * second
        if constant is not None:
            od = od + constant
        rgb = np.rint(255.0 * np.exp(-od)).astype(np.uint32).reshape(-1, 3)
        # Packed little-endian RGBX words: one 4-byte gather per pixel instead of three.
        self.table = (rgb[:, 0] | (rgb[:, 1] << 8) | (rgb[:, 2] << 16)).astype("<u4")
        self._scale = np.float32((self.LEVELS - 1) ** 2 / self.OD_MAX)

    def _levels(self, od: NDArray[np.float32]) -> NDArray[np.int32]:
        q = np.maximum(od, 0.0)
        q *= self._scale
        np.sqrt(q, out=q)
        q += 0.5
        np.minimum(q, self.LEVELS - 1, out=q)
        return q.astype(np.int32)

    def rgb(self, *, first: NDArray[np.float32], second: NDArray[np.float32]) -> NDArray[np.uint8]:
        index = self._levels(first)
        index *= self.LEVELS
        index += self._levels(second)
        packed = np.take(self.table, index)
        return packed.view(np.uint8).reshape(*index.shape, 4)[..., :3]


def _upsampled(low: NDArray[np.float32], crop: tuple[slice, slice]) -> NDArray[np.float32]:
    """Nearest 2x upsampling, then the requested crop (a contiguous float32 copy)."""
    lh, lw = low.shape
    full = np.empty((lh, 2, lw, 2), dtype=np.float32)
    full[...] = low[:, None, :, None]
    return np.ascontiguousarray(full.reshape(2 * lh, 2 * lw)[crop])


def _add(canvas: NDArray[np.float32], stamp: NDArray[np.float32], cx: int, cy: int, weight: float) -> None:
    half = stamp.shape[0] // 2
    x0, y0 = cx - half, cy - half
    x1, y1 = x0 + stamp.shape[1], y0 + stamp.shape[0]
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x1, canvas.shape[1]), min(y1, canvas.shape[0])
    if cx0 >= cx1 or cy0 >= cy1:
        return
    canvas[cy0:cy1, cx0:cx1] += weight * stamp[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]


# --------------------------------------------------------------------------- public API


def _validated(params: PhantomParameters) -> PhantomParameters:
    if params.width < 512 or params.height < 512:
        raise PhantomError(f"phantom must be at least 512 x 512 px, got {params.width} x {params.height}")
    if params.width * params.height > 200_000 * 200_000:
        raise PhantomError("phantom larger than 200,000 x 200,000 px is not supported")
    if not (math.isfinite(params.mpp) and 0.1 <= params.mpp <= 2.0):
        raise PhantomError(f"mpp must be within 0.1..2.0 um/px (20x = 0.5), got {params.mpp}")
    if params.her2_score not in _ZONE_GRADES:
        raise PhantomError(f"her2_score must be 0, 1, 2 or 3, got {params.her2_score}")
    if not 1 <= params.tissue_islands <= 12:
        raise PhantomError(f"tissue_islands must be within 1..12, got {params.tissue_islands}")
    if abs(params.ihc_rotation_deg) > 10.0:
        raise PhantomError(f"ihc_rotation_deg must be a small angle (|deg| <= 10), got {params.ihc_rotation_deg}")
    shortest_um = min(params.width, params.height) * params.mpp
    if max(abs(v) for v in params.ihc_offset_um) > 0.05 * shortest_um:
        raise PhantomError(
            f"ihc_offset_um {params.ihc_offset_um} is more than 5 % of the slide side ({shortest_um:.0f} um)"
        )
    return params


def _paths(out_dir: Path, name: str) -> tuple[Path, Path, Path, Path]:
    if not name or name != Path(name).name or name.startswith("."):
        raise PhantomError(f"name must be a plain file stem (no folders, not hidden), got {name!r}")
    return (
        out_dir / f"{name}-he.tif",
        out_dir / f"{name}-ihc.tif",
        out_dir / f"{name}-truth.parquet",
        out_dir / f"{name}-truth.json",
    )


def generate_phantom_pair(
    *,
    out_dir: Path,
    width: int = 20480,
    height: int = 20480,
    mpp: float = 0.5,
    seed: int = 0,
    her2_score: int = 3,
    ihc_offset_um: tuple[float, float] = (24.0, -16.0),
    ihc_rotation_deg: float = 0.0,
    tissue_islands: int = 4,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
    name: str = "phantom",
) -> PhantomPair:
    """Write ``<name>-he.tif``, ``<name>-ihc.tif``, ``<name>-truth.parquet`` and ``<name>-truth.json``.

    The IHC slide is the H&E moved by ``ihc_transform`` (truth JSON): rotation by
    ``ihc_rotation_deg`` about the slide centre, then a shift of ``ihc_offset_um``.
    Every file is written to a temporary name and renamed into place; the truth JSON
    comes last and marks the set complete (ensure_phantom_pair relies on that).
    """
    params = _validated(
        PhantomParameters(
            width=int(width),
            height=int(height),
            mpp=float(mpp),
            seed=int(seed),
            her2_score=int(her2_score),
            ihc_offset_um=(float(ihc_offset_um[0]), float(ihc_offset_um[1])),
            ihc_rotation_deg=float(ihc_rotation_deg),
            tissue_islands=int(tissue_islands),
            jpeg_quality=int(jpeg_quality),
        )
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    he_path, ihc_path, truth_path, json_path = _paths(out_dir, name)
    started = time.perf_counter()

    rng = np.random.default_rng(params.seed)
    fields = _make_fields(
        width=params.width, height=params.height, mpp=params.mpp, islands=params.tissue_islands, rng=rng
    )
    templates = _make_templates(mpp=params.mpp, rng=rng)
    rings = _make_rings(mpp=params.mpp, rng=rng)
    cells = _make_cells(params=params, fields=fields, templates=templates, rng=rng)
    present = {PHANTOM_CLASSES[c] for c in np.unique(cells.cls)}
    missing = [c.value for c in PHANTOM_CLASSES if c not in present]
    if missing:
        raise PhantomError(
            f"phantom {params.width} x {params.height} px at seed {params.seed} has no {', '.join(missing)} "
            "cells; use a larger size or another seed"
        )
    her2_counts = {g.value: int((cells.her2 == k).sum()) for k, g in enumerate(HER2_CLASSES)}
    score = expected_her2_score(counts=her2_counts)
    if score != params.her2_score:  # guarded by construction in _assign_her2
        raise PhantomError(f"drawn HER2 mix scores {score}+, not the {params.her2_score}+ asked for")

    for stain, path in (("he", he_path), ("ihc", ihc_path)):
        renderer = _Renderer(stain=stain, params=params, fields=fields, cells=cells, templates=templates, rings=rings)
        write_pyramidal_tiff(
            dst=path,
            width=params.width,
            height=params.height,
            read_region=renderer,
            mpp=params.mpp,
            jpeg_quality=params.jpeg_quality,
            description=f"HER2-LADDER phantom {stain.upper()} seed={params.seed}",
        )

    _write_truth_table(cells=cells, path=truth_path)
    matrix = ihc_transform_matrix(
        width=params.width,
        height=params.height,
        mpp=params.mpp,
        offset_um=params.ihc_offset_um,
        rotation_deg=params.ihc_rotation_deg,
    )
    class_counts = {c.value: int((cells.cls == k).sum()) for k, c in enumerate(PHANTOM_CLASSES)}
    n_graded = sum(her2_counts.values())
    truth = {
        "parameters": asdict(params),
        "mpp": params.mpp,
        "width": params.width,
        "height": params.height,
        "files": {"he": he_path.name, "ihc": ihc_path.name, "cells": truth_path.name},
        "expected_her2_score": score,
        "her2_score_rule": "ASCO/CAP 2018: 3+ strong complete >10%; 2+ complete >10%; 1+ any staining >10%; else 0",
        "her2_counts": her2_counts,
        "her2_fractions": {k: v / n_graded for k, v in her2_counts.items()},
        "class_counts": class_counts,
        "n_cells": int(cells.x.size),
        "ihc_transform": {
            "matrix_he_to_ihc": matrix.tolist(),
            "offset_um": list(params.ihc_offset_um),
            "offset_px": [params.ihc_offset_um[0] / params.mpp, params.ihc_offset_um[1] / params.mpp],
            "rotation_deg": params.ihc_rotation_deg,
            "centre_px": [params.width / 2.0, params.height / 2.0],
        },
        "membrane": {
            "radius_um": MEMBRANE_RADIUS_UM,
            "sigma_um": MEMBRANE_SIGMA_UM,
            "peak_dab_od": {g.value: MEMBRANE_PEAK_OD[g] for g in HER2_CLASSES},
            "incomplete_arc_fraction": list(INCOMPLETE_ARC_FRACTION),
            "od_units": "natural-log optical density; skimage.color.rgb2hed reports od / ln(1e6)",
        },
        "ihc_hematoxylin_scale": IHC_HEMATOXYLIN_SCALE,
        "stain_matrix_rgb_from_hed": STAIN_RGB_FROM_HED.tolist(),
        "generation_seconds": round(time.perf_counter() - started, 2),
    }
    atomic_write_text(json_path, json.dumps(truth, indent=2))
    return _pair_from_truth(truth=truth, paths=(he_path, ihc_path, truth_path, json_path), generated=True)


def ensure_phantom_pair(*, out_dir: Path, name: str = "phantom", **parameters: object) -> PhantomPair:
    """Return the pair in ``out_dir``, generating it only when missing or made with other parameters.

    Takes the same keyword arguments as generate_phantom_pair.
    """
    out_dir = Path(out_dir)
    paths = _paths(out_dir, name)
    defaults = {
        k: v.default
        for k, v in inspect.signature(generate_phantom_pair).parameters.items()
        if k not in ("out_dir", "name")
    }
    unknown = set(parameters) - set(defaults)
    if unknown:
        raise PhantomError(f"unknown phantom parameters: {', '.join(sorted(unknown))}")
    wanted = {**defaults, **parameters}
    expected = asdict(
        PhantomParameters(
            width=int(wanted["width"]),
            height=int(wanted["height"]),
            mpp=float(wanted["mpp"]),
            seed=int(wanted["seed"]),
            her2_score=int(wanted["her2_score"]),
            ihc_offset_um=tuple(float(v) for v in wanted["ihc_offset_um"]),
            ihc_rotation_deg=float(wanted["ihc_rotation_deg"]),
            tissue_islands=int(wanted["tissue_islands"]),
            jpeg_quality=int(wanted["jpeg_quality"]),
        )
    )
    if all(p.exists() for p in paths):
        try:
            truth = json.loads(paths[3].read_text())
        except (OSError, json.JSONDecodeError):
            truth = None
        if truth is not None and _same_parameters(truth.get("parameters"), expected):
            return _pair_from_truth(truth=truth, paths=paths, generated=False)
    return generate_phantom_pair(out_dir=out_dir, name=name, **parameters)


def _same_parameters(stored: object, expected: dict[str, object]) -> bool:
    if not isinstance(stored, dict):
        return False
    # JSON turns tuples into lists.
    return json.loads(json.dumps(stored)) == json.loads(json.dumps(expected))


def _pair_from_truth(*, truth: dict, paths: tuple[Path, Path, Path, Path], generated: bool) -> PhantomPair:
    m = truth["ihc_transform"]["matrix_he_to_ihc"]
    return PhantomPair(
        he_path=paths[0],
        ihc_path=paths[1],
        truth_path=paths[2],
        truth_json_path=paths[3],
        width=int(truth["width"]),
        height=int(truth["height"]),
        mpp=float(truth["mpp"]),
        expected_her2_score=int(truth["expected_her2_score"]),
        class_counts=dict(truth["class_counts"]),
        her2_counts=dict(truth["her2_counts"]),
        ihc_transform=(tuple(m[0]), tuple(m[1])),
        generated=generated,
    )


def _write_truth_table(*, cells: _Cells, path: Path) -> None:
    n = cells.x.size
    her2 = [HER2_CLASSES[k].value if k >= 0 else None for k in cells.her2]
    table = pa.table(
        {
            "cell_id": pa.array(np.arange(n, dtype=np.int64)),
            "x": pa.array(cells.x.astype(np.float64)),
            "y": pa.array(cells.y.astype(np.float64)),
            "cls": pa.array([PHANTOM_CLASSES[c].value for c in cells.cls], type=pa.string()),
            "radius_um": pa.array(cells.radius_um.astype(np.float32)),
            "her2_class": pa.array(her2, type=pa.string()),
            "ihc_x": pa.array(cells.ihc_x.astype(np.float64)),
            "ihc_y": pa.array(cells.ihc_y.astype(np.float64)),
        }
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
