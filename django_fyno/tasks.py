"""Thin Celery tasks over :mod:`django_fyno.sync`, the retry policy, and ``enqueue()``.

Tasks take primitives only (a user pk, or nothing): each rebuilds what it
sends from the database. Only transient errors (429, 5xx, timeouts) are
retried, with exponential backoff and jitter, at most ``SYNC_MAX_RETRIES``
times; an error Fyno would refuse again marks the row ``failed`` instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Task, shared_task  # type: ignore[import-untyped]

from django_fyno import sync
from django_fyno.client.exceptions import FynoTransientError
from django_fyno.conf import fyno_settings

__all__ = [
    "FynoTask",
    "delete_profiles_task",
    "deliver_outbox_task",
    "enqueue",
    "sweep_outbox_task",
    "sweep_task",
    "sync_profile_task",
]

logger = logging.getLogger(__name__)


class FynoTask(Task):  # type: ignore[misc]
    """Base of django-fyno's tasks: late ack, no result, bounded retries on transient errors."""

    acks_late = True
    ignore_result = True
    autoretry_for = (FynoTransientError,)
    retry_backoff = True
    retry_jitter = True
    retry_backoff_max = 600
    _max_retries: int | None = None

    # Read when a retry is decided, not at import time, so settings changes apply.
    @property
    def max_retries(self) -> int:
        if self._max_retries is not None:
            return self._max_retries
        return int(fyno_settings.SYNC_MAX_RETRIES)

    @max_retries.setter
    def max_retries(self, value: int) -> None:
        self._max_retries = value


@shared_task(base=FynoTask, name="django_fyno.sync_profile")  # type: ignore[untyped-decorator]
def sync_profile_task(user_pk: Any) -> None:
    """Sync one user's profile (see :func:`django_fyno.sync.sync_profile`)."""
    sync.sync_profile(user_pk)


@shared_task(base=FynoTask, name="django_fyno.delete_profiles")  # type: ignore[untyped-decorator]
def delete_profiles_task() -> None:
    """Delete every profile queued for deletion, in batches."""
    sync.delete_pending_profiles()


@shared_task(base=FynoTask, name="django_fyno.sweep")  # type: ignore[untyped-decorator]
def sweep_task() -> None:
    """Re-enqueue syncs left dirty longer than SWEEP_AFTER, and pending deletions.

    Run it from Celery beat (see docs/sync.md): it covers a broker that was
    down when a transaction committed.
    """
    _sweep()


def _sweep() -> None:
    if not (fyno_settings.ENABLED and fyno_settings.AUTO_SYNC):
        return
    for user_pk in sync.stale_user_pks():
        enqueue(sync_profile_task, user_pk)
    if sync.has_pending_deletions():
        enqueue(delete_profiles_task)


# What each task runs when TASK_MODE is "on_commit" (in-process, no broker).
_IN_PROCESS: dict[str, Callable[..., object]] = {
    "django_fyno.sync_profile": sync.sync_profile,
    "django_fyno.delete_profiles": sync.delete_pending_profiles,
    "django_fyno.sweep": _sweep,
}


def enqueue(task: Any, *args: Any) -> None:
    """Hand work to the configured TASK_MODE. Called after commit; never raises.

    ``"celery"``: ``apply_async`` on ``CELERY_QUEUE``; ``"on_commit"``: run it
    now, in this process; ``"off"``: nothing (rows stay dirty for a later
    sweep or ``fyno_sync``). A failure is logged and swallowed: the caller's
    transaction has committed and its request must not fail; the row stays
    dirty and the sweeper (or ``fyno_sync``) picks it up.
    """
    mode = fyno_settings.TASK_MODE
    if not fyno_settings.ENABLED or mode == "off":
        return
    try:
        if mode == "celery":
            task.apply_async(args=list(args), queue=fyno_settings.CELERY_QUEUE)
        else:
            _IN_PROCESS[task.name](*args)
    except Exception:
        logger.exception(
            "django-fyno: %s%r did not run; it will be swept up later", task.name, args
        )


# -- the outbox (see django_fyno.outbox and docs/outbox.md) ------------------------------
# django_fyno.outbox imports this module (for enqueue), so it is imported late here.


@shared_task(base=FynoTask, name="django_fyno.deliver_outbox")  # type: ignore[untyped-decorator]
def deliver_outbox_task() -> None:
    """Drain the outbox; when it is paused or backing off, wake up again once, later."""
    from django_fyno import outbox

    report = outbox.drain()
    if report.retry_in is None or fyno_settings.TASK_MODE != "celery":
        return  # on_commit mode has no timer: the sweeper or the next commit drains
    # Due rows left behind (a pass cut short) are drained soon; others when due.
    delay = max(1.0, report.retry_in)
    if outbox.claim_wakeup(delay):
        deliver_outbox_task.apply_async(countdown=delay, queue=fyno_settings.CELERY_QUEUE)


@shared_task(base=FynoTask, name="django_fyno.sweep_outbox")  # type: ignore[untyped-decorator]
def sweep_outbox_task() -> None:
    """Take back expired leases and request a drain of due rows (run it from Celery beat)."""
    from django_fyno import outbox

    outbox.sweep_outbox()


def _drain_in_process() -> None:
    from django_fyno import outbox

    outbox.drain()


def _sweep_outbox_in_process() -> None:
    from django_fyno import outbox

    outbox.sweep_outbox()


_IN_PROCESS["django_fyno.deliver_outbox"] = _drain_in_process
_IN_PROCESS["django_fyno.sweep_outbox"] = _sweep_outbox_in_process
