"""A job as the API and the progress websocket send it."""
from __future__ import annotations

from rest_framework import serializers

from analysis.models import Job


class JobSerializer(serializers.ModelSerializer):
    kind_display = serializers.CharField(source="get_kind_display", read_only=True)

    class Meta:
        model = Job
        fields = [
            "id", "kind", "kind_display", "status", "case", "slide", "params", "result", "progress", "message",
            "eta_seconds", "error", "attempts", "max_attempts", "cancel_requested", "created_at", "started_at",
            "finished_at", "log",
        ]
        read_only_fields = fields
