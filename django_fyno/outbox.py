"""Delivering the transactional outbox: claim due rows, send them, record Fyno's answer.

Rows are written by :mod:`django_fyno.notifications` in the caller's transaction;
:func:`schedule_delivery` then asks for one drain after that transaction
commits. :func:`drain` is a plain function (the ``deliver_outbox`` task wraps
it) that:

1. claims due ``pending`` rows in a short transaction of its own (``SELECT …
   FOR UPDATE SKIP LOCKED`` where the database has it; a conditional
   ``UPDATE … WHERE state = 'pending'`` everywhere), marking them ``sending``
   with a lease whose expiry doubles as the claim token;
2. commits, and only then talks to Fyno: no transaction is held open across HTTP;
3. writes each outcome only if the row still carries its token, so a drainer
   that outlived its lease cannot overwrite a row someone else has re-claimed.

Events of the same name go out through ``/event/bulk`` (each reply item is
mapped back to its row by ``seq``); property operations of many users through
``/profiles/properties/batch``. A shared pause in Django's cache (429
``Retry-After``, and a circuit breaker for 5xx/connection failures) holds
every drainer of the workspace, not just the one that was refused.
:func:`sweep_outbox` takes back rows whose drainer died and asks for a drain
when due rows were never scheduled. See docs/outbox.md.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import caches
from django.db import connections, router, transaction
from django.db.models import Case, F, JSONField, Value, When
from django.utils import timezone

from django_fyno.client import FynoClient
from django_fyno.client import validation as check
from django_fyno.client.exceptions import (
    FynoAPIError,
    FynoAuthError,
    FynoBadRequestError,
    FynoConfigurationError,
    FynoError,
    FynoRateLimitedError,
    FynoServerError,
    FynoTransportError,
)
from django_fyno.clients import get_client, get_config
from django_fyno.conf import fyno_settings
from django_fyno.models import FynoOutbox
from django_fyno.receivers import _OnCommit
from django_fyno.tasks import deliver_outbox_task, enqueue

__all__ = [
    "PROPERTY_OPERATIONS",
    "UNKNOWN_POLICIES",
    "DrainReport",
    "SharedPause",
    "SweepReport",
    "claim_wakeup",
    "drain",
    "schedule_delivery",
    "sweep_outbox",
]

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]

# Property operation -> the client method that sends it alone.
PROPERTY_OPERATIONS: dict[str, str] = {
    "$set": "set_properties",
    "$once": "set_properties_once",
    "$add": "increment_properties",
    "$append": "append_to_lists",
    "$remove": "remove_from_lists",
    "$unset": "unset_properties",
}
UNKNOWN_POLICIES = ("retry", "hold")
_MAX_ERROR_LENGTH = 2000
_State = FynoOutbox.State
# FynoOutbox.Kind's values, as plain strings (what a row's ``kind`` holds).
_EVENT = "event"
_PROPERTY = "property"


# -- scheduling ---------------------------------------------------------------------------


class _DeliverAfterCommit(_OnCommit):
    """The one on_commit callback per transaction that asks for a drain."""

    def __call__(self) -> None:
        self.fired = True
        enqueue(deliver_outbox_task)


def schedule_delivery(using: str = "default") -> None:
    """Have the outbox drained after the current transaction commits (once per transaction).

    Rows written in a transaction that rolls back take their callback with
    them. Outside a transaction the drain is requested at once. With
    ``TASK_MODE`` "celery" that is one broker publish per transaction however
    many rows it wrote; "on_commit" drains in this process (errors are logged,
    never raised into the caller); "off" does nothing (rows stay pending).
    """
    if not fyno_settings.ENABLED or fyno_settings.TASK_MODE == "off":
        return
    if _DeliverAfterCommit.pending(using) is None:
        transaction.on_commit(_DeliverAfterCommit(), using=using)


# -- the shared pause ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Gate:
    """May this drainer send now? ``wait``: seconds until asking again makes sense."""

    open: bool
    probe: bool = False
    wait: float = 0.0


class SharedPause:
    """A per-workspace pause in Django's cache, seen by every drainer.

    * A 429 pauses everyone until its ``Retry-After`` has passed.
    * ``OUTBOX_CIRCUIT_THRESHOLD`` consecutive 5xx/connection failures open
      the circuit for ``OUTBOX_CIRCUIT_COOLDOWN`` seconds; then one drainer
      (whoever wins a ``cache.add``) sends a probe request (half-open): its
      success closes the circuit, its failure opens it again.

    With several processes the cache (``OUTBOX_CACHE``) must be shared
    (Redis, Memcached, database); a per-process LocMem cache only pauses the
    drainers of one process.
    """

    def __init__(self, workspace: str, clock: Clock) -> None:
        prefix = _cache_prefix(workspace)
        self.pause_key = f"{prefix}:pause"
        self.failures_key = f"{prefix}:failures"
        self.probe_key = f"{prefix}:probe"
        self.clock = clock
        self.cache = caches[fyno_settings.OUTBOX_CACHE]

    def _now(self) -> float:
        return self.clock().timestamp()

    def gate(self) -> _Gate:
        """Whether to send now; a half-open circuit lets exactly one caller probe."""
        pause = self.cache.get(self.pause_key)
        if not pause:
            return _Gate(open=True)
        left = float(pause["until"]) - self._now()
        if left > 0:
            return _Gate(open=False, wait=left)
        if not pause.get("circuit"):
            return _Gate(open=True)
        # Half-open: the probe key lives as long as a lease, in case the prober dies.
        if self.cache.add(self.probe_key, 1, timeout=_lease_seconds()):
            return _Gate(open=True, probe=True)
        return _Gate(open=False, wait=float(fyno_settings.OUTBOX_CIRCUIT_COOLDOWN))

    def _pause(self, seconds: float, *, circuit: bool) -> None:
        until = self._now() + seconds
        current = self.cache.get(self.pause_key) or {}
        until = max(until, float(current.get("until", 0)))
        circuit = circuit or bool(current.get("circuit"))
        # Outlive the pause itself: the half-open state needs the entry after it.
        timeout = math.ceil(seconds) + 3600
        self.cache.set(self.pause_key, {"until": until, "circuit": circuit}, timeout=timeout)

    def rate_limited(self, retry_after: float) -> None:
        """Fyno answered 429: nobody sends before ``retry_after`` seconds have passed."""
        self._pause(retry_after, circuit=False)
        self.cache.delete(self.probe_key)

    def failed(self) -> None:
        """A 5xx or connection failure: count it; at the threshold, open the circuit."""
        self.cache.add(self.failures_key, 0, timeout=None)
        try:
            failures = self.cache.incr(self.failures_key)
        except ValueError:  # evicted between add and incr
            failures = 1
            self.cache.set(self.failures_key, 1, timeout=None)
        if failures >= int(fyno_settings.OUTBOX_CIRCUIT_THRESHOLD):
            cooldown = float(fyno_settings.OUTBOX_CIRCUIT_COOLDOWN)
            logger.warning(
                "Fyno outbox: %d consecutive failures; pausing all drainers for %.0fs",
                failures,
                cooldown,
            )
            self._pause(cooldown, circuit=True)
        self.cache.delete(self.probe_key)

    def succeeded(self) -> None:
        """Fyno answered: reset the failure count; close an open circuit whose cool-down is over.

        A 429 pause is left to expire: another drainer may have just been refused.
        """
        if self.cache.get(self.failures_key):
            self.cache.set(self.failures_key, 0, timeout=None)
        pause = self.cache.get(self.pause_key)
        if pause and pause.get("circuit") and float(pause["until"]) <= self._now():
            self.cache.delete_many([self.pause_key, self.probe_key])


def claim_wakeup(delay: float) -> bool:
    """True for the one caller that should schedule a delayed drain in ``delay`` seconds.

    Keeps every task that found the outbox paused or backing off from
    scheduling its own wake-up (a cache key lives until the wake-up is due).
    """
    key = f"{_cache_prefix(_workspace_key(get_config()))}:wakeup"
    cache = caches[fyno_settings.OUTBOX_CACHE]
    return bool(cache.add(key, 1, timeout=max(1, math.ceil(delay))))


def _cache_prefix(workspace: str) -> str:
    """Where one workspace's pause, circuit and wake-up keys live in the cache."""
    return f"django_fyno:outbox:{hashlib.sha256(workspace.encode()).hexdigest()[:16]}"


