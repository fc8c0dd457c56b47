"""python manage.py import_cells --slide ID FILE (HoVer-Net JSON or QuPath GeoJSON)"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from analysis.results import cells_import
from cases.models import Slide


class Command(BaseCommand):
    help = "Import cells from HoVer-Net JSON or QuPath GeoJSON detections as the cells of a slide."

    def add_arguments(self, parser):
        parser.add_argument("--slide", type=int, required=True)
        parser.add_argument("file")

    def handle(self, *args, slide: int, file: str, **options):
        slide_obj = Slide.objects.filter(pk=slide).first()
        if slide_obj is None:
            raise CommandError(f"no slide with id {slide}")
        try:
            run = cells_import(slide=slide_obj, path=file)
        except (ValueError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        features = run.features.first()
        note = f"; features not computed: {features.reason}" if features and features.reason else ""
        self.stdout.write(self.style.SUCCESS(f"run #{run.pk}: {run.n_cells:,} cells imported{note}"))
