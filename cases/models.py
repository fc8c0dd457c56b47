"""Cases, slides and what pathologists record about them: the base domain of the product.

The database keeps metadata; pixels stay in the slide files where they are, and cell
tables live in run folders (analysis app). The models came from the `viewer` app and keep
its table names (`viewer_case`, ...): no data moved (migrations/0001 adopts the tables).
"""
from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models


class Role(models.TextChoices):
    """Roles are Django groups of these names; superusers count as admins."""

    PATHOLOGIST = "pathologist", "Pathologist"
    PRESENTER = "presenter", "Presenter"
    ADMIN = "admin", "Admin"


class Status(models.TextChoices):
    POSITIVE = "positive", "Positive"
    NEGATIVE = "negative", "Negative"


class ClinicalT(models.TextChoices):
    T1 = "T1", "T1"
    T2 = "T2", "T2"
    T3 = "T3", "T3"
    T4 = "T4", "T4"


class ClinicalN(models.TextChoices):
    N0 = "N0", "N0"
    N1 = "N1", "N1"
    N2 = "N2", "N2"
    N3 = "N3", "N3"


class ClinicalStage(models.TextChoices):
    I = "I", "I"  # noqa: E741 - stage names are Roman numerals
    II = "II", "II"
    III = "III", "III"


class Her2Score(models.TextChoices):
    ZERO = "0", "0"
    ONE = "1+", "1+"
    TWO = "2+", "2+"
    THREE = "3+", "3+"


class CaseStatus(models.TextChoices):
    NEW = "new", "New"
    ANALYSING = "analysing", "Analysing"
    READY = "ready", "Ready for review"
    IN_REVIEW = "in_review", "In review"
    REVIEWED = "reviewed", "Reviewed"
    DISCUSSED = "discussed", "Discussed at tumour board"


pseudonym_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
    "Letters, digits, '.', '_' and '-' only (a pseudonymous id, never a patient name).",
)


class Case(models.Model):
    """One patient's biopsy: clinical variables and its slides (one H&E + one HER2 IHC)."""

    case_id = models.CharField("case id", max_length=64, unique=True, validators=[pseudonym_validator])
    age = models.PositiveSmallIntegerField(null=True, blank=True, validators=[MaxValueValidator(120)])
    clinical_t = models.CharField("clinical T", max_length=2, choices=ClinicalT.choices, blank=True)
    clinical_n = models.CharField("clinical N", max_length=2, choices=ClinicalN.choices, blank=True)
    clinical_stage = models.CharField(max_length=3, choices=ClinicalStage.choices, blank=True)
    er_status = models.CharField("ER status", max_length=8, choices=Status.choices, blank=True)
    pr_status = models.CharField("PR status", max_length=8, choices=Status.choices, blank=True)
    hr_status = models.CharField("HR status", max_length=8, choices=Status.choices, blank=True)
    her2_ihc = models.CharField("HER2 IHC score", max_length=2, choices=Her2Score.choices, blank=True)
    grade = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(3)]
    )
    regimen = models.CharField(max_length=200, blank=True)
    pcr = models.BooleanField("pCR", null=True, blank=True, help_text="Outcome when known: pathologic complete response.")
    status = models.CharField(max_length=16, choices=CaseStatus.choices, default=CaseStatus.NEW, db_index=True)
    is_demo = models.BooleanField(default=False, help_text="Synthetic demo data, not a patient.")
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "viewer_case"
        ordering = ["case_id"]

    def __str__(self) -> str:
        return self.case_id

    def slide_for(self, stain: str) -> "Slide | None":
        """The case's first ready slide of a stain (the one shown in the paired viewer)."""
        return self.slides.filter(stain=stain).exclude(status=SlideStatus.FAILED).order_by("id").first()


class Stain(models.TextChoices):
    HE = "he", "H&E"
    IHC = "ihc", "HER2 IHC"


class SlideStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    CONVERTING = "converting", "Converting"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class MppSource(models.TextChoices):
    METADATA = "metadata", "Slide metadata"
    USER = "user", "Set by a user"
    UNKNOWN = "unknown", "Unknown"