def _workspace_key(config: Any) -> str:
    # Never the API key: a workspace is its id, version and endpoint.
    return f"{config.wsid}|{config.version}|{config.endpoint}"


# -- reports ------------------------------------------------------------------------------


@dataclass
class DrainReport:
    """What one :func:`drain` did, in rows (``requests``: HTTP requests sent)."""

    claimed: int = 0
    sent: int = 0
    failed: int = 0  # Fyno refused them (400) or they can never be sent
    retried: int = 0  # back to pending for a later attempt
    ambiguous: int = 0  # may or may not have reached Fyno (5xx, read timeout)
    held: int = 0  # ambiguous and left "unknown" (UNKNOWN_POLICY "hold")
    dead: int = 0  # OUTBOX_MAX_ATTEMPTS reached
    released: int = 0  # claimed, then handed back unsent (pause, or a pass cut short)
    lost: int = 0  # outcome not written: the lease had expired and the row was taken back
    requests: int = 0
    paused: bool = False
    # Seconds until there is work again (pause or backoff); None: nothing pending.
    retry_in: float | None = None


@dataclass
class SweepReport:
    """What one :func:`sweep_outbox` did."""

    reclaimed: int = 0  # expired leases put back to pending (ambiguous: counted as attempts)
    held: int = 0  # expired leases left "unknown" (UNKNOWN_POLICY "hold")
    dead: int = 0
    scheduled: bool = False  # a drain was requested for due rows


