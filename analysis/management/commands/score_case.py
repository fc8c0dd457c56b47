"""python manage.py score_case --case ID"""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from analysis.scoring import ModelRegistryError, case_score_compute
from cases.models import Case


class Command(BaseCommand):
    help = "Score a case with the active model now; prints the score as JSON."

    def add_arguments(self, parser):
        parser.add_argument("--case", required=True, help="case id")

    def handle(self, *args, case: str, **options):
        case_obj = Case.objects.filter(case_id=case).first()
        if case_obj is None:
            raise CommandError(f"no case {case!r}")
        try:
            score = case_score_compute(case=case_obj)
        except ModelRegistryError as exc:
            raise CommandError(str(exc)) from exc
        if score.message:
            self.stderr.write(score.message)
        self.stdout.write(json.dumps({
            "case": case_obj.case_id, "status": score.status, "model": score.model.version_label,
            "synthetic_model": score.model.synthetic, "schema_version": score.schema_version,
            "probability_pcr": score.probability_pcr, "score": score.score, "risk_group": score.risk_group,
            "top_attributions": score.attributions[:5],
        }, default=float))
