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
from analysis.core.cells.segmentation.nucleus_model.inference import (
    NucleusRuntimeError, Prediction, instances_from_prediction, load_weights, predict_rgb)
from analysis.core.cells.segmentation.nucleus_model.net import ARCH_VERSION, instance_contours

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
    (net.instance_contours), centroid of its pixels, pixel area."""
    from scipy import ndimage as ndi

    ids, contours = instance_contours(labels)
    # Centroids as each instance's local pixel mean plus its box origin: the integer sums are
    # exact in float64, so this is the per-instance `xs.mean() + start` to the last bit.
    flat = labels.ravel()
    size = int(labels.max()) + 1
    rows, cols = np.indices(labels.shape, dtype=np.float64)
    area = np.bincount(flat, minlength=size).astype(np.float64)[ids]
    origin = np.array([(sl[0].start, sl[1].start) for sl in ndi.find_objects(labels)], dtype=np.float64).reshape(-1, 2)
    y0, x0 = origin[ids - 1, 0], origin[ids - 1, 1]
    local_x = np.bincount(flat, cols.ravel(), size)[ids] - area * x0
    local_y = np.bincount(flat, rows.ravel(), size)[ids] - area * y0
    return pd.DataFrame({
        "x": local_x / area + x0, "y": local_y / area + y0,
        "contour": pd.Series(contours, dtype=object),
        "cls": np.asarray([classes[i] for i in ids], dtype=object),
        "prob": np.asarray([probs[i] for i in ids], dtype=np.float32),
        "area_px": area.astype(np.float32),
    }, columns=list(RESULT_COLUMNS))


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
        # runtime: auto | torch | torch-bf16 | onnxruntime (inference.py); None reads LADDER_NUCLEUS_RUNTIME
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
        return self.finish(self.predict(rgb=rgb, mpp=mpp))

    # Two phases (base.TwoPhaseSegmenter): the pipeline runs `predict` (the network, which releases
    # the GIL) of the next tile in a thread while `finish` (watershed, contours) runs on this one.

    def predict(self, *, rgb: np.ndarray, mpp: float) -> Prediction | None:
        rgb = np.ascontiguousarray(np.asarray(rgb)[..., :3])
        if rgb.ndim != 3 or min(rgb.shape[:2]) < 8:
            return None
        return predict_rgb(loaded=self.model, rgb=rgb, mpp=float(mpp))

    def finish(self, prediction: Prediction | None) -> pd.DataFrame:
        if prediction is None:
            return pd.DataFrame({c: [] for c in RESULT_COLUMNS})
        labels, cls, prob, _ = instances_from_prediction(prediction)
        names = [MODEL_CLASS_TO_CELL[self.model.classes[int(c)]] for c in cls]
        return labels_to_result(labels=labels, classes=names, probs=prob)