# -- helpers ------------------------------------------------------------------------------


def _lease_seconds() -> int:
    return max(1, int(fyno_settings.OUTBOX_LEASE_SECONDS))


def _unknown_policy() -> str:
    policy = fyno_settings.UNKNOWN_POLICY
    if policy not in UNKNOWN_POLICIES:
        raise FynoConfigurationError(
            f"FYNO['UNKNOWN_POLICY'] must be one of {', '.join(UNKNOWN_POLICIES)}, not {policy!r}"
        )
    return str(policy)


def _backoff(attempts: int) -> timedelta:
    """Full jitter: uniform in [0, min(max, base * 2**(attempts - 1))]."""
    base = float(fyno_settings.OUTBOX_BACKOFF_BASE)
    ceiling = min(float(fyno_settings.OUTBOX_BACKOFF_MAX), base * 2.0 ** max(0, attempts - 1))
    # Not for secrets: jitter only spreads retries out.
    return timedelta(seconds=random.uniform(0, ceiling))  # noqa: S311


def _error_text(error: BaseException, prefix: str = "") -> str:
    # FynoError messages carry Fyno's answer and the path template, never the key.
    return f"{prefix}{error}"[:_MAX_ERROR_LENGTH]


def _callback(row: FynoOutbox) -> dict[str, Any]:
    return {**(row.callback or {}), "custom_id": str(row.pk)}


def _event_item(row: FynoOutbox) -> dict[str, Any]:
    item: dict[str, Any] = {"callback": _callback(row)}
    if row.distinct_id:
        item["distinct_id"] = row.distinct_id
    if row.to:
        item["to"] = row.to
    if row.payload:
        item["data"] = row.payload
    return item


def _property_argument(row: FynoOutbox) -> Any:
    if row.event == "$unset":
        payload = row.payload or {}
        return list(payload.get("names", []) if isinstance(payload, Mapping) else payload)
    return row.payload


def _problem(row: FynoOutbox) -> str | None:
    """Why Fyno could never accept this row (checked locally, before sending), or None."""
    try:
        if row.kind == _EVENT:
            check.check_text(row.event, "event")
            item = _event_item(row)
            if "distinct_id" not in item and "to" not in item:
                return "the message has neither a distinct_id nor destinations (to)"
            if "distinct_id" in item:
                check.check_distinct_id(item["distinct_id"], "distinct_id")
            if "to" in item:
                check.check_to(item["to"], "to")
            if "data" in item:
                check.check_data(item["data"], "data")
            check.check_callback(item["callback"], "callback")
        elif row.kind == _PROPERTY:
            if row.event not in PROPERTY_OPERATIONS:
                return f"unknown property operation {row.event!r}"
            check.check_distinct_id(row.distinct_id, "distinct_id")
            check.check_batch_action({row.event: _property_argument(row)}, "action")
        else:
            return f"unknown outbox kind {row.kind!r}"
    except FynoError as error:
        return _error_text(error, "not sent: ")
    return None


# -- claiming -----------------------------------------------------------------------------


