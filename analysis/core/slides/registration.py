"""Automatic registration of two sections of one tissue (H&E <-> HER2 IHC), rigid then non-rigid.

Pure functions and dataclasses (numpy, scipy, scikit-image, OpenCV; no Django). The slides are
read through a callback at the few low resolutions the pipeline needs, so the time grows weakly
with the slide size (a 40,000^2 px slide is read as ~1,000 and ~2,000 px images).

Alignment convention (exactly the one ``SlideAlignment`` and ``static/viewer/alignment.js`` use)
--------------------------------------------------------------------------------------------------
A point ``p`` in the FIXED slide's level-0 pixels (the H&E) lies at::

    q = scale * R(rotation) * p + (offset_x, offset_y)

in the MOVING slide's level-0 pixels (the IHC); both in screen orientation (x right, y down),
``R(t) = [[cos t, -sin t], [sin t, cos t]]``, i.e. ``rotation`` turns by that many degrees
CLOCKWISE on screen. ``scale`` is moving level-0 px per fixed level-0 px (``mpp_fixed / mpp_moving``
for two sections of the same physical size). Pixel (i, j) covers [i, i+1) x [j, j+1), so these are
continuous image coordinates (what OpenSeadragon's image coordinates are).

The non-rigid part is a smooth displacement ``u`` sampled on a regular grid in the fixed slide's
level-0 pixels (node (r, c) at ``(c * spacing_px, r * spacing_px)``), applied BEFORE the similarity::

    fixed -> moving:   q = S(p + u(p))
    moving -> fixed:   p' = S^-1(q);   p = p' + v(p')

``v`` is the inverse displacement, sampled on the same grid (computed once here by fixed-point
iteration, so a client only ever does bilinear interpolation in either direction). Both grids
are stored as float16 fixed level-0 pixels. Outside the grid the edge values are used.

Method
------
1. Tissue masks on ~1,000 px thumbnails: optical density (OD) against the slide's own background
   (flat-field), summed over RGB, Otsu threshold clamped to a band, closing, hole filling, small
   pieces dropped (as tiatoolbox's OtsuTissueMasker / histolab do).
2. Both stains share hematoxylin: colour deconvolution (Ruifrok & Johnston, Anal Quant Cytol
   Histol 2001) with the three-stain H-E-DAB matrix gives a hematoxylin OD image on either slide
   that does not depend on whether the counterstain is eosin or DAB.
3. Similarity, coarse (~512 px of the tissue): two candidate sources, both re-scored the same way,
   (a) SIFT keypoints (Lowe, IJCV 2004) on the hematoxylin OD, Lowe ratio test, RANSAC
   (Fischler & Bolles 1981) with a 4-degree-of-freedom similarity model - the approach of VALIS
   (Gatenbee et al., Nat Commun 14:4502, 2023) which matches features on processed thumbnails;
   (b) a brute-force rotation search (every 5 degrees over 360) with the scale from the tissue
   areas (mask moments) and the translation by FFT cross-correlation - the fallback when the
   features fail (very different stains, few structures). The best few candidates are refined by
   ECC (Evangelidis & Psarakis, IEEE TPAMI 2008; affine, then projected to the nearest similarity
   by Umeyama's least squares, IEEE TPAMI 1991) and the one with the highest hematoxylin NCC wins.
4. Similarity, refined at the working resolution (~2,000 px of the tissue) by ECC again.
5. Non-rigid: dense optical flow (DIS, Kroeger et al., ECCV 2016) between the fixed hematoxylin and
   the similarity-warped moving hematoxylin, regularised by a tissue-weighted Gaussian normalised
   convolution (Knutsson & Westin 1993) so that it is smooth (VALIS also smooths its optical-flow
   field), sampled onto a coarse grid; kept only if it raises the hematoxylin NCC.
Every stage records the tissue-mask Dice, the hematoxylin NCC (inside the tissue) and its time.
"""
from __future__ import annotations

import base64
import io
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import cv2
import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "RegistrationError", "UnknownResolutionError", "BlankSlideError", "NoSharedTissueError",
    "SlideSource", "Similarity", "DisplacementField", "StageMetrics", "RegistrationResult",
    "RegistrationParams", "register_slides", "register_images", "tissue_mask", "hematoxylin_od",
    "map_points_fixed_to_moving", "map_points_moving_to_fixed", "map_polygon", "fit_similarity",
]


# ---------------------------------------------------------------------------------------------
# Errors (readable messages: they are shown to the pathologist in the job log)


class RegistrationError(ValueError):
    """The pair cannot be registered; the message says why in words."""


class UnknownResolutionError(RegistrationError):
    """A slide's microns per pixel is unknown, so the two cannot be put on one physical scale."""


class BlankSlideError(RegistrationError):
    """A slide shows no tissue."""


class NoSharedTissueError(RegistrationError):
    """Both slides show tissue, but not the same tissue (no alignment reaches a usable overlap)."""


# ---------------------------------------------------------------------------------------------
# Input


class RegionReader(Protocol):
    def __call__(self, *, x: int, y: int, width: int, height: int, out_width: int,
                 out_height: int) -> np.ndarray: ...


