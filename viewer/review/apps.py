from django.apps import AppConfig


class ReviewConfig(AppConfig):
    name = "viewer.review"
    label = "review"
    verbose_name = "Review and annotations"