def _claim(limit: int, clock: Clock) -> tuple[list[FynoOutbox], datetime | None]:
    """Lease up to ``limit`` due rows to this drainer; commits before returning.

    Returns the rows and their token (the lease expiry, made unique by a
    random sub-second part so that no two claims share it).
    """
    now = clock()
    token = now + timedelta(seconds=_lease_seconds(), microseconds=secrets.randbelow(10**6))
    alias = router.db_for_write(FynoOutbox)
    due = (
        FynoOutbox.objects.using(alias)
        .filter(state=_State.PENDING, next_attempt_at__lte=now)
        .order_by("id")
    )
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


def _units(rows: list[FynoOutbox], bulk_size: int) -> list[list[FynoOutbox]]:
    """Group claimed rows into requests.

    Events: by name, ``bulk_size`` per bulk request. Property operations: in
    row order, ``bulk_size`` per batch, and a batch is cut before a second
    operation for the same user, so one user's operations never share a
    request (Fyno does not promise to apply a batch's items in order).
    """
    events: dict[str, list[list[FynoOutbox]]] = {}
    properties: list[list[FynoOutbox]] = []
    users: set[str] = set()
    for row in rows:
        if row.kind == _EVENT:
            chunks = events.setdefault(row.event, [[]])
            if len(chunks[-1]) >= bulk_size:
                chunks.append([])
            chunks[-1].append(row)
            continue
        if not properties or len(properties[-1]) >= bulk_size or row.distinct_id in users:
            properties.append([])
            users = set()
        properties[-1].append(row)
        users.add(row.distinct_id)
    units = [chunk for chunks in events.values() for chunk in chunks]
    return units + properties


# -- sending ------------------------------------------------------------------------------


@dataclass
class _Reply:
    """Fyno accepted a request: its request id, and per row its result or refusal."""

    request_id: str
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)


def _send(client: FynoClient, unit: list[FynoOutbox]) -> _Reply:
    """One request for ``unit`` (rows of one event, or property rows of distinct users)."""
    first = unit[0]
    if first.kind == _EVENT:
        if len(unit) == 1:
            single = client.send_event(first.event, **_event_item(first))
            response = single.raw.get("response")
            result = dict(response) if isinstance(response, Mapping) else {}
            return _Reply(single.request_id or "", {first.pk: result})
        bulk = client.send_bulk(first.event, [_event_item(row) for row in unit])
        by_seq = {item.seq: item.raw for item in bulk.items if item.seq is not None}
        results = {
            row.pk: {k: v for k, v in by_seq.get(seq, {}).items() if k != "seq"}
            for seq, row in enumerate(unit)
        }
        return _Reply(bulk.request_id or "", results)
    if len(unit) == 1:
        method = getattr(client, PROPERTY_OPERATIONS[first.event])
        update = method(first.distinct_id, _property_argument(first))
        return _Reply(update.request_id or "", {first.pk: {first.event: "ok"}})
    items: list[dict[str, Any]] = [
        {"distinct_id": row.distinct_id, "action": {row.event: _property_argument(row)}}
        for row in unit
    ]
    batch = client.batch_properties(items)
    reply = _Reply(batch.request_id or "")
    for index, row in enumerate(unit):
        outcome = dict(batch.items[index]) if index < len(batch.items) else {}
        refusal = next((str(v) for v in outcome.values() if v != "ok"), None)
        if refusal is None:
            reply.results[row.pk] = outcome
        else:
            reply.refused[row.pk] = refusal[:_MAX_ERROR_LENGTH]
    return reply


