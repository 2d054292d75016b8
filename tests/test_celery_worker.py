"""The real Celery worker on Redis that end-to-end tests use (``celery_worker_on_redis``)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest

pytest.importorskip("celery", reason="Celery is an optional extra and is not installed")
from celery import current_app
from celery.worker import WorkController
from django.contrib.auth.models import Group

from tests.celery_app import app, create_group, ran_in_thread
from tests.fixtures_celery import worker_queues

pytestmark = pytest.mark.services


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_the_test_app_is_current() -> None:
    # shared_task tasks (django-fyno's) bind to the current app, so it must be ours.
    assert current_app._get_current_object() is app
    assert app.conf.task_always_eager is False
    assert app.conf.broker_url.startswith("redis://")


def test_worker_runs_a_task_in_another_thread(celery_worker_on_redis: WorkController) -> None:
    name = f"celery-{uuid.uuid4().hex[:12]}"

    create_group.delay(name)

    assert _wait_for(lambda: Group.objects.filter(name=name).exists())
    # The row was committed by the worker's own connection, in one of its threads.
    assert ran_in_thread[name] != threading.get_ident()


def test_worker_consumes_celerys_default_queue(celery_worker_on_redis: WorkController) -> None:
    # django-fyno's tasks go to Celery's default queue unless CELERY_QUEUE names one.
    names = [f"default-queue-{uuid.uuid4().hex[:8]}-{n}" for n in range(3)]
    assert worker_queues() == [current_app.conf.task_default_queue]

    for name in names:
        create_group.apply_async((name,))

    assert _wait_for(lambda: Group.objects.filter(name__in=names).count() == len(names))
