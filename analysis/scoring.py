"""The HER2-LADDER model on the Django side: registry, activation, case inputs and scores."""
from __future__ import annotations

import json
import threading
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from analysis.models import (
    ACTIVE_STATUSES,
    CaseScore,
    FeatureStatus,
    Job,
    JobKind,
    ModelVersion,
    ScoreStatus,
)
from analysis.results import schema_version
from cases.models import Stain
from cases.audit import audit_record

CLINICAL_FIELDS = ("age", "clinical_t", "clinical_n", "clinical_stage", "er_status", "pr_status", "hr_status",
                   "her2_ihc", "grade")

_loaded: dict[tuple[str, float], object] = {}
_loaded_lock = threading.Lock()


class ModelRegistryError(ValueError):
    pass


def trained_model_load(model: ModelVersion):
    """The fitted model of a version, loaded once per process (keyed by file and mtime)."""
    from analysis.core.model.persistence import load_model

    directory = Path(model.directory)
    card = directory / "model_card.json"
    if not card.exists():
        raise ModelRegistryError(f"model folder {directory} has no model_card.json")
    key = (str(directory), card.stat().st_mtime)
    with _loaded_lock:
        if key not in _loaded:
            _loaded.clear()  # keep one model in memory: scoring uses the active one
            _loaded[key] = load_model(directory)
        return _loaded[key]


def model_register(*, directory: Path, user=None, activate: bool = False) -> ModelVersion:
    """Record a saved model folder as a version (idempotent for the same folder)."""
    directory = Path(directory).resolve()
    card_path = directory / "model_card.json"
    if not card_path.exists():
        raise ModelRegistryError(f"{directory}: not a saved model (no model_card.json)")
    card = json.loads(card_path.read_text())
    model, _ = ModelVersion.objects.update_or_create(
        directory=str(directory),
        defaults={"name": card.get("name") or directory.name,
                  "groups": card.get("groups") or (card.get("spec") or {}).get("groups") or [],
                  "card": card, "synthetic": bool(card.get("synthetic")),
                  "created_by": user if getattr(user, "is_authenticated", False) else None},
    )
    audit_record(user=user, action="model.register", detail={"model": model.pk, "directory": str(directory)})
    if activate:
        model_activate(model=model, user=user)
    return model


def model_activate(*, model: ModelVersion, user=None) -> ModelVersion:
    """Make `model` the one that scores cases, and re-score every case with it."""
    with transaction.atomic():
        ModelVersion.objects.filter(is_active=True).exclude(pk=model.pk).update(is_active=False)
        ModelVersion.objects.filter(pk=model.pk).update(
            is_active=True, activated_at=timezone.now(),
            activated_by=user if getattr(user, "is_authenticated", False) else None)
        audit_record(user=user, action="model.activate", detail={"model": model.pk, "name": model.name})
    model.refresh_from_db()
    from cases.models import Case

    for case in Case.objects.all():
        score_enqueue(case=case, user=user)
    return model


def model_active() -> ModelVersion | None:
    return ModelVersion.objects.filter(is_active=True).first()


def case_model_values(case) -> dict:
    """The raw inputs the model reads: clinical values as the cohort format writes them, plus the
    latest computed slide features of the case's H&E and IHC slides."""
    values: dict = {}
    for name in CLINICAL_FIELDS:
        value = getattr(case, name)
        values[name] = None if value in ("", None) else value
    for stain in (Stain.HE, Stain.IHC):
        slide = case.slide_for(stain)
        if slide is None:
            continue
        features = slide.features.filter(status=FeatureStatus.COMPUTED).order_by("-computed_at").first()
        if features:
            values.update(features.values)
    return values


def case_score_compute(*, case) -> CaseScore:
    """Score a case with the active model; a case lacking a whole input group says which."""
    from analysis.core.model.cohort import CaseValueError
    from analysis.core.model.scoring import feature_percentile, score_case
    from analysis.core.model.training import MissingInputGroupError

    version = model_active()
    if version is None:
        raise ModelRegistryError("no active model: an admin activates one on the Models page")
    model = trained_model_load(version)
    values = case_model_values(case)
    try:
        result = score_case(model=model, values=values)
    except MissingInputGroupError as exc:
        groups = sorted(exc.missing)
        hints = {"he": "analyse the H&E slide", "ihc": "analyse the HER2 IHC slide",
                 "clinical": "enter the clinical variables"}
        message = "The model needs " + ", ".join(f"{g} inputs ({hints.get(g, g)})" for g in groups) + "."
        return CaseScore.objects.create(case=case, model=version, schema_version=schema_version(),
                                        status=ScoreStatus.MISSING_INPUTS, message=message,
                                        detail={"missing_groups": groups})
    except CaseValueError as exc:
        return CaseScore.objects.create(case=case, model=version, schema_version=schema_version(),
                                        status=ScoreStatus.MISSING_INPUTS, message=str(exc))
    rows = []
    for column, attribution in result.attributions.items():
        raw = values.get(column)
        encoded = result.inputs.get(column)
        rows.append({
            "feature": column,
            "group": model.groups[column].value,
            "value": raw if raw is not None else None,
            "imputed": column in result.imputed,
            "attribution": attribution,
            "percentile": feature_percentile(model=model, column=column, value=encoded),
        })
    rows.sort(key=lambda row: abs(row["attribution"]), reverse=True)
    return CaseScore.objects.create(
        case=case, model=version, schema_version=schema_version(), probability_pcr=result.probability_pcr,
        score=result.score, risk_group=result.risk_group.value, base_value=result.base_value, attributions=rows,
        detail={"cutoffs": list(result.cutoffs), "method": result.attribution_method,
                "base_score": result.base_score, "synthetic_model": version.synthetic},
    )


def score_enqueue(*, case, user=None):
    """Queue (re)scoring of a case, unless one is already waiting or no model is active."""
    from analysis.services import job_enqueue

    if model_active() is None:
        return None
    if Job.objects.filter(case=case, kind=JobKind.SCORE_CASE, status__in=ACTIVE_STATUSES).exists():
        return None
    return job_enqueue(kind=JobKind.SCORE_CASE, case=case, user=user)


def case_latest_score(case) -> CaseScore | None:
    return case.scores.select_related("model").order_by("-created_at").first()


def models_dir() -> Path:
    folder = Path(settings.LADDER_MODELS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cohort_frame_from_cases(*, cases=None):
    """The cohort table (docs/model.md format) assembled from the cases in the database: clinical
    values, pCR outcome where known, and the latest computed slide features of each case."""
    import pandas as pd

    from cases.models import Case

    rows = []
    for case in (cases if cases is not None else Case.objects.all()):
        values = case_model_values(case)
        values["case_id"] = case.case_id
        values["pcr"] = None if case.pcr is None else int(case.pcr)
        rows.append(values)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    return frame[["case_id", "pcr", *[c for c in frame.columns if c not in ("case_id", "pcr")]]]
