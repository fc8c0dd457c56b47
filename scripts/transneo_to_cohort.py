"""Map the TransNEO clinical table (Sammut et al., Nature 2022, Supplementary Table 1) to the
HER2-LADDER cohort format, and optionally cross-validate a clinical-only model on it.

Usage (from the project root)::

    .venv/bin/python scripts/transneo_to_cohort.py \
        --input ../shared/data/cohorts/transneo_clinical.csv --output /tmp/transneo_her2.csv
    .venv/bin/python scripts/transneo_to_cohort.py \
        --input ../shared/data/cohorts/transneo_clinical.csv --output /tmp/transneo_her2.csv \
        --evaluate --n-repeats 20 --json /tmp/transneo_cv.json

Rows kept: ``HER2.status == "POS"`` and a known ``pCR.RD`` (65 HER2+ rows, 3 without a
response -> 62 patients, 20 pCR).

Column mapping (every output column; anything not listed is left out):

====================  ==========================================================================
output                from TransNEO
====================  ==========================================================================
``case_id``           ``Donor.ID`` (T001 ...)
``age``               ``Age`` (years), unchanged
``clinical_t``        ``T.stage`` T1..T4, unchanged
``clinical_n``        ``LN.status.at.diagnosis``: NEG -> N0, POS -> N1. TransNEO records node
                      status only as negative/positive, so N+ is coded N1: as an ordinal input
                      the column is then the binary node status (0/1).
``clinical_stage``    derived, AJCC 8th anatomic stage collapsed to I-III, only where T and the
                      binary N determine it: T1 N0 -> I; T2 N0, T3 N0 -> II; T3 N+, T4 any
                      -> III; T1 N+ and T2 N+ are II or III depending on N1 vs N2/N3, which
                      TransNEO does not record -> left empty (imputed in the folds).
``er_status``         ``ER.status`` POS/NEG -> positive/negative
``pr_status``         empty: TransNEO does not record PR (the column is dropped on reading)
``hr_status``         = ``er_status``. With PR unknown, ER+ means HR+; ER- is taken as HR-,
                      which misclassifies ER-/PR+ tumours (about 1-2 % of breast cancers).
``her2_ihc``          empty: TransNEO gives HER2 status (IHC 3+ or ISH-amplified), not the
                      IHC score (the column is dropped on reading)
``grade``             ``Grade.pre.NAT`` (2 or 3 in the HER2+ rows), unchanged
``pcr``               ``pCR.RD``: pCR -> 1, RD -> 0
====================  ==========================================================================

Not used: ``ER.Allred``, histology, regimen and cycles (treatment, not baseline biology),
every post-surgery column (RCB, residual size, nodes removed: they define the outcome),
PAM50 / iC10 (genomic). No survival is published, so no ``dfs_*`` columns.

Clinical-only model, fixed before any run (tune to nothing but cross-validation): inputs
``age, clinical_t, clinical_n, hr_status, grade`` (the original TransNEO baseline variables;
the derived stage and ``er_status`` would duplicate T/N and HR), default ensemble, 5-fold
stratified CV repeated ``--n-repeats`` times, AUC with DeLong CIs averaged over repeats.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from analysis.core.model.cohort import CohortError  # noqa: E402

REQUIRED = ("Donor.ID", "Age", "T.stage", "LN.status.at.diagnosis", "ER.status", "HER2.status", "Grade.pre.NAT", "pCR.RD")
TRANSNEO_CLINICAL_COLUMNS = ("age", "clinical_t", "clinical_n", "hr_status", "grade")


class TransneoFormatError(CohortError):
    """The TransNEO table lacks columns or holds values this mapping does not know."""


def _stage(t: str, n_positive: bool) -> str:
    if t == "T4" or (t == "T3" and n_positive):
        return "III"
    if not n_positive:
        return {"T1": "I", "T2": "II", "T3": "II"}[t]
    return ""  # T1/T2 N+: II or III, undetermined


def transneo_to_cohort(*, frame: pd.DataFrame) -> pd.DataFrame:
    """The HER2-positive TransNEO patients with a known response, in the cohort format."""
    absent = [c for c in REQUIRED if c not in frame.columns]
    if absent:
        raise TransneoFormatError(f"the TransNEO table lacks column(s) {absent}")
    rows = frame[(frame["HER2.status"].astype(str).str.upper() == "POS") & frame["pCR.RD"].isin(["pCR", "RD"])]
    problems = []
    for column, allowed in (("T.stage", {"T1", "T2", "T3", "T4"}), ("LN.status.at.diagnosis", {"POS", "NEG"}), ("ER.status", {"POS", "NEG"})):
        bad = rows.loc[~rows[column].isin(allowed), ["Donor.ID", column]]
        problems += [f"{donor}: {column} = {value!r}, expected one of {sorted(allowed)}" for donor, value in bad.itertuples(index=False)]
    if problems:
        raise TransneoFormatError("; ".join(problems))
    n_positive = rows["LN.status.at.diagnosis"] == "POS"
    er = rows["ER.status"].map({"POS": "positive", "NEG": "negative"})
    return pd.DataFrame({
        "case_id": rows["Donor.ID"].astype(str).to_numpy(),
        "age": rows["Age"].to_numpy(),
        "clinical_t": rows["T.stage"].to_numpy(),
        "clinical_n": n_positive.map({True: "N1", False: "N0"}).to_numpy(),
        "clinical_stage": [_stage(t, p) for t, p in zip(rows["T.stage"], n_positive)],
        "er_status": er.to_numpy(),
        "pr_status": "",
        "hr_status": er.to_numpy(),
        "her2_ihc": "",
        "grade": rows["Grade.pre.NAT"].to_numpy(),
        "pcr": rows["pCR.RD"].map({"pCR": 1, "RD": 0}).to_numpy(),
    })


def evaluate_clinical_model(*, cohort_csv: Path, n_repeats: int, n_trees: int = 200, seed: int = 0) -> dict:
    """Repeated-CV metrics of the pre-specified clinical-only model on the mapped cohort."""
    from analysis.core.model.cohort import FeatureGroup, read_cohort
    from analysis.core.model.training import ModelSpec, cross_validate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pr_status / her2_ihc empty: dropped by design
        cohort = read_cohort(path=cohort_csv)
    spec = ModelSpec(groups=(FeatureGroup.CLINICAL,), clinical_columns=TRANSNEO_CLINICAL_COLUMNS, n_repeats=n_repeats, n_trees=n_trees, random_state=seed)
    started = time.perf_counter()
    cv = cross_validate(cohort=cohort, spec=spec)
    return {"cohort": "TransNEO HER2+", "n": cohort.n, "n_pcr": int(cohort.pcr.sum()), "inputs": list(TRANSNEO_CLINICAL_COLUMNS),
            "auc": cv["auc"], "auc_ci": cv["auc_ci"], "auc_sd": cv["auc_sd"], "auc_ci_method": cv["auc_ci_method"],
            "n_splits": spec.n_splits, "n_repeats": n_repeats, "seconds": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True, help="transneo_clinical.csv")
    parser.add_argument("--output", type=Path, required=True, help="cohort CSV to write")
    parser.add_argument("--evaluate", action="store_true", help="cross-validate the clinical-only model")
    parser.add_argument("--n-repeats", type=int, default=20)
    parser.add_argument("--json", type=Path, help="write the CV result here")
    args = parser.parse_args(argv)
    cohort = transneo_to_cohort(frame=pd.read_csv(args.input))
    cohort.to_csv(args.output, index=False)
    print(f"wrote {len(cohort)} HER2+ patients ({int(cohort['pcr'].sum())} pCR) to {args.output}")
    if args.evaluate:
        result = evaluate_clinical_model(cohort_csv=args.output, n_repeats=args.n_repeats)
        print(json.dumps(result, indent=1))
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
