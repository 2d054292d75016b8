"""Profile sync: rebuild a user's payload from the database, send Fyno only what changed.

Plain functions, callable with or without Celery: the receivers (through
:mod:`django_fyno.dispatch`), the tasks and the ``fyno_sync`` command all end
up here. Nothing here carries a payload between processes: a sync always
rebuilds it from the database as it is *now*, so a duplicate or late task
cannot push stale data.

One sync is three steps, each usable alone (the backfill runs them per chunk):

1. :func:`plan_sync` decides, without HTTP, what the user's profile needs
   (nothing, an exclusion, a create, an update, a full resend);
2. :func:`send_plan` makes the HTTP calls in the row's workspace;
3. :func:`record` writes the outcome on the mirror row.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connections, transaction
from django.db.models import Case, DateTimeField, F, Value, When
from django.utils import timezone

from django_fyno import dispatch
from django_fyno.adapter import SYNCED_CHANNELS, ProfileAdapter, ProfilePayload, get_adapter
from django_fyno.client import FynoClient
from django_fyno.client.exceptions import (
    FynoAlreadyExistsError,
    FynoAuthError,
    FynoConfigurationError,
    FynoError,
    FynoNotFoundError,
    FynoRateLimitedError,
    FynoTransientError,
    FynoValidationError,
)
from django_fyno.clients import Workspace, client_for, workspace_for
from django_fyno.conf import fyno_settings
from django_fyno.exceptions import error_text
from django_fyno.models import FynoProfile
from django_fyno.pause import SharedPause
from django_fyno.signals import (
    SyncVetoed,
    pre_profile_sync,
    profile_deleted,
    profile_sync_failed,
    profile_synced,
)

__all__ = [
    "DELETE_JOB",
    "MARK_JOB",
    "SWEEP_JOB",
    "SYNC_JOB",
    "SyncOutcome",
    "SyncPlan",
    "SyncRetry",
    "delete_pending_profiles",
    "has_pending_deletions",
    "mark_deleting",
    "mark_dirty",
    "plan_sync",
    "record",
    "request_deletion",
    "request_sync",
    "send_plan",
    "stale_user_pks",
    "sweep",
    "sync_profile",
    "sync_users",
]

logger = logging.getLogger(__name__)

SYNC_JOB = "django_fyno.sync_profiles"
#: Local (never published): dirty marks the background thread writes before it publishes.
MARK_JOB = "django_fyno.mark_dirty"
DELETE_JOB = "django_fyno.delete_profiles"
SWEEP_JOB = "django_fyno.sweep"

# Fyno's answer when the channel to delete is already gone: nothing left to do.
_CHANNEL_ALREADY_GONE = "Unable to delete channel since the channel does not exist"
_State = FynoProfile.State


class SyncOutcome(str, enum.Enum):
    """What :func:`sync_profile` did."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    # should_sync() is False: the profile (if any) was given status 0.
    EXCLUDED = "excluded"
    # Nothing sent: sync disabled, or a receiver vetoed it.
    SKIPPED = "skipped"
    VETOED = "vetoed"
    # The workspace is paused (429, refused credentials, circuit open): still dirty.
    PAUSED = "paused"
    # The user no longer exists (its deletion is handled separately).
    MISSING = "missing"


class SyncRetry(FynoTransientError):
    """Some users of :func:`sync_users` need another try later (``user_pks``, ``countdown``)."""

    def __init__(self, user_pks: list[Any], countdown: float | None, cause: str) -> None:
        super().__init__(cause)
        self.user_pks = user_pks
        self.countdown = countdown


# -- the request path ----------------------------------------------------------------------


def workspace_fields(user: Any) -> dict[str, str]:
    """The row fields of ``user``'s workspace; blank (fixed at sync time) if it can't be had."""
    try:
        return workspace_for(user).fields()
    except FynoConfigurationError as error:
        logger.warning("Fyno workspace of user %s not resolved yet: %s", user.pk, error)
        return {}


# The columns mark_dirty() sets itself; every other column gets its model default.
_MARKED = ("user", "dirty_since", "created_at", "updated_at", "wsid", "version", "endpoint")
# On a conflict (the user already has a row): these take the new row's values.
_REMARKED = ("dirty_since", "state", "updated_at")
_upserts: dict[str, tuple[str, list[Any]] | None] = {}


