"""The demo project: a small shop whose users are synced to Fyno."""

# The Celery app is loaded with Django, so that @shared_task uses it (Celery's
# documented layout).
from .celery import app as celery_app

__all__ = ("celery_app",)
