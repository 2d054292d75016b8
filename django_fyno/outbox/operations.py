"""Looking after rows: count them by state, put failed ones back, purge old sent ones.

The functions the ``fyno_outbox`` command (and the admin) call; they never
write rows behind the drain's back: a retried row is ``pending`` again and
its workspace gets a drain after commit.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from django_fyno.clients import Workspace
from django_fyno.models import FynoOutbox
from django_fyno.outbox.scheduling import schedule_delivery

__all__ = ["RETRYABLE", "counts", "purge_sent", "retry"]

_State = FynoOutbox.State
#: States a row can be put back to ``pending`` from.
RETRYABLE = (_State.FAILED, _State.DEAD, _State.UNKNOWN)


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


def purge_sent(days: int) -> int:
    """Delete rows sent more than ``days`` days ago; returns how many."""
    if days < 0:
        raise ValueError("days must be 0 or more")
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = FynoOutbox.objects.filter(state=_State.SENT, sent_at__lt=cutoff).delete()
    return int(deleted)