def _upsert_for(using: str) -> tuple[str, list[Any]] | None:
    """mark_dirty()'s single-row ``INSERT … ON CONFLICT (user_id) DO UPDATE``, written once
    per database alias: (sql, the fields of its parameters, in ``_MARKED`` order).

    ``bulk_create()`` builds and compiles the same statement on every call, about a
    quarter of a save's own cost. Only the ``_MARKED`` columns are parameters (they
    come first); the others hold their model defaults as SQL literals, quoted by the
    backend once: each parameter is dumped on every save. None where the database
    lacks that syntax.
    """
    if using in _upserts:
        return _upserts[using]
    connection = connections[using]
    found = None
    if connection.vendor in ("postgresql", "sqlite"):
        opts = FynoProfile._meta
        by_name = {field.name: field for field in opts.concrete_fields if field is not opts.pk}
        marked = [by_name[name] for name in _MARKED]
        defaulted = [field for name, field in by_name.items() if name not in _MARKED]
        quote = connection.ops.quote_name
        column = {name: quote(str(field.column)) for name, field in by_name.items()}
        defaults = FynoProfile(user_id=0)
        editor = connection.schema_editor()
        values = ["%s"] * len(marked)
        for field in defaulted:
            value = field.get_db_prep_save(field.value_from_object(defaults), connection)
            literal = "NULL" if value is None else str(editor.quote_value(value))
            if connection.vendor != "postgresql":  # PostgreSQL's quote_value doubles % itself
                literal = literal.replace("%", "%%")
            values.append(literal)
        columns = ", ".join(column[field.name] for field in [*marked, *defaulted])
        updates = ", ".join(f"{column[name]} = EXCLUDED.{column[name]}" for name in _REMARKED)
        # Names from the model's metadata and literals of its defaults, quoted by the
        # backend: no outside input.
        sql = (
            f"INSERT INTO {quote(opts.db_table)} ({columns}) "  # noqa: S608
            f"VALUES ({', '.join(values)}) ON CONFLICT ({column['user']}) "
            f"DO UPDATE SET {updates}"
        )
        found = (sql, marked)
    _upserts[using] = found
    return found


# In autocommit the mark is a transaction of its own, right after the caller's
# UPDATE committed: waiting for its WAL flush too would double a save's cost.
# That one transaction commits asynchronously ("Durability" in docs/sync.md).
_ASYNCHRONOUS_COMMIT = "SET LOCAL synchronous_commit TO OFF; "


