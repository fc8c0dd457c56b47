"""Which segmenter analyses a slide: HoVer-Net where weights exist, else the classical fallback."""
from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)


def hovernet_weights_dir() -> Path | None:
    folder = settings.LADDER_HOVERNET_WEIGHTS
    return Path(folder) if folder and Path(folder).is_dir() else None


def torch_device() -> str:
    """LADDER_TORCH_DEVICE, or 'cuda' when a GPU is visible to this worker, else 'cpu'."""
    if settings.LADDER_TORCH_DEVICE != "auto":
        return settings.LADDER_TORCH_DEVICE
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def segmenter_for(*, stain: str, log=lambda line: None):
    """The segmenter for a stain. H&E: HoVer-Net (PanNuke + MoNuSAC merged) when its weights are
    in LADDER_HOVERNET_WEIGHTS, else the classical CPU segmenter (marked approximate).
    IHC: hematoxylin nuclei on H-DAB deconvolution (the HER2 grader adds membranes)."""
    if stain == "ihc":
        from analysis.core.her2.grading import IhcNucleusSegmenter

        return IhcNucleusSegmenter()
    weights = hovernet_weights_dir()
    if weights is not None:
        from analysis.core.cells.segmentation.hovernet import HoverNetSegmenter, HoverNetUnavailable

        try:
            return HoverNetSegmenter(weights_dir=weights, allow_download=False, device=torch_device())
        except (HoverNetUnavailable, OSError, ValueError) as exc:
            log(f"HoVer-Net unavailable ({exc}); using the classical segmenter")
    from analysis.core.cells.segmentation.classical import ClassicalSegmenter

    return ClassicalSegmenter()
