"""Worklist columns (score, risk group, HER2, review status) and their sorting; thumbnails;
plain-language feature names; categorical inputs shown in the attribution table; re-upload."""
from __future__ import annotations

import re

import pytest


def _score(case, score, risk, model=None):
    from analysis.models import CaseScore, ModelVersion

    model = model or ModelVersion.objects.get_or_create(name="m", directory="/nowhere/m", defaults={"groups": []})[0]
    return CaseScore.objects.create(case=case, model=model, schema_version="1", probability_pcr=1 - score / 100,
                                    score=score, base_value=0.5, risk_group=risk,
                                    attributions=[{"feature": "hr_status", "group": "clinical", "value": "negative",
                                                   "imputed": False, "attribution": 0.05, "percentile": None},
                                                  {"feature": "he_T_L_meanEdgeLength", "group": "he", "value": 12.3456,
                                                   "imputed": False, "attribution": -0.02, "percentile": 40.0}])


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr data-case="([^"]+)"', html)


@pytest.mark.django_db
def test_worklist_columns_sort(client_for, pathologist, case):
    from cases.models import Case
    from viewer.review.models import Review

    low = Case.objects.create(case_id="A-LOW", her2_ihc="2+")
    high = Case.objects.create(case_id="B-HIGH", her2_ihc="1+")
    _score(low, 12.0, "Low")
    _score(high, 88.0, "High")
    _score(case, 50.0, "Medium")
    Review.objects.create(case=high, reviewer=pathologist, agrees=False, submitted=True, is_disagreement=True)
    client = client_for(pathologist)
    html = client.get("/").content.decode()
    assert _rows(html) == ["A-LOW", "B-HIGH", "CASE-1"]
    assert ">88<" in html and "risk-high" in html and "1 disagreement" in html and "not reviewed" in html
    assert _rows(client.get("/?sort=score").content.decode()) == ["A-LOW", "CASE-1", "B-HIGH"]
    descending = client.get("/?sort=-score").content.decode()
    assert _rows(descending) == ["B-HIGH", "CASE-1", "A-LOW"] and 'aria-sort="descending"' in descending
    assert _rows(client.get("/?sort=-risk").content.decode()) == ["B-HIGH", "CASE-1", "A-LOW"]
    assert _rows(client.get("/?sort=her2").content.decode()) == ["B-HIGH", "A-LOW", "CASE-1"]
    assert _rows(client.get("/?sort=-review").content.decode())[0] == "B-HIGH"
    assert client.get("/?sort=nonsense").status_code == 200
    # sort links keep the filters
    assert "sort=-score" in client.get("/?sort=score&status=new").content.decode()


@pytest.mark.django_db
def test_her2_filter_matches_the_clinical_or_the_automated_score(client_for, pathologist, case):
    """A case whose IHC analysis scores 2+ but has no clinical HER2 score is found by "HER2 2+"."""
    from analysis.models import AnalysisRun
    from cases.models import Case, Slide

    def ihc_run(target, score):
        slide = Slide.objects.create(case=target, stain="ihc", name=f"{target.case_id}-ihc.svs",
                                     source_path=f"/nowhere/{target.case_id}.svs", status="ready", width=100, height=100)
        AnalysisRun.objects.create(slide=slide, run_dir="x", segmenter="classical", her2={"score": score})

    Case.objects.create(case_id="CLIN-2", her2_ihc="2+")  # clinical 2+, no analysis
    ihc_run(Case.objects.create(case_id="AUTO-2"), "2+")  # automated 2+, no clinical score
    ihc_run(Case.objects.create(case_id="BOTH-3", her2_ihc="3+"), "3+")
    ihc_run(case, "2+")  # CASE-1: clinical 3+, automated 2+ (discordant): found under either
    client = client_for(pathologist)
    assert _rows(client.get("/?her2=2%2B").content.decode()) == ["AUTO-2", "CASE-1", "CLIN-2"]
    assert _rows(client.get("/?her2=3%2B").content.decode()) == ["BOTH-3", "CASE-1"]
    assert _rows(client.get("/?her2=0").content.decode()) == []
    # the API filters the same way
    assert [c["case_id"] for c in client.get("/api/cases/?her2=2%2B").json()["results"]] == ["AUTO-2", "CASE-1", "CLIN-2"]
    # the filter says which sources it matches
    html = client.get("/").content.decode()
    select = re.search(r'<select name="her2"[^>]*>', html).group(0)
    assert "clinical or automated" in select and "latest IHC analysis" in select


@pytest.mark.django_db
def test_age_stage_and_hr_columns_sort_like_the_others(client_for, pathologist, case):
    from cases.models import Case

    Case.objects.create(case_id="OLD-III", age=70, clinical_t="T3", clinical_n="N1", clinical_stage="III",
                        hr_status="negative")
    Case.objects.create(case_id="YOUNG-I", age=33, clinical_t="T1", clinical_n="N0", clinical_stage="I")
    Case.objects.create(case_id="UNKNOWN")  # no age, stage or HR: last either way
    client = client_for(pathologist)
    html = client.get("/").content.decode()
    for key in ("age", "stage", "hr"):
        assert f'href="?sort={key}"' in html, key  # a sortable header, like Score
    assert _rows(client.get("/?sort=age").content.decode()) == ["YOUNG-I", "CASE-1", "OLD-III", "UNKNOWN"]
    descending = client.get("/?sort=-age").content.decode()
    assert _rows(descending) == ["OLD-III", "CASE-1", "YOUNG-I", "UNKNOWN"]
    assert re.search(r'<th scope="col" aria-sort="descending"><a href="\?sort=age">Age</a>', descending)
    assert _rows(client.get("/?sort=stage").content.decode()) == ["YOUNG-I", "CASE-1", "OLD-III", "UNKNOWN"]
    assert _rows(client.get("/?sort=-stage").content.decode()) == ["OLD-III", "CASE-1", "YOUNG-I", "UNKNOWN"]
    # negative, positive, then unknown (by case id)
    assert _rows(client.get("/?sort=hr").content.decode()) == ["OLD-III", "CASE-1", "UNKNOWN", "YOUNG-I"]
    assert _rows(client.get("/?sort=-hr").content.decode())[:2] == ["CASE-1", "OLD-III"]