def _commits_asynchronously(connection: Any) -> bool:
    """Whether the mark, outside atomic(), can go as one asynchronously committed
    query: PostgreSQL, with client-side parameter binding (Django's default for
    psycopg 3, and psycopg 2's only way), which lets one execute() carry two
    statements, run as one implicit transaction."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return False
    if not connection.get_autocommit():  # a transaction the caller manages by hand
        return False
    options = connection.settings_dict.get("OPTIONS") or {}
    return not options.get("server_side_binding")


def mark_dirty(users: Iterable[Any], using: str = "default") -> None:
    """Flag the users' mirror rows as needing a sync: one INSERT … ON CONFLICT UPDATE.

    A new row records the user's workspace; an existing row keeps its own.
    """
    _write_marks([(user.pk, workspace_fields(user)) for user in users], using)


def _write_marks(
    marks: Sequence[tuple[Any, dict[str, str]]], using: str, *, asynchronous: bool = True
) -> None:
    """mark_dirty() for (user pk, workspace fields) pairs. ``asynchronous``: an
    autocommitted single mark on PostgreSQL may skip waiting for its WAL flush."""
    now = timezone.now()
    upsert = _upsert_for(using) if len(marks) == 1 else None
    if upsert is not None:
        sql, marked = upsert
        user_pk, workspace = marks[0]
        values = (
            user_pk,
            now,
            now,
            now,
            workspace.get("wsid", ""),
            workspace.get("version", ""),
            workspace.get("endpoint", ""),
        )
        connection = connections[using]
        params = [
            field.get_db_prep_save(value, connection)
            for field, value in zip(marked, values, strict=True)
        ]
        if asynchronous and _commits_asynchronously(connection):
            sql = _ASYNCHRONOUS_COMMIT + sql
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
        return
    FynoProfile.objects.using(using).bulk_create(
        # state: the default, PENDING, on insert and (through EXCLUDED) on conflict.
        [FynoProfile(user_id=pk, dirty_since=now, **workspace) for pk, workspace in marks],
        update_conflicts=True,
        unique_fields=["user"],
        update_fields=list(_REMARKED),
    )


def _mark_handed_off(marks: list[tuple[Any, ...]]) -> None:
    """The :data:`MARK_JOB`: write the marks the request left to the background thread.

    ``marks``: (alias, user pk, wsid, version, endpoint) tuples. One statement per
    alias, synchronously committed; a user deleted meanwhile (its row would break
    the foreign key) is left out: its deletion is already under way.
    """
    by_alias: dict[str, list[tuple[Any, dict[str, str]]]] = {}
    for using, user_pk, wsid, version, endpoint in marks:
        workspace = {"wsid": wsid, "version": version, "endpoint": endpoint}
        by_alias.setdefault(using, []).append((user_pk, workspace))
    for using, rows in by_alias.items():
        try:
            with transaction.atomic(using=using):
                _write_marks(rows, using, asynchronous=False)
        except IntegrityError:
            for row in rows:
                with contextlib.suppress(IntegrityError), transaction.atomic(using=using):
                    _write_marks([row], using, asynchronous=False)


def _marks_in_background(using: str) -> bool:
    """Whether a mark asked for in autocommit may leave the request for the
    background thread: PostgreSQL (SQLite would have a second connection fight
    the first for its lock)."""
    connection = connections[using]
    return connection.vendor == "postgresql" and not connection.in_atomic_block


def request_sync(user: Any, using: str = "default") -> None:
    """Have ``user`` synced after the current transaction commits (the ``post_save`` work).

    Inside a transaction: one statement, the first time the user is saved in it
    (none after): the mirror row is marked dirty in the caller's transaction,
    with no commit of its own; then one hand-off after the commit for all the
    users of the transaction. In autocommit on PostgreSQL, with Celery: no
    statement at all; the background thread that publishes the sync task marks
    the row first (one statement for all the users of its round). The broker is
    never waited for in the request (:mod:`django_fyno.dispatch`). The dirty mark
    is what makes a lost hand-off harmless: the sweeper finds it (see
    "Durability" in docs/sync.md).
    """
    if dispatch.is_deferred(SYNC_JOB, user.pk, using=using):
        return
    workspace = workspace_fields(user)
    if _marks_in_background(using):
        mark = (
            using,
            user.pk,
            workspace.get("wsid", ""),
            workspace.get("version", ""),
            workspace.get("endpoint", ""),
        )
        if dispatch.to_background({MARK_JOB: {mark: None}, SYNC_JOB: {user.pk: None}}):
            return
    _write_marks([(user.pk, workspace)], using)
    dispatch.defer(SYNC_JOB, user.pk, using=using)


def request_deletion(using: str = "default") -> None:
    """Queue the profiles of deleted users for deletion, after commit (the ``post_delete`` work)."""
    mark_deleting(using)
    dispatch.defer(DELETE_JOB, using=using)


def mark_deleting(using: str = "default") -> int:
    """Queue the profiles of deleted users for deletion (one UPDATE).

    When a user is deleted, ``on_delete=SET_NULL`` has already cut the row
    loose, so every row without a user that is not yet queued is one to delete.
    """
    return int(
        FynoProfile.objects.using(using)
        .filter(user__isnull=True)
        .exclude(state__in=[_State.DELETING, _State.DELETED])
        .update(state=_State.DELETING, updated_at=timezone.now())
    )


# -- planning -------------------------------------------------------------------------------


class Action(str, enum.Enum):
    NOTHING = "nothing"  # unchanged, or excluded and already status 0
    SEND = "send"  # create or diff-update (or a full resend with force)
    EXCLUDE = "exclude"  # should_sync() False on a synced profile: status 0


@dataclass
class SyncPlan:
    """What one user's profile needs, decided from the user and its row without HTTP.

    ``outcome`` is set when the plan is final without a request (unchanged,
    failed locally, excluded with nothing to send).
    """

    user: Any
    row: FynoProfile
    workspace: Workspace | None
    action: Action = Action.NOTHING
    outcome: SyncOutcome | None = None
    payload: ProfilePayload | None = None
    new: dict[str, Any] | None = None
    previous: dict[str, Any] | None = None
    old_id: str | None = None
    digest: str = ""
    force: bool = False
    error: FynoError | None = None
    seen_dirty: datetime | None = None

    @property
    def sends(self) -> bool:
        return self.action is not Action.NOTHING


def _jsonable(value: Any) -> Any:
    """``value`` as it comes back from a JSONField (dates as ISO strings…)."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def _only_single_destination(payload: ProfilePayload) -> ProfilePayload:
    dropped = sorted(set(payload.channels) - SYNCED_CHANNELS)
    if not dropped:
        return payload
    logger.warning(
        "Fyno profile %s: ignoring channels %s (only single-destination channels are synced)",
        payload.distinct_id,
        dropped,
    )
    channels = {k: v for k, v in payload.channels.items() if k in SYNCED_CHANNELS}
    return replace(payload, channels=channels)


