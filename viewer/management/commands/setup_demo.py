"""python manage.py setup_demo: demo users, the phantom H&E/IHC pair and the demo case. Idempotent."""
from __future__ import annotations

import json
import math
import secrets
import time

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError

from cases.models import Case, Role, SlideAlignment, Stain
from cases.roles import roles_ensure_groups
from analysis.registration import alignment_ensure_default
from viewer.cases.services.slides import slide_import

DEMO_CASE_ID = "DEMO-001"
DEMO_USERS = {  # user name -> roles
    "pathologist": [Role.PATHOLOGIST],
    "presenter": [Role.PRESENTER, Role.PATHOLOGIST],
    "admin": [Role.ADMIN, Role.PATHOLOGIST],
}
# A synthetic patient: every value invented, labelled demo wherever shown.
DEMO_CLINICAL = {
    "age": 48, "clinical_t": "T2", "clinical_n": "N1", "clinical_stage": "II", "er_status": "negative",
    "pr_status": "negative", "hr_status": "negative", "her2_ihc": "3+", "grade": 3,
    "regimen": "TCbHP (docetaxel, carboplatin, trastuzumab, pertuzumab) x6",
    "notes": "Synthetic phantom slides made by analysis.core.demo.phantom; not a patient.",
}


class Command(BaseCommand):
    help = "Create the demo users, the phantom H&E / HER2-IHC slide pair and the demo case (skips what exists)."

    def add_arguments(self, parser):
        parser.add_argument("--phantom-size", type=int, default=20480, help="phantom width and height in pixels")
        parser.add_argument("--force", action="store_true", help="allow in production settings")
        parser.add_argument("--no-model", action="store_true", help="do not train the synthetic demo model")
        parser.add_argument("--no-analysis", action="store_true", help="do not queue the demo slides' analyses")

    def handle(self, *args, phantom_size: int, force: bool, no_model: bool, no_analysis: bool, **options):
        if settings.PRODUCTION and not force:
            raise CommandError("setup_demo creates users with printed passwords: not in production (use --force).")
        roles_ensure_groups()
        logins = self._ensure_users()
        case = self._ensure_case(phantom_size)
        if not no_model:
            self._ensure_demo_model()
        if not no_analysis:
            self._queue_analyses(case)
        self.stdout.write(self.style.SUCCESS(f"Demo case {case.case_id} is ready: /cases/{case.case_id}/"))
        self.stdout.write("Log in at /accounts/login/ (the server prints its address) with one of:")
        for username, password in logins.items():
            roles = ", ".join(role.value for role in DEMO_USERS[username])
            self.stdout.write(f"    {username:12s} {password}    ({roles})")

    def _ensure_users(self) -> dict[str, str]:
        """Random passwords, made once and kept in LADDER_DATA_DIR/demo/logins.json (mode 600)."""
        store = settings.LADDER_DEMO_DIR / "logins.json"
        logins = json.loads(store.read_text()) if store.exists() else {}
        for username, roles in DEMO_USERS.items():
            password = logins.get(username) or secrets.token_urlsafe(9)
            user, created = User.objects.get_or_create(username=username)
            if created or not user.check_password(password):
                user.set_password(password)
            user.is_staff = Role.ADMIN in roles
            user.save()
            user.groups.add(*[Group.objects.get(name=role.value) for role in roles])
            logins[username] = password
        store.parent.mkdir(parents=True, exist_ok=True)
        store.write_text(json.dumps(logins, indent=2))
        store.chmod(0o600)
        return logins

    def _ensure_case(self, size: int) -> Case:
        from analysis.core.demo.phantom import ensure_phantom_pair

        started = time.monotonic()
        self.stdout.write(f"Phantom slide pair ({size:,} x {size:,} px): checking ...")
        pair = ensure_phantom_pair(out_dir=settings.LADDER_DEMO_DIR / "phantom", width=size, height=size)
        if pair.generated:
            self.stdout.write(f"    generated in {time.monotonic() - started:.0f} s")
        case, _ = Case.objects.get_or_create(case_id=DEMO_CASE_ID, defaults={**DEMO_CLINICAL, "is_demo": True})
        for stain, path in ((Stain.HE, pair.he_path), (Stain.IHC, pair.ihc_path)):
            if not case.slides.filter(stain=stain, source_path=str(path.resolve())).exists():
                case.slides.filter(stain=stain).delete()  # an older phantom: replace it
                slide_import(case=case, stain=stain, path=path, name=f"phantom-{stain}.tif",
                             automatic=False)  # analyses queued below, alignment set to the truth
        self._align_to_truth(case, pair.ihc_transform)
        return case

    def _align_to_truth(self, case: Case, transform) -> None:
        """The phantom IHC is the H&E moved by a known affine map: start the viewer aligned."""
        alignment = alignment_ensure_default(case=case)
        if alignment is None or alignment.updated_by_id is not None:
            return  # a user has adjusted it since: keep theirs
        (a, b, tx), (c, d, ty) = transform
        SlideAlignment.objects.filter(pk=alignment.pk).update(
            offset_x=tx, offset_y=ty, scale=math.hypot(a, c), rotation=math.degrees(math.atan2(c, a)) % 360)

    def _ensure_demo_model(self) -> None:
        """Train the synthetic demo model once (planted signal, analysis/core/demo/synthetic_cohort.py)."""
        from analysis.core.demo.synthetic_cohort import train_demo_model
        from analysis.models import ModelVersion
        from analysis.scoring import model_register, models_dir

        directory = models_dir() / "demo-synthetic"
        if not (directory / "model_card.json").exists():
            self.stdout.write("Synthetic demo model: training (about 30 s) ...")
            train_demo_model(directory=directory)
        version = model_register(directory=directory,
                                 activate=not ModelVersion.objects.filter(is_active=True).exists())
        self.stdout.write(f"    model {version.version_label}: synthetic, not for clinical use"
                          f"{' (active)' if version.is_active else ''}")

    def _queue_analyses(self, case: Case) -> None:
        """Queue the cell analysis of demo slides that have none (the worker runs them after start)."""
        from analysis.models import ACTIVE_STATUSES, JobKind
        from analysis.services import job_enqueue

        for slide in case.slides.all():
            busy = slide.jobs.filter(kind=JobKind.ANALYZE_SLIDE, status__in=ACTIVE_STATUSES).exists()
            if not slide.runs.exists() and not busy:
                # The phantom's nuclei are synthetic discs drawn for the hematoxylin-threshold
                # segmenter (analysis/core/demo/phantom.py); the trained model is for real tissue.
                job_enqueue(kind=JobKind.ANALYZE_SLIDE, slide=slide, params={"segmenter": "classical"})
                self.stdout.write(f"    queued the cell analysis of {slide.name} (runs in the background)")
