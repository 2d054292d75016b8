"""Celery tasks: thin wrappers named after the jobs of :mod:`django_fyno.dispatch`.

Each task calls the plain function that does the work (in :mod:`~django_fyno.sync`
or :mod:`~django_fyno.outbox`) with the same primitive arguments (pks, a
workspace key): a task rebuilds what it sends from the database. Only
transient errors (5xx, timeouts) are retried, with full-jitter backoff, at most
``SYNC_MAX_RETRIES`` times; a paused workspace reschedules its work without
spending a retry. Celery is an optional extra: this module is imported only
when it is installed (see docs/celery.md).
"""

from __future__ import annotations

from typing import Any, NoReturn

from celery import Task, shared_task  # type: ignore[import-untyped]

from django_fyno import outbox, sync
from django_fyno.client.backoff import full_jitter
from django_fyno.client.exceptions import FynoTransientError
from django_fyno.conf import fyno_settings

__all__ = [
    "FynoTask",
    "delete_profiles_task",
    "deliver_outbox_task",
    "sweep_outbox_task",
    "sweep_task",
    "sync_profiles_task",
]

# The longest wait between two retries of a task, in seconds.
RETRY_BACKOFF_MAX = 600.0


class FynoTask(Task):  # type: ignore[misc]
    """Base of django-fyno's tasks: late ack, no result, bounded retries on transient errors."""

    acks_late = True
    ignore_result = True
    _max_retries: int | None = None

    # Read when a retry is decided, not at import time, so settings changes apply.
    @property
    def max_retries(self) -> int:
        if self._max_retries is not None:
            return self._max_retries
        return fyno_settings.SYNC_MAX_RETRIES

    @max_retries.setter
    def max_retries(self, value: int) -> None:
        self._max_retries = value

    def retry_later(self, error: FynoTransientError, args: list[Any]) -> NoReturn:
        """Retry with ``args`` after a full-jitter backoff (raises Celery's Retry)."""
        countdown = full_jitter(self.request.retries + 1, 1.0, RETRY_BACKOFF_MAX)
        raise self.retry(args=args, exc=error, countdown=countdown)


@shared_task(base=FynoTask, bind=True, name=sync.SYNC_JOB)  # type: ignore[untyped-decorator]
def sync_profiles_task(self: FynoTask, user_pks: list[Any]) -> None:
    """Sync these users' profiles (see :func:`django_fyno.sync.sync_users`)."""
    try:
        sync.sync_users(user_pks)
    except sync.SyncRetry as error:
        self.retry_later(error, [error.user_pks])


@shared_task(base=FynoTask, bind=True, name=sync.DELETE_JOB)  # type: ignore[untyped-decorator]
def delete_profiles_task(self: FynoTask) -> None:
    """Delete every profile queued for deletion, in batches, per workspace."""
    try:
        sync.delete_pending_profiles()
    except FynoTransientError as error:
        self.retry_later(error, [])


@shared_task(base=FynoTask, name=sync.SWEEP_JOB)  # type: ignore[untyped-decorator]
def sweep_task() -> None:
    """Re-enqueue syncs left dirty longer than SWEEP_AFTER, and pending deletions (beat)."""
    sync.sweep()


@shared_task(base=FynoTask, name=outbox.DRAIN_JOB)  # type: ignore[untyped-decorator]
def deliver_outbox_task(workspace_key: str, wakeup: str | None = None) -> None:
    """Drain one workspace's outbox; schedule its one wake-up for what is left."""
    outbox.deliver(workspace_key, wakeup)


@shared_task(base=FynoTask, name=outbox.SWEEP_JOB)  # type: ignore[untyped-decorator]
def sweep_outbox_task() -> None:
    """Take back expired leases and request a drain of due rows (run it from Celery beat)."""
    outbox.sweep_outbox()
