"""Cohort tables for the HER2-LADDER model: reading, validating and encoding.

A cohort is one row per patient (CSV or Excel). Columns:

========================  ===============================================================
column                    values (case-insensitive; empty = missing, imputed in the folds)
========================  ===============================================================
``case_id``               required, unique, non-empty text
``age``                   years at diagnosis, number in [0, 120]
``clinical_t``            ``T1`` .. ``T4``            -> ordinal 1 .. 4 (``T4a``..``T4d`` -> 4)
``clinical_n``            ``N0`` .. ``N3``            -> ordinal 0 .. 3 (``N1a`` etc. -> digit)
``clinical_stage``        ``I`` .. ``III``            -> ordinal 1 .. 3 (``IIA``/``IIB``... -> 2)
``er_status``             ``positive`` / ``negative`` -> 1 / 0 (also ``pos``/``neg``, ``+``/``-``)
``pr_status``             as ``er_status``
``hr_status``             as ``er_status`` (hormone receptor: ER or PR positive)
``her2_ihc``              ``0``, ``1+``, ``2+``, ``3+`` -> ordinal 0 .. 3
``grade``                 ``1`` .. ``3`` (Nottingham)  -> ordinal 1 .. 3
``pcr``                   outcome: ``1`` = pCR (ypT0/is ypN0), ``0`` = residual disease
``dfs_months``            optional, disease-free survival time in months (>= 0)
``dfs_event``             optional, ``1`` = recurrence/death, ``0`` = censored
``he_*`` / ``ihc_*``      slide features (numbers); names and groups from the slide-feature
                          schema ``analysis/core/graph/feature_schema_v1.json`` when it exists,
                          else by prefix (``he_`` -> H&E group, ``ihc_`` -> IHC group)
========================  ===============================================================

Ordinal clinical variables are kept as one ordered number (not one-hot): the model is a
soft-voting ensemble that includes a linear model, and T/N/stage/grade/HER2 are ordered
by definition (AJCC 8th edition; ASCO/CAP 2018 HER2 scoring). Any other column is
ignored and listed in ``Cohort.ignored_columns``. Problems in rows are all collected and
raised together in one :class:`CohortValidationError` (row number as in the file,
1 = header, so the first data row is 2).
"""
from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "graph" / "feature_schema_v1.json"


class FeatureGroup(str, Enum):
    """The input blocks a model spec can name (DESIGN.md 2.5)."""

    CLINICAL = "clinical"
    HE = "he"
    IHC = "ihc"


class CohortError(ValueError):
    """A cohort file cannot be read at all (missing file, format, required column)."""


@dataclass(frozen=True)
class RowProblem:
    """One bad cell in a cohort table."""

    row: int  # as in the file: header is row 1, first data row is 2
    column: str
    value: Any
    expected: str

    def __str__(self) -> str:
        return f"row {self.row}, column '{self.column}': got {self.value!r}, expected {self.expected}"


