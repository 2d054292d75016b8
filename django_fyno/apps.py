from django.apps import AppConfig


class DjangoFynoConfig(AppConfig):
    name = "django_fyno"
    verbose_name = "Fyno"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_fyno import checks  # noqa: F401 - registers the system checks