def plan_sync(
    user: Any, row: FynoProfile, *, adapter: ProfileAdapter | None = None, force: bool = False
) -> SyncPlan:
    """Decide what ``user``'s profile needs; no HTTP, no database write.

    ``force`` resends the full state even when the payload's hash matches the
    last one Fyno accepted (a profile edited in Fyno directly is put back).
    """
    adapter = adapter or get_adapter()
    plan = SyncPlan(user=user, row=row, workspace=None, force=force, seen_dirty=row.dirty_since)
    try:
        plan.workspace = workspace_for(user)
        payload = _only_single_destination(adapter.build_payload(user))
    except FynoError as error:  # a bad distinct id, an unusable resolver: retrying cannot help
        plan.outcome, plan.error = SyncOutcome.FAILED, error
        return plan
    previous: dict[str, Any] = dict(row.payload or {})
    # Another workspace (id or version), not merely another endpoint for the same one.
    moved = (
        bool(row.wsid)
        and row.distinct_id is not None
        and not Workspace.of(row).same_workspace(plan.workspace)
    )
    if not adapter.should_sync(user):
        if row.distinct_id is None or moved:
            plan.outcome = SyncOutcome.EXCLUDED  # never sent there: keep it out of Fyno
        elif previous.get("status") == 0 and not force:
            plan.outcome = SyncOutcome.EXCLUDED  # already status 0
        else:
            plan.action = Action.EXCLUDE
            plan.new = {**previous, "status": 0}
            plan.previous, plan.old_id = previous, row.distinct_id
            plan.digest = ""  # an excluded profile is rebuilt in full when it qualifies again
        return plan
    plan.payload = payload
    plan.digest = payload.digest()
    if (
        not force
        and not moved
        and row.distinct_id == payload.distinct_id
        and row.payload_hash == plan.digest
    ):
        plan.outcome = SyncOutcome.UNCHANGED
        return plan
    plan.action = Action.SEND
    plan.new = _jsonable(asdict(payload))
    plan.previous, plan.old_id = ({}, None) if moved else (previous, row.distinct_id)
    return plan


# -- sending --------------------------------------------------------------------------------


def _diff_update(
    client: FynoClient, new: dict[str, Any], previous: dict[str, Any], *, full: bool = False
) -> None:
    """Send the parts of ``new`` that differ from ``previous`` (all of them with ``full``)."""
    distinct_id = new["distinct_id"]
    fields: dict[str, Any] = {}
    for key in ("name", "timezone", "status"):
        value = new.get(key)
        if value == previous.get(key) and not full:
            continue
        if key == "name" and value is None:
            value = ""  # the client drops None; an empty name clears it
        if value is not None:
            fields[key] = value
    if fields:
        # Never `channel` here: PUT with a channel replaces push/inapp tokens too.
        client.update_profile(distinct_id, **fields)

    old_channels: dict[str, Any] = previous.get("channels") or {}
    new_channels: dict[str, Any] = new.get("channels") or {}
    changed = {k: v for k, v in new_channels.items() if full or old_channels.get(k) != v}
    if changed:
        client.update_channels(distinct_id, changed)
    removed = sorted(set(old_channels) - set(new_channels))
    if removed:
        try:
            client.delete_channels(distinct_id, channels=removed)
        except FynoNotFoundError as error:
            if error.message != _CHANNEL_ALREADY_GONE:
                raise

    missing = object()
    old_properties: dict[str, Any] = previous.get("properties") or {}
    new_properties: dict[str, Any] = new.get("properties") or {}
    set_now = {
        k: v for k, v in new_properties.items() if full or old_properties.get(k, missing) != v
    }
    if set_now:
        client.set_properties(distinct_id, set_now)
    unset = sorted(set(old_properties) - set(new_properties))
    if unset:
        client.unset_properties(distinct_id, unset)


def _create(client: FynoClient, new: dict[str, Any], previous: dict[str, Any]) -> bool:
    distinct_id = new["distinct_id"]
    # Whatever else we knew, only the channels we sent may be deleted again.
    channels_only = {"channels": previous.get("channels") or {}}
    try:
        client.create_profile(
            distinct_id,
            name=new["name"],
            status=new["status"],
            timezone=new["timezone"],
            channel=new["channels"] or None,
        )
    except FynoAlreadyExistsError:
        # Someone (an SDK, an earlier attempt) created it: bring all of it up to date.
        _diff_update(client, new, channels_only, full=True)
        return False
    if new["properties"]:
        client.set_properties(distinct_id, new["properties"])
    return True


