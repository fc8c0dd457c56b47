"""One interface for every nucleus segmenter (classical, HoVer-Net, imported).

A segmenter takes one RGB tile and its resolution and returns the nuclei found in it, in
the tile's pixel coordinates. The whole-slide runner shifts them to level-0 pixels,
drops duplicates on tile seams and writes the cell table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

# Columns of a segmentation result (a pandas DataFrame), in tile pixel coordinates:
#   x, y      float64  centroid (x to the right, y down)
#   contour   object   (N, 2) int32 array of boundary points [[x, y], ...], closed implicitly
#   cls       str      analysis.core.cells.classes.CellClass value
#   prob      float32  class probability (1.0 where a method has none)
#   area_px   float32  pixel area of the filled contour
RESULT_COLUMNS = ("x", "y", "contour", "cls", "prob", "area_px")


@dataclass(frozen=True)
class SegmenterInfo:
    """What made the cells: recorded with every run and shown in the UI."""

    name: str  # e.g. "classical-v1", "hovernet-pannuke+monusac"
    version: str
    approximate: bool  # True for the classical CPU fallback
    weights: str = ""  # weights file(s) or "" ; "random-init" in tests
    params: dict = field(default_factory=dict)


class Segmenter(Protocol):
    info: SegmenterInfo
    # Resolution the segmenter was built for, um per pixel (HoVer-Net: 0.25 at 40x, 0.5 at 20x).
    target_mpp: float
    # Capabilities, read by the whole-slide pipeline (never the segmenter's name):
    #   stains   the stains it is made for, e.g. ("he",) or ("ihc",); an IHC run with a segmenter
    #            not made for IHC is flagged in the run's warnings
    #   label    a short human name for messages ("classical", "HoVer-Net")
    #   for_stain_matrix(matrix) (optional) the same segmenter on a slide's estimated stain vectors
    stains: tuple[str, ...]
    label: str

    def segment(self, *, rgb: np.ndarray, mpp: float):
        """Segment one tile (H, W, 3 uint8) at `mpp` um/px; return a DataFrame of RESULT_COLUMNS."""
        ...


class TwoPhaseSegmenter(Segmenter, Protocol):
    """A segmenter whose work splits into a network pass and post-processing,
    `segment(...) == finish(predict(...))`; the whole-slide pipeline overlaps the network of
    the next tile with the post-processing of this one (pipeline._segment_tiles).
    `predict` must be safe to run in another thread (it may only read the segmenter)."""

    def predict(self, *, rgb: np.ndarray, mpp: float):
        ...

    def finish(self, prediction):
        ...


def is_two_phase(segmenter) -> bool:
    return callable(getattr(segmenter, "predict", None)) and callable(getattr(segmenter, "finish", None))


class OnePhaseView:
    """A segmenter seen through `segment` only, so the pipeline takes its sequential path: the
    reference the two-phase path is checked and timed against (tests, benchmarks/pipeline_overlap.py)."""

    def __init__(self, segmenter):
        self._segmenter = segmenter
        self.info, self.target_mpp = segmenter.info, segmenter.target_mpp
        self.stains, self.label = segmenter.stains, segmenter.label

    def segment(self, *, rgb: np.ndarray, mpp: float):
        return self._segmenter.segment(rgb=rgb, mpp=mpp)
