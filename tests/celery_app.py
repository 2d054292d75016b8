"""The Celery app of django-fyno's test suite, configured from ``tests/settings.py``.

Loaded by ``tests/fixtures_celery.py`` (a plugin of ``tests/conftest.py``), so
it is the current and default app in every test: ``shared_task`` tasks, such
as django-fyno's own, bind to it. Creating it opens no connection; only
sending a task or starting a worker does.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import Celery
from celery.signals import setup_logging

app = Celery("tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Current in this thread and default for all others (the worker's pool threads).
app.set_current()
app.set_default()


@setup_logging.connect
def _leave_logging_to_pytest(**kwargs: Any) -> None:
    """A receiver here stops Celery from configuring logging when a worker starts."""


# Test-only: the thread each create_group call ran in, by group name.
ran_in_thread: dict[str, int] = {}


@app.task(name="tests.create_group", ignore_result=True)
def create_group(name: str) -> None:
    """Test-only task: create the auth Group ``name`` and note the thread it ran in."""
    from django.contrib.auth.models import Group

    ran_in_thread[name] = threading.get_ident()
    Group.objects.get_or_create(name=name)
