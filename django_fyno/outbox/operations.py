"""Looking after rows: count them by state, put failed ones back, cancel unsent
ones, purge old sent ones.

The functions the ``fyno_outbox`` command (and the admin) call; they never
write rows behind the drain's back: a retried row is ``pending`` again and
its workspace gets a drain after commit; a cancelled row is ``cancelled``,
which the drain never claims (it claims only ``pending`` rows).
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from django_fyno.clients import Workspace
from django_fyno.models import FynoOutbox
from django_fyno.outbox.scheduling import schedule_delivery

__all__ = ["CANCELLABLE", "RETRYABLE", "cancel", "counts", "purge_sent", "retry"]

_State = FynoOutbox.State
#: States a row can be put back to ``pending`` from.
RETRYABLE = (_State.FAILED, _State.DEAD, _State.UNKNOWN)
#: States a row can be cancelled from: waiting, or given up on. Never ``sending``
#: (a drainer holds its lease and may be sending it right now), ``sent`` or
#: ``cancelled``. ``unknown`` and ``dead`` rows may have reached Fyno already (their
#: last send's answer was lost): cancelling one stops any further send, it recalls
#: nothing.
CANCELLABLE = (_State.PENDING, _State.FAILED, _State.DEAD, _State.UNKNOWN)


def counts() -> dict[str, int]:
    """Rows per state, every state present (one GROUP BY query)."""
    found = {state: 0 for state in _State.values}
    for state, number in (
        FynoOutbox.objects.values_list("state").annotate(number=Count("id")).order_by()
    ):
        found[state] = number
    return found


def retry(rows: QuerySet[FynoOutbox]) -> int:
    """Put ``rows`` (those in a retryable state) back in the queue: attempts from zero, due now.

    Retrying an ``unknown`` row may send it twice. Returns how many were put back.
    """
    rows = rows.filter(state__in=RETRYABLE)
    with transaction.atomic():
        workspaces = [
            Workspace(*fields)
            for fields in rows.values_list("wsid", "version", "endpoint").distinct().order_by()
        ]
        count = rows.update(
            state=_State.PENDING,
            attempts=0,
            next_attempt_at=timezone.now(),
            lease_expires_at=None,
        )
        if count:
            schedule_delivery(workspaces)
    return int(count)


def cancel(rows: QuerySet[FynoOutbox]) -> int:
    """Withdraw ``rows`` (those in a cancellable state): they become ``cancelled`` for good.

    One conditional ``UPDATE … WHERE state IN (CANCELLABLE) AND id IN (rows)``: a
    row a drainer claimed meanwhile is ``sending`` by then and is left to it (the
    state is tested on the row being updated, which the database re-checks once it
    holds the row's lock, so the claim and the cancel cannot both win).
    A cancelled row is never sent: the drain claims ``pending`` rows only, the
    sweeper takes back ``sending`` ones only, and :func:`retry` skips it.
    Returns how many were cancelled.
    """
    # The state is a condition on the updated table itself, not inside the subquery
    # of ``rows`` (whose filters may join), so it is the one re-checked under lock.
    target = FynoOutbox.objects.filter(pk__in=rows.values("pk"), state__in=CANCELLABLE)
    count = target.update(state=_State.CANCELLED, lease_expires_at=None)
    return int(count)


def purge_sent(days: int) -> int:
    """Delete rows sent more than ``days`` days ago; returns how many."""
    if days < 0:
        raise ValueError("days must be 0 or more")
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = FynoOutbox.objects.filter(state=_State.SENT, sent_at__lt=cutoff).delete()
    return int(deleted)
