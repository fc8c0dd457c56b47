"""Background jobs and their state. Science results hang off these (runs, features, scores)."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class JobKind(models.TextChoices):
    ANALYZE_SLIDE = "analyze_slide", "Cell analysis"
    IMPORT_CELLS = "import_cells", "Cell import"
    TRAIN_MODEL = "train_model", "Model training"
    SCORE_CASE = "score_case", "HER2-LADDER score"
    REGISTER_PAIR = "register_pair", "Slide registration"
    SELFTEST = "selftest", "Self-test"
    CONVERT_SLIDE = "convert_slide", "Slide conversion"
    IMPORT_ANNOTATIONS = "import_annotations", "Annotation import"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


class Job(models.Model):
    """One unit of background work. The database row is the source of truth for its state."""

    kind = models.CharField(max_length=32, choices=JobKind.choices)
    status = models.CharField(max_length=12, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    case = models.ForeignKey("cases.Case", null=True, blank=True, on_delete=models.CASCADE, related_name="jobs")
    slide = models.ForeignKey("cases.Slide", null=True, blank=True, on_delete=models.CASCADE, related_name="jobs")
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    progress = models.FloatField(default=0.0, help_text="0 to 1.")
    message = models.CharField(max_length=255, blank=True)
    eta_seconds = models.FloatField(null=True, blank=True)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=2)
    cancel_requested = models.BooleanField(default=False)
    worker = models.CharField(max_length=128, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def outcome(self) -> str:
        """The status as the user should read it: a scoring job that ran but could not score
        (inputs missing) is 'not_scored', not 'succeeded'."""
        if (self.status == JobStatus.SUCCEEDED and self.kind == JobKind.SCORE_CASE
                and (self.result or {}).get("status") == "missing_inputs"):
            return "not_scored"
        return self.status

    @property
    def outcome_display(self) -> str:
        return "Not scored" if self.outcome == "not_scored" else self.get_status_display()


class AnalysisRun(models.Model):
    """A finished cell analysis of one slide; its files live in LADDER_RUNS_DIR/<run_dir>."""

    slide = models.ForeignKey("cases.Slide", on_delete=models.CASCADE, related_name="runs")
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    run_dir = models.CharField(max_length=255, help_text="Folder under LADDER_RUNS_DIR.")
    source = models.CharField(max_length=16, default="segmentation",
                              help_text="'segmentation', or 'imported' for bring-your-own cells.")
    segmenter = models.CharField(max_length=64)
    segmenter_version = models.CharField(max_length=32, blank=True)
    weights = models.CharField(max_length=255, blank=True)
    approximate = models.BooleanField(default=False, help_text="Classical CPU segmentation: approximate.")
    n_cells = models.PositiveIntegerField(default=0)
    class_counts = models.JSONField(default=dict, blank=True)
    her2 = models.JSONField(null=True, blank=True, help_text="IHC: slide HER2 score and the percentages behind it.")
    warnings = models.JSONField(default=list, blank=True)
    summary = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        get_latest_by = "created_at"

    def __str__(self) -> str:
        return f"run #{self.pk} of slide {self.slide_id} ({self.segmenter}, {self.n_cells} cells)"


class FeatureStatus(models.TextChoices):
    COMPUTED = "computed", "Computed"
    UNAVAILABLE = "unavailable", "Not computed"


class SlideFeatures(models.Model):
    """Slide-level sc-MTOP features of one run, under a versioned schema."""

    slide = models.ForeignKey("cases.Slide", on_delete=models.CASCADE, related_name="features")
    run = models.ForeignKey(AnalysisRun, null=True, blank=True, on_delete=models.CASCADE, related_name="features")
    schema_version = models.CharField(max_length=16)
    status = models.CharField(max_length=12, choices=FeatureStatus.choices, default=FeatureStatus.COMPUTED)
    reason = models.CharField(max_length=255, blank=True, help_text="Why the features are not computed.")
    values = models.JSONField(default=dict, blank=True)
    computed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-computed_at"]
        get_latest_by = "computed_at"


# The model's input groups as a reader says them (pages and messages never show the codes).
INPUT_GROUP_NAMES = {"clinical": "clinical data", "he": "H&E slide features", "ihc": "HER2 IHC slide features"}


class ModelVersion(models.Model):
    """A trained HER2-LADDER model: its folder (model.joblib + model_card.json), card and state."""

    name = models.CharField(max_length=100)
    directory = models.CharField(max_length=1024, unique=True)
    groups = models.JSONField(default=list, help_text="Input groups: clinical, he, ihc.")
    card = models.JSONField(default=dict, blank=True)
    synthetic = models.BooleanField(default=False, help_text="Trained on synthetic data: not for clinical use.")
    is_active = models.BooleanField(default=False, db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    activated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["is_active"], condition=models.Q(is_active=True),
                                               name="one_active_model")]

    def __str__(self) -> str:
        return f"{self.name} v{self.pk}{' (synthetic)' if self.synthetic else ''}"

    @property
    def version_label(self) -> str:
        return f"v{self.pk}"

    @property
    def groups_display(self) -> str:
        return ", ".join(INPUT_GROUP_NAMES.get(group, group) for group in self.groups)

    @property
    def cv_auc(self) -> float | None:
        return (self.card.get("metrics") or {}).get("auc")


class ScoreStatus(models.TextChoices):
    SCORED = "scored", "Scored"
    MISSING_INPUTS = "missing_inputs", "Inputs missing"


class CaseScore(models.Model):
    """A case's HER2-LADDER score under one model and feature schema, with its attributions."""

    case = models.ForeignKey("cases.Case", on_delete=models.CASCADE, related_name="scores")
    model = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="scores")
    schema_version = models.CharField(max_length=16)
    status = models.CharField(max_length=16, choices=ScoreStatus.choices, default=ScoreStatus.SCORED)
    message = models.TextField(blank=True, help_text="What is missing, when the case could not be scored.")
    probability_pcr = models.FloatField(null=True, blank=True)
    score = models.FloatField(null=True, blank=True, help_text="HER2-LADDER score, 100 x (1 - P(pCR)).")
    risk_group = models.CharField(max_length=8, blank=True)
    base_value = models.FloatField(null=True, blank=True)
    attributions = models.JSONField(default=list, blank=True,
                                    help_text="[{feature, group, value, attribution, percentile}] on the P(pCR) scale.")
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        get_latest_by = "created_at"