@pytest.mark.django_db
def test_worklist_thumbnails(client_for, pathologist, he_slide):
    html = client_for(pathologist).get("/").content.decode()
    assert f"/slides/{he_slide.pk}/thumbnail.jpg?size=96" in html


def labels_of_slides() -> list[str]:
    from viewer.cases.feature_labels import _schema

    return [name for name in _schema() if name.startswith(("he_", "ihc_"))]


def test_plain_feature_names_with_units():
    from viewer.cases.feature_labels import feature_label, feature_labels_json

    assert feature_label("he_T_L_meanEdgeLength")["text"] == "H&E: mean edge length, tumour → lymphocyte (µm)"
    assert feature_label("ihc_Tstrong_nonT_Degrees")["text"] == "IHC: mean degree, HER2-strong tumour → non-tumour (edges)"
    assert feature_label("he_prop_L")["text"] == "H&E: share of lymphocytes (fraction)"
    assert feature_label("ihc_prop_null_incomplete")["label"].endswith("null incomplete HER2 membrane")
    assert feature_label("age")["text"] == "Age (years)"
    # the short names (chart axis, attribution table) name the slide too, like the full ones
    assert feature_label("he_T_L_meanEdgeLength")["short"] == "H&E: tumour → lymphocyte mean edge"
    assert feature_label("ihc_Tstrong_nonT_Degrees")["short"] == "IHC: HER2-strong → non-tumour degree"
    assert feature_label("he_prop_L")["short"] == "H&E: share of lymphocytes"
    assert feature_label("ihc_prop_null_incomplete")["short"] == "IHC: share null incomplete HER2"
    assert all(feature_label(name)["short"].startswith(("H&E: ", "IHC: ")) for name in labels_of_slides())
    assert feature_label("hr_status")["label"] == "Hormone-receptor status"
    labels = feature_labels_json()
    # every schema feature gets a composed name, never its raw name back
    assert all(entry["label"] != name for name, entry in labels["features"].items())
    assert labels["metrics"]["minEdgeLength"] == "shortest edge length (µm)"


@pytest.mark.django_db
def test_attribution_table_shows_categorical_values_and_plain_names(client_for, pathologist, case):
    _score(case, 40.0, "Medium")
    html = client_for(pathologist).get("/cases/CASE-1/").content.decode()
    row = re.search(r'<tr data-feature="hr_status">(.*?)</tr>', html).group(1)
    assert "negative" in row and '· hr_status"' in row and "Hormone-receptor status" in row
    row = re.search(r'<tr data-feature="he_T_L_meanEdgeLength">(.*?)</tr>', html).group(1)
    assert "12.3" in row and "mean edge length, tumour → lymphocyte" in row and "µm" in row
    # the short name shown, with its slide as on the board and in the PDF; the full one and raw name on hover
    assert ">H&amp;E: tumour → lymphocyte mean edge <" in row


@pytest.mark.django_db
def test_reupload_says_where_the_slide_already_is(client_for, pathologist, he_slide, shared_file):
    from cases.models import Slide

    client = client_for(pathologist)
    with open(shared_file("slides/CMU-1-Small-Region.svs"), "rb") as handle:
        response = client.post("/cases/CASE-1/upload/", {"file": handle, "stain": "he"}, follow=True)
    text = response.content.decode()
    assert "already there" in text and f"#{he_slide.pk}" in text and "CASE-1" in text and "Imported" not in text
    assert Slide.objects.count() == 1


@pytest.mark.django_db
def test_feature_names_reach_the_scripts(client_for, pathologist, case):
    import json

    client = client_for(pathologist)
    source = client.get("/api/features/he_T_L_minEdgeLength/").json()
    assert source["label_text"] == "H&E: shortest edge length, tumour → lymphocyte (µm)"
    html = client.get("/cases/CASE-1/").content.decode()
    config = json.loads(re.search(r'<script id="case-viewer-config" type="application/json">(.*?)</script>',
                                  html, re.S).group(1))
    assert config["featureLabels"]["features"]["ihc_prop_strong_complete"]["unit"] == "fraction"
    assert config["featureLabels"]["metrics"]["Degrees"] == "mean degree (edges)"


def test_slide_panel_counts_name_what_the_segmenter_called():
    """Classes with no cell are left out; an IHC run of tumour-vs-rest says non-tumour, not other."""
    from types import SimpleNamespace

    from viewer.cases.selectors import run_cell_counts

    ihc = SimpleNamespace(class_counts={"tumour": 900, "stroma": 0, "lymphocyte": 0, "other": 18993})
    assert run_cell_counts(ihc, stain="ihc") == [("tumour", 900), ("non-tumour", 18993)]
    he = SimpleNamespace(class_counts={"tumour": 900, "stroma": 40, "lymphocyte": 0, "other": 7})
    assert run_cell_counts(he, stain="he") == [("tumour", 900), ("stroma", 40), ("other", 7)]
    model_ihc = SimpleNamespace(class_counts={"tumour": 5, "stroma": 3, "other": 2})
    assert run_cell_counts(model_ihc, stain="ihc") == [("tumour", 5), ("stroma", 3), ("other", 2)]
