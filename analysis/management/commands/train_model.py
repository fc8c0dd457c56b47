"""python manage.py train_model --cohort FILE --groups clinical[,he,ihc] --out DIR"""
from __future__ import annotations

import json
import warnings

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from analysis.scoring import model_register


class Command(BaseCommand):
    help = ("Train a HER2-LADDER ensemble on a cohort (CSV or Excel) with repeated stratified CV, save it to DIR "
            "and register it as a model version. The last line printed is the CV metrics as JSON.")

    def add_arguments(self, parser):
        parser.add_argument("--cohort", required=True,
                            help="cohort CSV/XLSX (format: docs/model.md), or 'db' for the cases in the database "
                                 "with a known pCR outcome")
        parser.add_argument("--groups", default="clinical,he,ihc", help="input groups, comma-separated")
        parser.add_argument("--out", required=True, help="folder to save the model in")
        parser.add_argument("--name", default="her2-ladder")
        parser.add_argument("--repeats", type=int, default=10, help="CV repeats (5 folds each)")
        parser.add_argument("--activate", action="store_true", help="make it the active model (re-scores cases)")
        parser.add_argument("--synthetic", action="store_true", help="mark the model as trained on synthetic data")

    def handle(self, *args, cohort: str, groups: str, out: str, name: str, repeats: int, activate: bool,
               synthetic: bool, **options):
        from analysis.core.model.cohort import CohortError, cohort_from_frame, read_cohort
        from analysis.core.model.persistence import save_model
        from analysis.core.model.training import ModelError, ModelSpec, train_model

        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if cohort == "db":
                    from analysis.scoring import cohort_frame_from_cases
                    from cases.models import Case

                    frame = cohort_frame_from_cases(cases=Case.objects.filter(pcr__isnull=False, is_demo=False))
                    if frame.empty:
                        raise CohortError("no case in the database has a known pCR outcome")
                    data = cohort_from_frame(frame=frame)
                else:
                    data = read_cohort(path=cohort)
            for warning in caught:
                self.stderr.write(f"warning: {warning.message}")
            spec = ModelSpec(groups=tuple(g.strip() for g in groups.split(",") if g.strip()), n_repeats=repeats,
                             name=name, synthetic=synthetic)
            with tqdm(desc="training", unit="fit", file=self.stderr) as bar:
                def progress(done: int, total: int) -> None:
                    bar.total = total
                    bar.update(done - bar.n)

                model = train_model(cohort=data, spec=spec, progress=progress)
            directory = save_model(model=model, directory=out)
        except (CohortError, ModelError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        version = model_register(directory=directory, activate=activate)
        metrics = model.card.get("metrics", {})
        self.stderr.write(f"saved {directory} as model version {version.version_label}"
                          f"{' (active)' if activate else ''}")
        self.stdout.write(json.dumps(metrics, default=float))
