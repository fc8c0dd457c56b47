"""What a new user found in the pages' words: the model card's raw feature and Cox covariate
names, input groups as codes ("he inputs"), a HER2 score from the clinical record called
"automated", a case without slides told to re-score, and P(pCR) = 0.48 read as "likely pCR"."""
from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.django_db

CARD = {
    "cutoffs": [56.86, 74.93], "spec": {"risk_quantiles": [1 / 3, 2 / 3]},
    "metrics": {"risk_groups": {"Low": {"n": 100, "n_pcr": 59, "pcr_rate": 0.59},
                                "Medium": {"n": 100, "n_pcr": 30, "pcr_rate": 0.3},
                                "High": {"n": 100, "n_pcr": 18, "pcr_rate": 0.18}}},
    "feature_importance": {"he_T_L_meanEdgeLength": 0.068, "hr_status": 0.055, "ihc_prop_strong_complete": 0.077},
    "survival": {"curves": [], "logrank": {"p_value": 0.03}, "cox_reference_group": "Low", "cox": {
        "by_group": {"Medium_vs_Low": {"hazard_ratio": 1.64, "ci": [1.02, 2.65], "p_value": 0.042},
                     "High_vs_Low": {"hazard_ratio": 1.53, "ci": [0.95, 2.47], "p_value": 0.082}},
        "trend": {"risk_step": {"hazard_ratio": 1.22, "ci": [0.97, 1.53], "p_value": 0.089}}}},
}


def _model(**extra):
    from analysis.models import ModelVersion

    return ModelVersion.objects.create(name="demo", directory="/nowhere/demo", groups=["clinical", "he", "ihc"],
                                       card=CARD, **extra)


def test_model_card_names_features_and_cox_terms_in_plain_words(client_for, pathologist):
    model = _model()
    html = client_for(pathologist).get(f"/models/{model.pk}/").content.decode()
    figures = json.loads(re.search(r'<script id="model-figures" type="application/json">(.*?)</script>', html,
                                   re.S).group(1))
    bars = figures["importance"]["data"][0]
    assert "H&E: mean edge length, tumour → lymphocyte (µm)" in bars["y"]
    assert "Hormone-receptor status" in bars["y"] and not any("_" in name for name in bars["y"])
    # the raw name on hover
    assert bars["customdata"][bars["y"].index("Hormone-receptor status")] == "hr_status"
    assert "%{customdata}" in bars["hovertemplate"]
    # every bar labelled: the figure is tall enough and the axis makes room for the names
    assert figures["importance"]["layout"]["yaxis"]["automargin"] is True
    # Cox terms in words, the covariate's name on hover
    assert "Cox HR Medium_vs_Low" not in html and "risk_step:" not in html
    assert '<td title="Medium_vs_Low">Medium vs Low risk group</td>' in html
    assert '<td title="risk_step">Each step up in risk group (Low → Medium → High)</td>' in html
    assert "clinical data, H&amp;E slide features, HER2 IHC slide features" in html


def test_models_list_names_the_input_groups(client_for, pathologist):
    _model()
    html = client_for(pathologist).get("/models/").content.decode()
    assert "clinical data, H&amp;E slide features, HER2 IHC slide features" in html
    assert "clinical, he, ihc" not in html


def test_risk_group_wording_follows_the_model_cut_offs(client_for, pathologist, case):
    from analysis.models import CaseScore

    model = _model()
    # P(pCR) 0.48: below one half, yet in the Low group (score 52 < the 56.9 cut-off)
    CaseScore.objects.create(case=case, model=model, schema_version="1", probability_pcr=0.48, score=52.0,
                             base_value=0.4, risk_group="Low", detail={"cutoffs": [56.86, 74.93]})
    html = client_for(pathologist).get(f"/cases/{case.case_id}/").content.decode()
    assert "likely pCR" not in html
    basis = re.search(r'id="risk-group-basis">(.*?)</span>', html, re.S).group(1)
    assert basis == ("Low risk group: score below 56.9 (P(pCR) above 0.43); 59% of this group&#x27;s 100 training "
                     "cases reached pCR (cross-validated).")
    assert "De-escalation candidate" in html


@pytest.mark.parametrize(("group", "band"), [
    ("Medium", "Medium risk group: score 56.9 to below 74.9 (P(pCR) 0.25 to 0.43)"),
    ("High", "High risk group: score 74.9 or above (P(pCR) 0.25 or below)"),
])
def test_every_group_states_its_band(case, group, band):
    from analysis.models import CaseScore
    from viewer.cases.selectors import risk_group_basis

    score = CaseScore.objects.create(case=case, model=_model(), schema_version="1", probability_pcr=0.3, score=70,
                                     risk_group=group, detail={"cutoffs": [56.86, 74.93]})
    assert risk_group_basis(score).startswith(band)


