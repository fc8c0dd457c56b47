from django.apps import AppConfig


class CasesConfig(AppConfig):
    """The base domain every other app builds on: cases, slides, alignments, the audit log, roles."""

    name = "cases"
    verbose_name = "Cases and slides"
