"""python manage.py analyze --slide ID: the slide's analysis job, run here with a progress bar."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from analysis.jobs.runner import job_claim, job_execute
from analysis.models import JobKind, JobStatus
from analysis.services import job_enqueue
from cases.models import Slide


class Command(BaseCommand):
    help = "Analyse a slide in the foreground (the same job the worker runs), with a progress bar."

    def add_arguments(self, parser):
        parser.add_argument("--slide", type=int, required=True, help="slide id")

    def handle(self, *args, slide: int, **options):
        slide_obj = Slide.objects.filter(pk=slide).first()
        if slide_obj is None:
            raise CommandError(f"no slide with id {slide}")
        job = job_enqueue(kind=JobKind.ANALYZE_SLIDE, slide=slide_obj, max_attempts=1)
        claimed = job_claim(job_id=job.pk, worker="manage.py analyze")
        if claimed is None:
            raise CommandError(f"job #{job.pk} was taken by a running worker; follow it on the case page")
        with tqdm(total=100, unit="%", desc=f"slide {slide_obj.pk} ({slide_obj.get_stain_display()})") as bar:
            def show(fraction: float, message: str) -> None:
                bar.set_postfix_str(message[:40], refresh=False)
                bar.update(round(fraction * 100) - bar.n)

            job = job_execute(claimed, on_progress=show)
            if job.status == JobStatus.SUCCEEDED:
                bar.update(100 - bar.n)
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"analysis {job.status}: {job.error}")
        self.stdout.write(self.style.SUCCESS(f"run #{job.result['run']}: {job.result['cells']:,} cells; "
                                             f"features {job.result['features']}"))