def test_review_panel_names_where_the_her2_score_comes_from(client_for, pathologist, case):
    from analysis.models import AnalysisRun
    from cases.models import Slide

    client = client_for(pathologist)
    case.her2_ihc = "2+"
    case.save()
    html = client.get(f"/cases/{case.case_id}/").content.decode()
    source = re.search(r'id="rv-her2-source">(.*?)</span>', html).group(1)
    assert source == "HER2 IHC from the clinical record (no automated score yet)"
    assert "automated HER2" not in html

    ihc = Slide.objects.create(case=case, stain="ihc", name="ihc.svs", source_path="/nowhere/ihc.svs", status="ready",
                               width=100, height=100)
    AnalysisRun.objects.create(slide=ihc, run_dir="x", segmenter="classical", her2={"score": "3+"})
    html = client.get(f"/cases/{case.case_id}/").content.decode()
    assert re.search(r'id="rv-her2-source">(.*?)</span>', html).group(1) == "HER2 IHC, automated from the IHC slide"
    assert re.search(r'id="rv-auto-her2">(.*?)</strong>', html).group(1) == "3+"


def test_case_without_slides_says_what_the_score_needs(client_for, pathologist, case):
    from analysis.models import CaseScore, ScoreStatus
    from analysis.scoring import case_missing_inputs

    model = _model(is_active=True)
    client = client_for(pathologist)
    response = client.post(f"/cases/{case.case_id}/edit/", {
        "age": "60", "clinical_t": "T2", "clinical_n": "N1", "clinical_stage": "", "er_status": "positive",
        "pr_status": "", "hr_status": "", "her2_ihc": "3+", "grade": "", "regimen": "", "pcr": "unknown", "notes": ""},
        follow=True)
    html = response.content.decode()
    needs = "an H&amp;E slide (none added yet) and a HER2 IHC slide (none added yet)"
    assert f"Not scored yet: the HER2-LADDER score needs {needs}" in html, html
    assert "is recomputed" not in html and "being recomputed" not in html
    assert f'id="score-missing">Not scored yet: the score needs {needs}.' in html
    # the job's stored message says the same, in words (not "he inputs")
    assert case_missing_inputs(case, groups=["he", "ihc"]) == ["an H&E slide (none added yet)",
                                                               "a HER2 IHC slide (none added yet)"]
    CaseScore.objects.create(case=case, model=model, schema_version="1", status=ScoreStatus.MISSING_INPUTS,
                             message="Needs an H&E slide (none added yet).")
    assert "the score needs" in client.get(f"/cases/{case.case_id}/").content.decode()


def test_missing_inputs_say_which_analysis(case):
    from analysis.models import FeatureStatus, Job, SlideFeatures
    from analysis.scoring import case_missing_inputs
    from cases.models import Slide

    he = Slide.objects.create(case=case, stain="he", name="he.svs", source_path="/x/he.svs", status="ready",
                              width=100, height=100)
    ihc = Slide.objects.create(case=case, stain="ihc", name="ihc.tif", source_path="/x/ihc.tif", status="converting",
                               width=100, height=100)
    # a ready slide whose file does not say its resolution waits for a user to set it
    assert case_missing_inputs(case, groups=["he"]) == [
        "the H&E slide's cell analysis (set the slide's resolution, µm per pixel, in the Slides list first: "
        "the file does not say it)"]
    he.mpp_x = he.mpp_y = 0.5
    he.save()
    assert case_missing_inputs(case, groups=["he", "ihc", "clinical"]) == [
        "the H&E slide's cell analysis (not run yet)",
        "the HER2 IHC slide's cell analysis (the slide is still being converted)",
        "clinical data (none entered yet: age, clinical T and N, ER and PR status, HER2 IHC score, grade)",
    ]
    Job.objects.create(kind="analyze_slide", case=case, slide=he, status="running")
    assert case_missing_inputs(case, groups=["he"]) == ["the H&E slide's cell analysis (running)"]
    Job.objects.filter(slide=he).update(status="succeeded")
    SlideFeatures.objects.create(slide=he, schema_version="1", status=FeatureStatus.UNAVAILABLE,
                                 reason="the slide's resolution (µm/px) is unknown")
    assert case_missing_inputs(case, groups=["he"]) == [
        "the H&E slide's features (not computed: the slide's resolution (µm/px) is unknown)"]
    ihc.status = "ready"
    ihc.save()
    Job.objects.create(kind="analyze_slide", case=case, slide=ihc, status="failed", error="out of memory")
    assert case_missing_inputs(case, groups=["ihc"]) == ["the HER2 IHC slide's cell analysis (it failed: out of memory)"]
