"""The product's default nucleus segmenter: the nucleus model trained here (net.py), on H&E and
on HER2 IHC (trained with IHC-like recolouring, see training.py), on CPU or GPU.

Weights: ``weights/ladder-nucleus-v1.pt`` beside this file (MODEL_CARD.md says what it was
trained on, its licences and its measured accuracy), or any file trained by
``manage.py train_segmenter``. Every run records the file's SHA-256 (SegmenterInfo.weights).
"""
from __future__ import annotations

import os
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.core.cells.classes import CellClass
from analysis.core.cells.segmentation.base import RESULT_COLUMNS, SegmenterInfo
from analysis.core.cells.segmentation.nucleus_model.inference import NucleusRuntimeError, load_weights, segment_rgb
from analysis.core.cells.segmentation.nucleus_model.net import ARCH_VERSION

SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "weights" / "ladder-nucleus-v1.pt"
MODEL_CLASS_TO_CELL = {
    "tumour": CellClass.TUMOUR.value,
    "stroma": CellClass.STROMA.value,
    "lymphocyte": CellClass.LYMPHOCYTE.value,
    "other": CellClass.OTHER.value,
}


class NucleusModelUnavailable(RuntimeError):
    """The weights file is missing or unreadable (the caller falls back, and says so)."""


@lru_cache(maxsize=4)
def _loaded(path: str, device: str, runtime: str, threads: int):  # threads: an ONNX Runtime session keeps its own
    try:
        return load_weights(path=Path(path), device=device, runtime=runtime)
    except NucleusRuntimeError:
        raise  # a configuration mistake: say so rather than fall back silently
    except (OSError, RuntimeError, KeyError, ValueError, pickle.UnpicklingError) as exc:
        raise NucleusModelUnavailable(f"nucleus model weights {path} could not be loaded: {exc}") from exc


def labels_to_result(*, labels: np.ndarray, classes: list[str], probs: np.ndarray) -> pd.DataFrame:
    """RESULT_COLUMNS from an instance label map (tile pixels): outer contour per instance
    (OpenCV, [x, y] int32), centroid of its pixels, pixel area."""
    import cv2
    from scipy import ndimage as ndi

    rows = {"x": [], "y": [], "contour": [], "cls": [], "prob": [], "area_px": []}
    for index, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        mask = (labels[sl] == index).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if not contours:
            continue
        contour = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.int32)
        if len(contour) < 3:
            continue
        contour[:, 0] += sl[1].start
        contour[:, 1] += sl[0].start
        ys, xs = np.nonzero(mask)
        rows["x"].append(float(xs.mean() + sl[1].start))
        rows["y"].append(float(ys.mean() + sl[0].start))
        rows["contour"].append(contour)
        rows["cls"].append(classes[index])
        rows["prob"].append(float(probs[index]))
        rows["area_px"].append(float(mask.sum()))
    frame = pd.DataFrame({
        "x": np.asarray(rows["x"], np.float64), "y": np.asarray(rows["y"], np.float64),
        "contour": pd.Series(rows["contour"], dtype=object),
        "cls": np.asarray(rows["cls"], dtype=object), "prob": np.asarray(rows["prob"], np.float32),
        "area_px": np.asarray(rows["area_px"], np.float32),
    }, columns=list(RESULT_COLUMNS))
    return frame


class NucleusModelSegmenter:
    """Segmenter interface (segmentation/base.py) over the trained nucleus model."""

    stains = ("he", "ihc")
    label = "nucleus model"

    def __init__(self, *, weights: Path | str = SHIPPED_WEIGHTS, device: str = "cpu", threads: int | None = None,
                 runtime: str | None = None) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.device = device
        # runtime: auto | torch | onnxruntime (inference.py); None reads LADDER_NUCLEUS_RUNTIME
        self.model = _loaded(str(weights), device, runtime or os.environ.get("LADDER_NUCLEUS_RUNTIME") or "auto",
                             torch.get_num_threads())
        self.target_mpp = self.model.work_mpp
        self.info = SegmenterInfo(
            name="ladder-nucleus-v1",
            version=ARCH_VERSION,
            approximate=False,
            weights=f"{Path(weights).name} sha256:{self.model.sha256}",
            params={"work_mpp": self.model.work_mpp, "classes": list(self.model.classes), "device": device,
                    "runtime": self.model.runtime},
        )

    def for_stain_matrix(self, matrix) -> "NucleusModelSegmenter":
        """IHC slides: the model reads RGB directly (trained on IHC-like colours); nothing to change."""
        return self

    def segment(self, *, rgb: np.ndarray, mpp: float) -> pd.DataFrame:
        rgb = np.ascontiguousarray(np.asarray(rgb)[..., :3])
        if rgb.ndim != 3 or min(rgb.shape[:2]) < 8:
            return pd.DataFrame({c: [] for c in RESULT_COLUMNS})
        labels, cls, prob, _ = segment_rgb(loaded=self.model, rgb=rgb, mpp=float(mpp))
        names = [MODEL_CLASS_TO_CELL[self.model.classes[int(c)]] for c in cls]
        return labels_to_result(labels=labels, classes=names, probs=prob)