def _send(
    client: FynoClient,
    new: dict[str, Any],
    previous: dict[str, Any],
    old_id: str | None,
    *,
    full: bool,
) -> bool:
    """Bring Fyno's profile to ``new``; True when it was created."""
    distinct_id = new["distinct_id"]
    if old_id is None:
        return _create(client, new, previous)
    if old_id != distinct_id:
        try:
            client.merge_profiles(old_id, distinct_id)
        except FynoNotFoundError:
            return _create(client, new, {})  # the old profile is gone
        # The merge kept the target's values where both had one: send everything.
        _diff_update(client, new, {"channels": previous.get("channels") or {}}, full=True)
        return False
    try:
        _diff_update(client, new, previous, full=full)
    except FynoNotFoundError:
        # Deleted in Fyno behind our back: create it again from scratch.
        return _create(client, new, {})
    return False


def send_plan(plan: SyncPlan, client: FynoClient) -> bool:
    """Make the HTTP calls ``plan`` needs; True when the profile was created.

    Raises the client's errors (the caller classifies them).
    """
    assert plan.new is not None
    assert plan.previous is not None
    if plan.action is Action.EXCLUDE:
        # Only the status: Fyno sends nothing to a profile with status 0.
        client.update_profile(plan.new["distinct_id"], status=0)
        return False
    return _send(client, plan.new, plan.previous, plan.old_id, full=plan.force)


# -- recording ----------------------------------------------------------------------------


def dirty_cleared(seen: datetime | None) -> Any:
    """Clear ``dirty_since`` only if no newer save bumped it while we were syncing."""
    if seen is None:
        return F("dirty_since")
    return Case(
        When(dirty_since=seen, then=Value(None)),
        default=F("dirty_since"),
        output_field=DateTimeField(),
    )


def send_after_commit(signal: Any, **kwargs: Any) -> None:
    transaction.on_commit(lambda: signal.send(sender=FynoProfile, **kwargs))


def _live_row(plan: SyncPlan) -> Any:
    # The row of a user that still exists (a deleted user's row lost its user_id).
    return FynoProfile.objects.filter(pk=plan.row.pk, user_id=plan.user.pk).exclude(
        state=_State.DELETING
    )


def record(plan: SyncPlan, outcome: SyncOutcome, *, error: FynoError | None = None) -> bool:
    """Write ``outcome`` of ``plan`` on the mirror row; False if the user was deleted meanwhile.

    Sent after a deletion, a profile would live on in Fyno: it is queued for
    deletion again (see :func:`delete_again`).
    """
    now = timezone.now()
    rows = _live_row(plan)
    fields: dict[str, Any] = {"updated_at": now, "dirty_since": dirty_cleared(plan.seen_dirty)}
    if plan.workspace is not None and not plan.row.wsid:
        fields.update(plan.workspace.fields())
    if outcome in (SyncOutcome.CREATED, SyncOutcome.UPDATED) and plan.payload is not None:
        assert plan.new is not None
        assert plan.workspace is not None
        fields.update(
            distinct_id=plan.payload.distinct_id,
            payload_hash=plan.digest,
            payload=plan.new,
            channels=plan.new["channels"],
            state=_State.SYNCED,
            synced_at=now,
            attempts=0,
            last_error="",
            **plan.workspace.fields(),
        )
    elif outcome is SyncOutcome.EXCLUDED:
        fields.update(state=_State.EXCLUDED, attempts=0, last_error="")
        if plan.new is not None:  # status 0 was sent
            fields.update(payload=plan.new, payload_hash="", synced_at=now)
    elif outcome is SyncOutcome.UNCHANGED:
        fields.update(state=_State.SYNCED)
    elif outcome is SyncOutcome.FAILED:
        fields.update(
            state=_State.FAILED,
            attempts=F("attempts") + 1,
            last_error=error_text(error) if error else "",
        )
    elif outcome is SyncOutcome.PAUSED:
        # Still dirty: retried when the pause ends.
        fields.pop("dirty_since")
        fields.update(last_error=error_text(error) if error else "")
    written = rows.update(**fields)
    if written:
        return True
    if plan.sends and outcome in (SyncOutcome.CREATED, SyncOutcome.UPDATED, SyncOutcome.EXCLUDED):
        assert plan.new is not None
        assert plan.workspace is not None
        delete_again(plan.row.pk, plan.new["distinct_id"], plan.workspace)
    return False


