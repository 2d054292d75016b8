"""dispatch: once per transaction after commit, savepoints, rollbacks, and a broker that is down."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import override_settings

from django_fyno import dispatch, sync
from django_fyno.models import FynoProfile

User = get_user_model()

pytestmark = pytest.mark.django_db


@pytest.fixture
def ran() -> Iterator[list[Any]]:
    """Calls of a test job, in TASK_MODE "inline"."""
    calls: list[Any] = []
    dispatch.register("tests.job", calls.append, batched=True)
    dispatch.register("tests.single", calls.append)
    with override_settings(FYNO={**settings.FYNO, "TASK_MODE": "inline"}):
        yield calls


def test_items_of_one_transaction_are_handed_off_once_together(
    ran: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        for item in (1, 2, 1, 3, 2):
            dispatch.defer("tests.job", item)
        assert dispatch.is_deferred("tests.job", 3)
        assert not dispatch.is_deferred("tests.job", 4)
        assert ran == []  # nothing before the commit
    assert len(callbacks) == 1
    assert ran == [[1, 2, 3]]


def test_an_unbatched_job_runs_once_per_distinct_item(
    ran: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        for item in ("a", "b", "a"):
            dispatch.defer("tests.single", item)
    assert ran == ["a", "b"]


def test_outside_a_transaction_the_hand_off_is_immediate(ran: list[Any]) -> None:
    # pytest-django's db fixture wraps the test in a transaction: leave it for a moment.
    connection = transaction.get_connection()
    with override_settings(), _autocommit(connection):
        dispatch.defer("tests.job", 7)
        assert ran == [[7]]


class _autocommit:
    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def __enter__(self) -> None:
        self.saved = self.connection.in_atomic_block
        self.connection.in_atomic_block = False

    def __exit__(self, *exc: object) -> None:
        self.connection.in_atomic_block = self.saved


def test_a_rolled_back_savepoint_takes_its_registration_along(
    ran: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        try:
            with transaction.atomic():
                dispatch.defer("tests.job", "inner")  # registered inside the savepoint
                raise RuntimeError
        except RuntimeError:
            pass
        gc.collect()  # CPython frees it at once; other interpreters when they collect
        # The registration died with the savepoint: a later item registers anew.
        assert not dispatch.is_deferred("tests.job", "inner")
        dispatch.defer("tests.job", "outer")
    assert ran == [["outer"]]


def test_a_rolled_back_transaction_hands_off_nothing_and_leaves_no_state(
    ran: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        try:
            with transaction.atomic():
                dispatch.defer("tests.job", "lost")
                raise RuntimeError
        except RuntimeError:
            pass
    gc.collect()
    assert ran == []
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        dispatch.defer("tests.job", "next")
    assert ran == [["next"]]


def test_unknown_job_is_a_clear_error() -> None:
    with pytest.raises(LookupError, match="no job 'nope'"):
        dispatch.defer("nope")


@override_settings(FYNO={**settings.FYNO, "TASK_MODE": "celery"})
def test_broker_down_logs_one_warning_per_transaction_and_keeps_the_work(
    celery_tasks: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    def broker_down(**kwargs: Any) -> None:
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(celery_tasks.sync_profiles_task, "apply_async", broker_down)
    monkeypatch.setattr(celery_tasks.deliver_outbox_task, "apply_async", broker_down)
    from django_fyno import notify

    caplog.set_level(logging.DEBUG, logger="django_fyno.dispatch")
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        users = [User.objects.create(username=f"u{n}", email=f"u{n}@example.com") for n in range(3)]
        notify("welcome", users)
    assert dispatch.flush(5)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "sweeper" in warnings[0].getMessage()
    assert warnings[0].exc_info is None  # no traceback at WARNING
    assert any(r.levelno == logging.DEBUG and r.exc_info for r in caplog.records)
    # Kept for the sweeper: the dirty rows, and the pending outbox rows.
    assert FynoProfile.objects.filter(dirty_since__isnull=False).count() == 3
    assert sync.stale_user_pks(older_than=-1) != []


@pytest.mark.django_db(transaction=True)
@override_settings(FYNO={**settings.FYNO, "TASK_MODE": "celery"})
def test_the_background_publishes_on_the_callers_celery_app(
    celery_tasks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Threads other than the caller's see Celery's *default* app; the project's app is
    often only current in its own threads. The publish must use the caller's."""
    from celery import Celery, _state

    published: list[str] = []
    ours = Celery("the-project", broker="memory://", set_as_current=False)
    task = ours.tasks["django_fyno.sync_profiles"]  # shared tasks bind to every app
    monkeypatch.setattr(task, "apply_async", lambda **kw: published.append("ours"))
    previous = _state.get_current_app()
    ours.set_current()  # current in this thread only; the default app stays the suite's
    try:
        User.objects.create(username="ada")
        assert dispatch.flush(5)
    finally:
        previous.set_current()
    assert published == ["ours"]


def test_a_callback_kept_alive_after_its_rollback_is_not_reused(
    ran: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    # Someone (a traceback, a test) holds the transaction's callback after it rolled back.
    held: list[Any] = []
    try:
        with transaction.atomic():
            dispatch.defer("tests.job", "lost")
            held.append(dispatch._current("default"))
            raise RuntimeError
    except RuntimeError:
        pass
    assert held[0] is not None  # still alive...
    assert dispatch._current("default") is None  # ...but not taken for the next one's
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        assert not dispatch.is_deferred("tests.job", "lost")
        dispatch.defer("tests.job", "next")
    assert ran == [["next"]]
