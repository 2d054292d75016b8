from django.apps import AppConfig


class TestAppConfig(AppConfig):
    """A host project's app for django-fyno's tests: a custom user model."""

    name = "tests.testapp"
    label = "testapp"
    default_auto_field = "django.db.models.BigAutoField"