def delete_again(row_pk: int, distinct_id: str, workspace: Workspace) -> None:
    """The user was deleted while its sync was in flight: delete the profile once more.

    Its deletion may already have gone out (or been skipped: the row had never
    been synced), and our request created or updated the profile after it.
    """
    logger.info(
        "Fyno profile %s was sent after its user was deleted: deleting it again", distinct_id
    )
    queued = FynoProfile.objects.filter(pk=row_pk, state=_State.DELETING).update(
        distinct_id=distinct_id, **workspace.fields()
    )
    if not queued:
        try:
            with transaction.atomic():
                FynoProfile.objects.create(
                    user=None, distinct_id=distinct_id, state=_State.DELETING, **workspace.fields()
                )
        except IntegrityError:
            # Another row holds the id: a new user took it over, and its sync owns the profile.
            return
    dispatch.defer(DELETE_JOB)


# -- one user ----------------------------------------------------------------------------


def row_for(user: Any) -> FynoProfile:
    row: FynoProfile | None = FynoProfile.objects.filter(user=user).first()
    if row is None:
        try:
            with transaction.atomic():
                row = FynoProfile.objects.create(user=user, **workspace_fields(user))
        except IntegrityError:  # created by a concurrent sync or save
            row = FynoProfile.objects.get(user=user)
    assert row is not None
    return row


def _claim_distinct_id(plan: SyncPlan) -> None:
    """Make the plan's distinct id ours before sending (may change what to diff from).

    A row of a deleted user may still hold the id (its deletion is queued): the
    profile is this user's now, so the deletion is cancelled and its channels
    become the ones to clean up. A live user's row holding it is an adapter bug.
    """
    assert plan.new is not None
    distinct_id = plan.new["distinct_id"]
    holder = FynoProfile.objects.filter(distinct_id=distinct_id).exclude(pk=plan.row.pk).first()
    if holder is None:
        return
    if holder.user_id is not None:
        raise FynoValidationError(
            "distinct_id", f"{distinct_id!r} is already the profile of another user"
        )
    holder.delete()
    if plan.old_id is None:
        # Update the existing profile in place, deleting its old user's channels.
        plan.old_id, plan.previous = distinct_id, {"channels": holder.channels}


def _move_out(plan: SyncPlan) -> None:
    """The user's workspace changed: delete the profile from the one it was in."""
    old = Workspace.of(plan.row)
    assert plan.row.distinct_id is not None
    with contextlib.suppress(FynoNotFoundError):  # already gone there
        client_for(old).delete_profiles([plan.row.distinct_id])
    logger.info("Fyno profile %s moved from workspace %s", plan.row.distinct_id, old)


def vetoed(plan: SyncPlan) -> bool:
    try:
        pre_profile_sync.send(
            sender=FynoProfile, user=plan.user, profile=plan.row, payload=plan.payload
        )
    except SyncVetoed as veto:
        logger.info("Fyno sync of user %s vetoed: %s", plan.user.pk, veto)
        return True
    return False


def _failed(plan: SyncPlan, error: FynoError) -> SyncOutcome:
    """Record an error that a retry cannot fix: state failed, no retry, a signal."""
    logger.warning("Fyno sync of user %s failed: %s", plan.user.pk, error)
    record(plan, SyncOutcome.FAILED, error=error)
    plan.row.refresh_from_db()
    send_after_commit(profile_sync_failed, user=plan.user, profile=plan.row, error=error)
    return SyncOutcome.FAILED


