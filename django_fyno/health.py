"""How each Fyno workspace is doing: its outbox, its profiles, its pause, its credentials.

Plain functions over the local rows and the shared cache; the admin's health page
(``admin:django_fyno_health``) shows what :func:`health` returns. A workspace is
every one the outbox and profile rows recorded, plus the project's default.

Only :func:`check_credentials` talks to Fyno: one cheap authenticated read per
workspace (the one ``fyno_check`` makes: list the suppressions), one attempt with
short timeouts, its answer cached for ``CREDENTIALS_CACHE_SECONDS`` in the
``OUTBOX_CACHE`` cache. Nothing here shows or returns the API key.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.core.cache import caches
from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from django_fyno.client import FynoClient, FynoConfig, RetryPolicy
from django_fyno.client.exceptions import (
    FynoAPIError,
    FynoAuthError,
    FynoError,
    FynoTransportError,
)
from django_fyno.clients import Workspace, client_for, default_workspace
from django_fyno.conf import fyno_settings
from django_fyno.models import FynoOutbox, FynoProfile
from django_fyno.pause import SharedPause, cache_prefix

__all__ = [
    "CHECK_CONNECT_TIMEOUT",
    "CHECK_READ_TIMEOUT",
    "CREDENTIALS_CACHE_SECONDS",
    "FAILURE_WINDOW",
    "CredentialsCheck",
    "Failure",
    "Health",
    "PauseState",
    "WorkspaceHealth",
    "check_credentials",
    "health",
    "pause_state",
    "workspaces",
]

logger = logging.getLogger(__name__)

#: How long a credentials check is trusted (seconds): one call per workspace per minute.
CREDENTIALS_CACHE_SECONDS = 60
#: The credentials check's timeouts (seconds; the settings' own when shorter).
CHECK_CONNECT_TIMEOUT = 2.0
CHECK_READ_TIMEOUT = 3.0
#: How far back failures are counted.
FAILURE_WINDOW = timedelta(hours=24)
#: Longest failure message kept (the rest is cut).
MAX_MESSAGE = 300
#: Credentials checks made at once (each waits on the network).
MAX_PARALLEL_CHECKS = 8

_Outbox = FynoOutbox.State
_Profile = FynoProfile.State
# Outbox states that count as failures: refused, given up, or ambiguous.
FAILURE_STATES = (_Outbox.FAILED, _Outbox.DEAD, _Outbox.UNKNOWN)
_WS = ("wsid", "version", "endpoint")
_Key = tuple[str, str, str]


@dataclass(frozen=True)
class PauseState:
    """A workspace's shared pause as every sender sees it (read without side effects)."""

    paused: bool = False
    until: datetime | None = None
    reason: str = ""
    # The pause is over, and the next sender probes Fyno before the rest follow.
    half_open: bool = False
    # A sender is probing right now.
    probing: bool = False
    # Consecutive 5xx/connection failures, toward OUTBOX_CIRCUIT_THRESHOLD.
    failures: int = 0
    threshold: int = 0
    # The shared cache could not be read: the pause is unknown.
    error: str = ""


@dataclass(frozen=True)
class CredentialsCheck:
    """The answer of one cheap authenticated call to a workspace (``ok`` False: why not)."""

    ok: bool
    message: str
    checked_at: datetime
    # The workspace's credentials could not be had at all (see clients.WorkspaceUnavailable).
    unresolved: bool = False


@dataclass(frozen=True)
class Failure:
    """Failures sharing one message in the window: ``source`` is "outbox" or "profiles"."""

    source: str
    message: str
    count: int
    last_seen: datetime | None


