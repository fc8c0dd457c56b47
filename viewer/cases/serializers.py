from __future__ import annotations

from rest_framework import serializers

from viewer.cases import selectors
from cases.models import Case, Slide, SlideAlignment, Stain


class SlideSerializer(serializers.ModelSerializer):
    case_id = serializers.CharField(source="case.case_id", read_only=True)
    dzi_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()
    overlays = serializers.SerializerMethodField()

    class Meta:
        model = Slide
        fields = [
            "id", "case", "case_id", "stain", "name", "status", "error", "vendor", "width", "height",
            "level_count", "level_dimensions", "level_downsamples", "mpp_x", "mpp_y", "mpp_source",
            "objective_power", "converted", "checksum", "dzi_url", "thumbnail_url", "overlays", "created_at",
        ]
        read_only_fields = [f for f in fields if f not in ("mpp_x",)]

    def get_dzi_url(self, slide: Slide) -> str:
        return selectors.slide_dzi_url(slide)

    def get_thumbnail_url(self, slide: Slide) -> str:
        return selectors.slide_thumbnail_url(slide)

    def get_overlays(self, slide: Slide) -> list[dict]:
        """Overlay layers of the slide's latest analysis (empty until one has run)."""
        from viewer.overlays.selectors import slide_overlay_layers

        return slide_overlay_layers(slide)


class SlideImportSerializer(serializers.Serializer):
    """Import by path (from LADDER_SLIDE_ROOTS) or by upload (multipart `file`)."""

    case = serializers.PrimaryKeyRelatedField(queryset=Case.objects.all())
    stain = serializers.ChoiceField(choices=Stain.choices)
    path = serializers.CharField(required=False, allow_blank=False)
    file = serializers.FileField(required=False)

    def validate(self, attrs):
        if bool(attrs.get("path")) == bool(attrs.get("file")):
            raise serializers.ValidationError("Give exactly one of 'path' or 'file'.")
        return attrs


class SlideMppSerializer(serializers.Serializer):
    mpp = serializers.FloatField(min_value=0.01, max_value=100)


class CaseSlideSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Slide
        fields = ["id", "stain", "name", "status", "mpp_x"]


class CaseSerializer(serializers.ModelSerializer):
    slides = CaseSlideSummarySerializer(many=True, read_only=True)

    class Meta:
        model = Case
        fields = [
            "id", "case_id", "age", "clinical_t", "clinical_n", "clinical_stage", "er_status", "pr_status",
            "hr_status", "her2_ihc", "grade", "regimen", "pcr", "status", "is_demo", "notes", "slides",
            "created_at", "updated_at",
        ]
        read_only_fields = ["id", "is_demo", "slides", "created_at", "updated_at"]


class AlignmentSerializer(serializers.ModelSerializer):
    """The similarity (four numbers), where it comes from, and the automatic registration beside it.

    `field_url` is set while the non-rigid field applies (source automatic); `automatic` is the last
    automatic result (kept for 'reset to automatic'), or null.
    """

    field_url = serializers.SerializerMethodField()
    automatic = serializers.SerializerMethodField()

    class Meta:
        model = SlideAlignment
        fields = ["fixed", "moving", "offset_x", "offset_y", "rotation", "scale", "source", "field_url",
                  "automatic", "updated_at"]
        read_only_fields = ["fixed", "moving", "source", "updated_at"]
        extra_kwargs = {"scale": {"min_value": 1e-3, "max_value": 1e3}}

    def get_field_url(self, alignment: SlideAlignment) -> str | None:
        return selectors.alignment_field_url(alignment)

    def get_automatic(self, alignment: SlideAlignment) -> dict | None:
        auto = alignment.automatic
        if not auto:
            return None
        return {key: auto.get(key) for key in ("similarity", "job", "at", "stages", "seconds", "field")}
