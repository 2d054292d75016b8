"""Claiming: lease due ``pending`` rows of one workspace to one drainer, and keep the lease.

In a short transaction of its own (``SELECT … FOR UPDATE SKIP LOCKED`` where
the database has it; a conditional ``UPDATE … WHERE state = 'pending'``
everywhere), rows are marked ``sending`` with a lease whose expiry doubles as
the claim token. The transaction commits before any HTTP request. On
PostgreSQL the whole claim is one statement (``UPDATE … WHERE id IN (SELECT …
FOR UPDATE SKIP LOCKED) RETURNING …``), committed on its own.

Before each request (but the first right after its claim, which has just
set the lease) the drainer renews (:func:`renew`) the lease of the rows it
has not sent yet: one conditional ``UPDATE`` moves those that still carry its
token to a new one, ``OUTBOX_LEASE_SECONDS`` from now. Only those are sent; a
row the sweeper took back meanwhile no longer matches and is not sent again.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from django.db import connections, router, transaction
from django.db.models import QuerySet

from django_fyno.clients import Workspace
from django_fyno.conf import fyno_settings
from django_fyno.models import FynoOutbox

__all__ = ["Clock", "claim", "due_rows", "renew"]

Clock = Callable[[], datetime]
_State = FynoOutbox.State
# What sending and recording read of a claimed row: the claim loads only these
# (the others, e.g. a long ``result`` or ``delivery``, stay deferred).
SENDING_FIELDS = (
    "id",
    "kind",
    "event",
    "distinct_id",
    "to",
    "payload",
    "callback",
    "state",
    "attempts",
    "lease_expires_at",
)


def due_rows(workspace: Workspace, now: datetime) -> QuerySet[FynoOutbox]:
    """The workspace's pending rows whose next attempt is due at ``now``, oldest first."""
    rows: QuerySet[FynoOutbox] = FynoOutbox.objects.filter(
        state=_State.PENDING, next_attempt_at__lte=now, **workspace.fields()
    ).order_by("id")
    return rows


def _lease_token(clock: Clock) -> datetime:
    """A lease expiry ``OUTBOX_LEASE_SECONDS`` from now, with a random sub-second part
    so that no two claims (or renewals) share it: it is the claim's token."""
    return clock() + timedelta(
        seconds=fyno_settings.OUTBOX_LEASE_SECONDS, microseconds=secrets.randbelow(10**6)
    )


def claim(
    workspace: Workspace, limit: int, clock: Clock
) -> tuple[list[FynoOutbox], datetime | None]:
    """Lease up to ``limit`` due rows of ``workspace`` to this drainer; commits before returning.

    Returns the rows and their token (the lease expiry, made unique by a
    random sub-second part so that no two claims share it).
    """
    now = clock()
    token = _lease_token(clock)
    alias = router.db_for_write(FynoOutbox)
    if connections[alias].vendor == "postgresql":
        rows = _claim_in_one_statement(alias, workspace, now, token, limit)
        return rows, (token if rows else None)
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


def _claim_in_one_statement(
    alias: str, workspace: Workspace, now: datetime, token: datetime, limit: int
) -> list[FynoOutbox]:
    """PostgreSQL: pick, lease and read the rows in one round trip (the same rows,
    lease and token as the three statements elsewhere), committed at once."""
    quote = connections[alias].ops.quote_name
    meta = FynoOutbox._meta
    table = quote(meta.db_table)
    column = {field.name: str(field.column) for field in meta.concrete_fields}
    columns = ", ".join(quote(column[name]) for name in SENDING_FIELDS)
    # Only quoted names from the model are interpolated; every value is a parameter.
    due = (
        f"SELECT id FROM {table} WHERE state = %s AND next_attempt_at <= %s"  # noqa: S608
        " AND wsid = %s AND version = %s AND endpoint = %s"
        " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"
    )
    sql = (
        f"UPDATE {table} SET state = %s, lease_expires_at = %s"  # noqa: S608
        f" WHERE id IN ({due}) RETURNING {columns}"
    )
    params = [_State.SENDING, token, _State.PENDING, now]
    params += [workspace.wsid, workspace.version, workspace.endpoint, limit]
    rows = list(FynoOutbox.objects.using(alias).raw(sql, params))
    rows.sort(key=lambda row: row.pk)
    return rows


def renew(pks: Sequence[int], token: datetime, clock: Clock) -> tuple[set[int], datetime]:
    """Extend the lease of those of ``pks`` this claim still holds; returns them and the new token.

    One conditional ``UPDATE`` (the drain runs with no transaction open, so
    it commits at once, before the request it guards) moves the rows still
    ``sending`` under ``token`` to a new token, ``OUTBOX_LEASE_SECONDS`` from
    ``clock()``. Rows that no longer carry ``token`` were taken back (the
    sweeper found the lease expired, a delivery report settled them): they
    must not be sent, and they are not in the returned set. The set is the
    whole of ``pks`` unless something was taken back (then one more query
    finds which).
    """
    new = _lease_token(clock)
    while new == token:  # a frozen test clock could draw the same microsecond
        new = _lease_token(clock)
    alias = router.db_for_write(FynoOutbox)
    rows = FynoOutbox.objects.using(alias)
    renewed = rows.filter(pk__in=pks, state=_State.SENDING, lease_expires_at=token).update(
        lease_expires_at=new
    )
    if renewed == len(pks):
        return set(pks), new
    if not renewed:
        return set(), new
    held = rows.filter(pk__in=pks, state=_State.SENDING, lease_expires_at=new)
    return set(held.values_list("pk", flat=True)), new
