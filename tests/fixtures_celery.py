"""A real Celery worker on Redis for end-to-end tests (a plugin of ``tests/conftest.py``).

Importing this module makes :data:`tests.celery_app.app` the current Celery
app; it connects to nothing. Only tests that use ``celery_worker_on_redis``
start a worker.

The broker's keys carry this run's prefix (``tests/settings.py``), so a run
never sees another's queues; at the end of a run that used the broker, its
keys are deleted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import before_task_publish, task_postrun
from celery.worker import WorkController
from django.db import connection, connections

from django_fyno.conf import fyno_settings
from tests.celery_app import app
from tests.conftest import require_service

_CLOSE_DB_UID = "tests.fixtures_celery.close_worker_db_connections"

# Whether this run used the broker (then its keys are deleted when the run ends).
_broker_used = False


def worker_queues() -> list[str]:
    """The queues the test worker consumes: Celery's default and django-fyno's."""
    queues = [app.conf.task_default_queue]
    if fyno_settings.CELERY_QUEUE and fyno_settings.CELERY_QUEUE not in queues:
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
    """Drop messages left in ``queues`` (by an earlier test, or an interrupted run of the same
    ``FYNO_TEST_RUN_ID``)."""
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


def run_key_prefix() -> str:
    """The prefix of every Redis key of this run's broker."""
    prefix: str = app.conf.broker_transport_options["global_keyprefix"]
    return prefix


@before_task_publish.connect(weak=False, dispatch_uid="tests.fixtures_celery.broker_used")
def _note_broker_used(**kwargs: Any) -> None:
    global _broker_used
    _broker_used = True


def _delete_run_keys() -> None:
    """Delete this run's keys (queues, bindings, the worker's bookkeeping) from Redis."""
    import redis

    pattern = re.sub(r"([][*?\\])", r"\\\1", run_key_prefix()) + "*"  # glob-escaped
    try:
        client = redis.Redis.from_url(
            app.conf.broker_url, socket_connect_timeout=1, socket_timeout=1
        )
        try:
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
    except redis.RedisError:
        pass  # Redis went away: the keys stay, under a prefix no other run uses.


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _broker_used:
        _delete_run_keys()


@pytest.fixture
def celery_worker_on_redis(transactional_db: None) -> Iterator[WorkController]:
    """A real Celery worker, in threads of this process, consuming from Redis.

    It consumes Celery's default queue and ``FYNO["CELERY_QUEUE"]``, emptied
    before and after the test, with 2 pool threads. Send tasks with
    ``.delay()``/``apply_async()`` and wait for their effect (there is no result
    backend). The queues are this run's own (their keys carry its prefix).

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
    global _broker_used
    _broker_used = True
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
