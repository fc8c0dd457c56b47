"""Tumour-board sessions: a presenter's playlist of cases, who drives, the latest shared view,
and the record (snapshots and PDF summaries) made during the board."""
from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models


def _new_key() -> str:
    return secrets.token_hex(16)


class BoardSession(models.Model):
    """One tumour-board meeting. The presenter made it; the driver steers everyone's view."""

    title = models.CharField(max_length=200, blank=True)
    # Random key: names the channel-layer group and the cache entry, so that a reused primary
    # key (a fresh test database, a restored backup) never meets another session's state.
    key = models.CharField(max_length=32, unique=True, default=_new_key, editable=False)
    presenter = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    driver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    state = models.JSONField(null=True, blank=True, help_text="Latest state the driver sent.")
    state_seq = models.PositiveBigIntegerField(default=0)
    state_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title or f"Tumour board {self.pk}"


class BoardItem(models.Model):
    """A case on a session's playlist, in order."""

    session = models.ForeignKey(BoardSession, on_delete=models.CASCADE, related_name="items")
    case = models.ForeignKey("cases.Case", on_delete=models.CASCADE, related_name="+")
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["session", "position"]
        constraints = [models.UniqueConstraint(fields=["session", "case"], name="board_item_unique_case")]


class BoardParticipant(models.Model):
    """Someone who joined the session (the presenter can hand over to them)."""

    session = models.ForeignKey(BoardSession, on_delete=models.CASCADE, related_name="participants")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    joined_at = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(auto_now=True)
    # Open websockets of this user on the session (several tabs count once each): who is here
    # now, so that the driver hands over only to someone who is watching.
    connections = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["joined_at"]
        constraints = [models.UniqueConstraint(fields=["session", "user"], name="board_participant_unique")]


class RecordKind(models.TextChoices):
    SNAPSHOT = "snapshot", "Snapshot (PNG)"
    SUMMARY = "summary", "Case summary (PDF)"


class BoardRecord(models.Model):
    """A file made for the board record: a captioned PNG of a view, or a PDF case summary.

    The file lives under LADDER_DATA_DIR/board/<session key>/; `file_name` is relative to it.
    """

    session = models.ForeignKey(BoardSession, on_delete=models.CASCADE, related_name="records")
    case = models.ForeignKey("cases.Case", on_delete=models.CASCADE, related_name="+")
    slide = models.ForeignKey("cases.Slide", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=10, choices=RecordKind.choices)
    caption = models.CharField(max_length=500, blank=True)
    viewport = models.JSONField(default=dict, blank=True)
    file_name = models.CharField(max_length=255)
    size_bytes = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
