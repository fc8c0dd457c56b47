"""python manage.py evaluate_model --model DIR --cohort FILE"""
from __future__ import annotations

import json
import warnings

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = ("Apply a saved model with its frozen cut-offs to an external cohort. The last line printed is "
            '{"auc": ..., "auc_ci": [lo, hi], "n": ...} as JSON.')

    def add_arguments(self, parser):
        parser.add_argument("--model", required=True, help="saved model folder")
        parser.add_argument("--cohort", required=True, help="cohort CSV/XLSX with the pcr outcome")
        parser.add_argument("--report", help="write the full report (ROC, calibration, survival...) to this JSON file")

    def handle(self, *args, model: str, cohort: str, report: str | None, **options):
        from analysis.core.model.cohort import CohortError, read_cohort
        from analysis.core.model.persistence import load_model
        from analysis.core.model.scoring import evaluate_model
        from analysis.core.model.training import ModelError

        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                trained = load_model(model)
                data = read_cohort(path=cohort)
            for warning in caught:
                self.stderr.write(f"warning: {warning.message}")
            result = evaluate_model(model=trained, cohort=data)
        except (CohortError, ModelError, ValueError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from exc
        if report:
            with open(report, "w") as handle:
                json.dump(result, handle, default=float, indent=1)
        summary = {"auc": result["auc"], "auc_ci": list(result["auc_ci"]), "n": result["n"]}
        if "brier" in result:
            summary["brier"] = result["brier"]
        self.stdout.write(json.dumps(summary, default=float))
