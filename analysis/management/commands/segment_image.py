"""python manage.py segment_image IMAGE --stain he|ihc [--mpp X] [--segmenter auto|nucleus-model|hovernet|classical] --out cells.geojson

The same segmenter as analyses by default (analysis/segmenters.py)."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = ("Segment the nuclei of one plain image (H&E or HER2 IHC) and write QuPath-compatible GeoJSON "
            "detections (pixel coordinates, classification, measurements).")

    def add_arguments(self, parser):
        parser.add_argument("image")
        parser.add_argument("--stain", choices=["he", "ihc"], required=True)
        parser.add_argument("--mpp", type=float, default=None, help="µm per pixel; needed when the file does not record it (0.5 at 20x, 0.25 at 40x)")
        parser.add_argument("--out", required=True)
        parser.add_argument("--segmenter", choices=["auto", "nucleus-model", "hovernet", "classical"], default=None,
                            help="default: LADDER_SEGMENTER (auto: HoVer-Net where configured, else the shipped nucleus model)")

    def handle(self, *args, image: str, stain: str, mpp: float | None, out: str, segmenter: str | None = None, **options):
        from analysis.core.cells.interchange import write_qupath_geojson
        from analysis.core.cells.segmentation.classical import segment_image_file
        from analysis.segmenters import segmenter_for

        try:
            chosen = segmenter_for(stain=stain, choice=segmenter, log=self.stderr.write)
            cells = segment_image_file(image_path=image, stain=stain, mpp=mpp, segmenter=chosen)
            if cells.attrs.get("warning"):
                self.stderr.write(f"warning: {cells.attrs['warning']}")
            cells = cells.reset_index(drop=True)
            cells.insert(0, "id", range(1, len(cells) + 1))
            count = write_qupath_geojson(path=out, cells=cells)
        except (ValueError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"{count:,} nuclei written to {out}"))