def run_plan(plan: SyncPlan, *, respect_pause: bool = True) -> SyncOutcome:
    """Carry ``plan`` out: send what it needs (in its workspace) and record the outcome.

    Raises :class:`FynoTransientError` (after counting the attempt on the row)
    so a caller can retry; any other error marks the row ``failed``; a paused
    workspace (429, refused credentials, open circuit) sends nothing and
    leaves the row dirty (:class:`~SyncOutcome.PAUSED`).
    """
    if plan.outcome is SyncOutcome.FAILED:
        assert plan.error is not None
        return _failed(plan, plan.error)
    if plan.outcome is not None:
        record(plan, plan.outcome)
        return plan.outcome
    assert plan.workspace is not None
    if plan.action is Action.SEND and vetoed(plan):
        FynoProfile.objects.filter(pk=plan.row.pk).update(
            dirty_since=dirty_cleared(plan.seen_dirty), updated_at=timezone.now()
        )
        return SyncOutcome.VETOED
    pause = SharedPause(plan.workspace)
    gate = pause.gate()
    if respect_pause and not gate.open:
        record(plan, SyncOutcome.PAUSED, error=FynoError(f"paused: {gate.reason}"))
        return SyncOutcome.PAUSED
    try:
        if plan.action is Action.SEND:
            _claim_distinct_id(plan)
            if (
                plan.row.wsid
                and plan.row.distinct_id
                and not Workspace.of(plan.row).same_workspace(plan.workspace)
            ):
                _move_out(plan)
        created = send_plan(plan, client_for(plan.workspace))
    except FynoAuthError as error:
        pause.auth_failed(error.message or str(error))
        record(plan, SyncOutcome.PAUSED, error=error)
        if not respect_pause:
            raise
        return SyncOutcome.PAUSED
    except FynoRateLimitedError as error:
        pause.rate_limited(error.retry_after or fyno_settings.OUTBOX_BACKOFF_BASE)
        count_attempt(plan, error)
        raise
    except FynoTransientError as error:
        count_attempt(plan, error)
        raise
    except FynoError as error:
        if gate.probe:
            pause.succeeded()  # Fyno answered: the credentials and the service are fine
        return _failed(plan, error)
    if respect_pause or gate.open:
        pause.succeeded()
    else:
        pause.lift()  # an operator sent through a pause, and Fyno accepted
    if plan.action is Action.EXCLUDE:
        outcome = SyncOutcome.EXCLUDED
    else:
        outcome = SyncOutcome.CREATED if created else SyncOutcome.UPDATED
    if record(plan, outcome) and outcome is not SyncOutcome.EXCLUDED:
        plan.row.refresh_from_db()
        send_after_commit(
            profile_synced, user=plan.user, profile=plan.row, payload=plan.payload, created=created
        )
    return outcome


def count_attempt(plan: SyncPlan, error: FynoError) -> None:
    logger.warning("Fyno sync of user %s will be retried: %s", plan.user.pk, error)
    FynoProfile.objects.filter(pk=plan.row.pk).update(
        attempts=F("attempts") + 1, last_error=error_text(error), updated_at=timezone.now()
    )


def sync_profile(user_pk: Any, *, force: bool = False, respect_pause: bool = True) -> SyncOutcome:
    """Bring the user's Fyno profile up to date with the database, sending only changes.

    Returns what happened. Raises :class:`~django_fyno.client.FynoTransientError`
    (after counting the attempt on the row) so that a task can retry; any other
    :class:`~django_fyno.client.FynoError` marks the row ``failed`` instead.
    ``force`` resends the full state even if its hash matches the last one sent.
    ``respect_pause=False`` (commands run by an operator) sends even while the
    workspace is paused, and lifts the pause when Fyno accepts.
    """
    if not fyno_settings.ENABLED:
        return SyncOutcome.SKIPPED
    user = get_user_model()._base_manager.filter(pk=user_pk).first()
    if user is None:
        return SyncOutcome.MISSING
    plan = plan_sync(user, row_for(user), force=force)
    return run_plan(plan, respect_pause=respect_pause)


def sync_users(user_pks: Sequence[Any]) -> dict[Any, SyncOutcome]:
    """Sync each user (the sync job); raise :class:`SyncRetry` for those to retry.

    Users with a transient error (after the client's own retries) are raised
    for the task's backoff. Users of a paused workspace are handed off again
    for when the pause ends, without spending a retry (in ``inline`` mode,
    which has no timer, they stay dirty for the sweeper).
    """
    outcomes: dict[Any, SyncOutcome] = {}
    again: list[Any] = []
    paused: dict[Workspace, list[Any]] = {}
    cause = ""
    for user_pk in user_pks:
        try:
            outcome = sync_profile(user_pk)
        except FynoTransientError as error:
            again.append(user_pk)
            cause = str(error)
            continue
        outcomes[user_pk] = outcome
        if outcome is SyncOutcome.PAUSED:
            row = FynoProfile.objects.filter(user_id=user_pk).first()
            if row is not None and row.wsid:
                paused.setdefault(Workspace.of(row), []).append(user_pk)
    for workspace, pks in paused.items():
        wait = SharedPause(workspace).gate().wait
        dispatch.enqueue(SYNC_JOB, pks, countdown=max(1.0, wait))
    if again:
        raise SyncRetry(again, None, cause)
    return outcomes


# -- deletions --------------------------------------------------------------------------


