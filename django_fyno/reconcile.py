"""Reconciliation: compare our mirror of each profile with what Fyno has now, and put it right.

:func:`compare_profiles` is the one comparison, shared by the admin's "Compare with
Fyno" page and ``manage.py fyno_reconcile``. For each mirror row it puts side by side,
field by field:

- what we would send now (the user's payload, rebuilt as a sync would: :func:`sync.plan_sync`);
- what Fyno last accepted from us (the row's ``payload``, whose hash is ``payload_hash``);
- what Fyno has now (``GET /profiles/{id}``, in the row's own workspace).

The *drift* of a profile is about the last two: Fyno changed behind our back (edited in
its dashboard, deleted, never deleted). A difference between the first two is a change
made here that is not sent yet (``pending``): the next sync sends it.

Only what the sync owns is compared: the top-level fields, the single-destination
channels and the ``$set`` properties we send or sent. Fyno's other channels (push/inapp
tokens from its SDKs) and properties (set by ``properties()`` or elsewhere) are listed,
never counted as drift.

:func:`resync`, :func:`delete_from_fyno` and :func:`fix` put profiles right, one result
per row, for the admin's actions and ``fyno_reconcile --fix``.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from django_fyno import sync
from django_fyno.adapter import ProfileAdapter, get_adapter
from django_fyno.backfill import Backfill
from django_fyno.client import FynoClient
from django_fyno.client.exceptions import (
    FynoAuthError,
    FynoError,
    FynoNotFoundError,
    FynoRateLimitedError,
    FynoTransientError,
)
from django_fyno.client.types import Profile
from django_fyno.clients import Workspace, client_for
from django_fyno.conf import fyno_settings
from django_fyno.exceptions import error_text
from django_fyno.models import FynoProfile
from django_fyno.pause import SharedPause
from django_fyno.signals import profile_deleted

__all__ = [
    "ABSENT",
    "UNKNOWN",
    "Comparison",
    "Drift",
    "FieldComparison",
    "RowResult",
    "compare_profiles",
    "delete_from_fyno",
    "fix",
    "label",
    "orphan_rows",
    "resync",
    "rows_for_users",
]

logger = logging.getLogger(__name__)

_State = FynoProfile.State
# The top-level fields a sync sends, in the order they are shown.
_TOP_LEVEL = ("distinct_id", "name", "timezone", "status")


class _Absent:
    """No value at all (a channel or property not set), unlike ``None`` (a field set to nothing)."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:
        return False


#: A field one side does not have.
ABSENT: Any = _Absent()


class _Unknown:
    """What Fyno has when it was not asked, or did not answer."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __bool__(self) -> bool:
        return False


#: Fyno's side of a field when Fyno was not asked or did not answer: never a difference.
UNKNOWN: Any = _Unknown()


class Drift(str, enum.Enum):
    """How Fyno's profile stands against what Fyno last accepted from us."""

    #: Fyno has what it last accepted (a change made here may still be pending).
    IN_SYNC = "in_sync"
    #: Some field Fyno has is not what it last accepted from us.
    DIFFERS = "differs"
    #: Fyno accepted the profile once and has none now.
    MISSING = "missing"
    #: Fyno still has a profile we mirror as deleted (its user is gone).
    EXTRA = "extra"
    #: Never synced yet: nothing accepted to drift from (``fyno_sync`` sends it).
    NOT_SYNCED = "not_synced"
    #: The adapter keeps the user out of Fyno and nothing was ever sent.
    EXCLUDED = "excluded"
    #: Could not compare: Fyno's error, or the user's payload or workspace.
    FAILED = "failed"

    @property
    def drifted(self) -> bool:
        """Fyno differs from our mirror: ``fyno_reconcile --fix`` puts it right."""
        return self in (Drift.DIFFERS, Drift.MISSING, Drift.EXTRA)


def _shown(value: Any) -> str:
    """A value as text; "" for none at all (ABSENT, or a field set to nothing)."""
    if value is ABSENT or value is None:
        return ""
    if value is UNKNOWN:
        return "?"
    if isinstance(value, str):
        return value
    return json.dumps(value, cls=DjangoJSONEncoder, sort_keys=True)