@dataclass
class WorkspaceHealth:
    """Everything the health page says about one workspace."""

    workspace: Workspace
    is_default: bool
    now: datetime
    outbox: dict[str, int] = field(default_factory=dict)
    oldest_pending: datetime | None = None
    failures: list[Failure] = field(default_factory=list)
    pause: PauseState = field(default_factory=PauseState)
    last_request_id: str = ""
    last_request_at: datetime | None = None
    profiles: dict[str, int] = field(default_factory=dict)
    credentials: CredentialsCheck | None = None

    @property
    def oldest_pending_age(self) -> timedelta | None:
        return None if self.oldest_pending is None else self.now - self.oldest_pending

    @property
    def outbox_total(self) -> int:
        return sum(self.outbox.values())

    @property
    def label(self) -> str:
        """The workspace as staff know it (rows that recorded none say so)."""
        return str(self.workspace) if self.workspace.wsid else "(no workspace recorded)"


@dataclass
class Health:
    """:func:`health`'s answer: one entry per workspace, default first."""

    workspaces: list[WorkspaceHealth]
    now: datetime
    # Why the project's default workspace could not be resolved ("" when it could).
    default_error: str = ""


def _key(workspace: Workspace) -> _Key:
    return (workspace.wsid, workspace.version, workspace.endpoint)


def workspaces() -> tuple[list[Workspace], Workspace | None, str]:
    """Every workspace the rows recorded plus the default: (all, default, why no default).

    The default comes first; the others are sorted. ``default`` is None (and the
    third item says why) when the settings or the resolver cannot give it.
    """
    found: set[_Key] = set()
    for model in (FynoOutbox, FynoProfile):
        found.update(model.objects.values_list(*_WS).distinct().order_by())
    default: Workspace | None
    try:
        default = default_workspace()
        error = ""
    except FynoError as exc:
        default, error = None, str(exc)
    ordered = [default] if default is not None else []
    others = sorted(found - ({_key(default)} if default is not None else set()))
    ordered.extend(Workspace(*key) for key in others)
    return ordered, default, error


def _seconds_to_datetime(timestamp: float) -> datetime:
    when = datetime.fromtimestamp(timestamp, tz=dt_timezone.utc)
    return when if timezone.is_aware(timezone.now()) else timezone.make_naive(when)


def pause_state(workspace: Workspace) -> PauseState:
    """The workspace's pause, read from the shared cache without taking part in it.

    Unlike :meth:`SharedPause.gate`, this never claims the half-open probe: a page
    that looks must not hold back the sender that would have probed.
    """
    threshold = fyno_settings.OUTBOX_CIRCUIT_THRESHOLD
    pause = SharedPause(workspace)
    try:
        entry, failures, probing = pause.peek()
    except Exception as error:  # the cache server is down: say so, do not fail the page
        logger.warning("Fyno pause of workspace %s unreadable: %r", workspace, error)
        return PauseState(
            threshold=threshold, error=f"the cache cannot be read ({type(error).__name__})"
        )
    if not entry:
        return PauseState(failures=failures, threshold=threshold)
    until = float(entry.get("until", 0))
    reason = str(entry.get("reason", ""))
    if until > pause.clock().timestamp():
        return PauseState(
            paused=True,
            until=_seconds_to_datetime(until),
            reason=reason,
            failures=failures,
            threshold=threshold,
        )
    if entry.get("probe"):
        return PauseState(
            until=_seconds_to_datetime(until),
            reason=reason,
            half_open=True,
            probing=probing,
            failures=failures,
            threshold=threshold,
        )
    return PauseState(failures=failures, threshold=threshold)


# -- the credentials check ----------------------------------------------------------------


def _credentials_key(workspace: Workspace) -> str:
    return f"{cache_prefix(workspace)}:credentials"


def _config(workspace: Workspace) -> FynoConfig | str:
    """The workspace's client configuration, or why there is none.

    Asked in the caller's thread: a CLIENT_RESOLVER may read the database.
    """
    try:
        config = client_for(workspace).config
    except FynoError as error:  # WorkspaceUnavailable, or an unusable resolver answer
        return f"cannot be resolved: {error}"
    # One attempt, short timeouts: the page waits for this.
    return dataclasses.replace(
        config,
        retry=RetryPolicy(max_attempts=1),
        connect_timeout=min(config.connect_timeout, CHECK_CONNECT_TIMEOUT),
        read_timeout=min(config.read_timeout, CHECK_READ_TIMEOUT),
    )


