"""Thin signal handlers on the user model: mark the mirror row, sync after commit.

A save that touches no synced field costs nothing. A relevant save costs one
query (the row is marked dirty) and, once per transaction per user, one
``on_commit`` callback that enqueues the sync. All the work is in
:mod:`django_fyno.sync`.

Opting out, for scripts and data migrations::

    with skip_sync(user):      # this instance only
        user.save()
    with skip_sync():          # every user saved in the block (this thread/task)
        import_users()
    user._fyno_skip_sync = True  # the same as skip_sync(user), for good
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import connections, transaction

from django_fyno import sync
from django_fyno.adapter import get_adapter
from django_fyno.conf import fyno_settings
from django_fyno.tasks import delete_profiles_task, enqueue, sync_profile_task

__all__ = ["SKIP_ATTRIBUTE", "skip_sync", "user_deleted", "user_saved"]

# Set this attribute to True on a user instance to keep its saves out of Fyno.
SKIP_ATTRIBUTE = "_fyno_skip_sync"
_skip_everything: ContextVar[bool] = ContextVar("fyno_skip_sync", default=False)
_UNSET = object()


@contextmanager
def skip_sync(user: Any = None) -> Iterator[None]:
    """Saves of ``user`` (or of every user, when None) inside the block are not synced."""
    if user is None:
        token = _skip_everything.set(True)
        try:
            yield
        finally:
            _skip_everything.reset(token)
        return
    previous = user.__dict__.get(SKIP_ATTRIBUTE, _UNSET)
    setattr(user, SKIP_ATTRIBUTE, True)
    try:
        yield
    finally:
        if previous is _UNSET:
            delattr(user, SKIP_ATTRIBUTE)
        else:
            setattr(user, SKIP_ATTRIBUTE, previous)


def _auto_sync_on() -> bool:
    return bool(fyno_settings.ENABLED and fyno_settings.AUTO_SYNC) and not _skip_everything.get()


class _OnCommit:
    """One on_commit callback per transaction; later saves add to it instead of registering.

    It is found again by scanning ``connection.run_on_commit``, so a rollback
    (which makes Django drop the callback) can never leave it half-registered.
    """

    def __init__(self) -> None:
        self.fired = False
        # Django names on_commit callbacks by __qualname__ when one fails.
        self.__qualname__ = type(self).__qualname__

    @classmethod
    def pending(cls, using: str) -> Any:
        """This transaction's callback of this class, or None."""
        connection = connections[using]
        if not connection.in_atomic_block:
            return None
        # Entries are (savepoint ids, callback, robust).
        for entry in reversed(connection.run_on_commit):
            callback = entry[1]
            if isinstance(callback, cls) and not callback.fired:
                return callback
        return None


class _SyncAfterCommit(_OnCommit):
    def __init__(self) -> None:
        super().__init__()
        self.user_pks: dict[Any, None] = {}  # ordered set

    def __call__(self) -> None:
        self.fired = True
        for user_pk in self.user_pks:
            enqueue(sync_profile_task, user_pk)


class _DeleteAfterCommit(_OnCommit):
    def __call__(self) -> None:
        self.fired = True
        enqueue(delete_profiles_task)


def user_saved(
    sender: Any,
    instance: Any,
    raw: bool = False,
    using: str = "default",
    update_fields: frozenset[str] | None = None,
    **kwargs: Any,
) -> None:
    """``post_save`` of the user model: mark the row dirty, sync once after commit."""
    if raw or getattr(instance, SKIP_ATTRIBUTE, False) or not _auto_sync_on():
        return
    if update_fields is not None and get_adapter().get_sync_fields().isdisjoint(update_fields):
        return  # e.g. last_login on every login
    pending = _SyncAfterCommit.pending(using)
    if pending is not None and instance.pk in pending.user_pks:
        return  # already dirty and queued in this transaction
    sync.mark_dirty(instance.pk, using)
    if pending is None:
        pending = _SyncAfterCommit()
        pending.user_pks[instance.pk] = None
        transaction.on_commit(pending, using=using)
    else:
        pending.user_pks[instance.pk] = None


def user_deleted(sender: Any, instance: Any, using: str = "default", **kwargs: Any) -> None:
    """``post_delete`` of the user model: queue its profile's deletion, flush after commit."""
    if not _auto_sync_on():
        return
    sync.mark_deleting(using)
    if _DeleteAfterCommit.pending(using) is None:
        transaction.on_commit(_DeleteAfterCommit(), using=using)