@dataclass(frozen=True)
class FieldComparison:
    """One field: what we would send, what Fyno last accepted, what Fyno has now.

    ``name`` is ``distinct_id``, ``name``, ``timezone``, ``status``,
    ``channels.<channel>`` or ``properties.<key>``. A side without the field
    holds :data:`ABSENT`; Fyno's side is :data:`UNKNOWN` when Fyno was not asked
    or did not answer. ``managed`` is False for Fyno's fields the sync does
    not own (shown, never compared).
    """

    name: str
    ours: Any
    accepted: Any
    theirs: Any
    managed: bool = True

    @property
    def differs(self) -> bool:
        """What we would send is not what Fyno has (the admin's compare page highlights it)."""
        return self.managed and self.theirs is not UNKNOWN and self.ours != self.theirs

    @property
    def drifted(self) -> bool:
        """What Fyno has is not what it last accepted from us."""
        return self.managed and self.theirs is not UNKNOWN and self.accepted != self.theirs

    @property
    def pending(self) -> bool:
        """Changed here since Fyno last accepted the profile: the next sync sends it."""
        return self.managed and self.ours is not ABSENT and self.ours != self.accepted

    @property
    def drift_kind(self) -> str:
        """How Fyno's value stands against the accepted one: same, missing, extra or differs."""
        if not self.drifted:
            return "same"
        if self.theirs is ABSENT:
            return "missing"
        if self.accepted is ABSENT:
            return "extra"
        return "differs"

    @property
    def ours_text(self) -> str:
        return _shown(self.ours)

    @property
    def accepted_text(self) -> str:
        return _shown(self.accepted)

    @property
    def theirs_text(self) -> str:
        return _shown(self.theirs)


@dataclass
class Comparison:
    """One mirror row against Fyno: :func:`compare_profiles` makes them."""

    row: FynoProfile
    drift: Drift
    #: Where the profile lives (the row's workspace; the user's, for a row that has none).
    workspace: Workspace | None = None
    #: The id looked up in Fyno (the row's; the user's payload's before the first sync).
    distinct_id: str | None = None
    fields: list[FieldComparison] = field(default_factory=list)
    #: Fyno's profile as fetched (None: Fyno has none, or it was not asked).
    profile: Profile | None = None
    #: Fyno was asked and answered (with the profile, or "not found").
    answered: bool = False
    error: FynoError | None = None

    @property
    def user(self) -> Any:
        return self.row.user if self.row.user_id is not None else None

    @property
    def managed_fields(self) -> list[FieldComparison]:
        return [item for item in self.fields if item.managed]

    @property
    def other_fields(self) -> list[FieldComparison]:
        """Fyno's fields the sync does not own (push/inapp tokens, other properties)."""
        return [item for item in self.fields if not item.managed]

    @property
    def differences(self) -> list[FieldComparison]:
        """The fields where what we would send is not what Fyno has."""
        return [item for item in self.fields if item.differs]

    @property
    def drifted_fields(self) -> list[FieldComparison]:
        """The fields where Fyno has something else than it last accepted from us."""
        return [item for item in self.fields if item.drifted]

    @property
    def pending(self) -> bool:
        """A change made here is not sent yet (the next sync sends it)."""
        return any(item.pending for item in self.fields)

    @property
    def label(self) -> str:
        return label(self.row)


def label(row: FynoProfile) -> str:
    """How a mirror row is named in messages: its distinct id, else its user."""
    if row.distinct_id:
        return row.distinct_id
    if row.user_id is not None:
        return f"user {row.user_id}"
    return f"profile #{row.pk}"


# -- what each side has ----------------------------------------------------------------------


