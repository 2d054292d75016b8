import importlib.util

from django.apps import AppConfig


class DjangoFynoConfig(AppConfig):
    name = "django_fyno"
    verbose_name = "Fyno"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_delete, post_save

        from django_fyno import (
            checks,  # noqa: F401 - registers the system checks
            outbox,  # noqa: F401 - registers the outbox's jobs
            receivers,
        )

        if importlib.util.find_spec("celery") is not None:
            # Registers the Celery tasks, so a hand-off finds them even when the
            # project's Celery app does not autodiscover tasks. Celery is optional.
            from django_fyno import tasks  # noqa: F401

        # Connected whatever the settings say: the receivers read ENABLED and
        # AUTO_SYNC on each call, so override_settings works.
        user_model = get_user_model()
        post_save.connect(
            receivers.user_saved, sender=user_model, dispatch_uid="django_fyno.user_saved"
        )
        post_delete.connect(
            receivers.user_deleted, sender=user_model, dispatch_uid="django_fyno.user_deleted"
        )
