"""The backfill: sync many users a chunk at a time, the database work batched per chunk.

The engine of ``manage.py fyno_sync``. Each user is decided by the same
:func:`~django_fyno.sync.plan_sync` a single sync uses and sent with
:func:`~django_fyno.sync.send_plan`, but a chunk's mirror rows are read in
one query and its outcomes written with one or two statements, and the
requests go out from a thread pool: HTTP concurrency, not Python or the
database, sets the pace (benchmarks/backfill.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connections, router, transaction
from django.db.models import F, Field, JSONField, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast
from django.utils import timezone

from django_fyno.adapter import ProfileAdapter, get_adapter
from django_fyno.client import FynoClient
from django_fyno.client.exceptions import (
    FynoAPIError,
    FynoAuthError,
    FynoConfigurationError,
    FynoError,
    FynoRateLimitedError,
    FynoTransientError,
    FynoValidationError,
)
from django_fyno.clients import Workspace, client_for, workspaces_for
from django_fyno.conf import fyno_settings
from django_fyno.exceptions import error_text
from django_fyno.models import FynoProfile
from django_fyno.pause import Gate, SharedPause
from django_fyno.signals import profile_sync_failed, profile_synced
from django_fyno.sync import (
    Action,
    SyncOutcome,
    SyncPlan,
    delete_again,
    plan_sync,
    record,
    row_for,
    run_plan,
    send_after_commit,
    send_plan,
    vetoed,
    workspace_fields,
)

__all__ = ["Backfill", "BackfillChunk", "SyncResult", "expected_outcome", "plan_users"]

logger = logging.getLogger("django_fyno.sync")

_State = FynoProfile.State


# Rows per UPDATE when a chunk's outcomes are written: its parameters stay far
# below every database's limit.
_WRITE_BATCH = 1000


class _NotSent(FynoError):
    """Not sent: the workspace refused the credentials earlier in the same backfill."""


@dataclass(frozen=True)
class _ClearIf:
    """``dirty_since`` is cleared only if it still holds ``seen`` (see :func:`dirty_cleared`)."""

    seen: datetime | None


_INCREMENT = object()  # a counter field is increased by one, in the database


@dataclass
class SyncResult:
    """What became of one user of a :class:`Backfill`.

    ``outcome`` is what Fyno accepted (created, updated, excluded) or what was
    decided without asking it (unchanged, vetoed, missing). ``FAILED`` comes
    with its ``error``: one a retry cannot fix (the row is ``failed``), or a
    transient one, or refused credentials (the row keeps its state, and is
    tried again by the next run, task or sweep).
    """

    plan: SyncPlan
    outcome: SyncOutcome
    error: FynoError | None = None

    @property
    def user(self) -> Any:
        return self.plan.user


def expected_outcome(plan: SyncPlan) -> SyncOutcome:
    """What :func:`run_plan` reports for ``plan`` if Fyno accepts what it sends.

    A dry run counts this. A create may still turn out an update (the profile
    already existed in Fyno), and a ``pre_profile_sync`` receiver may veto.
    """
    if plan.outcome is not None:
        return plan.outcome
    if plan.action is Action.EXCLUDE:
        return SyncOutcome.EXCLUDED
    return SyncOutcome.CREATED if plan.old_id is None else SyncOutcome.UPDATED


def _workspace_fields_of(users: Sequence[Any]) -> list[dict[str, str]]:
    try:
        return [workspace.fields() for workspace in workspaces_for(list(users))]
    except FynoConfigurationError:
        return [workspace_fields(user) for user in users]


def plan_users(
    users: Sequence[Any], *, adapter: ProfileAdapter | None = None, force: bool = False
) -> list[SyncPlan]:
    """:func:`plan_sync` for each of ``users``, their mirror rows read in one query.

    Writes nothing: a user without a row gets an unsaved one (recording its
    workspace), which the backfill INSERTs with the user's outcome once the
    requests are answered (one statement for the chunk, instead of an INSERT
    before and an UPDATE after).
    """
    adapter = adapter or get_adapter()
    rows = {row.user_id: row for row in FynoProfile.objects.filter(user__in=[u.pk for u in users])}
    missing = [user for user in users if user.pk not in rows]
    for user, fields in zip(missing, _workspace_fields_of(missing), strict=True):
        rows[user.pk] = FynoProfile(user_id=user.pk, **fields)
    return [plan_sync(user, rows[user.pk], adapter=adapter, force=force) for user in users]


def _send_one(plan: SyncPlan, client: FynoClient) -> SyncResult:
    """Send ``plan`` (on a worker thread of the backfill: HTTP only, no database)."""
    try:
        created = send_plan(plan, client)
    except FynoError as error:
        return SyncResult(plan, SyncOutcome.FAILED, error)
    except Exception as error:  # a bug: one user's failure must not end the backfill
        logger.exception("Fyno sync of user %s raised", plan.user.pk)
        return SyncResult(plan, SyncOutcome.FAILED, FynoError(f"{type(error).__name__}: {error}"))
    if plan.action is Action.EXCLUDE:
        return SyncResult(plan, SyncOutcome.EXCLUDED)
    return SyncResult(plan, SyncOutcome.CREATED if created else SyncOutcome.UPDATED)


def _fields_for(result: SyncResult, now: datetime) -> dict[str, Any] | None:
    """The row fields :func:`record` (or :func:`run_plan`) writes for ``result``; None: none."""
    plan, outcome, error = result.plan, result.outcome, result.error
    if outcome is SyncOutcome.MISSING or isinstance(error, _NotSent):
        return None
    if outcome is SyncOutcome.VETOED:
        return {"updated_at": now, "dirty_since": _ClearIf(plan.seen_dirty)}
    if outcome is SyncOutcome.FAILED and isinstance(error, FynoTransientError):
        # As count_attempt: still dirty, state unchanged; the next run or the sweeper retries.
        return {"updated_at": now, "attempts": _INCREMENT, "last_error": error_text(error)}
    fields: dict[str, Any] = {"updated_at": now}
    if plan.workspace is not None and not plan.row.wsid:
        fields.update(plan.workspace.fields())
    if outcome is SyncOutcome.FAILED and isinstance(error, FynoAuthError):
        fields["last_error"] = error_text(error)  # as record(PAUSED): still dirty
        return fields
    fields["dirty_since"] = _ClearIf(plan.seen_dirty)
    if outcome in (SyncOutcome.CREATED, SyncOutcome.UPDATED):
        assert plan.new is not None
        assert plan.workspace is not None
        assert plan.payload is not None
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
        if plan.row.state == str(_State.SYNCED) and plan.seen_dirty is None and plan.row.wsid:
            return None  # nothing but updated_at would change: a resync writes nothing
        fields["state"] = _State.SYNCED
    elif outcome is SyncOutcome.FAILED:
        fields.update(
            state=_State.FAILED,
            attempts=_INCREMENT,
            last_error=error_text(error) if error else "",
        )
    return fields


def _set_clauses(batch: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    """``UPDATE … SET`` clauses giving each row of ``batch`` its own values.

    One ``CASE`` per field, rows sharing a value sharing one ``WHEN pk IN
    (…)``; a field no row changes is left out, a value all rows share is set
    plainly. The ``CASE`` is written as SQL, not built from ``Case``/``When``
    objects: for a chunk of 500 users the ORM's expressions cost more CPU
    than the requests themselves.
    """
    grouped: dict[str, dict[Any, list[Any]]] = {}
    per_row: dict[str, list[tuple[Any, Any]]] = {}
    for pk, fields in batch.items():
        for name, value in fields.items():
            if isinstance(value, (dict, list)):
                per_row.setdefault(name, []).append((pk, value))
            else:
                grouped.setdefault(name, {}).setdefault(value, []).append(pk)
    connection = connections[router.db_for_write(FynoProfile)]
    cast = connection.features.requires_casted_case_in_updates
    pk_column = connection.ops.quote_name(FynoProfile._meta.pk.column)
    clauses: dict[str, Any] = {}
    for name in [*grouped, *(name for name in per_row if name not in grouped)]:
        field = FynoProfile._meta.get_field(name)
        assert isinstance(field, Field)
        column = connection.ops.quote_name(field.column or name)
        groups = grouped.get(name, {})
        if name not in per_row and len(groups) == 1:
            (value, pks), *_ = groups.items()
            if len(pks) == len(batch) and not isinstance(value, _ClearIf):
                clauses[name] = F(name) + 1 if value is _INCREMENT else Value(value, field)
                continue
        whens: list[str] = []
        params: list[Any] = []
        for value, pks in groups.items():
            rows = f"{pk_column} IN ({', '.join(['%s'] * len(pks))})"
            if isinstance(value, _ClearIf):
                if value.seen is not None:
                    whens.append(f"WHEN {rows} AND {column} = %s THEN NULL")
                    params += [*pks, field.get_db_prep_save(value.seen, connection)]
            elif value is _INCREMENT:
                whens.append(f"WHEN {rows} THEN {column} + 1")
                params += pks
            else:
                whens.append(f"WHEN {rows} THEN %s")
                params += [*pks, field.get_db_prep_save(value, connection)]
        for pk, value in per_row.get(name, []):
            whens.append(f"WHEN {pk_column} = %s THEN %s")
            params += [pk, field.get_db_prep_save(value, connection)]
        if not whens:
            continue
        # Only quoted column names and placeholders in the SQL: every value is a parameter.
        sql = f"CASE {' '.join(whens)} ELSE {column} END"
        case = RawSQL(sql, params, output_field=field)  # noqa: S611
        clauses[name] = Cast(case, output_field=field) if cast else case
    return clauses


def _write_rows(writes: dict[Any, dict[str, Any]]) -> tuple[set[Any], set[Any]]:
    """Write each row's fields, live rows only: one UPDATE per ``_WRITE_BATCH`` rows.

    Returns the pks of rows not written (their user was deleted meanwhile;
    one SELECT finds them), and of rows whose distinct id another row took
    meanwhile (then each row is written on its own).
    """
    lost: set[Any] = set()
    clashed: set[Any] = set()
    pks = list(writes)
    size = _rows_per_update(max((len(fields) for fields in writes.values()), default=1))
    for start in range(0, len(pks), size):
        batch = {pk: writes[pk] for pk in pks[start : start + size]}
        rows = _live_rows(batch)
        try:
            with transaction.atomic():
                written = rows.update(**_set_clauses(batch))
        except IntegrityError:
            written = 0
            for pk, fields in batch.items():
                try:
                    with transaction.atomic():
                        written += _live_rows({pk: fields}).update(**_set_clauses({pk: fields}))
                except IntegrityError:
                    clashed.add(pk)
                    written += 1  # not lost: the caller fails it
        if written < len(batch):
            lost |= set(batch) - set(rows.values_list("pk", flat=True)) - clashed
    return lost, clashed


def _rows_per_update(fields: int) -> int:
    """Rows per UPDATE: ``_WRITE_BATCH``, fewer where the database caps its parameters.

    Each row needs at most two parameters per field and one for its pk.
    Django assumes 999 for SQLite; the library says how many it really takes.
    """
    connection = connections[router.db_for_write(FynoProfile)]
    limit = connection.features.max_query_params
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        getlimit = getattr(connection.connection, "getlimit", None)  # Python 3.11+
        variables = getattr(sqlite3, "SQLITE_LIMIT_VARIABLE_NUMBER", None)
        if getlimit is not None and variables is not None:
            limit = getlimit(variables)
        elif sqlite3.sqlite_version_info >= (3, 32):
            limit = 32766  # SQLite's compiled-in default since 3.32 (Python 3.10 cannot ask)
    if limit is None:
        return _WRITE_BATCH
    return max(1, min(_WRITE_BATCH, limit // (2 * fields + 1)))


def _live_rows(batch: dict[Any, Any]) -> Any:
    # Rows of users that still exist (a deleted user's row lost its user_id).
    return FynoProfile.objects.filter(pk__in=list(batch), user__isnull=False).exclude(
        state=_State.DELETING
    )


def _apply(row: FynoProfile, fields: dict[str, Any]) -> None:
    """Give the in-memory row the values just written (the signals carry it, not re-read)."""
    for name, value in fields.items():
        if value is _INCREMENT:
            setattr(row, name, getattr(row, name) + 1)
        elif isinstance(value, _ClearIf):
            if value.seen is not None and row.dirty_since == value.seen:
                row.dirty_since = None
        else:
            setattr(row, name, value)


def _insert_all(rows: list[FynoProfile]) -> None:
    """INSERT ``rows`` in one statement and give each its pk, as ``bulk_create()`` does.

    On PostgreSQL the rows travel as one JSON document that ``json_to_recordset``
    reads: ``bulk_create()`` sends an array per column, which psycopg builds and
    quotes in Python, about half the CPU of recording a chunk. Each value is
    what ``bulk_create()`` would send: the field's ``get_db_prep_save()``, and a
    JSON field's own encoder. Elsewhere, ``bulk_create()``.
    """
    alias = router.db_for_write(FynoProfile)
    connection = connections[alias]
    if connection.vendor != "postgresql" or len(rows) < 2:
        FynoProfile.objects.using(alias).bulk_create(rows)
        return
    opts = FynoProfile._meta
    fields = [field for field in opts.concrete_fields if field is not opts.pk]
    stamped = [
        field
        for field in fields
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
    ]
    user_column = next(str(field.column) for field in fields if field.name == "user")
    quote = connection.ops.quote_name
    columns, selected, declared = [], [], []
    for field in fields:
        column = quote(str(field.column))
        columns.append(column)
        if isinstance(field, JSONField):  # sent as its encoder's text, read back as jsonb
            selected.append(f"{column}::jsonb")
            declared.append(f"{column} text")
        else:
            selected.append(column)
            declared.append(f"{column} {field.db_type(connection)}")
    documents = []
    for row in rows:
        for field in stamped:
            field.pre_save(row, add=True)  # auto_now(_add), as bulk_create() does
        document: dict[str, Any] = {}
        for field in fields:
            value = getattr(row, field.attname)
            if value is not None:
                if isinstance(field, JSONField):
                    value = json.dumps(value, cls=field.encoder)
                else:
                    value = field.get_db_prep_save(value, connection)
            document[str(field.column)] = value
        documents.append(document)
    # Names and types from the model's metadata, quoted by the backend; the rows are
    # the one parameter.
    sql = (
        f"INSERT INTO {quote(opts.db_table)} ({', '.join(columns)}) "  # noqa: S608
        f"SELECT {', '.join(selected)} FROM json_to_recordset(%s) AS r({', '.join(declared)}) "
        f"RETURNING {quote(str(opts.pk.column))}, {quote(user_column)}"
    )
    with connection.cursor() as cursor:
        # Dates, UUIDs, decimals: as text, which PostgreSQL reads as it reads a literal.
        cursor.execute(sql, [json.dumps(documents, default=str)])
        pks = {user_pk: pk for pk, user_pk in cursor.fetchall()}
    for row in rows:
        row.pk = pks[row.user_id]
        row._state.adding, row._state.db = False, alias


def _insert_rows(fresh: list[tuple[SyncResult, dict[str, Any]]]) -> dict[int, str]:
    """INSERT the rows of users who had none when planned, with their outcome: one statement.

    Returns, by ``id()`` of the result, what became of those not inserted:
    ``"lost"`` (the user was deleted meanwhile), ``"clashed"`` (another row
    took the distinct id meanwhile). A row a concurrent save or sync created
    meanwhile becomes the result's row, and is updated like the others (its
    ``dirty_since`` is left alone: its own sync is still to come).
    """
    for result, fields in fresh:
        _apply(result.plan.row, fields)
    rows = [result.plan.row for result, _ in fresh]
    try:
        with transaction.atomic():
            _insert_all(rows)
        return {}
    except IntegrityError:
        pass
    fates: dict[int, str] = {}
    user_model = get_user_model()
    for result, _ in fresh:  # one at a time, to tell the rare failures apart
        row = result.plan.row
        row.pk, row._state.adding = None, True  # a failed commit may have left a pk
        try:
            with transaction.atomic():
                row.save(force_insert=True)
            continue
        except IntegrityError:
            row.pk, row._state.adding = None, True
        theirs = FynoProfile.objects.filter(user_id=result.user.pk).first()
        if theirs is not None:
            result.plan.row = theirs
            fates[id(result)] = "theirs"
        elif not user_model._base_manager.filter(pk=result.user.pk).exists():
            fates[id(result)] = "lost"
        else:
            fates[id(result)] = "clashed"
    return fates


def _clashed(result: SyncResult) -> None:
    """Another row took the plan's distinct id meanwhile: the sync failed."""
    plan = result.plan
    assert plan.new is not None
    result.outcome = SyncOutcome.FAILED
    result.error = FynoValidationError(
        "distinct_id", f"{plan.new['distinct_id']!r} is already the profile of another user"
    )
    if plan.row.pk is not None:
        record(plan, SyncOutcome.FAILED, error=result.error)
        return
    failed = FynoProfile(
        user_id=plan.user.pk,
        **(plan.workspace.fields() if plan.workspace else {}),
        state=_State.FAILED,
        attempts=1,
        last_error=error_text(result.error),
    )
    with contextlib.suppress(IntegrityError), transaction.atomic():
        failed.save(force_insert=True)
        plan.row = failed