class CohortValidationError(CohortError):
    """Some rows hold values that break the cohort format; ``problems`` lists all of them."""

    def __init__(self, problems: list[RowProblem]):
        self.problems = problems
        shown = "\n  ".join(str(p) for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{len(problems)} problem(s) in the cohort table:\n  {shown}{more}")


class CaseValueError(ValueError):
    """A single case's clinical value cannot be encoded."""


# ---------------------------------------------------------------------------- encoding
_MISSING_TEXT = {"", "na", "n/a", "nan", "none", "null", "unknown", "?"}
_ROMAN = {"I": 1, "II": 2, "III": 3}
_STATUS = {"positive": 1, "pos": 1, "+": 1, "1": 1, "yes": 1, "negative": 0, "neg": 0, "-": 0, "0": 0, "no": 0}
_HER2 = {"0": 0, "1+": 1, "2+": 2, "3+": 3, "1": 1, "2": 2, "3": 3}


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in _MISSING_TEXT


def _as_text(value: Any) -> str:
    # Excel gives 2.0 for a cell typed 2: read it as "2".
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _parse_age(value: Any) -> float:
    number = float(_as_text(value))
    if not 0 <= number <= 120:
        raise ValueError
    return number


def _parse_t(value: Any) -> float:
    match = re.fullmatch(r"(?:C?T)?([1-4])[A-D]?", _as_text(value).upper())
    if not match:
        raise ValueError
    return float(match.group(1))


def _parse_n(value: Any) -> float:
    match = re.fullmatch(r"(?:C?N)?([0-3])[A-C]?", _as_text(value).upper())
    if not match:
        raise ValueError
    return float(match.group(1))


def _parse_stage(value: Any) -> float:
    text = _as_text(value).upper().removeprefix("STAGE").strip()
    match = re.fullmatch(r"(I{1,3})[A-C]?|([1-3])", text)
    if not match:
        raise ValueError
    return float(_ROMAN[match.group(1)] if match.group(1) else int(match.group(2)))


def _parse_status(value: Any) -> float:
    return float(_STATUS[_as_text(value).lower()])


def _parse_her2(value: Any) -> float:
    return float(_HER2[_as_text(value).replace(" ", "")])


def _parse_grade(value: Any) -> float:
    text = _as_text(value).upper().removeprefix("G")
    if text not in {"1", "2", "3"}:
        raise ValueError
    return float(text)


@dataclass(frozen=True)
class ClinicalColumn:
    name: str
    kind: str  # "continuous" | "ordinal" | "binary": decides the in-fold imputation
    expected: str
    parse: Callable[[Any], float]


CLINICAL_COLUMNS: dict[str, ClinicalColumn] = {
    c.name: c
    for c in (
        ClinicalColumn("age", "continuous", "age in years, 0-120", _parse_age),
        ClinicalColumn("clinical_t", "ordinal", "T1, T2, T3 or T4", _parse_t),
        ClinicalColumn("clinical_n", "ordinal", "N0, N1, N2 or N3", _parse_n),
        ClinicalColumn("clinical_stage", "ordinal", "I, II or III (IIA etc. allowed)", _parse_stage),
        ClinicalColumn("er_status", "binary", "positive or negative", _parse_status),
        ClinicalColumn("pr_status", "binary", "positive or negative", _parse_status),
        ClinicalColumn("hr_status", "binary", "positive or negative", _parse_status),
        ClinicalColumn("her2_ihc", "ordinal", "0, 1+, 2+ or 3+", _parse_her2),
        ClinicalColumn("grade", "ordinal", "grade 1, 2 or 3", _parse_grade),
    )
}
OUTCOME_COLUMN = "pcr"
SURVIVAL_COLUMNS = ("dfs_months", "dfs_event")
ID_COLUMN = "case_id"


def encode_clinical_value(*, column: str, value: Any) -> float:
    """Encode one clinical value as the model sees it (NaN when missing).

    Raises CaseValueError naming the column, the value and what was expected.
    """
    if column not in CLINICAL_COLUMNS:
        raise CaseValueError(f"'{column}' is not a clinical column; known: {sorted(CLINICAL_COLUMNS)}")
    if _is_missing(value):
        return float("nan")
    spec = CLINICAL_COLUMNS[column]
    try:
        return spec.parse(value)
    except (ValueError, KeyError, TypeError):
        raise CaseValueError(f"column '{column}': got {value!r}, expected {spec.expected}") from None


# ---------------------------------------------------------------------------- features
def load_feature_schema(*, path: Path = SCHEMA_PATH) -> dict[str, FeatureGroup]:
    """Slide-feature name -> group from the versioned schema; {} when it does not exist yet.

    Accepts a list of ``{"name", "group"}`` objects under ``"features"`` (or at top level),
    or a mapping ``{"he": [names], "ihc": [names]}``.
    """
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    entries = data.get("features", data) if isinstance(data, dict) else data
    result: dict[str, FeatureGroup] = {}
    if isinstance(entries, dict):
        for group in (FeatureGroup.HE, FeatureGroup.IHC):
            for name in entries.get(group.value, []):
                result[name if isinstance(name, str) else name["name"]] = group
    else:
        for entry in entries:
            if isinstance(entry, dict) and entry.get("group") in ("he", "ihc"):
                result[entry["name"]] = FeatureGroup(entry["group"])
    return result


def feature_group_of(*, column: str, schema: Mapping[str, FeatureGroup] | None = None) -> FeatureGroup | None:
    """The group a column belongs to, or None for columns that are not model inputs."""
    if column in CLINICAL_COLUMNS:
        return FeatureGroup.CLINICAL
    if schema and column in schema:
        return schema[column]
    if column.startswith("he_"):
        return FeatureGroup.HE
    if column.startswith("ihc_"):
        return FeatureGroup.IHC
    return None


# ---------------------------------------------------------------------------- cohort
@dataclass
class Cohort:
    """A validated, encoded cohort: numeric inputs, outcome and optional survival."""

    case_ids: list[str]
    inputs: pd.DataFrame  # index case_id, columns = encoded clinical + slide features (float)
    groups: dict[str, FeatureGroup]  # input column -> group
    pcr: np.ndarray | None  # int 0/1 per case, None when the table has no outcome
    dfs_months: np.ndarray | None = None
    dfs_event: np.ndarray | None = None
    dropped_columns: list[str] = field(default_factory=list)  # empty throughout
    ignored_columns: list[str] = field(default_factory=list)  # not part of the format
    warnings: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.case_ids)

    @property
    def has_survival(self) -> bool:
        return self.dfs_months is not None and self.dfs_event is not None

    def columns_of(self, *, groups: tuple[FeatureGroup, ...]) -> list[str]:
        """Input columns of the given groups, in table order."""
        return [c for c in self.inputs.columns if self.groups[c] in groups]

    def summary(self) -> dict[str, Any]:
        """JSON-able description for a model card."""
        out: dict[str, Any] = {
            "n": self.n,
            "columns_by_group": {
                g.value: len(self.columns_of(groups=(g,))) for g in FeatureGroup
            },
            "missing_fraction": {c: round(float(self.inputs[c].isna().mean()), 4) for c in self.inputs.columns if self.groups[c] is FeatureGroup.CLINICAL},
            "dropped_columns": list(self.dropped_columns),
        }
        if self.pcr is not None:
            out["n_pcr"] = int(self.pcr.sum())
            out["n_residual"] = int(self.n - self.pcr.sum())
        if self.has_survival:
            out["n_dfs_events"] = int(np.nansum(self.dfs_event))
        return out


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise CohortError(f"cohort file not found: {path}")
    suffix = path.suffix.lower()
    # Everything as text first so that "2+" or "T2" survive and errors show the raw value.
    if suffix in {".csv", ".txt"}:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    if suffix in {".tsv", ".tab"}:
        return pd.read_csv(path, dtype=str, keep_default_na=False, sep="\t")
    if suffix in {".xlsx", ".xlsm", ".xls"}:
        return pd.read_excel(path, dtype=object).fillna("")
    raise CohortError(f"cohort file {path.name}: unknown format '{suffix}', expected .csv, .tsv or .xlsx")


