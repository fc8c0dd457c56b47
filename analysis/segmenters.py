"""Which segmenter analyses a slide.

LADDER_SEGMENTER chooses: "auto" (default) takes HoVer-Net on H&E where its weights are
configured (LADDER_HOVERNET_WEIGHTS), else the nucleus model the project trains and ships
(LADDER_NUCLEUS_WEIGHTS, default the shipped file), on H&E and IHC alike; the classical
segmenter only as the labelled last resort when neither can be loaded. "nucleus-model",
"hovernet" and "classical" force one (HoVer-Net falls back like "auto" when it cannot load).
"""
from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)
SEGMENTER_CHOICES = ("auto", "nucleus-model", "hovernet", "classical")


def hovernet_weights_dir() -> Path | None:
    folder = settings.LADDER_HOVERNET_WEIGHTS
    return Path(folder) if folder and Path(folder).is_dir() else None


def torch_device() -> str:
    """LADDER_TORCH_DEVICE, or 'cuda' when a GPU is visible to this worker, else 'cpu'."""
    if settings.LADDER_TORCH_DEVICE != "auto":
        return settings.LADDER_TORCH_DEVICE
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _classical(stain: str):
    if stain == "ihc":
        from analysis.core.her2.grading import IhcNucleusSegmenter

        return IhcNucleusSegmenter()
    from analysis.core.cells.segmentation.classical import ClassicalSegmenter

    return ClassicalSegmenter()


def _nucleus_model(log):
    from analysis.core.cells.segmentation.nucleus_model.segmenter import (
        SHIPPED_WEIGHTS,
        NucleusModelSegmenter,
        NucleusModelUnavailable,
    )

    weights = settings.LADDER_NUCLEUS_WEIGHTS or SHIPPED_WEIGHTS
    try:
        return NucleusModelSegmenter(weights=weights, device=torch_device(), runtime=settings.LADDER_NUCLEUS_RUNTIME)
    except NucleusModelUnavailable as exc:
        log(f"{exc}; using the classical segmenter (approximate)")
        return None


def segmenter_for(*, stain: str, choice: str | None = None, log=lambda line: None):
    """The segmenter for a stain ("he" or "ihc") under LADDER_SEGMENTER (or ``choice``)."""
    choice = choice or settings.LADDER_SEGMENTER
    if choice not in SEGMENTER_CHOICES:
        raise ValueError(f"segmenter must be one of {', '.join(SEGMENTER_CHOICES)}, got {choice!r}")
    if choice == "classical":
        return _classical(stain)
    if choice in ("auto", "hovernet") and stain == "he":
        weights = hovernet_weights_dir()
        if weights is None and choice == "hovernet":
            log("HoVer-Net weights are not configured (LADDER_HOVERNET_WEIGHTS); using the nucleus model")
        if weights is not None:
            from analysis.core.cells.segmentation.hovernet import HoverNetSegmenter, HoverNetUnavailable

            try:
                return HoverNetSegmenter(weights_dir=weights, allow_download=False, device=torch_device())
            except (HoverNetUnavailable, OSError, ValueError) as exc:
                log(f"HoVer-Net unavailable ({exc}); using the nucleus model")
    return _nucleus_model(log) or _classical(stain)