def _record_results(results: Sequence[SyncResult]) -> None:
    """Write a chunk's outcomes as :func:`record` would, then send the signals
    :func:`run_plan` sends.

    Rows that existed are written with one UPDATE (and one SELECT if some
    were deleted meanwhile); the rows of users who had none, with one INSERT
    (one statement per row only if it fails). ``dirty_since`` is cleared per row only if it
    still holds what was read, so a save made during the backfill keeps its
    pending sync. A profile sent after its user was deleted is queued for
    deletion again, as by :func:`record`.
    """
    now = timezone.now()
    fresh: list[tuple[SyncResult, dict[str, Any]]] = []
    updates: list[tuple[SyncResult, dict[str, Any]]] = []
    for result in results:
        fields = _fields_for(result, now)
        if fields is not None:
            (updates if result.plan.row.pk is not None else fresh).append((result, fields))
    fates = _insert_rows(fresh) if fresh else {}
    updates += [(result, fields) for result, fields in fresh if fates.get(id(result)) == "theirs"]
    writes = {result.plan.row.pk: fields for result, fields in updates}
    lost, clashed = _write_rows(writes)
    for result, _ in updates:
        if result.plan.row.pk in lost:
            fates[id(result)] = "lost"
        elif result.plan.row.pk in clashed:
            fates[id(result)] = "clashed"
        else:
            _apply(result.plan.row, writes[result.plan.row.pk])
    for result in results:
        plan = result.plan
        fate = fates.get(id(result))
        if fate == "clashed":
            _clashed(result)
        elif fate == "lost":
            if plan.sends and result.outcome in _ACCEPTED:
                assert plan.new is not None
                assert plan.workspace is not None
                # No row id for a row never saved: nothing queued to update, a new one is.
                delete_again(plan.row.pk or 0, plan.new["distinct_id"], plan.workspace)
            result.outcome = SyncOutcome.MISSING  # the user is gone
            continue
        error = result.error
        if result.outcome in (SyncOutcome.CREATED, SyncOutcome.UPDATED):
            created = result.outcome is SyncOutcome.CREATED
            send_after_commit(
                profile_synced,
                user=plan.user,
                profile=plan.row,
                payload=plan.payload,
                created=created,
            )
        elif result.outcome is SyncOutcome.FAILED and error is not None:
            if isinstance(error, (FynoTransientError, FynoAuthError, _NotSent)):
                logger.warning(
                    "Fyno sync of user %s not done, still to do: %s", plan.user.pk, error
                )
            else:
                logger.warning("Fyno sync of user %s failed: %s", plan.user.pk, error)
                send_after_commit(
                    profile_sync_failed, user=plan.user, profile=plan.row, error=error
                )