class _Writer:
    """Writes outcomes of one claim, only to rows that still carry its token."""

    def __init__(self, token: datetime, report: DrainReport, clock: Clock) -> None:
        self.token = token
        self.report = report
        self.clock = clock

    def _owned(self, pks: Iterable[int]) -> Any:
        return FynoOutbox.objects.filter(
            pk__in=list(pks), state=_State.SENDING, lease_expires_at=self.token
        )

    def _update(self, pks: list[int], **fields: Any) -> int:
        written = int(self._owned(pks).update(lease_expires_at=None, **fields))
        self.report.lost += len(pks) - written
        return written

    def sent(self, reply: _Reply) -> None:
        pks = list(reply.results)
        if pks:
            whens = [
                When(pk=pk, then=Value(result, JSONField())) for pk, result in reply.results.items()
            ]
            self.report.sent += self._update(
                pks,
                state=_State.SENT,
                request_id=reply.request_id[:64],
                result=Case(*whens, output_field=JSONField()),
                sent_at=self.clock(),
                attempts=F("attempts") + 1,
                last_error="",
            )
        for pk, message in reply.refused.items():
            self.report.failed += self._update(
                [pk],
                state=_State.FAILED,
                request_id=reply.request_id[:64],
                attempts=F("attempts") + 1,
                last_error=message,
            )

    def failed(self, rows: list[FynoOutbox], message: str) -> None:
        self.report.failed += self._update(
            [row.pk for row in rows],
            state=_State.FAILED,
            attempts=F("attempts") + 1,
            last_error=message[:_MAX_ERROR_LENGTH],
        )

    def release(self, rows: list[FynoOutbox]) -> None:
        """Hand back rows that were never sent: no attempt counted."""
        self.report.released += self._update([row.pk for row in rows], state=_State.PENDING)

    def rate_limited(self, rows: list[FynoOutbox], retry_after: float, message: str) -> None:
        """429: Fyno refused to look at the request; the attempt is not counted."""
        due = self.clock() + timedelta(seconds=retry_after)
        self.report.retried += self._update(
            [row.pk for row in rows], state=_State.PENDING, next_attempt_at=due, last_error=message
        )

    def retry_later(self, rows: list[FynoOutbox], message: str, *, ambiguous: bool) -> None:
        """Back to pending with backoff (counted as an attempt), or dead at the limit."""
        max_attempts = int(fyno_settings.OUTBOX_MAX_ATTEMPTS)
        now = self.clock()
        with transaction.atomic():
            for row in rows:
                attempts = row.attempts + 1
                if attempts >= max_attempts:
                    self.report.dead += self._update(
                        [row.pk], state=_State.DEAD, attempts=attempts, last_error=message
                    )
                    continue
                written = self._update(
                    [row.pk],
                    state=_State.PENDING,
                    attempts=attempts,
                    next_attempt_at=now + _backoff(attempts),
                    last_error=message,
                )
                self.report.retried += written
        if ambiguous:
            self.report.ambiguous += len(rows)

    def hold(self, rows: list[FynoOutbox], message: str) -> None:
        """Ambiguous under UNKNOWN_POLICY "hold": left for staff or a delivery report."""
        self.report.ambiguous += len(rows)
        self.report.held += self._update(
            [row.pk for row in rows],
            state=_State.UNKNOWN,
            attempts=F("attempts") + 1,
            last_error=message,
        )


def _deliver(
    client: FynoClient,
    rows: list[FynoOutbox],
    writer: _Writer,
    pause: SharedPause,
    policy: str,
) -> bool:
    """Send the claimed rows; True when the drain must stop (Fyno refused or is down)."""
    report = writer.report
    sendable = []
    for row in rows:
        problem = _problem(row)
        if problem is None:
            sendable.append(row)
        else:
            writer.failed([row], problem)
    units = _units(sendable, max(1, int(fyno_settings.OUTBOX_BULK_SIZE)))
    for index, unit in enumerate(units):
        report.requests += 1
        try:
            reply = _send(client, unit)
        except FynoRateLimitedError as error:
            wait = error.retry_after
            if wait is None:
                wait = float(fyno_settings.OUTBOX_BACKOFF_BASE)
            pause.rate_limited(wait)
            writer.rate_limited(unit, wait, _error_text(error))
        except FynoBadRequestError as error:
            # Fyno refused the request as a whole (unknown event, invalid input):
            # it will refuse it again, so no retry.
            writer.failed(unit, error.message)
            pause.succeeded()
            continue
        except FynoAuthError as error:
            logger.error("Fyno outbox: Fyno refused the credentials: %s", error)
            writer.retry_later(unit, _error_text(error), ambiguous=False)
        except FynoServerError as error:
            pause.failed()
            _ambiguous(writer, unit, _error_text(error), policy)
        except FynoTransportError as error:
            pause.failed()
            if error.may_have_reached_fyno:
                _ambiguous(writer, unit, _error_text(error), policy)
            else:
                writer.retry_later(unit, _error_text(error), ambiguous=False)
        except FynoAPIError as error:
            if 400 <= error.status < 500:
                writer.failed(unit, _error_text(error))
                continue
            pause.failed()
            _ambiguous(writer, unit, _error_text(error), policy)
        except FynoError as error:  # e.g. local validation the pre-check missed
            writer.failed(unit, _error_text(error, "not sent: "))
            continue
        else:
            pause.succeeded()
            writer.sent(reply)
            continue
        # Fyno is refusing or failing: stop this pass; hand the rest back unsent.
        for rest in units[index + 1 :]:
            writer.release(rest)
        return True
    return False


