from django.apps import AppConfig


class BoardConfig(AppConfig):
    name = "viewer.board"
    label = "board"
    verbose_name = "Tumour board"