def _call(config: FynoConfig) -> tuple[bool, str]:
    """One authenticated read (what ``fyno_check`` makes): (ok, message)."""
    try:
        with FynoClient(config=config) as client:
            count = len(client.list_suppressions())
    except FynoAuthError as error:
        problem = f"Fyno refused the API key or workspace id ({error.status} {error.message})"
    except FynoTransportError as error:
        problem = f"cannot reach {config.endpoint}: {error.message}"
    except FynoAPIError as error:
        problem = f"Fyno answered {error.status}: {error.message}"
    except FynoError as error:
        problem = f"check failed: {error}"
    else:
        return True, f"credentials work ({count} suppression(s) listed)"
    # Whatever a server or a proxy echoed back, never the key.
    return False, problem.replace(config.api_key, "[API key hidden]")


def check_credentials(
    workspace: Workspace, *, use_cache: bool = True, now: datetime | None = None
) -> CredentialsCheck:
    """Whether ``workspace``'s credentials work: cached, else one call to Fyno."""
    return _check_all([workspace], use_cache=use_cache, now=now)[_key(workspace)]


def _check_all(
    spaces: Iterable[Workspace], *, use_cache: bool = True, now: datetime | None = None
) -> dict[_Key, CredentialsCheck]:
    """The credentials check of each workspace; the uncached ones in parallel."""
    cache = caches[fyno_settings.OUTBOX_CACHE]
    checked: dict[_Key, CredentialsCheck] = {}
    todo: list[Workspace] = []
    for workspace in spaces:
        stored = _cached(cache, _credentials_key(workspace)) if use_cache else None
        if isinstance(stored, dict):
            checked[_key(workspace)] = CredentialsCheck(
                ok=bool(stored["ok"]),
                message=str(stored["message"]),
                checked_at=_seconds_to_datetime(float(stored["at"])),
                unresolved=bool(stored.get("unresolved")),
            )
        else:
            todo.append(workspace)
    if not todo:
        return checked
    when = now or timezone.now()
    configs = [_config(workspace) for workspace in todo]
    callable_configs = [config for config in configs if not isinstance(config, str)]
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_CHECKS, len(todo))) as pool:
        called = iter(list(pool.map(_call, callable_configs)))
    for workspace, config in zip(todo, configs, strict=True):
        unresolved = isinstance(config, str)
        ok, message = (False, config) if isinstance(config, str) else next(called)
        if not ok:
            logger.warning("Fyno credentials check of workspace %s: %s", workspace, message)
        checked[_key(workspace)] = CredentialsCheck(ok, message, when, unresolved)
        try:
            cache.set(
                _credentials_key(workspace),
                {"ok": ok, "message": message, "at": when.timestamp(), "unresolved": unresolved},
                timeout=CREDENTIALS_CACHE_SECONDS,
            )
        except Exception as error:  # unremembered: the next page checks again
            logger.warning("Fyno credentials check not cached: %r", error)
    return checked


def _cached(cache: Any, key: str) -> Any:
    try:
        return cache.get(key)
    except Exception as error:  # the cache server is down: check again
        logger.warning("Fyno credentials check cache unreadable: %r", error)
        return None


# -- the counts ----------------------------------------------------------------------------


def _short(message: str) -> str:
    message = " ".join(message.split())
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"