def _ambiguous(writer: _Writer, rows: list[FynoOutbox], error: str, policy: str) -> None:
    logger.warning("Fyno outbox: outcome of %d message(s) unknown: %s", len(rows), error)
    if policy == "hold":
        writer.hold(rows, f"Outcome unknown (held): {error}")
    else:
        writer.retry_later(rows, f"Outcome unknown (retried): {error}", ambiguous=True)


def _next_due_in(clock: Clock) -> float | None:
    """Seconds until the earliest pending row is due (0 if one is due now); None: none."""
    earliest: datetime | None = (
        FynoOutbox.objects.filter(state=_State.PENDING)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    if earliest is None:
        return None
    return max(0.0, (earliest - clock()).total_seconds())


# -- the drain ----------------------------------------------------------------------------


def drain(max_rows: int | None = None, *, clock: Clock | None = None) -> DrainReport:
    """Deliver due pending rows (at most ``max_rows``) and return what happened.

    Stops early, handing unsent rows back, when the shared pause is active or
    Fyno answers 429, 5xx or not at all. ``clock`` (default
    ``django.utils.timezone.now``) is injectable so tests can move time.
    """
    report = DrainReport()
    if not fyno_settings.ENABLED:
        return report
    clock = clock or timezone.now
    policy = _unknown_policy()
    client = get_client()
    pause = SharedPause(_workspace_key(client.config), clock)
    bulk_size = max(1, int(fyno_settings.OUTBOX_BULK_SIZE))
    while max_rows is None or report.claimed < max_rows:
        gate = pause.gate()
        if not gate.open:
            report.paused = True
            report.retry_in = gate.wait
            break
        limit = bulk_size if max_rows is None else min(bulk_size, max_rows - report.claimed)
        rows, token = _claim(limit, clock)
        if token is None:
            if gate.probe:
                pause.cache.delete(pause.probe_key)  # nothing to probe with
            break
        report.claimed += len(rows)
        if _deliver(client, rows, _Writer(token, report, clock), pause, policy):
            break
    if report.retry_in is None:
        report.retry_in = _next_due_in(clock)
    if report.claimed or report.paused:
        logger.info("Fyno outbox drain: %s", report)
    return report


# -- the sweeper --------------------------------------------------------------------------


def sweep_outbox(*, clock: Clock | None = None, schedule: bool = True) -> SweepReport:
    """Take back rows whose lease expired; request a drain when due rows wait.

    A row still ``sending`` after its lease belongs to a drainer that died or
    hung: it may have reached Fyno, so it is ambiguous and follows
    ``UNKNOWN_POLICY`` ("retry": back to pending, the attempt counted;
    "hold": ``unknown``). Due pending rows (e.g. the broker was down when
    their transaction committed) get one drain request, unless ``schedule``
    is False (the caller drains itself).
    """
    report = SweepReport()
    if not fyno_settings.ENABLED:
        return report
    now = (clock or timezone.now)()
    policy = _unknown_policy()
    expired = FynoOutbox.objects.filter(state=_State.SENDING, lease_expires_at__lt=now)
    message = "Outcome unknown: the drainer's lease expired before it recorded an answer"
    last = int(fyno_settings.OUTBOX_MAX_ATTEMPTS) - 1
    report.dead = expired.filter(attempts__gte=last).update(
        state=_State.DEAD, attempts=F("attempts") + 1, lease_expires_at=None, last_error=message
    )
    if policy == "hold":
        report.held = expired.update(
            state=_State.UNKNOWN,
            attempts=F("attempts") + 1,
            lease_expires_at=None,
            last_error=f"{message} (held)",
        )
    else:
        report.reclaimed = expired.update(
            state=_State.PENDING,
            attempts=F("attempts") + 1,
            next_attempt_at=now,
            lease_expires_at=None,
            last_error=f"{message} (retried)",
        )
    if FynoOutbox.objects.filter(state=_State.PENDING, next_attempt_at__lte=now).exists():
        report.scheduled = True
    if report.reclaimed or report.held or report.dead:
        logger.warning("Fyno outbox sweep: %s", report)
    if report.scheduled and schedule:
        enqueue(deliver_outbox_task)
    return report