def _json(value: Any) -> Any:
    """``value`` as it comes back from JSON (dates as ISO strings, tuples as lists)."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def _normalised(payload: dict[str, Any]) -> dict[str, Any]:
    """A payload (ours, or the accepted one) with Fyno's defaults: "" is no value, no
    status is 1 (so ``None`` here and ``""`` in Fyno compare equal)."""
    found = dict(payload)
    for key in ("name", "timezone"):
        if key in found:
            found[key] = found[key] or None
    if "status" in found and found["status"] is None:
        found["status"] = 1
    return found


def _fyno_side(profile: Profile) -> dict[str, Any]:
    return {
        "distinct_id": profile.distinct_id,
        "name": profile.name or None,
        "timezone": profile.timezone or None,
        "status": 1 if profile.status is None else profile.status,
        "channels": _json(profile.channel),
        "properties": _json(profile.properties),
    }


def _get(mapping: dict[str, Any] | None, key: str) -> Any:
    if mapping is None or key not in mapping:
        return ABSENT
    return mapping[key]


def _field_comparisons(
    ours: dict[str, Any] | None,
    accepted: dict[str, Any] | None,
    theirs: dict[str, Any] | None,
    *,
    answered: bool,
) -> list[FieldComparison]:
    """Field by field; Fyno's own channels and properties come last, unmanaged.

    ``theirs`` None: Fyno has no profile (``answered``), or was not asked (not).
    """

    def fyno_value(mapping: dict[str, Any] | None, key: str) -> Any:
        return _get(mapping, key) if answered else UNKNOWN

    ours = _normalised(ours) if ours is not None else None
    accepted = _normalised(accepted) if accepted is not None else None
    known = [side for side in (ours, accepted) if side is not None]
    found: list[FieldComparison] = []
    for key in _TOP_LEVEL:
        if any(key in side for side in known):
            found.append(
                FieldComparison(key, _get(ours, key), _get(accepted, key), fyno_value(theirs, key))
            )
    others: list[FieldComparison] = []
    for group in ("channels", "properties"):
        mine = [side.get(group) or {} for side in known]
        managed = sorted({key for side in mine for key in side})
        ours_group = (ours.get(group) or {}) if ours is not None else None
        accepted_group = (accepted.get(group) or {}) if accepted is not None else None
        theirs_group = (theirs.get(group) or {}) if theirs is not None else None
        for key in managed:
            found.append(
                FieldComparison(
                    f"{group}.{key}",
                    _get(ours_group, key),
                    _get(accepted_group, key),
                    fyno_value(theirs_group, key),
                )
            )
        for key in sorted(set(theirs_group or {}) - set(managed)):
            assert theirs_group is not None
            # A single-destination channel we never sent, a push/inapp token list, or a
            # property set by properties() or in Fyno: not the sync's.
            others.append(
                FieldComparison(f"{group}.{key}", ABSENT, ABSENT, theirs_group[key], managed=False)
            )
    return found + others


@dataclass
class _Expected:
    """What one row should look like in Fyno, decided without HTTP."""

    comparison: Comparison
    ours: dict[str, Any] | None = None
    accepted: dict[str, Any] | None = None
    client: FynoClient | None = None
    #: The user's workspace, when it is no longer the row's: the next sync moves the profile.
    moving_to: Workspace | None = None

    def fields(self, theirs: dict[str, Any] | None, *, answered: bool) -> list[FieldComparison]:
        found = _field_comparisons(self.ours, self.accepted, theirs, answered=answered)
        if self.moving_to is not None:
            where = str(self.comparison.workspace)
            found.insert(0, FieldComparison("workspace", str(self.moving_to), where, where))
        return found


def _accepted(row: FynoProfile) -> dict[str, Any] | None:
    """What Fyno last accepted for the row (None: never synced)."""
    if row.distinct_id is None:
        return None
    return {"distinct_id": row.distinct_id, **dict(row.payload or {})}


def _expect(row: FynoProfile, adapter: ProfileAdapter) -> _Expected:
    """Decide the row's side (no HTTP): what we would send, what was accepted, where."""
    comparison = Comparison(row=row, drift=Drift.IN_SYNC, distinct_id=row.distinct_id)
    expected = _Expected(comparison, accepted=_accepted(row))
    if row.wsid:
        comparison.workspace = Workspace.of(row)
    if row.user_id is None:
        # The user is gone: we would send nothing, the profile should not be in Fyno.
        return expected
    # force: the full state we would send, even when its hash matches the last one sent.
    plan = sync.plan_sync(row.user, row, adapter=adapter, force=True)
    if plan.outcome is sync.SyncOutcome.FAILED:
        comparison.drift, comparison.error = Drift.FAILED, plan.error
        return expected
    if comparison.workspace is None:
        comparison.workspace = plan.workspace  # where its first sync will create it
    elif row.distinct_id is not None and not comparison.workspace.same_workspace(plan.workspace):
        expected.moving_to = plan.workspace
    if plan.new is not None:
        expected.ours = plan.new
        if comparison.distinct_id is None:
            comparison.distinct_id = plan.new["distinct_id"]
    elif row.distinct_id is None:
        comparison.drift = Drift.EXCLUDED  # kept out of Fyno, and never sent
    return expected


