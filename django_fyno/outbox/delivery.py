"""Draining and sweeping: the plain functions the outbox's tasks (and commands) call.

:func:`drain` delivers the due rows of one workspace (or of each): claim a
batch, send it with no transaction open (renewing the lease of the unsent
rows before each request, and sending only those still held), record each
outcome; repeat until nothing is due, the workspace is paused, or Fyno
refuses or fails (the rest of the batch is handed back unsent). With
``OUTBOX_CONCURRENCY`` above 1, a batch's requests go out in waves of that
many, and the next batch is claimed while the last wave is in flight (and
handed back if the drain stops).
:func:`deliver` is the drain job: a drain plus the one wake-up for what it
left behind. :func:`sweep_outbox` takes back rows whose drainer died and
asks for a drain of every workspace with due rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import F
from django.utils import timezone

from django_fyno import dispatch
from django_fyno.client import FynoClient
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
from django_fyno.clients import Workspace, client_for
from django_fyno.conf import UnknownPolicy, fyno_settings
from django_fyno.exceptions import error_text
from django_fyno.models import FynoOutbox
from django_fyno.outbox import claim as claiming
from django_fyno.outbox import scheduling
from django_fyno.outbox.claim import Clock
from django_fyno.outbox.record import DrainReport, Writer
from django_fyno.outbox.scheduling import DRAIN_JOB
from django_fyno.outbox.send import Reply, Sender, next_wave, problem, send, units
from django_fyno.pause import SharedPause

__all__ = [
    "DRAIN_JOB",
    "SWEEP_JOB",
    "DrainReport",
    "SweepReport",
    "deliver",
    "drain",
    "sweep_outbox",
]

logger = logging.getLogger("django_fyno.outbox")

SWEEP_JOB = "django_fyno.sweep_outbox"
_State = FynoOutbox.State


@dataclass
class SweepReport:
    """What one :func:`sweep_outbox` did."""

    reclaimed: int = 0  # expired leases put back to pending (ambiguous: counted as attempts)
    held: int = 0  # expired leases left "unknown" (UNKNOWN_POLICY "hold")
    dead: int = 0
    scheduled: int = 0  # workspaces with due rows a drain was requested for


def _ambiguous(writer: Writer, rows: list[FynoOutbox], error: str, policy: UnknownPolicy) -> None:
    logger.warning("Fyno outbox: outcome of %d message(s) unknown: %s", len(rows), error)
    if policy is UnknownPolicy.HOLD:
        writer.hold(rows, f"Outcome unknown (held): {error}")
    else:
        writer.retry_later(rows, f"Outcome unknown (retried): {error}", ambiguous=True)


def _deliver(
    client: FynoClient,
    rows: list[FynoOutbox],
    writer: Writer,
    pause: SharedPause,
    policy: UnknownPolicy,
    sender: Sender,
    *,
    probe: bool = False,
    meanwhile: Callable[[], None] | None = None,
) -> bool:
    """Send the claimed rows; True when the drain must stop (Fyno refused or is down).

    Requests go out in waves of at most ``sender.width`` (a probe's first
    request goes alone). ``meanwhile`` runs while the last wave is in flight.
    """
    report = writer.report
    sendable = []
    for row in rows:
        reason = problem(row)
        if reason is None:
            sendable.append(row)
        else:
            writer.failed([row], reason)
    queue = units(sendable, fyno_settings.OUTBOX_BULK_SIZE)
    width = 1 if probe else sender.width
    while queue:
        # Keep the lease of every row not sent yet, and send only rows still
        # held: a pass may outlive OUTBOX_LEASE_SECONDS, never send a row the
        # sweeper took back.
        held = writer.renew([row for unit in queue for row in unit])
        queue = [kept for unit in queue if (kept := [row for row in unit if row.pk in held])]
        if not queue:
            break
        wave = next_wave(queue, width)
        del queue[: len(wave)]
        width = sender.width
        report.requests += len(wave)
        outcomes = sender.send_all(send, client, wave, None if queue else meanwhile)
        accepted: list[tuple[Reply, list[FynoOutbox]]] = []
        failures: list[tuple[list[FynoOutbox], FynoError]] = []
        for unit, outcome in zip(wave, outcomes, strict=True):
            if isinstance(outcome, FynoError):
                failures.append((unit, outcome))
            else:
                pause.succeeded()
                accepted.append((outcome, unit))
        if accepted:
            writer.sent_all(accepted)
        # Failures after successes: a wave's failure is the pause's last word.
        stopped_by = None
        for unit, error in failures:
            message = error_text(error, "not sent yet: ")
            if not _failed(error, writer, unit, pause, policy) and stopped_by is None:
                stopped_by = message
        if stopped_by is not None:
            # Fyno is refusing or failing: stop this pass; hand the rest back unsent.
            for rest in queue:
                writer.release(rest, stopped_by)
            return True
    return False


def _failed(
    error: FynoError,
    writer: Writer,
    unit: list[FynoOutbox],
    pause: SharedPause,
    policy: UnknownPolicy,
) -> bool:
    """Record a failed request; True when the drain may go on with the next one."""
    if isinstance(error, FynoRateLimitedError):
        wait = error.retry_after
        if wait is None:
            wait = fyno_settings.OUTBOX_BACKOFF_BASE
        pause.rate_limited(wait)
        writer.rate_limited(unit, wait, error_text(error))
        return False
    if isinstance(error, FynoBadRequestError):
        # Fyno refused the request as a whole (unknown event, invalid input):
        # it will refuse it again, so no retry.
        writer.failed(unit, error.message or error_text(error))
        pause.succeeded()
        return True
    if isinstance(error, FynoAuthError):
        # Every row of the workspace would meet the same refusal: pause it
        # (one ERROR line) and hand the rows back without counting an attempt.
        pause.auth_failed(error.message or str(error))
        writer.release(unit, error_text(error))
        return False
    if isinstance(error, FynoTransportError) and not error.may_have_reached_fyno:
        pause.failed()
        writer.retry_later(unit, error_text(error), ambiguous=False)
        return False
    if isinstance(error, FynoAPIError) and 400 <= error.status < 500:
        writer.failed(unit, error_text(error))
        return True
    if isinstance(error, (FynoServerError, FynoTransportError, FynoAPIError)):
        # 5xx, a read timeout, a dropped connection: it may have reached Fyno.
        pause.failed()
        _ambiguous(writer, unit, error_text(error), policy)
        return False
    # e.g. local validation the pre-check missed: it would fail again.
    writer.failed(unit, error_text(error, "not sent: "))
    return True


def _next_due_in(workspace: Workspace, clock: Clock) -> float | None:
    """Seconds until the workspace's earliest pending row is due (0: now); None: none."""
    earliest: datetime | None = (
        FynoOutbox.objects.filter(state=_State.PENDING, **workspace.fields())
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    if earliest is None:
        return None
    return max(0.0, (earliest - clock()).total_seconds())


def _unresolvable(workspace: Workspace, error: FynoConfigurationError, clock: Clock) -> int:
    """Fail the due rows of a workspace no credentials can be had for (never elsewhere)."""
    message = error_text(error, "not sent: ")
    rows = claiming.due_rows(workspace, clock())
    failed = rows.update(state=_State.FAILED, last_error=message, attempts=F("attempts") + 1)
    if failed:
        logger.warning("Fyno outbox: %d message(s) failed: %s", failed, message)
    return int(failed)


@dataclass
class _Claim:
    rows: list[FynoOutbox]
    token: datetime
    probe: bool = False
    # Taken just now, before any request: its lease needs no renewal before the first.
    fresh: bool = True


def _drain_workspace(workspace: Workspace, max_rows: int | None, clock: Clock) -> DrainReport:
    report = DrainReport()
    policy = fyno_settings.UNKNOWN_POLICY
    width = fyno_settings.OUTBOX_CONCURRENCY
    try:
        client = client_for(workspace) if width == 1 else client_for(workspace, pool_size=width)
    except FynoConfigurationError as error:
        report.failed = _unresolvable(workspace, error, clock)
        return report
    pause = SharedPause(workspace, clock)
    per_claim = fyno_settings.OUTBOX_BULK_SIZE * width

    def take(probe_allowed: bool) -> _Claim | None:
        """The next claim, unless the drain is done, paused or (``probe_allowed``
        False) the pause would make it a probe."""
        if max_rows is not None and report.claimed >= max_rows:
            return None
        gate = pause.gate()
        if not gate.open:
            if probe_allowed:
                report.paused = True
                report.retry_in = gate.wait
            return None
        if gate.probe and not probe_allowed:
            pause.end_probe()  # the next pass, with nothing in flight, probes
            return None
        limit = per_claim if max_rows is None else min(per_claim, max_rows - report.claimed)
        rows, token = claiming.claim(workspace, limit, clock)
        if token is None:
            if gate.probe:
                pause.end_probe()  # nothing to probe with
            return None
        report.claimed += len(rows)
        return _Claim(rows, token, probe=gate.probe)

    ahead: list[_Claim] = []

    def claim_ahead() -> None:
        # The next batch is claimed (and committed) while the last requests of
        # the current one are in flight; no transaction spans a request.
        taken = take(probe_allowed=False)
        if taken is not None:
            taken.fresh = False
            ahead.append(taken)

    with Sender(width) as sender:
        current = take(probe_allowed=True)
        while current is not None:
            writer = Writer(current.token, report, clock, fresh=current.fresh)
            stop = _deliver(
                client,
                current.rows,
                writer,
                pause,
                policy,
                sender,
                probe=current.probe,
                meanwhile=claim_ahead if width > 1 else None,
            )
            if stop:
                for unsent in ahead:  # claimed ahead, never sent: handed back as they were
                    Writer(unsent.token, report, clock).release(unsent.rows)
                break
            current = ahead.pop() if ahead else take(probe_allowed=True)
    if report.retry_in is None:
        report.retry_in = _next_due_in(workspace, clock)
    if report.claimed or report.paused:
        logger.info("Fyno outbox drain of %s: %s", workspace, report)
    return report


def _pending_workspaces() -> list[Workspace]:
    found = (
        FynoOutbox.objects.filter(state=_State.PENDING)
        .values_list("wsid", "version", "endpoint")
        .distinct()
        .order_by()
    )
    return [Workspace(*fields) for fields in found]


def drain(
    workspace: Workspace | None = None,
    max_rows: int | None = None,
    *,
    clock: Clock | None = None,
) -> DrainReport:
    """Deliver due pending rows of ``workspace`` (None: of every workspace) and say what happened.

    At most ``max_rows`` rows per workspace. Stops early, handing unsent rows
    back, when the workspace's shared pause is active or Fyno answers 429,
    401, 5xx or not at all. ``clock`` (default ``django.utils.timezone.now``)
    is injectable so tests can move time.
    """
    report = DrainReport()
    if not fyno_settings.ENABLED:
        return report
    clock = clock or timezone.now
    for each in [workspace] if workspace is not None else _pending_workspaces():
        report.add(_drain_workspace(each, max_rows, clock))
    return report


def deliver(workspace_key: str, wakeup: str | None = None) -> DrainReport:
    """The drain job: drain one workspace, then schedule its one wake-up if work is left.

    ``wakeup`` is the token of the wake-up this run is (its claim is released
    first, so that this drain may schedule the next one).
    """
    workspace = Workspace.from_key(workspace_key)
    if wakeup:
        scheduling.wakeup_started(workspace, wakeup)
    report = drain(workspace)
    if report.retry_in is not None:
        # Rows due now (a pass cut short) are drained in a second; others when due.
        scheduling.schedule_wakeup(workspace, max(1.0, report.retry_in))
    return report


def sweep_outbox(*, clock: Clock | None = None, schedule: bool = True) -> SweepReport:
    """Take back rows whose lease expired; request a drain of each workspace with due rows.

    A row still ``sending`` after its lease belongs to a drainer that died or
    hung: it may have reached Fyno, so it is ambiguous and follows
    ``UNKNOWN_POLICY`` ("retry": back to pending, the attempt counted;
    "hold": ``unknown``). Due pending rows (e.g. the broker was down when
    their transaction committed) get one drain request per workspace, unless
    ``schedule`` is False (the caller drains itself).
    """
    report = SweepReport()
    if not fyno_settings.ENABLED:
        return report
    now = (clock or timezone.now)()
    policy = fyno_settings.UNKNOWN_POLICY
    expired = FynoOutbox.objects.filter(state=_State.SENDING, lease_expires_at__lt=now)
    message = "Outcome unknown: the drainer's lease expired before it recorded an answer"
    limit = fyno_settings.OUTBOX_MAX_ATTEMPTS
    if policy is UnknownPolicy.RETRY:
        # It may have been sent: sending it again is bounded like any ambiguous send.
        limit = min(limit, fyno_settings.OUTBOX_MAX_SENDS)
    report.dead = expired.filter(attempts__gte=limit - 1).update(
        state=_State.DEAD, attempts=F("attempts") + 1, lease_expires_at=None, last_error=message
    )
    if policy is UnknownPolicy.HOLD:
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
    due = (
        FynoOutbox.objects.filter(state=_State.PENDING, next_attempt_at__lte=now)
        .values_list("wsid", "version", "endpoint")
        .distinct()
        .order_by()
    )
    workspaces = [Workspace(*fields) for fields in due]
    report.scheduled = len(workspaces)
    if report.reclaimed or report.held or report.dead:
        logger.warning("Fyno outbox sweep: %s", report)
    if schedule:
        for workspace in workspaces:
            dispatch.enqueue(DRAIN_JOB, workspace.key)
    return report


def _sweep() -> None:
    sweep_outbox()


dispatch.register(DRAIN_JOB, deliver)
dispatch.register(SWEEP_JOB, _sweep)
