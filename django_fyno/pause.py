"""A per-workspace pause shared by every process: 429, refused credentials, the circuit.

Profile sync and outbox delivery both ask :meth:`SharedPause.gate` before they
talk to a workspace, and report what Fyno answered:

* a 429 pauses everyone until its ``Retry-After`` has passed;
* a 401 (the credentials were refused) pauses everyone for
  ``AUTH_FAILURE_PAUSE`` seconds, logged once as an ERROR, instead of every
  row and every task burning its retries on the same refusal;
* ``OUTBOX_CIRCUIT_THRESHOLD`` consecutive 5xx/connection failures open the
  circuit for ``OUTBOX_CIRCUIT_COOLDOWN`` seconds.

When a pause ends, one caller (whoever wins a ``cache.add``) sends a probe
request (half-open): its success lifts the pause, its failure renews it.

The state lives in the Django cache named by ``OUTBOX_CACHE``; with several
processes it must be shared (Redis, Memcached, database): a per-process LocMem
cache only pauses the process it lives in.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.cache import caches
from django.utils import timezone

from django_fyno.clients import Workspace
from django_fyno.conf import fyno_settings

__all__ = ["Gate", "SharedPause", "cache_prefix"]

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def cache_prefix(workspace: Workspace) -> str:
    """Where one workspace's pause, circuit and wake-up keys live in the cache."""
    digest = hashlib.sha256(workspace.key.encode()).hexdigest()[:16]
    return f"django_fyno:ws:{digest}"


@dataclass(frozen=True)
class Gate:
    """May this caller send now? ``wait``: seconds until asking again makes sense."""

    open: bool
    probe: bool = False
    wait: float = 0.0
    reason: str = ""


class SharedPause:
    """The pause of one workspace, seen by every drainer and every sync."""

    def __init__(self, workspace: Workspace, clock: Clock | None = None) -> None:
        prefix = cache_prefix(workspace)
        self.workspace = workspace
        self.pause_key = f"{prefix}:pause"
        self.failures_key = f"{prefix}:failures"
        self.probe_key = f"{prefix}:probe"
        self.clock = clock or timezone.now
        self.cache = caches[fyno_settings.OUTBOX_CACHE]

    def _now(self) -> float:
        return self.clock().timestamp()

    def gate(self) -> Gate:
        """Whether to send now; after a pause, exactly one caller may probe."""
        pause: dict[str, Any] | None = self.cache.get(self.pause_key)
        if not pause:
            return Gate(open=True)
        reason = str(pause.get("reason", ""))
        left = float(pause["until"]) - self._now()
        if left > 0:
            return Gate(open=False, wait=left, reason=reason)
        if not pause.get("probe"):
            return Gate(open=True)
        # The probe key lives as long as a lease, in case the prober dies.
        if self.cache.add(self.probe_key, 1, timeout=fyno_settings.OUTBOX_LEASE_SECONDS):
            return Gate(open=True, probe=True)
        return Gate(open=False, wait=fyno_settings.OUTBOX_CIRCUIT_COOLDOWN, reason=reason)

    def peek(self) -> tuple[dict[str, Any], int, bool]:
        """The pause entry, the consecutive-failure count and whether a probe is out.

        Read only: unlike :meth:`gate`, it never claims the half-open probe, so a
        page that looks (the admin's health page) never holds back a sender.
        """
        entry: dict[str, Any] = self.cache.get(self.pause_key) or {}
        failures = int(self.cache.get(self.failures_key) or 0)
        probing = self.cache.get(self.probe_key) is not None
        return entry, failures, probing

    def end_probe(self) -> None:
        """The prober had nothing to send: let the next caller probe."""
        self.cache.delete(self.probe_key)

    def _pause(self, seconds: float, *, probe: bool, reason: str) -> bool:
        """Pause for ``seconds`` (never shortening a longer pause); True if newly paused."""
        now = self._now()
        current: dict[str, Any] = self.cache.get(self.pause_key) or {}
        was_paused = float(current.get("until", 0)) > now
        until = max(now + seconds, float(current.get("until", 0)))
        # Outlive the pause itself: the half-open state needs the entry after it.
        timeout = math.ceil(until - now) + 3600
        self.cache.set(
            self.pause_key,
            {"until": until, "probe": probe or bool(current.get("probe")), "reason": reason},
            timeout=timeout,
        )
        self.cache.delete(self.probe_key)
        return not was_paused

    def rate_limited(self, retry_after: float) -> None:
        """Fyno answered 429: nobody sends before ``retry_after`` seconds have passed."""
        self._pause(retry_after, probe=False, reason="Fyno asked to slow down (429)")

    def auth_failed(self, message: str) -> None:
        """Fyno refused the credentials (401): pause the workspace; say so once."""
        seconds = fyno_settings.AUTH_FAILURE_PAUSE
        reason = f"Fyno refused the credentials of workspace {self.workspace} (401): {message}"
        if self._pause(seconds, probe=True, reason=reason):
            logger.error(
                "%s. Every request to this workspace is paused for %gs; fix the API key "
                "(or CLIENT_RESOLVER) and the next probe resumes the traffic.",
                reason,
                seconds,
            )

    def failed(self) -> None:
        """A 5xx or connection failure: count it; at the threshold, open the circuit."""
        self.cache.add(self.failures_key, 0, timeout=None)
        try:
            failures = self.cache.incr(self.failures_key)
        except ValueError:  # evicted between add and incr
            failures = 1
            self.cache.set(self.failures_key, 1, timeout=None)
        if failures >= fyno_settings.OUTBOX_CIRCUIT_THRESHOLD:
            cooldown = fyno_settings.OUTBOX_CIRCUIT_COOLDOWN
            if self._pause(
                cooldown, probe=True, reason=f"{failures} consecutive failures (circuit open)"
            ):
                logger.warning(
                    "Fyno workspace %s: %d consecutive failures; pausing its traffic for %gs",
                    self.workspace,
                    failures,
                    cooldown,
                )
        self.cache.delete(self.probe_key)

    def succeeded(self) -> None:
        """Fyno answered: reset the failure count; lift a pause that waited for a probe.

        A 429 pause is left to expire: another caller may have just been refused.
        """
        if self.cache.get(self.failures_key):
            self.cache.set(self.failures_key, 0, timeout=None)
        pause = self.cache.get(self.pause_key)
        if pause and pause.get("probe") and float(pause["until"]) <= self._now():
            self.cache.delete_many([self.pause_key, self.probe_key])

    def lift(self) -> None:
        """Forget the pause and the failure count (an operator fixed the cause)."""
        self.cache.delete_many([self.pause_key, self.probe_key, self.failures_key])
