"""Quality control of what a run analysed: tissue, tiles, and the areas left out (glass, pen ink).

The QC raster has the tissue mask's resolution (one pixel = `downsample` level-0 px) and one
code per pixel (QC_CODES). The pipeline writes it as qc.png beside the cell table; the viewer
draws it as the "QC" overlay layer with the analysed tiles' outlines, so a pathologist sees
where the numbers come from (as HistoQC, Janowczyk et al., JCO Clin Cancer Inform 2019;3:1-7,
shows its masks).

Pen ink: marker ink is saturated green, blue-green or blue, hues no H&E or H-DAB stain takes
(eosin pink-red, hematoxylin purple-blue of low saturation, DAB brown). The rules are the RGB
pen filters of deep-histopath / histolab (`filter_green_pen`, `filter_blue_pen`: Kyle et al.,
IBM deep-histopath; histolab.filters.image_filters.GreenPenFilter / BluePenFilter), reduced to
their strongest threshold sets so that pale hematoxylin-only IHC tissue never matches: green /
blue-green ink where G exceeds R by more than 30 and B exceeds R by more than 20; blue ink
where R < 120, G < 170, B > 190 and B exceeds R by more than 80. Ink specks are grown by
`pen_grow_um` (the halo of a stroke is ink too) and pieces under `pen_min_um2` are ignored.

Out-of-focus areas are not detected (no blur measure is computed on the thumbnail: at its
resolution, ~16-30 um/px, focus cannot be judged); the layer says so.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

BACKGROUND, TISSUE, PEN, SMALL = 0, 1, 2, 3
QC_CODES = {
    TISSUE: "tissue analysed",
    PEN: "pen ink (excluded)",
    SMALL: "fragments below the minimum area (excluded)",
    BACKGROUND: "background glass (excluded)",
}


@dataclass(frozen=True)
class PenParams:
    green_r_margin: int = 30  # G - R above this: green / blue-green ink ...
    green_b_margin: int = 20  # ... with B - R above this
    blue_r_max: int = 120
    blue_g_max: int = 170
    blue_b_min: int = 190
    blue_br_margin: int = 80
    pen_grow_um: float = 10.0  # the halo of a stroke
    pen_min_um2: float = 25.0  # smaller specks: noise (set on CMU-1-Small-Region's ink flecks)


def pen_mask(*, rgb: np.ndarray, px_um: float, params: PenParams = PenParams()) -> np.ndarray:
    """Pixels of marker ink in an RGB thumbnail of `px_um` um per pixel (bool)."""
    t = np.asarray(rgb)[..., :3].astype(np.int16)
    r, g, b = t[..., 0], t[..., 1], t[..., 2]
    green = (g - r > params.green_r_margin) & (b - r > params.green_b_margin)
    blue = ((r < params.blue_r_max) & (g < params.blue_g_max) & (b > params.blue_b_min)
            & (b - r > params.blue_br_margin))
    ink = green | blue
    if not ink.any():
        return ink
    labels, n = ndi.label(ink)
    areas = np.bincount(labels.ravel())[1:] * px_um * px_um
    ink = np.concatenate([[False], areas >= params.pen_min_um2])[labels]
    grow = params.pen_grow_um / px_um
    if ink.any() and grow >= 1:
        ink = ndi.distance_transform_edt(~ink) <= grow
    return ink


def qc_raster(*, tissue: np.ndarray, pen: np.ndarray | None = None, foreground: np.ndarray | None = None) -> np.ndarray:
    """uint8 QC codes: TISSUE where analysed, PEN where ink was cut out, SMALL where the raw
    foreground (`foreground`: stain above the tissue threshold) was dropped as too small, else BACKGROUND."""
    out = np.full(tissue.shape, BACKGROUND, dtype=np.uint8)
    if foreground is not None:
        out[foreground & ~tissue] = SMALL
    if pen is not None:
        out[pen] = PEN
    out[tissue & ~(pen if pen is not None else False)] = TISSUE
    return out


def qc_from_tissue_png(mask: np.ndarray) -> np.ndarray:
    """The QC raster of a run made before qc.png existed: tissue or background only."""
    return np.where(np.asarray(mask) > 0, TISSUE, BACKGROUND).astype(np.uint8)