_ACCEPTED = (SyncOutcome.CREATED, SyncOutcome.UPDATED, SyncOutcome.EXCLUDED)


class Backfill:
    """Sync many users a chunk at a time, the database work batched per chunk.

    The engine of the ``fyno_sync`` command. :meth:`start` reads a chunk's
    mirror rows in one query, plans each user (:func:`plan_sync`) and hands
    the requests to ``executor``'s threads, which touch no database; the
    chunk's :meth:`BackfillChunk.finish` waits for them and writes every
    outcome: one UPDATE for the rows that existed, one INSERT for the users
    who had none. Start the next chunk before finishing the previous one, and
    the database work overlaps the requests.

    It is an operator's action: it sends even while the workspace is paused
    (and lifts the pause once Fyno accepts), but once Fyno has refused a
    workspace's credentials (401) it sends nothing more there in this run.
    The rare plans that claim a distinct id another row holds, merge a
    changed distinct id, or move to another workspace go through
    :func:`run_plan`, one by one, when their chunk finishes.
    """

    def __init__(
        self,
        *,
        executor: Executor | None = None,
        pool_size: int | None = None,
        force: bool = False,
        adapter: ProfileAdapter | None = None,
    ) -> None:
        self.executor = executor
        self.pool_size = pool_size
        self.force = force
        self.adapter = adapter or get_adapter()
        #: Workspaces whose credentials Fyno refused in this run, with its answer.
        self.refused: dict[Workspace, FynoAuthError] = {}
        self._clients: dict[Workspace, FynoClient | FynoError] = {}

    def start(self, users: Sequence[Any]) -> BackfillChunk:
        """Plan ``users`` and send what they need (on the executor, if any)."""
        return BackfillChunk(self, users)

    def client(self, workspace: Workspace) -> FynoClient | FynoError:
        """The workspace's client, pooled for the executor's threads (or why there is none)."""
        client = self._clients.get(workspace)
        if client is None:
            try:
                client = client_for(workspace, pool_size=self.pool_size)
            except FynoError as error:  # WorkspaceUnavailable: its users fail
                client = error
            self._clients[workspace] = client
        return client

    def not_sent(self, plan: SyncPlan) -> _NotSent | None:
        """Why ``plan`` is not sent: its workspace refused the credentials in this run."""
        assert plan.workspace is not None
        refusal = self.refused.get(plan.workspace)
        if refusal is None:
            return None
        return _NotSent(
            f"not sent: Fyno refused the credentials of workspace {plan.workspace} earlier "
            f"in this run ({refusal.message or refusal})"
        )

    def settle(self, sent: Sequence[SyncResult], gates: dict[Workspace, Gate]) -> None:
        """Tell each workspace's pause what Fyno answered to a chunk's requests."""
        by_workspace: dict[Workspace, list[SyncResult]] = {}
        for result in sent:
            assert result.plan.workspace is not None
            by_workspace.setdefault(result.plan.workspace, []).append(result)
        for workspace, results in by_workspace.items():
            pause = SharedPause(workspace)
            errors = [result.error for result in results if result.error is not None]
            if len(errors) < len(results):  # Fyno accepted some
                if gates[workspace].open:
                    pause.succeeded()
                else:
                    pause.lift()  # an operator sent through a pause, and Fyno accepted
            elif gates[workspace].probe and any(
                isinstance(error, FynoAPIError)
                and not isinstance(error, (FynoAuthError, FynoTransientError))
                for error in errors
            ):
                pause.succeeded()  # Fyno answered: the credentials and the service are fine
            limited = [error for error in errors if isinstance(error, FynoRateLimitedError)]
            if limited:
                base = fyno_settings.OUTBOX_BACKOFF_BASE
                pause.rate_limited(max(error.retry_after or base for error in limited))
            refusal = next((e for e in errors if isinstance(e, FynoAuthError)), None)
            if refusal is not None:
                pause.auth_failed(refusal.message or str(refusal))
                self.refused.setdefault(workspace, refusal)

    def run_one(self, plan: SyncPlan) -> SyncResult:
        """Carry out a plan on its own (:func:`run_plan`), as an operator: through a pause."""
        error: FynoError | None = self.not_sent(plan)
        if error is not None:
            return SyncResult(plan, SyncOutcome.FAILED, error)
        if plan.row.pk is None:  # run_plan records on a saved row: make it, plan again
            plan = plan_sync(plan.user, row_for(plan.user), adapter=self.adapter, force=self.force)
        try:
            outcome = run_plan(plan, respect_pause=False)
        except FynoAuthError as refusal:  # the workspace is paused; the row still dirty
            assert plan.workspace is not None
            self.refused.setdefault(plan.workspace, refusal)
            return SyncResult(plan, SyncOutcome.FAILED, refusal)
        except FynoTransientError as transient:  # the attempt is counted on the row
            return SyncResult(plan, SyncOutcome.FAILED, transient)
        if outcome is SyncOutcome.FAILED:
            error = plan.error or FynoError(plan.row.last_error)
        return SyncResult(plan, outcome, error)


