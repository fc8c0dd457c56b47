"""python manage.py export_cells --slide ID --format geojson|hovernet --out FILE"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from analysis.results import cells_export
from cases.models import Slide


class Command(BaseCommand):
    help = "Export the cells of a slide's latest run as QuPath GeoJSON detections or HoVer-Net JSON."

    def add_arguments(self, parser):
        parser.add_argument("--slide", type=int, required=True)
        parser.add_argument("--format", choices=["geojson", "hovernet"], default="geojson")
        parser.add_argument("--out", required=True)

    def handle(self, *args, slide: int, format: str, out: str, **options):
        slide_obj = Slide.objects.filter(pk=slide).first()
        run = slide_obj.runs.order_by("-created_at").first() if slide_obj else None
        if run is None:
            raise CommandError(f"slide {slide} has no cells (analyse it or import cells first)")
        count = cells_export(run=run, path=out, fmt=format)
        self.stdout.write(self.style.SUCCESS(f"wrote {count:,} cells to {out}"))