class Slide(models.Model):
    """A whole-slide image of a case. The file stays where it is; `file_path` is what we read."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="slides")
    stain = models.CharField(max_length=4, choices=Stain.choices)
    name = models.CharField(max_length=255, help_text="Original file name.")
    source_path = models.CharField(max_length=1024, help_text="Where the file was imported from.")
    file_path = models.CharField(
        max_length=1024, blank=True, help_text="The pyramidal file served (a converted TIFF for plain images)."
    )
    checksum = models.CharField("SHA-256", max_length=64, blank=True, db_index=True)
    vendor = models.CharField(max_length=32, blank=True)
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    level_count = models.PositiveSmallIntegerField(default=0)
    level_dimensions = models.JSONField(default=list, blank=True)
    level_downsamples = models.JSONField(default=list, blank=True)
    mpp_x = models.FloatField("µm per pixel (x)", null=True, blank=True)
    mpp_y = models.FloatField("µm per pixel (y)", null=True, blank=True)
    mpp_source = models.CharField(max_length=8, choices=MppSource.choices, default=MppSource.UNKNOWN)
    objective_power = models.FloatField(null=True, blank=True)
    converted = models.BooleanField(default=False, help_text="Converted from a plain image on import.")
    status = models.CharField(max_length=12, choices=SlideStatus.choices, default=SlideStatus.PENDING, db_index=True)
    error = models.TextField(blank=True)
    properties = models.JSONField(default=dict, blank=True)
    imported_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "viewer_slide"
        ordering = ["case", "stain", "id"]

    def __str__(self) -> str:
        return f"{self.case.case_id} {self.get_stain_display()} ({self.name})"

    @property
    def mpp(self) -> float | None:
        return self.mpp_x

    @property
    def is_ready(self) -> bool:
        return self.status == SlideStatus.READY


class AlignmentSource(models.TextChoices):
    DEFAULT = "default", "Default (same physical scale)"
    MANUAL = "manual", "Set by hand"
    AUTOMATIC = "automatic", "Automatic registration"


class SlideAlignment(models.Model):
    """How a moving slide sits on a fixed one (usually the IHC on the H&E of a case).

    A point p in the fixed slide's level-0 pixels lies at scale * R(rotation) * p + offset
    in the moving slide's level-0 pixels (rotation in degrees, clockwise on screen).
    While `source` is automatic and `field_path` is set, a smooth non-rigid displacement
    (analysis.core.slides.registration.DisplacementField) is applied before it: q = S(p + u(p)).
    """

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="alignments")
    fixed = models.ForeignKey(Slide, on_delete=models.CASCADE, related_name="+")
    moving = models.ForeignKey(Slide, on_delete=models.CASCADE, related_name="+")
    offset_x = models.FloatField(default=0.0)
    offset_y = models.FloatField(default=0.0)
    rotation = models.FloatField(default=0.0)
    scale = models.FloatField(default=1.0, validators=[MinValueValidator(1e-3), MaxValueValidator(1e3)])
    source = models.CharField(max_length=10, choices=AlignmentSource.choices, default=AlignmentSource.DEFAULT,
                              help_text="Where the four numbers above come from.")
    automatic = models.JSONField(
        null=True, blank=True,
        help_text="The last automatic registration: {similarity, job, at, stages, field}; kept for 'reset to "
                  "automatic' while the pathologist adjusts by hand.")
    field_path = models.CharField(
        max_length=255, blank=True,
        help_text="Non-rigid displacement field of the automatic registration (JSON file under LADDER_DATA_DIR).")
    field_checksum = models.CharField("field SHA-256", max_length=64, blank=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "viewer_slidealignment"
        constraints = [models.UniqueConstraint(fields=["fixed", "moving"], name="unique_alignment_pair")]


class AuditEvent(models.Model):
    """Append-only record of who did what (imports, analyses, reviews, model activations)."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=64, db_index=True)
    case = models.ForeignKey(Case, null=True, blank=True, on_delete=models.SET_NULL)
    slide = models.ForeignKey(Slide, null=True, blank=True, on_delete=models.SET_NULL)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "viewer_auditevent"
        ordering = ["-at"]

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit events are append-only.")
