"""A real Celery worker on Redis for end-to-end tests (a plugin of ``tests/conftest.py``).

Importing this module makes :data:`tests.celery_app.app` the current Celery
app; it connects to nothing. Only tests that use ``celery_worker_on_redis``
start a worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from celery.worker import WorkController
from django.db import connection, connections

from django_fyno.conf import fyno_settings
from tests.celery_app import app
from tests.conftest import require_service

_CLOSE_DB_UID = "tests.fixtures_celery.close_worker_db_connections"


def worker_queues() -> list[str]:
    """The queues the test worker consumes: Celery's default and django-fyno's."""
    queues = [app.conf.task_default_queue]
    if fyno_settings.CELERY_QUEUE not in queues:
        queues.append(fyno_settings.CELERY_QUEUE)
    return queues


def _redis_problem(url: str) -> str | None:
    """Why Redis at ``url`` cannot be used, or None when it answers a PING."""
    import redis
    from kombu.utils.url import maybe_sanitize_url

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as exc:
        return f"cannot reach {maybe_sanitize_url(url)}: {exc}"
    return None


def _purge(queues: list[str]) -> None:
    """Drop messages left in ``queues`` (by an earlier, interrupted run)."""
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for queue in queues:
            channel.queue_purge(queue)


def _close_worker_db_connections(sender: Any = None, **kwargs: Any) -> None:
    # Runs in the pool thread that ran the task. Django's connections are per
    # thread: left open, they would keep PostgreSQL from dropping the test DB.
    request = getattr(sender, "request", None)
    if not getattr(request, "is_eager", False):
        connections.close_all()


@pytest.fixture
def celery_worker_on_redis(transactional_db: None) -> Iterator[WorkController]:
    """A real Celery worker, in threads of this process, consuming from Redis.

    It consumes Celery's default queue and ``FYNO["CELERY_QUEUE"]``, emptied
    before and after the test, with 2 pool threads. Send tasks with
    ``.delay()``/``apply_async()`` and wait for their effect (``AsyncResult.get``
    works: the result backend is Redis too).

    Tasks run in other threads, with their own database connections, so they
    only see committed data: the fixture brings in ``transactional_db`` (a
    test using it must not also use ``db``). That needs PostgreSQL (an
    in-memory SQLite database is not shared between threads); without it the
    test is skipped, or fails when ``FYNO_REQUIRE_SERVICES=1``. The worker
    threads' connections are closed after each task, so the test database
    can be flushed and dropped.
    """
    require_service(
        "PostgreSQL",
        connection.vendor == "postgresql",
        f"the worker shares the test database across threads; {connection.vendor} cannot",
    )
    problem = _redis_problem(app.conf.broker_url)
    require_service("Redis", problem is None, problem or "")
    queues = worker_queues()
    _purge(queues)
    task_postrun.connect(_close_worker_db_connections, weak=False, dispatch_uid=_CLOSE_DB_UID)
    try:
        with start_worker(
            app,
            pool="threads",
            concurrency=2,
            perform_ping_check=False,
            loglevel="WARNING",
            queues=queues,
            shutdown_timeout=10.0,
        ) as worker:
            yield worker
    finally:
        task_postrun.disconnect(dispatch_uid=_CLOSE_DB_UID)
        _purge(queues)