class BackfillChunk:
    """One chunk of a :class:`Backfill`: planned and sent when made, recorded by :meth:`finish`."""

    def __init__(self, backfill: Backfill, users: Sequence[Any]) -> None:
        self.backfill = backfill
        self.decided: list[SyncResult] = []  # final without a request
        self.one_by_one: list[SyncPlan] = []  # left to run_plan
        self.sending: list[tuple[SyncPlan, FynoClient, Future[SyncResult] | None]] = []
        self.gates: dict[Workspace, Gate] = {}
        plans = plan_users(users, adapter=backfill.adapter, force=backfill.force)
        alone = _alone(plans)
        for plan in plans:
            if plan.outcome is not None:
                self.decided.append(SyncResult(plan, plan.outcome, plan.error))
            elif id(plan) in alone:
                self.one_by_one.append(plan)
            elif plan.action is Action.SEND and vetoed(plan):
                self.decided.append(SyncResult(plan, SyncOutcome.VETOED))
            else:
                self._send(plan)

    def _send(self, plan: SyncPlan) -> None:
        assert plan.workspace is not None
        error = self.backfill.not_sent(plan)
        client = self.backfill.client(plan.workspace) if error is None else error
        if isinstance(client, FynoError):
            self.decided.append(SyncResult(plan, SyncOutcome.FAILED, client))
            return
        if plan.workspace not in self.gates:
            self.gates[plan.workspace] = SharedPause(plan.workspace).gate()
        executor = self.backfill.executor
        future = executor.submit(_send_one, plan, client) if executor is not None else None
        self.sending.append((plan, client, future))

    def finish(self) -> list[SyncResult]:
        """Wait for the chunk's requests, write its outcomes, run the plans left to run alone."""
        sent = [
            future.result() if future is not None else _send_one(plan, client)
            for plan, client, future in self.sending
        ]
        self.backfill.settle(sent, self.gates)
        results = [*self.decided, *sent]
        _record_results(results)
        # After the chunk's rows are written: a distinct id taken twice is then seen taken.
        results += [self.backfill.run_one(plan) for plan in self.one_by_one]
        return results


