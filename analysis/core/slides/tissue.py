"""Tissue detection on a low-resolution thumbnail, and the level-0 tiles that hold tissue.

Method (the usual whole-slide foreground detection, e.g. tiatoolbox's OtsuTissueMasker
and histolab's TissueMask, which threshold a thumbnail with Otsu's method and clean it
with morphology), made robust for H&E and for pale IHC:

1. Optical density per pixel, summed over R, G, B (Beer-Lambert; analysis.core.cells.stain):
   glass is ~0, any stain (hematoxylin, eosin, DAB) adds to it. Unlike saturation, the
   OD sum also sees grey-blue hematoxylin-only IHC tissue.
2. Threshold: Otsu (1979) on the OD sum, clamped to [min_od, max_od]: the floor keeps a
   blank slide's noise out (so a slide without tissue gives NoTissueError), the ceiling
   keeps pale tissue in when the slide is almost all tissue (Otsu then splits tissue from
   tissue).
3. Clean-up: binary closing by a disk of `closing_um`, holes filled (lumina, fat), then
   connected components smaller than `min_area_um2` dropped (dust, pen dots, debris).
All lengths are micrometres, converted with the thumbnail's resolution (mpp x downsample).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from analysis.core.cells.stain import otsu_threshold, rgb_to_od


class TissueDetectionError(ValueError):
    """Bad input to tissue detection."""


class NoTissueError(TissueDetectionError):
    """The slide shows no tissue (blank glass, or everything below the minimum area)."""


@dataclass(frozen=True)
class TissueParams:
    min_od: float = 0.12  # OD-sum floor of the threshold (glass at RGB 240 is 0.08)
    max_od: float = 0.30  # OD-sum ceiling of the threshold (pale tissue is ~0.3-0.5)
    closing_um: float = 20.0  # closing disk radius
    min_area_um2: float = 10_000.0  # smallest tissue piece kept (0.01 mm2, ~100 x 100 um)


@dataclass(frozen=True)
class TissueMask:
    """Boolean tissue mask of a thumbnail and its scale to level 0."""

    mask: np.ndarray  # (h, w) bool, True = tissue
    downsample: float  # level-0 pixels per mask pixel
    threshold_od: float  # OD-sum threshold used
    tissue_fraction: float  # fraction of mask pixels that are tissue

    def bbox_level0(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) level-0 bounding box of the tissue."""
        rows = np.flatnonzero(self.mask.any(axis=1))
        cols = np.flatnonzero(self.mask.any(axis=0))
        d = self.downsample
        return (int(cols[0] * d), int(rows[0] * d), int(np.ceil((cols[-1] + 1) * d)), int(np.ceil((rows[-1] + 1) * d)))




def detect_tissue(
    *, thumbnail: np.ndarray, downsample: float, mpp: float, params: TissueParams = TissueParams()
) -> TissueMask:
    """Tissue mask of an RGB thumbnail taken at `downsample` from a slide of `mpp` um/px.

    Raises NoTissueError when nothing is left after the clean-up.
    """
    thumb = np.asarray(thumbnail)
    if thumb.ndim != 3 or thumb.shape[2] < 3 or thumb.dtype != np.uint8:
        raise TissueDetectionError(f"expected an (H, W, 3) uint8 RGB thumbnail, got {thumb.shape} {thumb.dtype}")
    if min(thumb.shape[:2]) < 2:
        raise TissueDetectionError(f"thumbnail {thumb.shape[:2]} is too small")
    if not (downsample > 0 and mpp and mpp > 0):
        raise TissueDetectionError(f"downsample and mpp must be > 0, got {downsample!r}, {mpp!r}")
    px_um = mpp * downsample  # micrometres per thumbnail pixel
    od = rgb_to_od(rgb=np.ascontiguousarray(thumb[..., :3])).sum(axis=2)
    threshold = float(np.clip(otsu_threshold(od), params.min_od, params.max_od))
    mask = od > threshold
    if mask.any():
        radius = params.closing_um / px_um
        if radius >= 1:
            # Closing by a disk through two Euclidean distance transforms (exact, O(N) for
            # any radius; a large structuring element in binary_closing takes seconds).
            # Padding keeps the border from eroding tissue that touches it.
            r = int(np.ceil(radius)) + 1
            padded = np.pad(mask, r)
            dilated = ndi.distance_transform_edt(~padded) <= radius
            closed = ndi.distance_transform_edt(dilated) > radius
            mask = (closed | padded)[r:-r, r:-r]
        mask = ndi.binary_fill_holes(mask)
        labels, n = ndi.label(mask)
        if n:
            areas = np.bincount(labels.ravel())[1:] * px_um * px_um
            keep = np.concatenate([[False], areas >= params.min_area_um2])
            mask = keep[labels]
    if not mask.any():
        raise NoTissueError(
            f"no tissue found: no piece of at least {params.min_area_um2:g} um2 darker than OD {threshold:.3f} "
            f"(thumbnail {thumb.shape[1]}x{thumb.shape[0]}, {px_um:.1f} um/px)"
        )
    return TissueMask(mask=mask, downsample=float(downsample), threshold_od=threshold, tissue_fraction=float(mask.mean()))


def tissue_tiles(
    *, tissue: TissueMask, slide_width: int, slide_height: int, tile_px: int, margin_px: int = 0
) -> list[tuple[int, int, int, int]]:
    """Level-0 tiles (x, y, width, height) of a `tile_px` grid that touch tissue.

    A tile is kept if any mask pixel within the tile grown by `margin_px` is tissue (the
    margin keeps tiles whose overlap reaches tissue). Tiles at the right/bottom edge are
    clipped to the slide. Row-major order.
    """
    if tile_px < 1:
        raise TissueDetectionError(f"tile_px must be >= 1, got {tile_px}")
    d = tissue.downsample
    h, w = tissue.mask.shape
    # Summed-area table: any-tissue test per tile in O(1).
    sat = np.zeros((h + 1, w + 1), dtype=np.int64)
    sat[1:, 1:] = tissue.mask.cumsum(axis=0).cumsum(axis=1)
    out = []
    for y in range(0, slide_height, tile_px):
        th = min(tile_px, slide_height - y)
        r0 = int(np.clip(np.floor((y - margin_px) / d), 0, h))
        r1 = int(np.clip(np.ceil((y + th + margin_px) / d), 0, h))
        for x in range(0, slide_width, tile_px):
            tw = min(tile_px, slide_width - x)
            c0 = int(np.clip(np.floor((x - margin_px) / d), 0, w))
            c1 = int(np.clip(np.ceil((x + tw + margin_px) / d), 0, w))
            if r1 > r0 and c1 > c0 and sat[r1, c1] - sat[r0, c1] - sat[r1, c0] + sat[r0, c0] > 0:
                out.append((x, y, tw, th))
    return out
