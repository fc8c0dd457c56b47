"""``python manage.py scmtop_features --cells HOVERNET_JSON --slide SLIDE --out DIR``.

Writes sc-MTOP's four files (``<sample>_Feats_T.csv``, ``_Feats_I.csv``, ``_Feats_S.csv``,
``_Edges.csv``) exactly as fuscc-deep-path/sc_MTOP's ``main.py feature`` does; all the work
is in analysis.core.graph.scmtop.write_scmtop_outputs.
"""
from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from analysis.core.cells.features import CellFeatureError
from analysis.core.graph.graphs import GraphInputError
from analysis.core.graph.scmtop import ScmtopInputError, write_scmtop_outputs


class Command(BaseCommand):
    help = "Compute sc-MTOP per-cell features and edges from a HoVer-Net JSON and its slide."

    def add_arguments(self, parser):
        parser.add_argument("--cells", required=True, type=Path, help="HoVer-Net JSON (sc-MTOP's input)")
        parser.add_argument("--slide", required=True, type=Path, help="the whole-slide image the JSON was made on")
        parser.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
        parser.add_argument("--sample", default=None, help="file name prefix (default: slide name up to its first '.')")

    def handle(self, *args, **options):
        start = time.perf_counter()
        try:
            paths = write_scmtop_outputs(
                hovernet_json=options["cells"], slide_path=options["slide"], out_dir=options["out"],
                sample=options["sample"],
            )
        except (ScmtopInputError, GraphInputError, CellFeatureError) as error:
            raise CommandError(str(error)) from error
        for path in paths.values():
            self.stdout.write(str(path))
        self.stdout.write(self.style.SUCCESS(f"sc-MTOP features written in {time.perf_counter() - start:.1f} s"))
