"""A job as the API and the progress websocket send it."""
from __future__ import annotations

from rest_framework import serializers

from analysis.models import Job


class JobSerializer(serializers.ModelSerializer):
    kind_display = serializers.CharField(source="get_kind_display", read_only=True)
    outcome = serializers.CharField(read_only=True, help_text="status, or 'not_scored' for a scoring job "
                                                              "that ran but lacked inputs")
    outcome_display = serializers.CharField(read_only=True)
    slide_name = serializers.SerializerMethodField()

    def get_slide_name(self, job) -> str:
        """The slide a job works on, as the job list names it ('H&E · CMU-1.svs'), or ''."""
        slide = job.slide
        return f"{slide.get_stain_display()} · {slide.name}" if slide is not None else ""

    class Meta:
        model = Job
        fields = [
            "id", "kind", "kind_display", "status", "outcome", "outcome_display", "slide_name", "case", "slide", "params", "result", "progress", "message",
            "eta_seconds", "error", "attempts", "max_attempts", "cancel_requested", "created_at", "started_at",
            "finished_at", "log",
        ]
        read_only_fields = fields