def _delete_in(workspace: Workspace, rows: Any) -> int:
    """Delete one workspace's queued profiles, DELETE_BATCH_SIZE ids a request."""
    try:
        client = client_for(workspace)
    except FynoConfigurationError as error:
        rows.update(state=_State.FAILED, last_error=error_text(error), updated_at=timezone.now())
        logger.warning("Fyno profiles not deleted: %s", error)
        return 0
    pause = SharedPause(workspace)
    batch_size = fyno_settings.DELETE_BATCH_SIZE
    deleted = 0
    last_pk = 0
    while True:
        batch = list(
            rows.filter(pk__gt=last_pk).order_by("pk").values_list("pk", "distinct_id")[:batch_size]
        )
        if not batch:
            return deleted
        last_pk = batch[-1][0]
        pks = [pk for pk, _ in batch]
        distinct_ids = [str(distinct_id) for _, distinct_id in batch]
        try:
            client.delete_profiles(distinct_ids)
        except FynoNotFoundError:
            pass  # "Cannot delete non existing user": none of them is left to delete
        except FynoAuthError as error:
            pause.auth_failed(error.message or str(error))
            raise SyncRetry([], pause.gate().wait or None, str(error)) from error
        except FynoRateLimitedError as error:
            pause.rate_limited(error.retry_after or fyno_settings.OUTBOX_BACKOFF_BASE)
            raise
        except FynoTransientError:
            raise  # the task retries; rows still pending
        except FynoError as error:
            logger.warning("Fyno refused to delete profiles %s: %s", distinct_ids, error)
            rows.filter(pk__in=pks).update(
                state=_State.FAILED,
                attempts=F("attempts") + 1,
                last_error=error_text(error),
                updated_at=timezone.now(),
            )
            continue
        pause.succeeded()
        rows.filter(pk__in=pks).delete()
        deleted += len(pks)
        send_after_commit(profile_deleted, distinct_ids=distinct_ids)


def delete_pending_profiles() -> int:
    """Delete the profiles of deleted users in Fyno, in each row's own workspace.

    A profile Fyno does not have counts as deleted; a profile never synced is
    just forgotten. Mirror rows are removed once Fyno has confirmed. Returns
    how many profiles were deleted. A transient failure in one workspace does
    not hold up the others; it is raised at the end, for the task to retry.
    """
    if not fyno_settings.ENABLED:
        return 0
    pending = FynoProfile.objects.filter(state=_State.DELETING)
    # Never synced: nothing to delete in Fyno.
    pending.filter(distinct_id__isnull=True).delete()
    deleted = 0
    transient: FynoTransientError | None = None
    workspaces = pending.values_list("wsid", "version", "endpoint").distinct().order_by()
    for wsid, version, endpoint in list(workspaces):
        workspace = Workspace(wsid, version, endpoint)
        if SharedPause(workspace).gate().open is False:
            continue  # retried when the sweeper comes by after the pause
        rows = pending.filter(wsid=wsid, version=version, endpoint=endpoint)
        try:
            deleted += _delete_in(workspace, rows)
        except FynoTransientError as error:
            transient = error
    if transient is not None:
        raise transient
    return deleted


# -- the sweeper ---------------------------------------------------------------------------


def has_pending_deletions() -> bool:
    """Whether rows wait for their profile to be deleted (also queues orphaned rows)."""
    mark_deleting()
    return bool(FynoProfile.objects.filter(state=_State.DELETING).exists())


def stale_user_pks(older_than: float | None = None) -> list[Any]:
    """Pks of users whose row has been dirty for more than ``older_than`` seconds.

    Defaults to ``SWEEP_AFTER``. Rows that failed for good are not dirty, so
    they are not retried until the user changes again (or ``fyno_sync`` runs).
    """
    seconds = fyno_settings.SWEEP_AFTER if older_than is None else older_than
    cutoff = timezone.now() - timedelta(seconds=seconds)
    return list(
        FynoProfile.objects.filter(dirty_since__lt=cutoff, user__isnull=False)
        .exclude(state__in=[_State.DELETING, _State.DELETED])
        .order_by("dirty_since")
        .values_list("user_id", flat=True)
    )


def sweep() -> None:
    """Hand off the syncs left dirty longer than SWEEP_AFTER, and pending deletions.

    Run it periodically (the ``django_fyno.sweep`` task from Celery beat, or
    ``fyno_sync --dirty`` from cron): it covers a broker that was down, or a
    message that was lost, when a transaction committed.
    """
    if not (fyno_settings.ENABLED and fyno_settings.AUTO_SYNC):
        return
    batch_size = fyno_settings.SYNC_BATCH_SIZE
    stale = stale_user_pks()
    for start in range(0, len(stale), batch_size):
        dispatch.enqueue(SYNC_JOB, stale[start : start + batch_size])
    if has_pending_deletions():
        dispatch.enqueue(DELETE_JOB)


dispatch.register(SYNC_JOB, sync_users, batched=True)
dispatch.register(MARK_JOB, _mark_handed_off, batched=True, local=True)
dispatch.register(DELETE_JOB, delete_pending_profiles)
dispatch.register(SWEEP_JOB, sweep)