def _alone(plans: Sequence[SyncPlan]) -> set[int]:
    """The plans (their ids) that need :func:`run_plan`'s claims, merges or moves.

    A distinct id held by another row (one SELECT), or wanted by two users of
    the chunk, a changed distinct id (a merge), a profile moving to another
    workspace: rare, so they run one by one.
    """
    sends = [plan for plan in plans if plan.outcome is None and plan.action is Action.SEND]
    creates = [plan.new["distinct_id"] for plan in sends if plan.new and plan.old_id is None]
    held: dict[str, Any] = {}
    if creates:
        held = dict(
            FynoProfile.objects.filter(distinct_id__in=creates).values_list("distinct_id", "pk")
        )
    alone: set[int] = set()
    taken: set[str] = set()
    for plan in sends:
        assert plan.new is not None
        distinct_id = plan.new["distinct_id"]
        row = plan.row
        moved = (
            bool(row.wsid)
            and row.distinct_id is not None
            and not Workspace.of(row).same_workspace(plan.workspace)
        )
        if (
            distinct_id in taken
            or moved
            or (plan.old_id is not None and plan.old_id != distinct_id)
            or (plan.old_id is None and held.get(distinct_id, row.pk) != row.pk)
        ):
            alone.add(id(plan))
        taken.add(distinct_id)
    return alone
