"""Thin signal handlers on the user model: ask :mod:`django_fyno.sync` for a sync or a deletion.

A save that touches no synced field costs nothing; what a relevant save costs
is :func:`django_fyno.sync.request_sync`'s business (docs/sync.md).

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

from django_fyno import sync
from django_fyno.adapter import get_adapter
from django_fyno.conf import fyno_settings

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


def user_saved(
    sender: Any,
    instance: Any,
    raw: bool = False,
    using: str = "default",
    update_fields: frozenset[str] | None = None,
    **kwargs: Any,
) -> None:
    """``post_save`` of the user model: have the user synced once, after commit."""
    if raw or getattr(instance, SKIP_ATTRIBUTE, False) or not _auto_sync_on():
        return
    if update_fields is not None and get_adapter().get_sync_fields().isdisjoint(update_fields):
        return  # e.g. last_login on every login
    sync.request_sync(instance, using)


def user_deleted(sender: Any, instance: Any, using: str = "default", **kwargs: Any) -> None:
    """``post_delete`` of the user model: queue its profile's deletion, sent after commit."""
    if not _auto_sync_on():
        return
    sync.request_deletion(using)
