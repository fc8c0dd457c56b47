"""TransNEO -> cohort format mapping, on the real supplementary table."""
from __future__ import annotations

import warnings

import pandas as pd
import pytest

from analysis.core.model.cohort import read_cohort
from scripts.transneo_to_cohort import TransneoFormatError, evaluate_clinical_model, main, transneo_to_cohort


@pytest.fixture(scope="module")
def transneo(shared_file):
    return pd.read_csv(shared_file("cohorts/transneo_clinical.csv"))


def test_keeps_the_62_her2_positive_patients_with_a_response(transneo):
    cohort = transneo_to_cohort(frame=transneo)
    assert len(cohort) == 62 and cohort["pcr"].sum() == 20
    assert cohort["case_id"].is_unique


def test_row_mapping_follows_the_docstring(transneo):
    cohort = transneo_to_cohort(frame=transneo).set_index("case_id")
    t001 = cohort.loc["T001"]  # Age 51, T2, NEG, ER POS, grade 3, RD
    assert (t001["age"], t001["clinical_t"], t001["clinical_n"], t001["clinical_stage"]) == (51, "T2", "N0", "II")
    assert (t001["er_status"], t001["hr_status"], t001["grade"], t001["pcr"]) == ("positive", "positive", 3, 0)
    source = transneo.set_index("Donor.ID")
    for donor, row in cohort.iterrows():
        n_pos = source.loc[donor, "LN.status.at.diagnosis"] == "POS"
        assert row["clinical_n"] == ("N1" if n_pos else "N0")
        t = row["clinical_t"]
        expected = "III" if t == "T4" or (t == "T3" and n_pos) else ("" if n_pos else {"T1": "I", "T2": "II", "T3": "II"}[t])
        assert row["clinical_stage"] == expected
        assert row["pcr"] == (1 if source.loc[donor, "pCR.RD"] == "pCR" else 0)


def test_output_reads_as_a_cohort_with_pr_and_her2_ihc_dropped(transneo, tmp_path):
    path = tmp_path / "transneo.csv"
    transneo_to_cohort(frame=transneo).to_csv(path, index=False)
    with pytest.warns(UserWarning, match="pr_status"):
        cohort = read_cohort(path=path)
    assert set(cohort.dropped_columns) == {"pr_status", "her2_ihc"}
    assert cohort.n == 62 and cohort.inputs["clinical_stage"].isna().sum() > 0


def test_bad_tables_raise_clear_errors(transneo):
    with pytest.raises(TransneoFormatError, match="Grade.pre.NAT"):
        transneo_to_cohort(frame=transneo.drop(columns="Grade.pre.NAT"))
    broken = transneo.copy()
    broken.loc[broken["HER2.status"] == "POS", "T.stage"] = "TX"
    with pytest.raises(TransneoFormatError, match="T.stage = 'TX'"):
        transneo_to_cohort(frame=broken)


def test_command_line_writes_and_cross_validates(transneo, shared_file, tmp_path, capsys):
    out = tmp_path / "c.csv"
    assert main(["--input", str(shared_file("cohorts/transneo_clinical.csv")), "--output", str(out)]) == 0
    assert "62 HER2+ patients (20 pCR)" in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate_clinical_model(cohort_csv=out, n_repeats=1, n_trees=20)
    assert result["n"] == 62 and 0 <= result["auc_ci"][0] <= result["auc"] <= result["auc_ci"][1] <= 1
