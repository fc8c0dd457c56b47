"""python manage.py import_slides --case ID --stain he|ihc PATH..."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from cases.models import Case, Stain
from viewer.cases.services.cases import case_create
from viewer.cases.services.slides import SlideImportError, slide_import


class Command(BaseCommand):
    help = "Import slide files (from LADDER_SLIDE_ROOTS) into a case; the case is created if it does not exist."

    def add_arguments(self, parser):
        parser.add_argument("--case", required=True, help="pseudonymous case id")
        parser.add_argument("--stain", required=True, choices=Stain.values)
        parser.add_argument("paths", nargs="+", metavar="PATH")

    def handle(self, *args, case: str, stain: str, paths: list[str], **options):
        case_obj = Case.objects.filter(case_id=case).first()
        if case_obj is None:
            try:
                case_obj = case_create(case_id=case)
            except Exception as exc:
                raise CommandError(f"cannot create case {case!r}: {exc}") from exc
            self.stdout.write(f"created case {case_obj.case_id}")
        failures = 0
        for path in paths:
            try:
                slide = slide_import(case=case_obj, stain=stain, path=path)
            except SlideImportError as exc:
                failures += 1
                self.stderr.write(self.style.ERROR(f"FAILED {path}: {exc}"))
                continue
            mpp = f"{slide.mpp_x:g} µm/px" if slide.mpp_x else "mpp unknown (set it in the case page)"
            converted = " (converted to pyramidal TIFF)" if slide.converted else ""
            self.stdout.write(self.style.SUCCESS(
                f"imported slide #{slide.pk} {slide.name}: {slide.vendor}, {slide.width}x{slide.height}, "
                f"{slide.level_count} levels, {mpp}{converted}"))
        if failures:
            raise CommandError(f"{failures} of {len(paths)} file(s) could not be imported")
