"""When the outbox is drained: once per workspace after a commit, and one wake-up later.

:func:`schedule_delivery` asks :mod:`django_fyno.dispatch` for one drain of
each workspace a transaction wrote rows for, after it commits.

A drain that leaves work for later (rows backing off, a paused workspace)
calls :func:`schedule_wakeup`: one delayed drain per workspace. The claim on
the wake-up is a cache entry holding the wake-up's token and due time; the
woken drain releases it *before* draining (:func:`wakeup_started`), so the
drain may schedule the next wake-up: the chain continues until nothing is
pending. A request for an earlier wake-up than the one scheduled replaces it
(the later one, when it fires, finds another token and only drains).
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Iterable

from django.core.cache import caches
from django.db import DEFAULT_DB_ALIAS

from django_fyno import dispatch
from django_fyno.clients import Workspace
from django_fyno.conf import fyno_settings
from django_fyno.pause import cache_prefix

__all__ = ["DRAIN_JOB", "schedule_delivery", "schedule_wakeup", "wakeup_started"]

DRAIN_JOB = "django_fyno.deliver_outbox"
# Seconds a wake-up claim outlives its due time: a wake-up lost with its
# broker frees the claim then, and the next drain schedules another.
WAKEUP_MARGIN = 60


def schedule_delivery(workspaces: Iterable[Workspace], using: str = DEFAULT_DB_ALIAS) -> None:
    """Have each workspace's outbox drained after the current transaction commits.

    One hand-off per workspace per transaction, however many rows it wrote;
    rows written in a transaction that rolls back take the request with them.
    Outside a transaction the drain is requested at once.
    """
    for workspace in set(workspaces):
        dispatch.defer(DRAIN_JOB, workspace.key, using=using)


def _key(workspace: Workspace) -> str:
    return f"{cache_prefix(workspace)}:wakeup"


def schedule_wakeup(workspace: Workspace, delay: float) -> bool:
    """Schedule one drain of ``workspace`` in ``delay`` seconds, unless one comes sooner.

    True when this call scheduled it. Only ``TASK_MODE`` "celery" has a timer;
    in-process modes rely on the next commit, the sweeper or ``fyno_outbox --drain``.
    """
    cache = caches[fyno_settings.OUTBOX_CACHE]
    key = _key(workspace)
    token = secrets.token_hex(8)
    due = time.time() + delay
    claim = {"token": token, "due": due}
    timeout = math.ceil(delay) + WAKEUP_MARGIN
    if not cache.add(key, claim, timeout=timeout):
        current = cache.get(key)
        if current is not None and float(current.get("due", 0)) <= due + 1.0:
            return False  # one is already coming, soon enough
        cache.set(key, claim, timeout=timeout)  # sooner than the scheduled one: replace it
    if dispatch.enqueue(DRAIN_JOB, workspace.key, token, countdown=delay):
        return True
    if (cache.get(key) or {}).get("token") == token:
        cache.delete(key)
    return False


def wakeup_started(workspace: Workspace, token: str) -> None:
    """A wake-up is running: release its claim, so its drain can schedule the next one."""
    cache = caches[fyno_settings.OUTBOX_CACHE]
    key = _key(workspace)
    current = cache.get(key)
    if current is not None and current.get("token") == token:
        cache.delete(key)