@dataclass(frozen=True)
class SlideSource:
    """A slide as the registration sees it: level-0 size, resolution and a scaled-region reader.

    ``read(x=, y=, width=, height=, out_width=, out_height=)`` returns the level-0 box
    (x, y, width, height) resampled to (out_height, out_width, 3) uint8 RGB (anything
    ``np.asarray`` turns into that, e.g. a PIL image from ``SlideReader.read_scaled``).
    """

    read: RegionReader
    width: int
    height: int
    mpp: float | None
    name: str = "slide"

    @classmethod
    def from_array(cls, *, rgb: np.ndarray, mpp: float | None, name: str = "image") -> "SlideSource":
        """An in-memory RGB image as a slide (its pixels are level 0)."""
        image = np.ascontiguousarray(np.asarray(rgb)[..., :3])
        if image.ndim != 3 or image.dtype != np.uint8:
            raise RegistrationError(f"{name}: expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        pyramid = build_pyramid(rgb=image)

        def read(*, x: int, y: int, width: int, height: int, out_width: int, out_height: int) -> np.ndarray:
            return read_from_pyramid(pyramid=pyramid, x=x, y=y, width=width, height=height,
                                     out_width=out_width, out_height=out_height)

        return cls(read=read, width=image.shape[1], height=image.shape[0], mpp=mpp, name=name)


def build_pyramid(*, rgb: np.ndarray, min_size: int = 64) -> list[np.ndarray]:
    """Levels of exact 2x box downsampling (odd rows/columns are padded by edge replication)."""
    levels = [np.ascontiguousarray(rgb)]
    while min(levels[-1].shape[:2]) > min_size:
        prev = levels[-1]
        h, w = prev.shape[:2]
        if h % 2 or w % 2:
            prev = np.pad(prev, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        levels.append(cv2.resize(prev, (prev.shape[1] // 2, prev.shape[0] // 2), interpolation=cv2.INTER_AREA))
    return levels


def read_from_pyramid(*, pyramid: Sequence[np.ndarray], x: float, y: float, width: float, height: float,
                      out_width: int, out_height: int, background: int = 255) -> np.ndarray:
    """Resample a level-0 box (continuous coordinates) from ``build_pyramid`` levels, geometrically exact.

    The level with a downsample <= the requested one is used, blurred for the remaining factor
    (anti-aliasing), and resampled with the exact affine map. Outside the image: ``background``.
    """
    sx, sy = width / out_width, height / out_height
    ds = max(min(sx, sy), 1.0)
    level = int(min(len(pyramid) - 1, max(0, math.floor(math.log2(ds) + 1e-9))))
    f = 2.0 ** level
    image = pyramid[level]
    # output index (i, j) -> level index: ((i + .5) * sx + x) / f - .5
    ax, ay = sx / f, sy / f
    bx, by = (0.5 * sx + x) / f - 0.5, (0.5 * sy + y) / f - 0.5
    # crop the level to what is needed (plus a margin for the blur), so blur cost follows the output
    margin = 4 + int(math.ceil(2 * max(ax, ay)))
    c0 = int(math.floor(bx)) - margin
    r0 = int(math.floor(by)) - margin
    c1 = int(math.ceil(bx + ax * out_width)) + margin
    r1 = int(math.ceil(by + ay * out_height)) + margin
    crop = image[max(0, r0):max(0, min(image.shape[0], r1)), max(0, c0):max(0, min(image.shape[1], c1))]
    pad = ((max(0, -r0), max(0, r1 - max(image.shape[0], r0))), (max(0, -c0), max(0, c1 - max(image.shape[1], c0))),
           (0, 0))
    crop = np.pad(crop, pad, constant_values=background) if any(p for pp in pad for p in pp) else crop
    if crop.shape[0] != r1 - r0 or crop.shape[1] != c1 - c0:
        crop = np.full((r1 - r0, c1 - c0, 3), background, np.uint8)
    sig_x, sig_y = 0.5 * math.sqrt(max(ax * ax - 1, 0)), 0.5 * math.sqrt(max(ay * ay - 1, 0))
    if sig_x > 0.1 or sig_y > 0.1:
        crop = cv2.GaussianBlur(crop, (0, 0), sigmaX=max(sig_x, 0.01), sigmaY=max(sig_y, 0.01))
    matrix = np.array([[ax, 0, bx - c0], [0, ay, by - r0]], np.float64)
    return cv2.warpAffine(crop, matrix, (out_width, out_height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(background,) * 3)


# ---------------------------------------------------------------------------------------------
# Transforms


@dataclass(frozen=True)
class Similarity:
    """``q = scale * R(rotation) * p + (offset_x, offset_y)``: fixed level-0 px -> moving level-0 px.

    rotation in degrees, clockwise on screen (y down); the same four numbers as SlideAlignment.
    """

    offset_x: float
    offset_y: float
    rotation: float
    scale: float

    @property
    def matrix(self) -> np.ndarray:
        """3x3 homogeneous matrix of the map."""
        t = math.radians(self.rotation)
        c, s = self.scale * math.cos(t), self.scale * math.sin(t)
        return np.array([[c, -s, self.offset_x], [s, c, self.offset_y], [0.0, 0.0, 1.0]])

    @classmethod
    def from_matrix(cls, matrix: np.ndarray) -> "Similarity":
        """The similarity part of a 2x3/3x3 matrix [[a, -b, tx], [b, a, ty]] (a shear is dropped)."""
        m = np.asarray(matrix, dtype=np.float64)
        a = 0.5 * (m[0, 0] + m[1, 1])
        b = 0.5 * (m[1, 0] - m[0, 1])
        return cls(offset_x=float(m[0, 2]), offset_y=float(m[1, 2]),
                   rotation=float(math.degrees(math.atan2(b, a)) % 360.0), scale=float(math.hypot(a, b)))

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Fixed level-0 (N, 2) x, y -> moving level-0."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        m = self.matrix
        return p @ m[:2, :2].T + m[:2, 2]

    def invert(self, points: np.ndarray) -> np.ndarray:
        """Moving level-0 (N, 2) -> fixed level-0 (exact inverse of ``apply``)."""
        q = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        m = self.matrix
        return (q - m[:2, 2]) @ np.linalg.inv(m[:2, :2]).T

    def as_alignment(self) -> dict[str, float]:
        """The SlideAlignment fields (rotation wrapped to [0, 360), as alignment_update stores it)."""
        return {"offset_x": float(self.offset_x), "offset_y": float(self.offset_y),
                "rotation": float(self.rotation % 360.0), "scale": float(self.scale)}


def fit_similarity(*, source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> Similarity:
    """Least-squares similarity mapping ``source`` (N, 2) onto ``target`` (Umeyama, IEEE TPAMI 1991).

    No reflection is allowed (sections are not flipped between scanners; a flipped section
    would show as a poor fit, not as a mirrored alignment).
    """
    src = np.asarray(source, np.float64).reshape(-1, 2)
    dst = np.asarray(target, np.float64).reshape(-1, 2)
    if len(src) < 2 or len(src) != len(dst):
        raise RegistrationError(f"need >= 2 matching point pairs to fit a similarity, got {len(src)}/{len(dst)}")
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    s0, d0 = src - mu_s, dst - mu_d
    # 2-D closed form: a = sum(w (s.d)), b = sum(w (s x d)) / sum(w |s|^2)
    var = float(w @ (s0 ** 2).sum(1))
    if var <= 0:
        raise RegistrationError("the source points coincide; cannot fit a similarity")
    a = float(w @ (s0 * d0).sum(1)) / var
    b = float(w @ (s0[:, 0] * d0[:, 1] - s0[:, 1] * d0[:, 0])) / var
    rot = np.array([[a, -b], [b, a]])
    t = mu_d - rot @ mu_s
    return Similarity.from_matrix(np.array([[a, -b, t[0]], [b, a, t[1]]]))


def _bilinear(grid: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear sample of a (ny, nx, C) grid at fractional (rows, cols), clamped to the edges."""
    ny, nx = grid.shape[:2]
    r = np.clip(rows, 0, ny - 1)
    c = np.clip(cols, 0, nx - 1)
    r0 = np.clip(np.floor(r).astype(np.int64), 0, max(ny - 2, 0))
    c0 = np.clip(np.floor(c).astype(np.int64), 0, max(nx - 2, 0))
    r1, c1 = np.minimum(r0 + 1, ny - 1), np.minimum(c0 + 1, nx - 1)
    fr, fc = (r - r0)[:, None], (c - c0)[:, None]
    g = grid.astype(np.float64)
    return ((1 - fr) * (1 - fc) * g[r0, c0] + (1 - fr) * fc * g[r0, c1]
            + fr * (1 - fc) * g[r1, c0] + fr * fc * g[r1, c1])


@dataclass(frozen=True)
class DisplacementField:
    """Smooth non-rigid correction on a grid in fixed level-0 px (see the module docstring).

    forward[r, c] = u at fixed level-0 (c * spacing_px, r * spacing_px); q = S(p + u(p)).
    inverse[r, c] = v at the same nodes;                                p = p' + v(p'), p' = S^-1(q).
    Both (ny, nx, 2) float16, x then y, in fixed level-0 px.
    """

    spacing_px: float
    forward: np.ndarray
    inverse: np.ndarray
    mpp: float | None = None  # of the fixed slide, for reading the grid in um

    def displacement(self, points: np.ndarray, *, inverse: bool = False) -> np.ndarray:
        p = np.asarray(points, np.float64).reshape(-1, 2)
        grid = self.inverse if inverse else self.forward
        return _bilinear(grid, p[:, 1] / self.spacing_px, p[:, 0] / self.spacing_px)

    @property
    def max_displacement_px(self) -> float:
        return float(np.hypot(*np.moveaxis(self.forward.astype(np.float32), -1, 0)).max())

    def to_dict(self) -> dict:
        """JSON-able: shapes, spacing and the two grids as base64 little-endian float16 (x, y interleaved)."""
        return {"version": 1, "spacing_px": float(self.spacing_px), "mpp": self.mpp,
                "shape": [int(self.forward.shape[0]), int(self.forward.shape[1])], "dtype": "<f2",
                "forward": base64.b64encode(self.forward.astype("<f2").tobytes()).decode("ascii"),
                "inverse": base64.b64encode(self.inverse.astype("<f2").tobytes()).decode("ascii")}

    @classmethod
    def from_dict(cls, data: dict) -> "DisplacementField":
        ny, nx = (int(v) for v in data["shape"])

        def grid(key: str) -> np.ndarray:
            raw = np.frombuffer(base64.b64decode(data[key]), dtype="<f2")
            if raw.size != ny * nx * 2:
                raise RegistrationError(f"displacement grid {key!r} has {raw.size} values, expected {ny * nx * 2}")
            return raw.reshape(ny, nx, 2).astype(np.float16)

        return cls(spacing_px=float(data["spacing_px"]), forward=grid("forward"), inverse=grid("inverse"),
                   mpp=data.get("mpp"))

    def to_npz_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez_compressed(buf, spacing_px=np.float64(self.spacing_px), forward=self.forward,
                            inverse=self.inverse, mpp=np.float64(self.mpp or np.nan))
        return buf.getvalue()


def invert_displacement_grid(*, forward: np.ndarray, spacing_px: float, iterations: int = 30) -> np.ndarray:
    """v with (g + v(g)) + u(g + v(g)) = g at every node g: fixed-point iteration v <- -u(g + v).

    Converges while the field's Jacobian is small (|du/dx| < 1; our fields are far smoother).
    """
    ny, nx = forward.shape[:2]
    rows, cols = np.mgrid[0:ny, 0:nx].astype(np.float64)
    rows, cols = rows.ravel(), cols.ravel()
    u = forward.astype(np.float64)
    v = -u.reshape(-1, 2).copy()
    for _ in range(iterations):
        v = -_bilinear(u, rows + v[:, 1] / spacing_px, cols + v[:, 0] / spacing_px)
    return v.reshape(ny, nx, 2)


def map_points_fixed_to_moving(*, points: np.ndarray, similarity: Similarity,
                               field: DisplacementField | None = None) -> np.ndarray:
    """Fixed (H&E) level-0 px (N, 2) -> moving (IHC) level-0 px, through the field then the similarity."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    if field is not None:
        p = p + field.displacement(p)
    return similarity.apply(p)


def map_points_moving_to_fixed(*, points: np.ndarray, similarity: Similarity,
                               field: DisplacementField | None = None) -> np.ndarray:
    """Moving (IHC) level-0 px (N, 2) -> fixed (H&E) level-0 px (inverse of the function above)."""
    p = similarity.invert(points)
    if field is not None:
        p = p + field.displacement(p, inverse=True)
    return p


def map_polygon(*, polygon: np.ndarray, similarity: Similarity, field: DisplacementField | None = None,
                to_moving: bool = True, max_segment_px: float | None = None) -> np.ndarray:
    """Map a closed polygon's vertices (N, 2) between the slides, first densifying long edges.

    Through a non-rigid field a straight edge becomes a curve; edges longer than
    ``max_segment_px`` (default: half the field's grid spacing) get intermediate vertices so the
    mapped outline follows it. A point annotation is a polygon of one vertex.
    """
    poly = np.asarray(polygon, np.float64).reshape(-1, 2)
    if field is not None and len(poly) > 1:
        step = max_segment_px or field.spacing_px / 2
        out = []
        closed = np.vstack([poly, poly[:1]])
        for a, b in zip(closed[:-1], closed[1:]):
            n = max(1, int(math.ceil(np.hypot(*(b - a)) / step)))
            out.append(a + (b - a) * (np.arange(n)[:, None] / n))
        poly = np.vstack(out)
    mapper = map_points_fixed_to_moving if to_moving else map_points_moving_to_fixed
    return mapper(points=poly, similarity=similarity, field=field)


# ---------------------------------------------------------------------------------------------
# Image processing: tissue mask, hematoxylin OD

# Ruifrok & Johnston (2001) unit OD vectors, as in scikit-image and analysis.core.stain.
_HED = np.array([[0.650, 0.704, 0.286], [0.072, 0.990, 0.105], [0.268, 0.570, 0.776]])
_HED = _HED / np.linalg.norm(_HED, axis=1, keepdims=True)
_HED_INV = np.linalg.inv(_HED).astype(np.float32)


def _check_rgb(rgb: np.ndarray, *, name: str) -> np.ndarray:
    image = np.asarray(rgb)
    if image.ndim != 3 or image.shape[2] < 3 or image.dtype != np.uint8:
        raise RegistrationError(f"{name}: expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    if min(image.shape[:2]) < 16:
        raise RegistrationError(f"{name}: image {image.shape[1]}x{image.shape[0]} px is too small to register")
    return np.ascontiguousarray(image[..., :3])


def background_rgb(*, rgb: np.ndarray) -> np.ndarray:
    """The glass colour: per channel, the median of the brightest 10% of pixels (by channel sum)."""
    flat = rgb.reshape(-1, 3).astype(np.float32)
    total = flat.sum(1)
    bright = flat[total >= np.percentile(total, 90)]
    return np.clip(np.median(bright, axis=0), 1.0, 255.0)


def optical_density(*, rgb: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
    """OD = -log10(I / I0) per channel with I0 the slide's own glass colour (flat field), >= 0."""
    bg = background_rgb(rgb=rgb) if background is None else np.asarray(background, np.float32)
    od = -np.log10(np.maximum(rgb.astype(np.float32), 1.0) / bg[None, None, :])
    return np.maximum(od, 0.0)


def hematoxylin_od(*, rgb: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
    """Hematoxylin concentration (OD units, >= 0) by H-E-DAB colour deconvolution (Ruifrok & Johnston 2001).

    The three-stain matrix separates hematoxylin from eosin AND from DAB, so the same call gives
    the shared channel of an H&E and of a hematoxylin-counterstained IHC slide.
    """
    od = optical_density(rgb=_check_rgb(rgb, name="image"), background=background)
    return np.maximum(od @ _HED_INV[:, 0], 0.0)


def tissue_mask(*, rgb: np.ndarray, um_per_px: float, min_od: float = 0.10, max_od: float = 0.35,
                closing_um: float = 30.0, min_area_um2: float = 20_000.0,
                min_fraction_of_largest: float = 0.02) -> np.ndarray:
    """Tissue (True) on a thumbnail: flat-fielded OD sum, clamped Otsu, closing, holes filled, specks dropped.

    Pieces smaller than ``min_area_um2`` or than ``min_fraction_of_largest`` of the largest piece
    are dropped (dust, pen dots, smudges), so a few needle-core fragments all stay.
    """
    from skimage.filters import threshold_otsu

    image = _check_rgb(rgb, name="thumbnail")
    od = optical_density(rgb=image).sum(axis=2)
    od = cv2.GaussianBlur(od, (0, 0), 1.0)
    threshold = float(np.clip(threshold_otsu(od), min_od, max_od)) if od.max() > od.min() else max_od
    mask = od > threshold
    radius = closing_um / um_per_px
    if mask.any() and radius >= 1:
        r = int(math.ceil(radius))
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        padded = np.pad(mask.astype(np.uint8), r + 1)
        mask = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, disk)[r + 1:-r - 1, r + 1:-r - 1] > 0
    mask = ndi.binary_fill_holes(mask)
    labels, n = ndi.label(mask)
    if n:
        areas = np.bincount(labels.ravel())[1:] * um_per_px ** 2
        keep = (areas >= min_area_um2) & (areas >= min_fraction_of_largest * areas.max())
        mask = np.concatenate([[False], keep])[labels]
    return mask


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class StageMetrics:
    """One stage: tissue-mask Dice and hematoxylin NCC in the fixed frame after it, and its time."""

    stage: str
    dice: float | None
    ncc: float | None
    seconds: float
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RegistrationResult:
    similarity: Similarity
    field: DisplacementField | None
    stages: tuple[StageMetrics, ...]
    fixed_size: tuple[int, int]
    moving_size: tuple[int, int]
    fixed_mpp: float
    moving_mpp: float
    seconds: float
    log: tuple[str, ...]

    def map_to_moving(self, points: np.ndarray) -> np.ndarray:
        return map_points_fixed_to_moving(points=points, similarity=self.similarity, field=self.field)

    def map_to_fixed(self, points: np.ndarray) -> np.ndarray:
        return map_points_moving_to_fixed(points=points, similarity=self.similarity, field=self.field)

    def summary(self) -> dict:
        return {"similarity": self.similarity.as_alignment(),
                "field": None if self.field is None else {
                    "spacing_px": self.field.spacing_px, "shape": list(self.field.forward.shape[:2]),
                    "max_displacement_px": round(self.field.max_displacement_px, 2)},
                "stages": [{"stage": s.stage, "dice": s.dice, "ncc": s.ncc, "seconds": round(s.seconds, 3),
                            **s.detail} for s in self.stages],
                "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class RegistrationParams:
    thumbnail_px: int = 1024  # longest side of the whole-slide thumbnails (tissue masks)
    coarse_px: int = 512  # longest side of the tissue box for the similarity search
    working_px: int = 2048  # longest side of the tissue box for refinement and the non-rigid field
    min_working_um: float = 1.0  # never finer than this (um per working px)
    rotation_step_deg: float = 5.0
    scale_range: tuple[float, float] = (0.7, 1.45)  # allowed scale relative to mpp_fixed / mpp_moving
    field_sigma_um: float = 120.0  # Gaussian regularisation of the non-rigid field
    max_field_um: float = 400.0  # larger corrections are clipped (a fold is not a deformation)
    grid_max_nodes: int = 128  # longest side of the stored displacement grid
    nonrigid: bool = True
    min_dice: float = 0.25  # below this after the similarity: "no shared tissue"


# ---------------------------------------------------------------------------------------------
# Working images


@dataclass
class _View:
    """An image of a slide region: index (u, v) (pixel centres) -> level-0 by a 3x3 matrix."""

    rgb: np.ndarray
    to_level0: np.ndarray  # 3x3, level0 = M @ [u, v, 1]
    mpp: float  # of the slide's level 0
    mask: np.ndarray | None = None
    hema: np.ndarray | None = None

    @property
    def um_per_px(self) -> float:
        return float(math.sqrt(abs(np.linalg.det(self.to_level0[:2, :2])))) * self.mpp


def _read_view(source: SlideSource, *, box: tuple[float, float, float, float], um_per_px: float) -> _View:
    x, y, w, h = box
    mpp = float(source.mpp)
    ow = max(16, int(round(w * mpp / um_per_px)))
    oh = max(16, int(round(h * mpp / um_per_px)))
    rgb = np.asarray(source.read(x=int(round(x)), y=int(round(y)), width=int(round(w)), height=int(round(h)),
                                 out_width=ow, out_height=oh))
    rgb = _check_rgb(rgb, name=source.name)
    if rgb.shape[:2] != (oh, ow):
        rgb = cv2.resize(rgb, (ow, oh), interpolation=cv2.INTER_AREA)
    dx, dy = round(w) / ow, round(h) / oh
    # level-0 = (u + 0.5) * d + x0: the continuous convention, pixel i covers [i, i+1)
    m = np.array([[dx, 0, 0.5 * dx + round(x)], [0, dy, 0.5 * dy + round(y)], [0, 0, 1.0]])
    return _View(rgb=rgb, to_level0=m, mpp=mpp)


def _index_map(fixed: _View, moving: _View, similarity: Similarity) -> np.ndarray:
    """3x3: fixed view index -> moving view index under the similarity."""
    return np.linalg.inv(moving.to_level0) @ similarity.matrix @ fixed.to_level0


def _warp(image: np.ndarray, index_map: np.ndarray, shape: tuple[int, int], *, nearest: bool = False,
          flow: np.ndarray | None = None) -> np.ndarray:
    """Moving image resampled into the fixed view (index_map: fixed index -> moving index)."""
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    src = image.astype(np.float32) if image.dtype == bool else image
    if flow is None:
        out = cv2.warpAffine(src, index_map[:2], (shape[1], shape[0]), flags=interp | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    else:
        v, u = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
        u, v = u + flow[..., 0], v + flow[..., 1]
        m = index_map.astype(np.float32)
        map_x = m[0, 0] * u + m[0, 1] * v + m[0, 2]
        map_y = m[1, 0] * u + m[1, 1] * v + m[1, 2]
        out = cv2.remap(src, map_x, map_y, interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out > 0.5 if image.dtype == bool else out


def _ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float | None:
    if mask.sum() < 16:
        return None
    x, y = a[mask].astype(np.float64), b[mask].astype(np.float64)
    x, y = x - x.mean(), y - y.mean()
    den = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 0 else None


def _dice(a: np.ndarray, b: np.ndarray) -> float | None:
    total = int(a.sum()) + int(b.sum())
    return float(2.0 * np.logical_and(a, b).sum() / total) if total else None


def _score(fixed: _View, moving: _View, similarity: Similarity, *, flow: np.ndarray | None = None,
           blur_px: float = 1.0) -> tuple[float | None, float | None]:
    """(Dice of the tissue masks, NCC of the hematoxylin inside the fixed or moved tissue)."""
    m = _index_map(fixed, moving, similarity)
    shape = fixed.mask.shape
    warped_mask = _warp(moving.mask, m, shape, nearest=True, flow=flow)
    warped_h = _warp(moving.hema, m, shape, flow=flow)
    fh = fixed.hema
    if blur_px > 0:
        fh, warped_h = cv2.GaussianBlur(fh, (0, 0), blur_px), cv2.GaussianBlur(warped_h, (0, 0), blur_px)
    both = fixed.mask | warped_mask
    ncc = _ncc(fh, warped_h, both)
    return _dice(fixed.mask, warped_mask), (None if ncc is None else round(ncc, 4))


def _prepare(view: _View, *, mask: np.ndarray | None = None) -> _View:
    view.hema = hematoxylin_od(rgb=view.rgb)
    view.mask = tissue_mask(rgb=view.rgb, um_per_px=view.um_per_px) if mask is None else mask
    return view


def _to_u8(image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    ref = image[mask] if mask is not None and mask.any() else image
    hi = float(np.percentile(ref, 99.5)) if ref.size else 1.0
    return np.clip(image * (255.0 / max(hi, 1e-6)), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Similarity candidates


def _similarity_from_index(fixed: _View, moving: _View, m_index: np.ndarray) -> Similarity:
    """Level-0 similarity from a fixed-index -> moving-index 2x3/3x3 map (least squares over the view)."""
    full = np.vstack([np.asarray(m_index, np.float64)[:2], [0, 0, 1]])
    level0 = moving.to_level0 @ full @ np.linalg.inv(fixed.to_level0)
    h, w = fixed.hema.shape
    pts = np.array([[0, 0], [w, 0], [0, h], [w, h], [w / 2, h / 2]], np.float64)
    src = np.c_[pts, np.ones(len(pts))] @ fixed.to_level0.T
    dst = src @ level0.T
    return fit_similarity(source=src[:, :2], target=dst[:, :2])


def _sift_candidate(fixed: _View, moving: _View, log: list[str]) -> Similarity | None:
    """SIFT on hematoxylin OD, Lowe ratio 0.8, RANSAC similarity (cv2.estimateAffinePartial2D)."""
    sift = cv2.SIFT_create(nfeatures=4000)
    a, b = _to_u8(fixed.hema, fixed.mask), _to_u8(moving.hema, moving.mask)
    ka, da = sift.detectAndCompute(a, (fixed.mask * 255).astype(np.uint8) if fixed.mask.any() else None)
    kb, db = sift.detectAndCompute(b, (moving.mask * 255).astype(np.uint8) if moving.mask.any() else None)
    if da is None or db is None or len(ka) < 8 or len(kb) < 8:
        log.append(f"features: too few keypoints ({len(ka)}, {len(kb)})")
        return None
    matches = cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, db, k=2)
    good = [m for m, n in (p for p in matches if len(p) == 2) if m.distance < 0.8 * n.distance]
    if len(good) < 8:
        log.append(f"features: {len(good)} matches after the ratio test (need 8)")
        return None
    src = np.float32([ka[m.queryIdx].pt for m in good])
    dst = np.float32([kb[m.trainIdx].pt for m in good])
    matrix, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=4.0,
                                                  maxIters=5000, confidence=0.999)
    n_in = int(inliers.sum()) if inliers is not None else 0
    log.append(f"features: {len(ka)}/{len(kb)} SIFT keypoints, {len(good)} matches, {n_in} RANSAC inliers")
    if matrix is None or n_in < 6:
        return None
    # cv2 uses pixel-centre indices: the same as our view indices.
    return _similarity_from_index(fixed, moving, matrix)


def _xcorr_shift(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Shift (dx, dy) maximising sum a(x) b(x - d) (zero-padded FFT), with the peak value."""
    h, w = a.shape
    fh, fw = cv2.getOptimalDFTSize(2 * h), cv2.getOptimalDFTSize(2 * w)
    fa = np.fft.rfft2(a, s=(fh, fw))
    fb = np.fft.rfft2(b, s=(fh, fw))
    corr = np.fft.irfft2(fa * np.conj(fb), s=(fh, fw))
    iy, ix = np.unravel_index(int(np.argmax(corr)), corr.shape)
    dy = iy if iy < fh // 2 else iy - fh
    dx = ix if ix < fw // 2 else ix - fw
    return float(dx), float(dy), float(corr[iy, ix])


def _rotation_candidates(fixed: _View, moving: _View, *, step_deg: float, scale: float,
                         keep: int = 3) -> list[Similarity]:
    """Brute-force rotation search: scale from mask areas, translation by cross-correlation."""
    feat_f = cv2.GaussianBlur(_to_u8(fixed.hema, fixed.mask).astype(np.float32) / 255 + 0.5 * fixed.mask, (0, 0), 2)
    feat_m = cv2.GaussianBlur(_to_u8(moving.hema, moving.mask).astype(np.float32) / 255 + 0.5 * moving.mask, (0, 0), 2)
    # search at <= 256 px
    f = min(1.0, 256.0 / max(feat_f.shape))
    small_f = cv2.resize(feat_f, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    small_m = cv2.resize(feat_m, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    cf = np.array(ndi.center_of_mass(fixed.mask))[::-1] * f
    cm = np.array(ndi.center_of_mass(moving.mask))[::-1] * f
    scored = []
    for angle in np.arange(0.0, 360.0, step_deg):
        t = math.radians(angle)
        rot = scale * np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
        m = np.eye(3)
        m[:2, :2] = rot
        m[:2, 2] = cm - rot @ cf  # fixed small index -> moving small index, centroids matched
        warped = cv2.warpAffine(small_m, m[:2], (small_f.shape[1], small_f.shape[0]),
                                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        dx, dy, peak = _xcorr_shift(small_f, warped)
        # fixed(x) ~ warped(x - d): fixed index x -> moving index m(x - d)
        shift = np.eye(3)
        shift[:2, 2] = [-dx, -dy]
        scored.append((peak, m @ shift))
    scored.sort(key=lambda item: -item[0])
    to_small = np.diag([f, f, 1.0])
    out, seen = [], []
    for _, m in scored:
        angle = math.degrees(math.atan2(m[1, 0], m[0, 0])) % 360
        if any(min(abs(angle - s), 360 - abs(angle - s)) < 2.5 * step_deg for s in seen):
            continue
        seen.append(angle)
        out.append(_similarity_from_index(fixed, moving, np.linalg.inv(to_small) @ m @ to_small))
        if len(out) >= keep:
            break
    return out


def _ecc_refine(fixed: _View, moving: _View, similarity: Similarity, *, iterations: int = 80,
                blur_px: float = 2.0) -> Similarity | None:
    """ECC (Evangelidis & Psarakis 2008) affine on the hematoxylin, projected to a similarity."""
    m = _index_map(fixed, moving, similarity)
    a = cv2.GaussianBlur(_to_u8(fixed.hema, fixed.mask).astype(np.float32), (0, 0), blur_px)
    b = cv2.GaussianBlur(_to_u8(moving.hema, moving.mask).astype(np.float32), (0, 0), blur_px)
    warp = m[:2].astype(np.float32)
    # OpenCV's ECC mask marks the valid pixels of the INPUT (moving) image
    mask = cv2.dilate(moving.mask.astype(np.uint8), np.ones((5, 5), np.uint8))
    try:
        for extra in (2.0, 0.0):  # coarse-to-fine in blur: wider capture first, then the detail
            aa = cv2.GaussianBlur(a, (0, 0), extra) if extra else a
            bb = cv2.GaussianBlur(b, (0, 0), extra) if extra else b
            _, warp = cv2.findTransformECC(aa, bb, warp, cv2.MOTION_AFFINE,
                                           (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, 1e-5),
                                           mask, 1)
    except cv2.error:
        return None
    # Nearest similarity over the fixed tissue (the shear/anisotropy is left to the non-rigid stage).
    ys, xs = np.nonzero(fixed.mask[::4, ::4])
    pts = np.c_[xs * 4.0, ys * 4.0]
    if len(pts) < 3:
        return None
    dst = pts @ warp[:, :2].T.astype(np.float64) + warp[:, 2]
    src0 = np.c_[pts, np.ones(len(pts))] @ fixed.to_level0.T
    dst0 = np.c_[dst, np.ones(len(dst))] @ moving.to_level0.T
    return fit_similarity(source=src0[:, :2], target=dst0[:, :2])


# ---------------------------------------------------------------------------------------------
# Non-rigid


def _normalised_convolution(values: np.ndarray, weight: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian normalised convolution (Knutsson & Westin 1993) of (H, W, C) values with weights.

    Done at a resolution reduced to ~sigma/4 per pixel (the result is smooth at that scale), then
    upsampled: a sigma of 100+ px costs the same as one of 4 px. Returns (smoothed, blurred weight).
    """
    h, w = weight.shape
    f = max(1.0, sigma / 4.0)
    sh, sw = max(2, int(round(h / f))), max(2, int(round(w / f)))
    wt = weight.astype(np.float32)
    small_w = cv2.resize(wt, (sw, sh), interpolation=cv2.INTER_AREA)
    small_v = cv2.resize((values * wt[..., None]).astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA)
    s = sigma * sw / w
    small_w = cv2.GaussianBlur(small_w, (0, 0), s)
    small_v = cv2.GaussianBlur(small_v, (0, 0), s)
    if small_v.ndim == 2:
        small_v = small_v[..., None]
    out = small_v / np.maximum(small_w, 1e-6)[..., None]
    big = cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)
    if big.ndim == 2:
        big = big[..., None]
    return big, cv2.resize(small_w, (w, h), interpolation=cv2.INTER_LINEAR)


def _estimate_flow(fixed: _View, moving: _View, similarity: Similarity, *, sigma_px: float,
                   max_px: float, prior: np.ndarray | None = None) -> np.ndarray:
    """Dense displacement (fixed view px) with fixed(x) ~ moving(S(x + f(x))), smooth, tissue-weighted."""
    m = _index_map(fixed, moving, similarity)
    shape = fixed.hema.shape
    warped = _warp(moving.hema, m, shape, flow=prior)
    warped_mask = _warp(moving.mask, m, shape, nearest=True, flow=prior)
    a = cv2.GaussianBlur(_to_u8(fixed.hema, fixed.mask), (0, 0), 1.0)
    b = cv2.GaussianBlur(_to_u8(warped, warped_mask), (0, 0), 1.0)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(a, b, None)
    # confidence: tissue in both, and some hematoxylin structure (gradients) to lock onto
    weight = (fixed.mask & warped_mask).astype(np.float32)
    grad = cv2.GaussianBlur(np.hypot(cv2.Sobel(a, cv2.CV_32F, 1, 0), cv2.Sobel(a, cv2.CV_32F, 0, 1)), (0, 0), 4)
    weight *= np.clip(grad / (np.percentile(grad[weight > 0], 75) + 1e-6 if weight.any() else 1.0), 0, 1)
    smooth, w = _normalised_convolution(flow, weight, sigma_px)
    # far from tissue: fade to zero displacement (a wider normalised convolution, then a ramp)
    # far from tissue: a wider normalised convolution with a weak zero prior (the denominator gets a
    # constant), so the correction decays smoothly to 0 over a few sigma instead of a step
    wide_num, w_wide = _normalised_convolution(flow, weight, 4 * sigma_px)
    wide = wide_num * (w_wide / (w_wide + 0.1 * w_wide.max() + 1e-6))[..., None]
    alpha = np.clip(w / (w.max() * 0.3 + 1e-6), 0, 1)[..., None]
    alpha = alpha * alpha * (3 - 2 * alpha)  # smoothstep
    smooth = alpha * smooth + (1 - alpha) * wide
    if prior is not None:
        smooth = smooth + prior  # compose approximately: fixed x -> x + prior + delta
    mag = np.hypot(smooth[..., 0], smooth[..., 1])
    too_big = mag > max_px
    if too_big.any():
        smooth[too_big] *= (max_px / mag[too_big])[:, None]
    return smooth


def _flow_to_grid(fixed: _View, flow: np.ndarray, *, fixed_size: tuple[int, int], max_nodes: int,
                  min_spacing_px: float, mpp: float) -> DisplacementField:
    """Sample the dense working-resolution field at grid nodes in fixed level-0 px."""
    w0, h0 = fixed_size
    spacing = max(min_spacing_px, max(w0, h0) / (max_nodes - 1))
    nx, ny = int(math.ceil(w0 / spacing)) + 1, int(math.ceil(h0 / spacing)) + 1
    gy, gx = np.mgrid[0:ny, 0:nx].astype(np.float64) * spacing
    inv = np.linalg.inv(fixed.to_level0)
    u = inv[0, 0] * gx + inv[0, 1] * gy + inv[0, 2]
    v = inv[1, 0] * gx + inv[1, 1] * gy + inv[1, 2]
    level0 = np.empty((ny, nx, 2), np.float64)
    lin = fixed.to_level0[:2, :2]
    for c in range(2):
        level0[..., c] = ndi.map_coordinates(flow[..., c], [v, u], order=1, mode="nearest")
    level0 = level0 @ lin.T  # view px -> level-0 px
    forward = level0.astype(np.float16)
    inverse = invert_displacement_grid(forward=forward.astype(np.float64), spacing_px=spacing).astype(np.float16)
    return DisplacementField(spacing_px=float(spacing), forward=forward, inverse=inverse, mpp=mpp)


# ---------------------------------------------------------------------------------------------
# The pipeline


def _check_source(source: SlideSource, role: str) -> None:
    if source.mpp is None or not (isinstance(source.mpp, (int, float)) and math.isfinite(source.mpp)
                                  and source.mpp > 0):
        raise UnknownResolutionError(
            f"the {role} slide ({source.name}) has no known resolution (microns per pixel); set it in the "
            f"case page's Slides list (the registration then runs again by itself)")
    if source.width < 16 or source.height < 16:
        raise RegistrationError(f"the {role} slide ({source.name}) is only {source.width}x{source.height} px")


def _tissue_box(view: _View, *, margin: float = 0.05) -> tuple[float, float, float, float]:
    rows = np.flatnonzero(view.mask.any(1))
    cols = np.flatnonzero(view.mask.any(0))
    corners = np.array([[cols[0], rows[0], 1], [cols[-1] + 1, rows[-1] + 1, 1]], np.float64)
    corners[:, :2] -= 0.5  # index -> continuous edge
    (x0, y0, _), (x1, y1, _) = corners @ view.to_level0.T
    mx, my = margin * (x1 - x0) + 4 * view.to_level0[0, 0], margin * (y1 - y0) + 4 * view.to_level0[1, 1]
    return x0 - mx, y0 - my, (x1 - x0) + 2 * mx, (y1 - y0) + 2 * my


def register_slides(*, fixed: SlideSource, moving: SlideSource,
                    params: RegistrationParams = RegistrationParams(),
                    progress: Callable[[str, float], None] | None = None) -> RegistrationResult:
    """Register ``moving`` (e.g. IHC) onto ``fixed`` (e.g. H&E): similarity, then a smooth field.

    Raises UnknownResolutionError, BlankSlideError, NoSharedTissueError (all RegistrationError)
    with a message fit for the job log; nothing is written anywhere.
    ``progress(stage, fraction)`` is called between the stages.
    """
    started = time.perf_counter()
    log: list[str] = []
    stages: list[StageMetrics] = []
    _check_source(fixed, "fixed")
    _check_source(moving, "moving")
    note = progress or (lambda stage, fraction: None)
    prior_scale = float(fixed.mpp) / float(moving.mpp)

    # 1. thumbnails and tissue masks (same um/px on both sides)
    t0 = time.perf_counter()
    extent_um = max(fixed.width * fixed.mpp, fixed.height * fixed.mpp, moving.width * moving.mpp,
                    moving.height * moving.mpp)
    thumb_um = max(extent_um / params.thumbnail_px, min(fixed.mpp, moving.mpp))
    views = {}
    for role, src in (("fixed", fixed), ("moving", moving)):
        view = _prepare(_read_view(src, box=(0, 0, src.width, src.height), um_per_px=thumb_um))
        if not view.mask.any():
            raise BlankSlideError(f"no tissue found on the {role} slide ({src.name}): it looks blank")
        views[role] = view
    tf, tm = views["fixed"], views["moving"]
    identity = Similarity(offset_x=0.0, offset_y=0.0, rotation=0.0, scale=prior_scale)
    dice, ncc = _score(tf, tm, identity)
    area_f, area_m = tf.mask.sum() * tf.um_per_px ** 2, tm.mask.sum() * tm.um_per_px ** 2
    stages.append(StageMetrics(stage="initial", dice=dice, ncc=ncc, seconds=time.perf_counter() - t0, detail={
        "thumbnail_um_per_px": round(thumb_um, 3), "tissue_mm2_fixed": round(area_f / 1e6, 3),
        "tissue_mm2_moving": round(area_m / 1e6, 3)}))
    log.append(f"tissue: {area_f / 1e6:.2f} mm2 fixed, {area_m / 1e6:.2f} mm2 moving at {thumb_um:.1f} um/px")
    note("tissue", 0.15)

    # 2. coarse similarity on the tissue boxes
    t0 = time.perf_counter()
    box_f, box_m = _tissue_box(tf), _tissue_box(tm)
    box_um = max(box_f[2] * fixed.mpp, box_f[3] * fixed.mpp, box_m[2] * moving.mpp, box_m[3] * moving.mpp)
    coarse_um = max(box_um / params.coarse_px, min(fixed.mpp, moving.mpp))
    cf = _prepare(_read_view(fixed, box=box_f, um_per_px=coarse_um))
    cm = _prepare(_read_view(moving, box=box_m, um_per_px=coarse_um))
    for view, role in ((cf, "fixed"), (cm, "moving")):
        if not view.mask.any():
            raise BlankSlideError(f"no tissue found on the {role} slide at {coarse_um:.1f} um/px")
    area_scale = math.sqrt(cm.mask.sum() / max(cf.mask.sum(), 1))  # moving px per fixed px, same um/px
    candidates: list[tuple[str, Similarity]] = []
    sift = _sift_candidate(cf, cm, log)
    if sift is not None:
        candidates.append(("features", sift))
    for sim in _rotation_candidates(cf, cm, step_deg=params.rotation_step_deg,
                                    scale=float(np.clip(area_scale, *params.scale_range))):
        candidates.append(("rotation search", sim))
    lo, hi = params.scale_range[0] * prior_scale, params.scale_range[1] * prior_scale
    best = None
    tried = []
    for source_name, sim in candidates:
        refined = _ecc_refine(cf, cm, sim) or sim
        if not (lo <= refined.scale <= hi):
            refined = sim
        if not (lo <= refined.scale <= hi):
            tried.append(f"{source_name}: scale {refined.scale / prior_scale:.2f} out of range")
            continue
        d, n = _score(cf, cm, refined, blur_px=2.0)
        tried.append(f"{source_name}: rot {refined.rotation:.1f} scale {refined.scale / prior_scale:.3f} "
                     f"dice {d if d is None else round(d, 3)} ncc {n}")
        key = (n if n is not None else -1.0) + 0.5 * (d or 0.0)
        if best is None or key > best[0]:
            best = (key, source_name, refined, d, n)
    log.append("coarse candidates: " + "; ".join(tried))
    if best is None:
        raise NoSharedTissueError("no plausible alignment: every candidate needs a scale outside "
                                  f"{params.scale_range[0]}-{params.scale_range[1]} x the resolution ratio")
    _, chosen_by, similarity, dice, ncc = best
    stages.append(StageMetrics(stage="similarity_coarse", dice=dice, ncc=ncc, seconds=time.perf_counter() - t0,
                               detail={"um_per_px": round(coarse_um, 3), "chosen": chosen_by,
                                       "candidates": len(candidates)}))
    log.append(f"coarse similarity by {chosen_by}: rotation {similarity.rotation:.2f} deg, scale "
               f"{similarity.scale:.4f}, offset ({similarity.offset_x:.0f}, {similarity.offset_y:.0f}) px; "
               f"dice {dice}, ncc {ncc}")
    if dice is None or dice < params.min_dice:
        raise NoSharedTissueError(
            f"the two slides do not seem to show the same tissue: the best alignment found overlaps the tissue "
            f"masks by only Dice {0 if dice is None else dice:.2f} (need {params.min_dice}); the old alignment is kept")
    note("similarity", 0.45)

    # 3. refined similarity at the working resolution
    t0 = time.perf_counter()
    work_um = max(box_um / params.working_px, min(fixed.mpp, moving.mpp), params.min_working_um)
    wf = _prepare(_read_view(fixed, box=box_f, um_per_px=work_um))
    wm = _prepare(_read_view(moving, box=box_m, um_per_px=work_um))
    # ECC at half the working resolution (enough for 4 parameters, 4x cheaper)
    half_um = 2 * work_um
    hf = _prepare(_read_view(fixed, box=box_f, um_per_px=half_um))
    hm = _prepare(_read_view(moving, box=box_m, um_per_px=half_um))
    before = _score(hf, hm, similarity)
    refined = _ecc_refine(hf, hm, similarity, blur_px=1.5)
    after = _score(hf, hm, refined) if refined is not None else (None, None)
    if refined is not None and lo <= refined.scale <= hi and (after[1] or -1) >= (before[1] or -1):
        similarity = refined
        log.append(f"refined similarity at {half_um:.1f} um/px: ncc {before[1]} -> {after[1]}")
    else:
        log.append(f"refinement at {half_um:.1f} um/px did not improve (ncc {before[1]} -> {after[1]}); kept coarse")
    dice, ncc = _score(wf, wm, similarity)
    stages.append(StageMetrics(stage="similarity", dice=dice, ncc=ncc, seconds=time.perf_counter() - t0,
                               detail={"um_per_px": round(work_um, 3)}))
    note("refinement", 0.7)

    # 4. non-rigid field
    displacement = None
    if params.nonrigid:
        t0 = time.perf_counter()
        sigma_px = params.field_sigma_um / work_um
        flow = _estimate_flow(wf, wm, similarity, sigma_px=sigma_px, max_px=params.max_field_um / work_um)
        flow = _estimate_flow(wf, wm, similarity, sigma_px=sigma_px, max_px=params.max_field_um / work_um,
                              prior=flow)
        d_nr, n_nr = _score(wf, wm, similarity, flow=flow)
        candidate = _flow_to_grid(wf, flow, fixed_size=(fixed.width, fixed.height),
                                  max_nodes=params.grid_max_nodes, min_spacing_px=2 * work_um / fixed.mpp,
                                  mpp=float(fixed.mpp))
        keep = n_nr is not None and ncc is not None and n_nr > ncc
        if keep:
            displacement = candidate
            log.append(f"non-rigid: max {candidate.max_displacement_px * fixed.mpp:.1f} um, ncc {ncc} -> {n_nr}, "
                       f"grid {candidate.forward.shape[1]}x{candidate.forward.shape[0]} every "
                       f"{candidate.spacing_px * fixed.mpp:.0f} um")
        else:
            log.append(f"non-rigid field dropped: it did not raise the hematoxylin NCC ({ncc} -> {n_nr})")
        stages.append(StageMetrics(stage="nonrigid", dice=d_nr if keep else dice, ncc=n_nr if keep else ncc,
                                   seconds=time.perf_counter() - t0,
                                   detail={"kept": keep, "sigma_um": params.field_sigma_um}))
    note("done", 1.0)
    return RegistrationResult(similarity=similarity, field=displacement, stages=tuple(stages),
                              fixed_size=(fixed.width, fixed.height), moving_size=(moving.width, moving.height),
                              fixed_mpp=float(fixed.mpp), moving_mpp=float(moving.mpp),
                              seconds=time.perf_counter() - started, log=tuple(log))


def register_images(*, fixed_rgb: np.ndarray, moving_rgb: np.ndarray, fixed_mpp: float | None,
                    moving_mpp: float | None, params: RegistrationParams = RegistrationParams()) -> RegistrationResult:
    """``register_slides`` for two in-memory RGB images (their pixels are level 0)."""
    return register_slides(fixed=SlideSource.from_array(rgb=fixed_rgb, mpp=fixed_mpp, name="fixed image"),
                           moving=SlideSource.from_array(rgb=moving_rgb, mpp=moving_mpp, name="moving image"),
                           params=params)
