from django.apps import AppConfig


class ReviewConfig(AppConfig):
    name = "viewer.review"
    label = "review"
    verbose_name = "Review and annotations"

    def ready(self) -> None:
        from viewer.review import jobs  # noqa: F401  (registers the annotation-import job handler)
