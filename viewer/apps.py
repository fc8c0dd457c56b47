from django.apps import AppConfig


class ViewerConfig(AppConfig):
    name = "viewer"
    verbose_name = "HER2-LADDER viewer"

    def ready(self):
        from viewer.accounts import signals  # noqa: F401 - connects the auth signal receivers
