"""Reviews of a case's automated result, and annotations drawn on its slides.

Annotations never touch analysis results: they are rows of their own, in level-0 pixels of
one slide, and every change is kept as an AnnotationRevision (who, when, what).
"""
from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models



class AnnotationLabel(models.Model):
    """An entry of the editable list of annotation labels (admin)."""

    name = models.CharField(max_length=80, unique=True)
    color = models.CharField(max_length=7, default="#E69F00",
                             validators=[RegexValidator(r"^#[0-9A-Fa-f]{6}$", "A colour as #RRGGBB.")])
    order = models.PositiveSmallIntegerField(default=100)
    active = models.BooleanField(default=True, help_text="Offered when drawing; old annotations keep it.")

    class Meta:
        ordering = ["order", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def rgb(self) -> list[int]:
        value = self.color.lstrip("#")
        return [int(value[i:i + 2], 16) for i in (0, 2, 4)]


class Shape(models.TextChoices):
    POLYGON = "polygon", "Polygon"
    RECTANGLE = "rectangle", "Rectangle"
    FREEHAND = "freehand", "Freehand"
    POINT = "point", "Point"


class Annotation(models.Model):
    """A shape on one slide, in level-0 pixels (a GeoJSON geometry: Polygon or Point)."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    slide = models.ForeignKey("cases.Slide", on_delete=models.CASCADE, related_name="annotations")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                               related_name="annotations")
    label = models.ForeignKey(AnnotationLabel, on_delete=models.PROTECT, related_name="annotations")
    shape = models.CharField(max_length=10, choices=Shape.choices)
    geometry = models.JSONField(help_text="GeoJSON geometry in level-0 pixels of the slide.")
    comment = models.TextField(blank=True)
    source = models.CharField(max_length=16, default="drawn",
                              help_text="'drawn', 'api', 'imported' or 'transferred' (copied from the paired slide).")
    transferred_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="transfers",
        help_text="The annotation on the paired slide this one was copied from through the registration.")
    transfer = models.JSONField(null=True, blank=True,
                                help_text="How it was carried across: {from_slide, alignment source, field, at}.")
    deleted = models.BooleanField(default=False, db_index=True, help_text="Deleted (kept for history and revert).")
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.shape} '{self.label}' on slide {self.slide_id}"


class AnnotationRevision(models.Model):
    """The state of an annotation after one change (create, update, delete, revert, import)."""

    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    action = models.CharField(max_length=16)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField(auto_now_add=True)
    label_name = models.CharField(max_length=80)
    shape = models.CharField(max_length=10, choices=Shape.choices)
    geometry = models.JSONField()
    comment = models.TextField(blank=True)
    deleted = models.BooleanField(default=False)

    class Meta:
        ordering = ["annotation", "number"]
        constraints = [models.UniqueConstraint(fields=["annotation", "number"], name="unique_annotation_revision")]


class ExpectedResponse(models.TextChoices):
    PCR = "pcr", "pCR"
    RESIDUAL = "residual", "Residual disease"
    UNCERTAIN = "uncertain", "Uncertain"


class ReviewHer2(models.TextChoices):
    """The reviewer's HER2 IHC call: ASCO/CAP 2023 scores, with HER2-ultralow (IHC 0 with faint,
    incomplete membrane staining in >0 and <=10% of tumour cells; DESTINY-Breast06) told apart
    from HER2-null (no staining)."""

    NULL = "0", "0 (HER2-null)"
    ULTRALOW = "ultralow", "0 (HER2-ultralow)"
    ONE = "1+", "1+"
    TWO = "2+", "2+"
    THREE = "3+", "3+"


class IshResult(models.TextChoices):
    """HER2 in situ hybridisation, when done (ASCO/CAP 2018/2023 ISH groups)."""

    AMPLIFIED = "amplified", "Amplified"
    NOT_AMPLIFIED = "not_amplified", "Not amplified"
    EQUIVOCAL = "equivocal", "Equivocal"


class RiskGroup(models.TextChoices):
    LOW = "Low", "Low"
    MEDIUM = "Medium", "Medium"
    HIGH = "High", "High"


class Review(models.Model):
    """One reviewer's call on a case: agreement with the risk group, expected response, HER2."""

    case = models.ForeignKey("cases.Case", on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reviews")
    agrees = models.BooleanField("agrees with the risk group", null=True, blank=True)
    expected_response = models.CharField(max_length=10, choices=ExpectedResponse.choices, blank=True)
    her2_score = models.CharField("reviewer's HER2 IHC score", max_length=8, choices=ReviewHer2.choices, blank=True)
    ish_result = models.CharField("HER2 ISH result", max_length=14, choices=IshResult.choices, blank=True)
    risk_group = models.CharField("risk group the reviewer thinks right", max_length=8, choices=RiskGroup.choices,
                                  blank=True)
    confidence = models.PositiveSmallIntegerField(null=True, blank=True,
                                                  validators=[MinValueValidator(1), MaxValueValidator(5)])
    comment = models.TextField(blank=True)
    submitted = models.BooleanField(default=False, help_text="Submitted (else a draft).")
    # What the reviewer saw when saving (the automated results can change later).
    model_risk_group = models.CharField(max_length=8, blank=True)
    model_score = models.ForeignKey("analysis.CaseScore", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    automated_her2 = models.CharField(max_length=2, blank=True)
    automated_her2_source = models.CharField(max_length=16, blank=True,
                                             help_text="'analysis' (latest IHC run), 'clinical' or ''.")
    is_disagreement = models.BooleanField(default=False, db_index=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["case", "reviewer_id"]
        constraints = [models.UniqueConstraint(fields=["case", "reviewer"], name="one_review_per_reviewer")]

    def __str__(self) -> str:
        return f"review of {self.case} by {self.reviewer}"

    @property
    def reviewer_risk_group(self) -> str:
        """The risk group the reviewer holds: the one chosen, else the model's when agreeing with it,
        else "" (disagrees without naming a group, or no call)."""
        if self.risk_group:
            return self.risk_group
        return self.model_risk_group if self.agrees else ""

    @property
    def text(self) -> str:
        """One line for summaries (the tumour-board record reads it)."""
        call = "no call" if self.agrees is None else ("agrees" if self.agrees else "disagrees")
        parts = [f"{self.reviewer.get_username()}: {call} with risk group {self.model_risk_group or '-'}"]
        if self.expected_response:
            parts.append(f"expects {self.get_expected_response_display()}")
        if self.risk_group:
            parts.append(f"thinks {self.risk_group} risk is right")
        if self.her2_score:
            parts.append(f"HER2 {self.get_her2_score_display()} (automated {self.automated_her2 or '-'})")
        if self.ish_result:
            parts.append(f"ISH {self.get_ish_result_display().lower()}")
        if self.confidence:
            parts.append(f"confidence {self.confidence}/5")
        if not self.submitted:
            parts.append("draft")
        if self.comment:
            parts.append(self.comment)
        return "; ".join(parts)
