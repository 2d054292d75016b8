"""Claiming: lease due ``pending`` rows of one workspace to one drainer.

In a short transaction of its own (``SELECT … FOR UPDATE SKIP LOCKED`` where
the database has it; a conditional ``UPDATE … WHERE state = 'pending'``
everywhere), rows are marked ``sending`` with a lease whose expiry doubles as
the claim token. The transaction commits before any HTTP request.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import connections, router, transaction
from django.db.models import QuerySet

from django_fyno.clients import Workspace
from django_fyno.conf import fyno_settings
from django_fyno.models import FynoOutbox

__all__ = ["Clock", "claim", "due_rows"]

Clock = Callable[[], datetime]
_State = FynoOutbox.State


def due_rows(workspace: Workspace, now: datetime) -> QuerySet[FynoOutbox]:
    """The workspace's pending rows whose next attempt is due at ``now``, oldest first."""
    rows: QuerySet[FynoOutbox] = FynoOutbox.objects.filter(
        state=_State.PENDING, next_attempt_at__lte=now, **workspace.fields()
    ).order_by("id")
    return rows


def claim(
    workspace: Workspace, limit: int, clock: Clock
) -> tuple[list[FynoOutbox], datetime | None]:
    """Lease up to ``limit`` due rows of ``workspace`` to this drainer; commits before returning.

    Returns the rows and their token (the lease expiry, made unique by a
    random sub-second part so that no two claims share it).
    """
    now = clock()
    lease = timedelta(
        seconds=fyno_settings.OUTBOX_LEASE_SECONDS, microseconds=secrets.randbelow(10**6)
    )
    token = now + lease
    alias = router.db_for_write(FynoOutbox)
    due = due_rows(workspace, now).using(alias)
    with transaction.atomic(using=alias):
        if connections[alias].features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        pks = list(due.values_list("pk", flat=True)[:limit])
        if not pks:
            return [], None
        # Conditional: on a database without SKIP LOCKED (SQLite serialises
        # writers) a row another drainer claimed meanwhile is simply not ours.
        FynoOutbox.objects.using(alias).filter(pk__in=pks, state=_State.PENDING).update(
            state=_State.SENDING, lease_expires_at=token
        )
    rows = list(
        FynoOutbox.objects.using(alias)
        .filter(pk__in=pks, state=_State.SENDING, lease_expires_at=token)
        .order_by("id")
    )
    return rows, token
