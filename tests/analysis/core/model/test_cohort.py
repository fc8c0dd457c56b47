"""Cohort format: reading, encoding, collected row errors, dropped empty columns."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.core.model.cohort import (
    CaseValueError,
    CohortError,
    CohortValidationError,
    FeatureGroup,
    cohort_from_frame,
    encode_clinical_value,
    read_cohort,
)


def _table(**overrides) -> pd.DataFrame:
    data = {
        "case_id": ["A", "B", "C", "D"],
        "age": ["45", "61", "", "38"],
        "clinical_t": ["T2", "t4b", "T1", "T3"],
        "clinical_n": ["N0", "N2a", "N1", ""],
        "clinical_stage": ["II", "IIIB", "I", "Stage IIA"],
        "er_status": ["positive", "Negative", "pos", "-"],
        "pr_status": ["negative", "", "positive", "neg"],
        "hr_status": ["positive", "negative", "positive", "negative"],
        "her2_ihc": ["3+", "2+", "3 +", "3+"],
        "grade": ["3", "2", "G1", ""],
        "pcr": ["1", "0", "0.0", "1.0"],
        "he_prop_T": ["0.5", "0.4", "0.3", "0.2"],
        "ihc_prop_strong_complete": ["0.1", "0.2", "", "0.4"],
        "comment": ["x", "y", "z", "w"],
    }
    data.update(overrides)
    return pd.DataFrame(data)


def test_encodes_ordinal_and_binary_values_as_documented():
    cohort = cohort_from_frame(frame=_table())
    x = cohort.inputs
    assert x.loc["A", "clinical_t"] == 2 and x.loc["B", "clinical_t"] == 4
    assert x.loc["A", "clinical_n"] == 0 and x.loc["B", "clinical_n"] == 2 and math.isnan(x.loc["D", "clinical_n"])
    assert list(x["clinical_stage"]) == [2, 3, 1, 2]
    assert list(x["er_status"]) == [1, 0, 1, 0]
    assert list(x["her2_ihc"]) == [3, 2, 3, 3]
    assert x.loc["C", "grade"] == 1 and math.isnan(x.loc["D", "grade"])
    assert math.isnan(x.loc["C", "age"]) and x.loc["B", "age"] == 61
    assert list(cohort.pcr) == [1, 0, 0, 1]
    assert cohort.groups["he_prop_T"] is FeatureGroup.HE
    assert cohort.groups["ihc_prop_strong_complete"] is FeatureGroup.IHC
    assert cohort.groups["age"] is FeatureGroup.CLINICAL
    assert cohort.ignored_columns == ["comment"]
    assert cohort.summary()["n_pcr"] == 2


def test_collects_every_row_problem_with_row_column_value_and_expectation():
    frame = _table(clinical_t=["T2", "T9", "T1", "T3"], grade=["3", "2", "4", "x"], pcr=["1", "0", "2", ""])
    with pytest.raises(CohortValidationError) as caught:
        cohort_from_frame(frame=frame)
    problems = {(p.row, p.column) for p in caught.value.problems}
    assert problems == {(3, "clinical_t"), (4, "grade"), (5, "grade"), (4, "pcr"), (5, "pcr")}
    message = str(caught.value)
    assert "row 3, column 'clinical_t': got 'T9', expected T1, T2, T3 or T4" in message
    assert isinstance(caught.value, ValueError)


def test_duplicate_and_empty_case_ids_are_reported():
    with pytest.raises(CohortValidationError) as caught:
        cohort_from_frame(frame=_table(case_id=["A", "A", "", "D"]))
    messages = [str(p) for p in caught.value.problems]
    assert any("row 3" in m and "also on row 2" in m for m in messages)
    assert any("row 4" in m and "non-empty" in m for m in messages)


def test_column_empty_throughout_is_dropped_with_a_warning():
    with pytest.warns(UserWarning, match="her2_ihc"):
        cohort = cohort_from_frame(frame=_table(her2_ihc=["", "", "", ""]))
    assert "her2_ihc" not in cohort.inputs.columns
    assert cohort.dropped_columns == ["her2_ihc"]


def test_missing_required_columns_raise_clear_errors():
    with pytest.raises(CohortError, match="case_id"):
        cohort_from_frame(frame=_table().drop(columns="case_id"))
    with pytest.raises(CohortError, match="outcome column 'pcr'"):
        cohort_from_frame(frame=_table().drop(columns="pcr"))
    unlabelled = cohort_from_frame(frame=_table().drop(columns="pcr"), require_outcome=False)
    assert unlabelled.pcr is None and unlabelled.n == 4


def test_survival_columns_need_each_other_and_valid_values():
    with pytest.raises(CohortError, match="survival needs both"):
        cohort_from_frame(frame=_table(dfs_months=["1", "2", "3", "4"]))
    with pytest.raises(CohortValidationError, match="dfs_event"):
        cohort_from_frame(frame=_table(dfs_months=["1", "2", "3", "-4"], dfs_event=["1", "0", "3", "0"]))
    cohort = cohort_from_frame(frame=_table(dfs_months=["10", "20.5", "", "4"], dfs_event=["1", "0", "", "0"]))
    assert cohort.has_survival and cohort.dfs_months[1] == 20.5 and np.isnan(cohort.dfs_event[2])


def test_reads_csv_and_excel_identically(tmp_path):
    frame = _table()
    frame.to_csv(tmp_path / "c.csv", index=False)
    excel = frame.copy()
    excel["age"] = [45, 61, None, 38]  # numbers typed as numbers in Excel
    excel["grade"] = [3, 2, "G1", None]
    excel.to_excel(tmp_path / "c.xlsx", index=False)
    from_csv = read_cohort(path=tmp_path / "c.csv")
    from_excel = read_cohort(path=tmp_path / "c.xlsx")
    pd.testing.assert_frame_equal(from_csv.inputs, from_excel.inputs)
    with pytest.raises(CohortError, match="not found"):
        read_cohort(path=tmp_path / "nope.csv")
    (tmp_path / "c.json").write_text("{}")
    with pytest.raises(CohortError, match="unknown format"):
        read_cohort(path=tmp_path / "c.json")


def test_encode_single_clinical_value():
    assert encode_clinical_value(column="her2_ihc", value="1+") == 1
    assert encode_clinical_value(column="clinical_stage", value="III") == 3
    assert math.isnan(encode_clinical_value(column="grade", value=None))
    with pytest.raises(CaseValueError, match="column 'her2_ihc': got '4\\+', expected 0, 1\\+, 2\\+ or 3\\+"):
        encode_clinical_value(column="her2_ihc", value="4+")
    with pytest.raises(CaseValueError, match="not a clinical column"):
        encode_clinical_value(column="weight", value=3)
