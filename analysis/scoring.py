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
    JobStatus,
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
        message = f"Needs {join_and(case_missing_inputs(case, groups=groups))}."
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


def join_and(parts: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'; '' for none."""
    if len(parts) < 2:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def case_missing_inputs(case, *, groups) -> list[str]:
    """What the case lacks of each input group in `groups`, in the case page's words: which slide
    is missing, not analysed yet (or why its features are not there), which clinical values."""
    from cases.models import SlideStatus

    parts = []
    for group in groups:
        if group == "clinical":
            parts.append("clinical data (none entered yet: age, clinical T and N, ER and PR status, "
                         "HER2 IHC score, grade)")
            continue
        if group not in (Stain.HE, Stain.IHC):
            parts.append(f"the {group} inputs")
            continue
        stain = Stain(group)
        article = "an" if stain == Stain.HE else "a"
        slide = case.slide_for(stain)
        if slide is None:
            failed = case.slides.filter(stain=stain, status=SlideStatus.FAILED).exists()
            why = "the one added failed to import" if failed else "none added yet"
            parts.append(f"{article} {stain.label} slide ({why})")
            continue
        if slide.status != SlideStatus.READY:
            parts.append(f"the {stain.label} slide's cell analysis (the slide is still being "
                         f"{'converted' if slide.status == SlideStatus.CONVERTING else 'imported'})")
            continue
        features = slide.features.order_by("-computed_at").first()
        job = slide.jobs.filter(kind=JobKind.ANALYZE_SLIDE).order_by("-created_at").first()
        if job is not None and job.status in ACTIVE_STATUSES:
            parts.append(f"the {stain.label} slide's cell analysis ({job.get_status_display().lower()})")
        elif features is not None and features.status != FeatureStatus.COMPUTED:
            parts.append(f"the {stain.label} slide's features (not computed: {features.reason or 'see its analysis'})")
        elif job is not None and job.status == JobStatus.FAILED:
            parts.append(f"the {stain.label} slide's cell analysis (it failed: {job.error or 'see its job'})")
        elif not slide.mpp_x:
            parts.append(f"the {stain.label} slide's cell analysis (set the slide's resolution, µm per "
                         f"pixel, in the Slides list first: the file does not say it)")
        else:
            parts.append(f"the {stain.label} slide's cell analysis (not run yet)")
    return parts


def case_score_blockers(case) -> list[str]:
    """What keeps the case from a score by the active model now, in words; [] when nothing does
    (an input group is missing when none of its values is there, as the model decides)."""
    model = model_active()
    if model is None:
        return ["an active model (an admin activates one on the Models page)"]
    values = case_model_values(case)
    present = {"clinical": any(values.get(name) is not None for name in CLINICAL_FIELDS)}
    for stain in (Stain.HE, Stain.IHC):
        present[stain.value] = any(name.startswith(f"{stain.value}_") for name in values)
    return case_missing_inputs(case, groups=[g for g in model.groups if not present.get(g, True)])


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
