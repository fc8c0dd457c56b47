"""A trained model on disk: model.joblib (plain scikit-learn objects and data, no project
classes, so the files survive code moves), model_card.json and training_distributions.json,
each written atomically."""
from __future__ import annotations

import json
import math
import warnings
from enum import Enum
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn

from analysis.core.files import atomic_path, atomic_write_text
from analysis.core.model.cohort import FeatureGroup
from analysis.core.model.training import (
    CARD_FILE,
    DISTRIBUTIONS_FILE,
    FORMAT_VERSION,
    MODEL_FILE,
    ModelError,
    ModelSpec,
    TrainedModel,
)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _dump_json(data: Any) -> str:
    return json.dumps(_clean(data), indent=1, default=_json_default, allow_nan=False)


def _clean(value: Any) -> Any:
    # JSON has no NaN: write null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def save_model(*, model: TrainedModel, directory: str | Path) -> Path:
    """Write model.joblib, model_card.json and training_distributions.json into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = {"format_version": FORMAT_VERSION, "pipeline": model.pipeline, "spec": model.spec.to_json(), "columns": model.columns,
               "groups": {c: g.value for c, g in model.groups.items()}, "cutoffs": list(model.cutoffs), "background": model.background,
               "active_columns": model.active_columns, "cv_predictions": model.cv_predictions}
    with atomic_path(directory / MODEL_FILE) as tmp:
        joblib.dump(payload, tmp, compress=3)
    atomic_write_text(directory / DISTRIBUTIONS_FILE, _dump_json(model.distributions))
    atomic_write_text(directory / CARD_FILE, _dump_json(model.card))
    return directory


def load_model(directory: str | Path) -> TrainedModel:
    """Load a model folder written by :func:`save_model`."""
    directory = Path(directory)
    for name in (MODEL_FILE, CARD_FILE, DISTRIBUTIONS_FILE):
        if not (directory / name).is_file():
            raise ModelError(f"not a model folder: {directory / name} is missing")
    card = json.loads((directory / CARD_FILE).read_text())
    trained_with = card.get("library_versions", {}).get("scikit-learn")
    if trained_with and trained_with != sklearn.__version__:
        warnings.warn(f"model trained with scikit-learn {trained_with}, loading with {sklearn.__version__}: retrain if scores look wrong", stacklevel=2)
    payload = joblib.load(directory / MODEL_FILE)
    if payload.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"model format {payload.get('format_version')} is not {FORMAT_VERSION}: retrain the model")
    return TrainedModel(
        pipeline=payload["pipeline"], spec=ModelSpec.from_json(payload["spec"]), columns=list(payload["columns"]),
        groups={c: FeatureGroup(g) for c, g in payload["groups"].items()}, cutoffs=tuple(payload["cutoffs"]),
        background=np.asarray(payload["background"], dtype=float), active_columns=list(payload["active_columns"]), card=card,
        distributions=json.loads((directory / DISTRIBUTIONS_FILE).read_text()), cv_predictions=payload.get("cv_predictions"),
    )