def _fetch(client: FynoClient, distinct_id: str) -> Profile | FynoError | None:
    """Fyno's profile (None: it has none); runs on any thread, touches no database."""
    try:
        return client.get_profile(distinct_id)
    except FynoNotFoundError:
        return None
    except FynoError as error:
        return error


def _conclude(expected: _Expected, fetched: Profile | FynoError | None) -> None:
    comparison = expected.comparison
    if isinstance(fetched, FynoError):
        comparison.drift, comparison.error = Drift.FAILED, fetched
        comparison.fields = expected.fields(None, answered=False)
        return
    comparison.profile, comparison.answered = fetched, True
    theirs = _fyno_side(fetched) if fetched is not None else None
    comparison.fields = expected.fields(theirs, answered=True)
    if comparison.row.user_id is None:
        comparison.drift = Drift.EXTRA if fetched is not None else Drift.IN_SYNC
    elif expected.accepted is None:
        comparison.drift = Drift.NOT_SYNCED
    elif fetched is None:
        comparison.drift = Drift.MISSING
    elif comparison.drifted_fields:
        comparison.drift = Drift.DIFFERS
    else:
        comparison.drift = Drift.IN_SYNC


def compare_profiles(
    rows: Iterable[FynoProfile],
    *,
    adapter: ProfileAdapter | None = None,
    executor: Executor | None = None,
    pool_size: int | None = None,
) -> list[Comparison]:
    """Compare each mirror row (its ``user`` loaded or loadable) with Fyno's profile.

    The payloads are rebuilt and the workspaces' clients resolved here, on the
    caller's thread (they may read the database); only the ``GET /profiles/{id}``
    requests go to ``executor``'s threads, if one is given (``pool_size``: how many
    share each client). Every request goes to the row's own workspace, with its
    credentials. Never raises a :class:`FynoError`: a profile that cannot be
    compared comes back with :attr:`Drift.FAILED` and its ``error``. Nothing is
    written.
    """
    adapter = adapter or get_adapter()
    clients: dict[Workspace, FynoClient | FynoError] = {}
    expectations: list[tuple[_Expected, Future[Profile | FynoError | None] | str | None]] = []
    for row in rows:
        expected = _expect(row, adapter)
        comparison = expected.comparison
        lookup: Future[Profile | FynoError | None] | str | None = None
        if comparison.drift is Drift.IN_SYNC and comparison.distinct_id is not None:
            workspace = comparison.workspace
            if workspace is None:
                # Reached only for a deleted user's row that recorded no workspace.
                client: FynoClient | FynoError = FynoError("the row records no Fyno workspace")
            else:
                if workspace not in clients:
                    try:
                        clients[workspace] = client_for(workspace, pool_size=pool_size)
                    except FynoError as error:  # WorkspaceUnavailable, unusable settings
                        clients[workspace] = error
                client = clients[workspace]
            if isinstance(client, FynoError):
                comparison.drift, comparison.error = Drift.FAILED, client
            else:
                expected.client = client
                lookup = (
                    executor.submit(_fetch, client, comparison.distinct_id)
                    if executor is not None
                    else comparison.distinct_id
                )
        expectations.append((expected, lookup))
    comparisons: list[Comparison] = []
    for expected, lookup in expectations:
        comparison = expected.comparison
        if isinstance(lookup, Future):
            _conclude(expected, lookup.result())
        elif isinstance(lookup, str):
            assert expected.client is not None
            _conclude(expected, _fetch(expected.client, lookup))
        else:  # decided without asking Fyno: failed, excluded, or nothing to look up
            comparison.fields = expected.fields(None, answered=False)
        comparisons.append(comparison)
    return comparisons