def read_cohort(*, path: str | Path, require_outcome: bool = True) -> Cohort:
    """Read a cohort CSV/TSV/Excel file and validate it (see the module docstring)."""
    return cohort_from_frame(frame=_read_table(Path(path)), require_outcome=require_outcome)


def _parse_number(value: Any) -> float:
    number = float(_as_text(value))
    if math.isinf(number):
        raise ValueError
    return number


def cohort_from_frame(*, frame: pd.DataFrame, require_outcome: bool = True) -> Cohort:
    """Validate and encode a raw cohort table (values as text or numbers).

    All problems are collected and raised together as CohortValidationError.
    """
    frame = frame.rename(columns=lambda c: str(c).strip())
    if ID_COLUMN not in frame.columns:
        raise CohortError(f"the cohort has no '{ID_COLUMN}' column; columns: {list(frame.columns)}")
    if require_outcome and OUTCOME_COLUMN not in frame.columns:
        raise CohortError(f"the cohort has no outcome column '{OUTCOME_COLUMN}' (1 = pCR, 0 = residual disease)")
    duplicated = [c for c in frame.columns if list(frame.columns).count(c) > 1]
    if duplicated:
        raise CohortError(f"duplicated column(s): {sorted(set(duplicated))}")
    if frame.empty:
        raise CohortError("the cohort table has no rows")

    schema = load_feature_schema()
    problems: list[RowProblem] = []
    rows = range(2, len(frame) + 2)

    ids = [_as_text(v) if not _is_missing(v) else "" for v in frame[ID_COLUMN]]
    seen: dict[str, int] = {}
    for row, case_id in zip(rows, ids):
        if not case_id:
            problems.append(RowProblem(row, ID_COLUMN, frame[ID_COLUMN].iloc[row - 2], "a non-empty case id"))
        elif case_id in seen:
            problems.append(RowProblem(row, ID_COLUMN, case_id, f"a unique case id (also on row {seen[case_id]})"))
        else:
            seen[case_id] = row

    def parse_column(name: str, parse: Callable[[Any], float], expected: str) -> np.ndarray:
        out = np.full(len(frame), np.nan)
        for i, (row, value) in enumerate(zip(rows, frame[name])):
            if _is_missing(value):
                continue
            try:
                out[i] = parse(value)
            except (ValueError, KeyError, TypeError):
                problems.append(RowProblem(row, name, value, expected))
        return out

    inputs: dict[str, np.ndarray] = {}
    groups: dict[str, FeatureGroup] = {}
    ignored: list[str] = []
    for name in frame.columns:
        if name in (ID_COLUMN, OUTCOME_COLUMN, *SURVIVAL_COLUMNS):
            continue
        group = feature_group_of(column=name, schema=schema)
        if group is None:
            ignored.append(name)
            continue
        if group is FeatureGroup.CLINICAL:
            spec = CLINICAL_COLUMNS[name]
            inputs[name] = parse_column(name, spec.parse, spec.expected)
        else:
            inputs[name] = parse_column(name, _parse_number, "a finite number")
        groups[name] = group

    pcr = None
    if OUTCOME_COLUMN in frame.columns:
        pcr_values = parse_column(OUTCOME_COLUMN, _parse_zero_one, "1 (pCR) or 0 (residual disease)")
        for row, value, parsed in zip(rows, frame[OUTCOME_COLUMN], pcr_values):
            if _is_missing(value) and require_outcome:
                problems.append(RowProblem(row, OUTCOME_COLUMN, value, "1 (pCR) or 0 (residual disease); the outcome cannot be empty"))
        pcr = np.nan_to_num(pcr_values, nan=-1).astype(int)
        if not require_outcome and np.any(pcr < 0):
            pcr = None  # an unlabelled table: scoring only

    dfs_months = dfs_event = None
    present = [c for c in SURVIVAL_COLUMNS if c in frame.columns]
    if len(present) == 1:
        raise CohortError(f"survival needs both {SURVIVAL_COLUMNS}; only '{present[0]}' is present")
    if present:
        dfs_months = parse_column("dfs_months", _nonnegative, "months >= 0")
        dfs_event = parse_column("dfs_event", _parse_zero_one, "1 (event) or 0 (censored)")
        for row, m, e in zip(rows, dfs_months, dfs_event):
            if np.isnan(m) != np.isnan(e):
                problems.append(RowProblem(row, "dfs_months/dfs_event", (m, e), "both filled or both empty"))

    if problems:
        raise CohortValidationError(problems)

    table = pd.DataFrame(inputs, index=pd.Index(ids, name=ID_COLUMN), dtype=float)
    dropped = [c for c in table.columns if table[c].isna().all()]
    messages: list[str] = []
    if dropped:
        messages.append(f"column(s) empty throughout, dropped: {dropped}")
        warnings.warn(messages[-1], stacklevel=2)
        table = table.drop(columns=dropped)
        for c in dropped:
            groups.pop(c)
    if ignored:
        messages.append(f"column(s) not in the cohort format, ignored: {ignored}")
    if pcr is not None and len(set(pcr.tolist())) < 2:
        messages.append("the outcome has a single class: the cohort cannot train or evaluate a model")

    return Cohort(
        case_ids=ids,
        inputs=table,
        groups=groups,
        pcr=pcr,
        dfs_months=dfs_months,
        dfs_event=dfs_event,
        dropped_columns=dropped,
        ignored_columns=ignored,
        warnings=messages,
    )


def _parse_zero_one(value: Any) -> float:
    number = _parse_number(value)  # "1", "1.0" and 1 all mean 1
    if number not in (0.0, 1.0):
        raise ValueError
    return number


def _nonnegative(value: Any) -> float:
    number = _parse_number(value)
    if number < 0:
        raise ValueError
    return number
