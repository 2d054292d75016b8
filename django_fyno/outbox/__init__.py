"""The transactional outbox: messages for Fyno, written in the caller's transaction,
delivered after commit.

Rows are written by :mod:`django_fyno.notifications`. The package has one
module per job:

- :mod:`.scheduling`: ask for a drain after commit, one per workspace per
  transaction; the one delayed wake-up per workspace;
- :mod:`.claim`: lease due rows of one workspace to one drainer, and renew
  the lease before each request (a drainer sends only rows it still holds);
- :mod:`.send`: group claimed rows into requests and send them;
- :mod:`.record`: write each row's outcome, only while the claim still owns it;
- :mod:`.delivery`: the drain and the sweeper, the plain functions tasks call;
- :mod:`.operations`: counting, retrying and purging rows (commands, admin).

The per-workspace pause they honour is :mod:`django_fyno.pause`. See docs/outbox.md.
"""

from __future__ import annotations

from django_fyno.outbox.delivery import (
    DRAIN_JOB,
    SWEEP_JOB,
    DrainReport,
    SweepReport,
    deliver,
    drain,
    sweep_outbox,
)
from django_fyno.outbox.operations import CANCELLABLE, cancel, counts, purge_sent, retry
from django_fyno.outbox.scheduling import schedule_delivery, schedule_wakeup
from django_fyno.outbox.send import PROPERTY_OPERATIONS

__all__ = [
    "CANCELLABLE",
    "DRAIN_JOB",
    "PROPERTY_OPERATIONS",
    "SWEEP_JOB",
    "DrainReport",
    "SweepReport",
    "cancel",
    "counts",
    "deliver",
    "drain",
    "purge_sent",
    "retry",
    "schedule_delivery",
    "schedule_wakeup",
    "sweep_outbox",
]