def rows_for_users(users: Sequence[Any]) -> list[FynoProfile]:
    """The mirror rows of ``users`` (one query), in their order, each with its user.

    A user without a row (never marked, e.g. created before django-fyno was
    installed) gets an unsaved one in the user's workspace, as a first sync would.
    """
    found = {row.user_id: row for row in FynoProfile.objects.filter(user__in=list(users))}
    rows: list[FynoProfile] = []
    for user in users:
        row = found.get(user.pk)
        if row is None:
            row = FynoProfile(user=user, **sync.workspace_fields(user))
        else:
            row.user = user
        rows.append(row)
    return rows


def orphan_rows() -> Any:
    """The rows of deleted users that may still have a profile in Fyno (a queryset)."""
    return FynoProfile.objects.filter(user__isnull=True, distinct_id__isnull=False).exclude(
        state=_State.DELETED
    )


# -- putting it right ---------------------------------------------------------------------------


@dataclass
class RowResult:
    """What became of one row: ``ok`` (with what was done), or why not (``error``)."""

    row: FynoProfile
    ok: bool
    #: created, updated, unchanged, excluded, deleted; failed; skipped.
    outcome: str
    error: str = ""

    @property
    def label(self) -> str:
        return label(self.row)


def resync(rows: Iterable[FynoProfile], *, force: bool) -> list[RowResult]:
    """Sync each row's user now (:func:`sync.sync_profile`), as an operator.

    Sends even while the workspace is paused (and lifts the pause when Fyno
    accepts). ``force`` resends the full state even when its hash matches the
    last one Fyno accepted (puts back edits made in Fyno). A row whose user is
    gone is skipped (its profile is deleted, not synced). Fyno's errors come
    back as failed results, the row recording them as a sync does (its payload
    and hash stay those Fyno last accepted).
    """
    results: list[RowResult] = []
    for row in rows:
        if row.user_id is None:
            results.append(RowResult(row, False, "skipped", "its user was deleted"))
            continue
        try:
            outcome = sync.sync_profile(row.user_id, force=force, respect_pause=False)
        except FynoError as error:  # transient (counted on the row) or refused credentials
            results.append(RowResult(row, False, "failed", error_text(error)))
            continue
        if outcome is sync.SyncOutcome.FAILED:
            last_error = (
                FynoProfile.objects.filter(pk=row.pk).values_list("last_error", flat=True).first()
            )
            results.append(RowResult(row, False, "failed", last_error or "the sync failed"))
        elif outcome is sync.SyncOutcome.SKIPPED:
            results.append(RowResult(row, False, "skipped", "django-fyno is disabled"))
        elif outcome is sync.SyncOutcome.VETOED:
            results.append(RowResult(row, False, "skipped", "a pre_profile_sync receiver vetoed"))
        elif outcome is sync.SyncOutcome.MISSING:
            results.append(RowResult(row, False, "skipped", "its user was deleted"))
        elif outcome is sync.SyncOutcome.PAUSED:
            results.append(RowResult(row, False, "failed", "the workspace is paused"))
        else:
            results.append(RowResult(row, True, outcome.value))
    return results


