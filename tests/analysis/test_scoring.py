"""Model registry, activation, scoring with exact attributions, commands and pages."""
from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from analysis.models import CaseScore, FeatureStatus, ModelVersion, ScoreStatus, SlideFeatures
from analysis.scoring import case_score_compute, model_activate, model_register, trained_model_load
from cases.models import AuditEvent


def _give_features(case, model_dir):
    """Attach feature values (the training cohort's first case) to the case's slides."""
    from analysis.core.demo.synthetic_cohort import make_synthetic_cohort

    row = make_synthetic_cohort(n_cases=20, seed=1).iloc[0]
    for slide, prefix in ((case.slide_for("he"), "he_"), (case.slide_for("ihc"), "ihc_")):
        values = {k: float(v) for k, v in row.items() if k.startswith(prefix)}
        SlideFeatures.objects.create(slide=slide, schema_version="1", status=FeatureStatus.COMPUTED, values=values)


@pytest.mark.django_db
def test_missing_group_says_which(phantom_case, small_trained_model):
    model_register(directory=small_trained_model, activate=True)
    score = case_score_compute(case=phantom_case)
    assert score.status == ScoreStatus.MISSING_INPUTS
    # in the case page's words: which slide's analysis is missing (not "he inputs")
    assert score.message == ("Needs the H&E slide's cell analysis (not run yet) and the HER2 IHC slide's cell "
                             "analysis (not run yet).")
    assert score.detail == {"missing_groups": ["he", "ihc"]}


@pytest.mark.django_db
def test_score_attributions_add_up(phantom_case, small_trained_model):
    version = model_register(directory=small_trained_model, activate=True)
    _give_features(phantom_case, small_trained_model)
    score = case_score_compute(case=phantom_case)
    assert score.status == ScoreStatus.SCORED and score.model == version and score.schema_version == "1"
    assert score.risk_group in {"Low", "Medium", "High"}
    assert score.score == pytest.approx(100 * (1 - score.probability_pcr))
    total = sum(row["attribution"] for row in score.attributions)
    assert total == pytest.approx(score.probability_pcr - score.base_value, abs=1e-6)
    assert all(row["percentile"] is None or 0 <= row["percentile"] <= 100 for row in score.attributions)
    assert any(row["group"] == "clinical" for row in score.attributions)


@pytest.mark.django_db
def test_one_active_model_and_audit(small_trained_model, tmp_path, admin_user_role):
    import shutil

    first = model_register(directory=small_trained_model, activate=True)
    copy = tmp_path / "second"
    shutil.copytree(small_trained_model, copy)
    second = model_register(directory=copy)
    model_activate(model=second, user=admin_user_role)
    first.refresh_from_db()
    assert not first.is_active and ModelVersion.objects.get(is_active=True) == second
    assert AuditEvent.objects.filter(action="model.activate", user=admin_user_role).exists()
    assert trained_model_load(second).synthetic


@pytest.mark.django_db
def test_model_pages_and_activation_rights(client_for, pathologist, admin_user_role, small_trained_model):
    version = model_register(directory=small_trained_model)
    client = client_for(pathologist)
    page = client.get(f"/models/{version.pk}/")
    assert page.status_code == 200 and b"not for clinical use" in page.content and b"model-figures" in page.content
    assert client.post(f"/models/{version.pk}/activate/").status_code == 403
    client = client_for(admin_user_role)
    assert client.post(f"/models/{version.pk}/activate/").status_code == 302
    version.refresh_from_db()
    assert version.is_active


@pytest.mark.django_db
def test_train_evaluate_and_score_commands(tmp_path, capsys, phantom_case):
    from analysis.core.demo.synthetic_cohort import make_synthetic_cohort

    cohort = tmp_path / "cohort.csv"
    make_synthetic_cohort(n_cases=120, seed=2).to_csv(cohort, index=False)
    call_command("train_model", "--cohort", str(cohort), "--groups", "clinical", "--out", str(tmp_path / "m"),
                 "--repeats", "1", "--activate")
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= metrics["auc"] <= 1 and metrics["n"] == 120 and len(metrics["auc_ci"]) == 2
    call_command("evaluate_model", "--model", str(tmp_path / "m"), "--cohort", str(cohort))
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result) >= {"auc", "auc_ci", "n"} and result["n"] == 120
    call_command("score_case", "--case", phantom_case.case_id)
    scored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scored["status"] == "scored" and scored["risk_group"] in {"Low", "Medium", "High"}
    assert CaseScore.objects.filter(case=phantom_case).exists()


@pytest.mark.django_db
def test_cohort_assembled_from_database_cases(phantom_case, make_user):
    from analysis.core.model.cohort import cohort_from_frame
    from analysis.scoring import cohort_frame_from_cases
    from cases.models import Case

    phantom_case.pcr = True
    phantom_case.save()
    Case.objects.create(case_id="NO-OUTCOME", age=60)
    frame = cohort_frame_from_cases(cases=Case.objects.filter(pcr__isnull=False))
    assert list(frame["case_id"]) == ["PHANTOM-1"] and frame.loc[0, "pcr"] == 1
    assert frame.loc[0, "clinical_t"] == "T2" and frame.loc[0, "hr_status"] == "positive"
    cohort = cohort_from_frame(frame=frame, require_outcome=True)
    assert list(cohort.case_ids) == ["PHANTOM-1"]
