"""Clinical values derived from others, as a pathologist enters a case: hormone-receptor status
from ER and PR, and the clinical anatomic stage group from clinical T and N.

Stage: AJCC Cancer Staging Manual, 8th edition (Amin MB et al., Springer 2017), chapter 48
"Breast", table "AJCC Anatomic Stage Groups" (M0; cM1 is stage IV, which a neoadjuvant
HER2-LADDER case does not have):

    T1 N0 -> IA          T0/T1 N1 -> IIA        T2 N0 -> IIA
    T2 N1 -> IIB         T3 N0 -> IIB
    T0-T2 N2 -> IIIA     T3 N1-N2 -> IIIA
    T4 N0-N2 -> IIIB     any T N3 -> IIIC

(T1 N1mi, stage IB, is not among the N categories the product records.) The case stores the
stage group I, II or III, as the HER2-LADDER cohort does; the substage is shown with it.

HR status: hormone-receptor positive when ER or PR is positive (ASCO/CAP 2020 ER/PR testing
guideline, Allison KH et al., J Clin Oncol 2020; the cohorts' HR+ definition); negative only
when both are negative; unknown otherwise.
"""
from __future__ import annotations

# (T, N) -> AJCC 8th anatomic substage
AJCC8_ANATOMIC_STAGE: dict[tuple[str, str], str] = {
    ("T1", "N0"): "IA",
    ("T1", "N1"): "IIA", ("T2", "N0"): "IIA",
    ("T2", "N1"): "IIB", ("T3", "N0"): "IIB",
    ("T1", "N2"): "IIIA", ("T2", "N2"): "IIIA", ("T3", "N1"): "IIIA", ("T3", "N2"): "IIIA",
    ("T4", "N0"): "IIIB", ("T4", "N1"): "IIIB", ("T4", "N2"): "IIIB",
    ("T1", "N3"): "IIIC", ("T2", "N3"): "IIIC", ("T3", "N3"): "IIIC", ("T4", "N3"): "IIIC",
}


def anatomic_substage(t: str, n: str) -> str:
    """AJCC 8th anatomic stage (IA ... IIIC) of clinical T and N, or '' when either is unknown."""
    return AJCC8_ANATOMIC_STAGE.get((t or "", n or ""), "")


def anatomic_stage_group(t: str, n: str) -> str:
    """The stage group the case stores (I, II, III) of clinical T and N, or ''."""
    return anatomic_substage(t, n).rstrip("ABC")


def hr_status_from(er: str, pr: str) -> str:
    """'positive' if ER or PR is positive, 'negative' if both are negative, else ''."""
    if "positive" in (er, pr):
        return "positive"
    if er == "negative" and pr == "negative":
        return "negative"
    return ""


def derivation_rules() -> dict:
    """The stage table for the case form's script (one table: this one), keyed "T2 N1"."""
    return {"stages": {f"{t} {n}": substage for (t, n), substage in AJCC8_ANATOMIC_STAGE.items()}}