def delete_from_fyno(rows: Iterable[FynoProfile]) -> list[RowResult]:
    """Delete each row's profile in Fyno, in the row's workspace, then the mirror row.

    One ``POST /profiles/delete`` per workspace and ``DELETE_BATCH_SIZE`` ids. A
    profile Fyno does not have counts as deleted; a row never synced has
    nothing in Fyno and is just removed. A batch Fyno refuses, or that fails
    (5xx, timeout), changes nothing here: its rows stay as they were, with
    the error in the results. A row whose user still exists is synced again
    at the user's next save (or ``fyno_sync``): to keep a user out of Fyno,
    have the adapter's ``should_sync`` return False.
    """
    rows = list(rows)
    results: list[RowResult] = []
    by_workspace: dict[Workspace, list[FynoProfile]] = {}
    never_synced: list[FynoProfile] = []
    for row in rows:
        if row.distinct_id is None:
            never_synced.append(row)
        elif not row.wsid:
            results.append(RowResult(row, False, "failed", "the row records no Fyno workspace"))
        else:
            by_workspace.setdefault(Workspace.of(row), []).append(row)
    if never_synced:
        FynoProfile.objects.filter(pk__in=[row.pk for row in never_synced]).delete()
        results += [RowResult(row, True, "deleted") for row in never_synced]
    size = fyno_settings.DELETE_BATCH_SIZE
    for workspace, members in by_workspace.items():
        try:
            client = client_for(workspace)
        except FynoError as error:
            results += [RowResult(row, False, "failed", error_text(error)) for row in members]
            continue
        for start in range(0, len(members), size):
            batch = members[start : start + size]
            results += _delete_batch(client, workspace, batch)
    by_row = {id(result.row): result for result in results}
    return [by_row[id(row)] for row in rows]


def _delete_batch(
    client: FynoClient, workspace: Workspace, batch: list[FynoProfile]
) -> list[RowResult]:
    distinct_ids = [str(row.distinct_id) for row in batch]
    try:
        client.delete_profiles(distinct_ids)
    except FynoNotFoundError:
        pass  # "Cannot delete non existing user": none of them is left in Fyno
    except FynoError as error:
        if isinstance(error, FynoAuthError):
            SharedPause(workspace).auth_failed(error.message or str(error))
        elif isinstance(error, FynoRateLimitedError):
            retry_after = error.retry_after or fyno_settings.OUTBOX_BACKOFF_BASE
            SharedPause(workspace).rate_limited(retry_after)
        level = logging.INFO if isinstance(error, FynoTransientError) else logging.WARNING
        logger.log(level, "Fyno profiles %s not deleted: %s", distinct_ids, error)
        return [RowResult(row, False, "failed", error_text(error)) for row in batch]
    FynoProfile.objects.filter(pk__in=[row.pk for row in batch]).delete()
    sync.send_after_commit(profile_deleted, distinct_ids=distinct_ids)
    logger.info("Fyno profiles %s deleted in workspace %s", distinct_ids, workspace)
    return [RowResult(row, True, "deleted") for row in batch]


def fix(
    comparisons: Iterable[Comparison],
    *,
    executor: Executor | None = None,
    pool_size: int | None = None,
) -> list[RowResult]:
    """Put right the drifted profiles among ``comparisons`` (the others are left alone).

    A profile that differs, or is missing in Fyno, is synced again with its full
    state (a backfill: the requests on ``executor``'s threads, sent through a
    paused workspace as an operator would); a profile Fyno still has for a
    deleted user is deleted (:func:`delete_from_fyno`).
    """
    resend: list[Comparison] = []
    extra: list[FynoProfile] = []
    for comparison in comparisons:
        if comparison.drift is Drift.EXTRA:
            extra.append(comparison.row)
        elif comparison.drift.drifted and comparison.row.user_id is not None:
            resend.append(comparison)
    results: list[RowResult] = []
    if resend:
        engine = Backfill(executor=executor, pool_size=pool_size, force=True)
        by_user = {comparison.row.user_id: comparison.row for comparison in resend}
        for result in engine.start([comparison.row.user for comparison in resend]).finish():
            row = by_user[result.user.pk]
            if result.outcome in (
                sync.SyncOutcome.CREATED,
                sync.SyncOutcome.UPDATED,
                sync.SyncOutcome.UNCHANGED,
                sync.SyncOutcome.EXCLUDED,
            ):
                results.append(RowResult(row, True, result.outcome.value))
            else:
                error = error_text(result.error) if result.error else result.outcome.value
                results.append(RowResult(row, False, "failed", error))
    if extra:
        results += delete_from_fyno(extra)
    return results