def _failures(since: datetime) -> dict[_Key, list[Failure]]:
    """Failures since ``since`` per workspace, grouped by message, most frequent first.

    Outbox rows count by when they were written (the table records no failure time);
    profiles by their last update.
    """
    queries = (
        (
            "outbox",
            FynoOutbox.objects.filter(state__in=FAILURE_STATES, created_at__gte=since),
            "created_at",
        ),
        (
            "profiles",
            FynoProfile.objects.filter(state=_Profile.FAILED, updated_at__gte=since),
            "updated_at",
        ),
    )
    grouped: dict[_Key, dict[tuple[str, str], Failure]] = {}
    for source, rows, stamp in queries:
        found = (
            rows.values_list(*_WS, "last_error")
            .annotate(number=Count("id"), last=Max(stamp))
            .order_by()
        )
        for wsid, version, endpoint, message, number, last in found:
            bucket = grouped.setdefault((wsid, version, endpoint), {})
            text = _short(message or "(no message)")
            seen = bucket.get((source, text))
            if seen is not None:  # two long messages that differ only after the cut
                number += seen.count
                last = max(last, seen.last_seen) if seen.last_seen else last
            bucket[(source, text)] = Failure(source, text, number, last)
    return {
        key: sorted(
            bucket.values(),
            key=lambda failure: (-failure.count, failure.source, failure.message),
        )
        for key, bucket in grouped.items()
    }


def health(*, check: bool = True, now: datetime | None = None) -> Health:
    """What the health page shows, per workspace (``check=False``: no call to Fyno)."""
    now = now or timezone.now()
    spaces, default, error = workspaces()
    report: dict[_Key, WorkspaceHealth] = {}

    def entry(key: _Key) -> WorkspaceHealth:
        # A row written since workspaces() looked may name one more workspace.
        if key not in report:
            workspace = Workspace(*key)
            report[key] = WorkspaceHealth(
                workspace=workspace,
                is_default=default is not None and workspace == default,
                now=now,
                outbox={state: 0 for state in _Outbox.values},
                profiles={"total": 0, "failed": 0, "dirty": 0, "deleting": 0},
            )
        return report[key]

    for workspace in spaces:
        entry(_key(workspace))
    for wsid, version, endpoint, state, number in (
        FynoOutbox.objects.values_list(*_WS, "state").annotate(number=Count("id")).order_by()
    ):
        entry((wsid, version, endpoint)).outbox[state] = number
    for wsid, version, endpoint, oldest in (
        FynoOutbox.objects.filter(state=_Outbox.PENDING)
        .values_list(*_WS)
        .annotate(oldest=Min("created_at"))
        .order_by()
    ):
        entry((wsid, version, endpoint)).oldest_pending = oldest
    for wsid, version, endpoint, total, failed, dirty, deleting in (
        FynoProfile.objects.values_list(*_WS)
        .annotate(
            total=Count("id"),
            failed=Count("id", filter=Q(state=_Profile.FAILED)),
            dirty=Count("id", filter=Q(dirty_since__isnull=False)),
            deleting=Count("id", filter=Q(state=_Profile.DELETING)),
        )
        .order_by()
    ):
        entry((wsid, version, endpoint)).profiles = {
            "total": total,
            "failed": failed,
            "dirty": dirty,
            "deleting": deleting,
        }
    for key, failures in _failures(now - FAILURE_WINDOW).items():
        entry(key).failures = failures
    for key, found in report.items():
        last = (
            FynoOutbox.objects.filter(wsid=key[0], version=key[1], endpoint=key[2])
            .exclude(request_id="")
            # The newest row Fyno answered: rows go out oldest first, so the newest
            # holding a request id is the last answer (the primary key is indexed).
            .order_by("-id")
            .values_list("request_id", "sent_at")
            .first()
        )
        if last is not None:
            found.last_request_id, found.last_request_at = last
        found.pause = pause_state(found.workspace)
    if check:
        checks = _check_all([found.workspace for found in report.values()], now=now)
        for key, found in report.items():
            found.credentials = checks[key]
    return Health(workspaces=list(report.values()), now=now, default_error=error)
