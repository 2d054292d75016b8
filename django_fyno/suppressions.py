"""Suppression lists: Fyno's list per workspace, mirrored in :class:`FynoSuppression`.

Fyno is the source of truth. Every write goes to Fyno first and changes the
mirror only once Fyno accepted it; a refusal or an outage raises a
:class:`~django_fyno.exceptions.FynoError` and leaves the mirror as it was.
Plain functions, shared by the admin and by any code of the project:

- :func:`refresh` replaces a workspace's mirror with Fyno's list;
- :func:`add_suppression` adds an entry, for a user (their distinct id, in their
  workspace) or for a destination (in the project's workspace unless told
  otherwise), in three steps usable alone: :func:`plan_add` (no HTTP),
  :func:`send_add` (HTTP) and :func:`record_add` (the mirror);
- :func:`remove_suppression` deletes an entry in Fyno, then from the mirror;
- :func:`known_workspaces` lists the workspaces a project can have entries in.

Suppressions have no version in Fyno (``/{WSID}/suppressions``): a workspace's
``live`` and ``test`` share one list, so the mirror of a workspace is every row
with its workspace id and endpoint, whatever version the row recorded.

Fyno's add answer carries no record id. After an add, :func:`send_add` reads the
list again to find the new entry and its ``_id``; when that read fails, the row is
stored as it was sent, without ``fyno_id``, and the next :func:`refresh` fills it
in (a removal first looks the id up in Fyno's list).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from django_fyno.adapter import get_adapter
from django_fyno.client import Suppression
from django_fyno.client.exceptions import (
    FynoConfigurationError,
    FynoError,
    FynoNotFoundError,
    FynoValidationError,
)
from django_fyno.client.validation import (
    PREFERENCE_CHANNELS,
    check_json,
    check_preference_channel,
    check_text,
)
from django_fyno.clients import Workspace, client_for, default_workspace, workspace_for
from django_fyno.exceptions import error_text
from django_fyno.models import FynoProfile, FynoSuppression

__all__ = [
    "CHANNELS",
    "AddPlan",
    "RefreshOutcome",
    "RemoveOutcome",
    "add_suppression",
    "known_workspaces",
    "mirror_of",
    "plan_add",
    "record_add",
    "refresh",
    "remove_suppression",
    "send_add",
]

logger = logging.getLogger(__name__)

#: The channels a suppression can name: those the client accepts (Fyno's
#: preference channels: the event channels and web push).
CHANNELS: tuple[str, ...] = tuple(sorted(PREFERENCE_CHANNELS))

# NUL (PostgreSQL refuses it) and surrogates (no UTF-8 form), in what Fyno sends back.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# The keys of a record of Fyno's list, kept when the record as a whole cannot be stored.
_RECORD_KEYS = ("_id", "destination", "distinct_id", "channel", "description", "created_at")
_MIRRORED = (
    "wsid",
    "version",
    "endpoint",
    "fyno_id",
    "channel",
    "destination",
    "distinct_id",
    "reason",
    "fyno_created_at",
    "expires",
    "raw",
    "refreshed_at",
)


def _limit(name: str) -> int | None:
    max_length: int | None = getattr(FynoSuppression._meta.get_field(name), "max_length", None)
    return max_length


def _fit(value: Any, name: str) -> str:
    """A value of Fyno's record as the column ``name`` can hold it ("" for a non-string)."""
    if not isinstance(value, str):
        return ""
    text = _UNSTORABLE.sub("\ufffd", value)
    limit = _limit(name)
    return text if limit is None else text[:limit]


def _raw(record: dict[str, Any]) -> dict[str, Any]:
    """Fyno's record, or its known keys cleaned when the database cannot hold it as is."""
    try:
        check_json(record, "record")
    except FynoValidationError:
        return {
            key: _UNSTORABLE.sub("\ufffd", value)
            for key in _RECORD_KEYS
            if isinstance(value := record.get(key), str)
        }
    return record


def _columns(entry: Suppression) -> dict[str, Any]:
    """The mirror's columns for one record of Fyno's list."""
    fyno_id = entry.id if entry.id and _fit(entry.id, "fyno_id") == entry.id else ""
    return {
        "fyno_id": fyno_id,
        "channel": _fit(entry.channel, "channel"),
        "destination": _fit(entry.destination, "destination"),
        "distinct_id": _fit(entry.distinct_id, "distinct_id"),
        "reason": _fit(entry.description, "reason"),
        "fyno_created_at": _fit(entry.created_at, "fyno_created_at"),
        "expires": _fit(entry.expiry_ts, "expires"),
        "raw": _raw(entry.raw),
    }


def _key(channel: str, distinct_id: str, destination: str) -> tuple[str, str, str]:
    return (channel, distinct_id, destination)


def _row_key(row: FynoSuppression) -> tuple[str, str, str]:
    return _key(row.channel, row.distinct_id, row.destination)


def mirror_of(workspace: Workspace) -> QuerySet[FynoSuppression]:
    """The mirror rows of a workspace's list: its id and endpoint, any version."""
    rows: QuerySet[FynoSuppression] = FynoSuppression.objects.filter(
        wsid=workspace.wsid, endpoint=workspace.endpoint
    )
    return rows


def _same_list(one: Workspace, other: Workspace) -> bool:
    return (one.wsid, one.endpoint) == (other.wsid, other.endpoint)


def known_workspaces() -> list[Workspace]:
    """The workspaces whose lists staff can see: the project's (first), then every
    workspace the mirror or the profile mirrors recorded; one per list (workspace id
    and endpoint). The project's is left out when it cannot be resolved (no WSID, or a
    ``CLIENT_RESOLVER`` that answers nothing without a user)."""
    found: list[Workspace] = []
    try:
        default = default_workspace()
    except FynoConfigurationError as error:
        logger.info("Fyno suppressions: no default workspace (%s)", error)
    else:
        if default.wsid:
            found.append(default)
    for rows in (FynoSuppression.objects.all(), FynoProfile.objects.all()):
        recorded = (
            rows.exclude(wsid="")
            .order_by("wsid", "endpoint", "version")
            .values_list("wsid", "version", "endpoint")
            .distinct()
        )
        found.extend(Workspace(wsid, version, endpoint) for wsid, version, endpoint in recorded)
    unique: list[Workspace] = []
    for workspace in found:
        if not any(_same_list(workspace, seen) for seen in unique):
            unique.append(workspace)
    return unique


# -- refresh ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefreshOutcome:
    """What :func:`refresh` did to a workspace's mirror."""

    workspace: Workspace
    entries: int  # how many entries Fyno's list holds
    added: int  # rows created
    updated: int  # rows kept (who added them and when is kept too)
    removed: int  # rows Fyno no longer lists


def refresh(workspace: Workspace) -> RefreshOutcome:
    """Replace the mirror of ``workspace`` with Fyno's list (``GET /{WSID}/suppressions``).

    Afterwards the workspace's rows are exactly Fyno's entries. A row that was
    already there (same Fyno id, or, for a row added here before its id was known,
    same channel, distinct id and destination) keeps its pk, ``added_by`` and
    ``created_at``. Other workspaces' rows are not touched. Raises
    :class:`FynoError` (nothing changed) when Fyno cannot be asked.
    """
    entries = client_for(workspace).list_suppressions()
    now = timezone.now()
    with transaction.atomic():
        existing = list(mirror_of(workspace).select_for_update().order_by("pk"))
        by_id = {row.fyno_id: row for row in existing if row.fyno_id}
        by_key: dict[tuple[str, str, str], list[FynoSuppression]] = {}
        for row in existing:
            if not row.fyno_id:
                by_key.setdefault(_row_key(row), []).append(row)
        to_update: list[FynoSuppression] = []
        to_create: list[FynoSuppression] = []
        for entry in entries:
            columns = {**_columns(entry), **workspace.fields(), "refreshed_at": now}
            row = by_id.pop(columns["fyno_id"], None) if columns["fyno_id"] else None
            if row is None:
                waiting = by_key.get(
                    _key(columns["channel"], columns["distinct_id"], columns["destination"])
                )
                row = waiting.pop(0) if waiting else None
            if row is None:
                to_create.append(FynoSuppression(**columns))
                continue
            for name, value in columns.items():
                setattr(row, name, value)
            to_update.append(row)
        gone = [*by_id.values(), *(row for rows in by_key.values() for row in rows)]
        FynoSuppression.objects.filter(pk__in=[row.pk for row in gone]).delete()
        FynoSuppression.objects.bulk_update(to_update, _MIRRORED, batch_size=500)
        FynoSuppression.objects.bulk_create(to_create, batch_size=500)
    return RefreshOutcome(
        workspace=workspace,
        entries=len(entries),
        added=len(to_create),
        updated=len(to_update),
        removed=len(gone),
    )


# -- add ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddPlan:
    """One suppression to add, checked, with the workspace it goes to (no HTTP yet).

    Exactly one of ``distinct_id`` (by user) and ``destination`` is non-empty.
    """

    workspace: Workspace
    channel: str
    distinct_id: str = ""
    destination: str = ""
    reason: str = ""

    def matches(self, entry: Suppression) -> bool:
        """Whether an entry of Fyno's list is this one."""
        if entry.channel != self.channel:
            return False
        if self.distinct_id:
            return entry.distinct_id == self.distinct_id
        return entry.destination == self.destination and not entry.distinct_id


def plan_add(
    channel: str,
    *,
    user: Any = None,
    destination: str | None = None,
    reason: str = "",
    workspace: Workspace | None = None,
) -> AddPlan:
    """Check a suppression and decide where it goes, without HTTP.

    Give ``user`` or ``destination``, not both. A user's suppression names their
    distinct id (``get_adapter().checked_distinct_id(user)``) and goes to their
    workspace (``workspace_for(user)``); ``workspace``, if given, must be that one.
    A destination's goes to ``workspace``, or to the project's. Raises
    :class:`FynoValidationError` (``field`` says which input) or
    :class:`FynoConfigurationError` (no workspace can be had).
    """
    checked_channel = check_preference_channel(channel)
    if (user is None) == (not destination):
        raise FynoValidationError("user", "give a user or a destination, not both")
    if reason:
        check_text(reason, "reason")
    if user is not None:
        distinct_id = get_adapter().checked_distinct_id(user)
        theirs = workspace_for(user)
        if workspace is not None and not _same_list(workspace, theirs):
            raise FynoValidationError(
                "workspace",
                f"a user's suppression goes to the user's workspace, {theirs.wsid}",
            )
        return AddPlan(theirs, checked_channel, distinct_id=distinct_id, reason=reason)
    checked = check_text(destination, "destination")
    limit = _limit("destination")
    if limit is not None and len(checked) > limit:
        raise FynoValidationError("destination", f"must be at most {limit} characters long")
    target = workspace if workspace is not None else default_workspace()
    return AddPlan(target, checked_channel, destination=checked, reason=reason)


def send_add(plan: AddPlan) -> Suppression | None:
    """Add the planned suppression in Fyno, then find its record in Fyno's list.

    Raises :class:`FynoError` when Fyno refuses the entry (e.g. ``Invalid destination
    for channel sms``) or cannot be reached: then nothing was added. Returns the
    entry as Fyno lists it, or None when the list could not be read (the entry was
    added all the same; the next :func:`refresh` fills its id in).
    """
    client = client_for(plan.workspace)
    client.add_suppression(
        plan.channel,
        distinct_id=plan.distinct_id or None,
        destination=plan.destination or None,
        description=plan.reason or None,
    )
    try:
        entries = client.list_suppressions()
    except FynoError as error:
        logger.warning(
            "Fyno suppression %s added in %s, but the list could not be read: %s",
            plan.channel,
            plan.workspace.wsid,
            error_text(error),
        )
        return None
    found = [entry for entry in entries if plan.matches(entry)]
    return found[-1] if found else None


def record_add(
    plan: AddPlan,
    entry: Suppression | None,
    *,
    added_by: str = "",
    row: FynoSuppression | None = None,
) -> FynoSuppression:
    """Write an entry Fyno accepted to the mirror, with who added it and when.

    ``entry`` is the record :func:`send_add` found (None: the row is stored as it
    was sent, without a Fyno id). A row already mirroring the same entry is
    updated (Fyno keeps one record per entry too); otherwise ``row`` (a new
    instance when None) is saved. Returns the saved row.
    """
    now = timezone.now()
    columns: dict[str, Any] = {
        "fyno_id": "",
        "channel": plan.channel,
        "distinct_id": plan.distinct_id,
        "destination": plan.destination,
        "reason": plan.reason,
        "fyno_created_at": "",
        "expires": "",
        "raw": {},
        "refreshed_at": None,
    }
    if entry is not None:
        columns.update(_columns(entry), refreshed_at=now)
    with transaction.atomic():
        same = mirror_of(plan.workspace).select_for_update()
        match = Q(channel=plan.channel, distinct_id=plan.distinct_id)
        if not plan.distinct_id:
            match &= Q(destination=plan.destination)
        if columns["fyno_id"]:
            match = Q(fyno_id=columns["fyno_id"]) | (match & Q(fyno_id=""))
        existing = same.filter(match).order_by("pk").first()
        target = row if row is not None else FynoSuppression()
        if existing is not None:
            target.pk = existing.pk
            target._state.adding = False
        for name, value in {**columns, **plan.workspace.fields()}.items():
            setattr(target, name, value)
        target.added_by = added_by[: _limit("added_by") or None]
        target.created_at = now
        target.save()
    return target


def add_suppression(
    channel: str,
    *,
    user: Any = None,
    destination: str | None = None,
    reason: str = "",
    workspace: Workspace | None = None,
    added_by: str = "",
) -> FynoSuppression:
    """Suppress ``channel`` for a user or a destination: in Fyno first, then the mirror.

    :func:`plan_add`, :func:`send_add` and :func:`record_add` in one call; raises
    what they raise, and then nothing was saved.
    """
    plan = plan_add(channel, user=user, destination=destination, reason=reason, workspace=workspace)
    return record_add(plan, send_add(plan), added_by=added_by)


# -- remove -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoveOutcome:
    """What :func:`remove_suppression` did.

    ``removed`` are the mirror rows deleted (their pks kept, for the record): the
    row itself, plus, when Fyno had to be asked by distinct id or destination
    (which deletes every entry with it), the rows of those entries.
    ``already_gone``: Fyno no longer held the entry; only the mirror changed.
    """

    removed: Sequence[FynoSuppression] = field(default_factory=tuple)
    already_gone: bool = False


def _lookup(entries: Iterable[Suppression], row: FynoSuppression) -> Suppression | None:
    """The entry of Fyno's list a row without a Fyno id mirrors, if Fyno lists it."""
    for entry in entries:
        columns = _columns(entry)
        if _key(columns["channel"], columns["distinct_id"], columns["destination"]) == _row_key(
            row
        ):
            return entry
    return None


def remove_suppression(row: FynoSuppression) -> RemoveOutcome:
    """Delete a mirrored entry in Fyno (in the row's workspace), then from the mirror.

    Fyno is asked by record id: the row's ``fyno_id``, or, when the row has none
    yet, the id of its entry in Fyno's list. Only an entry Fyno lists without an
    id is deleted by distinct id or destination, which deletes every entry with
    that id or destination; their rows go too. When Fyno no longer holds the
    entry, only the row goes. Raises :class:`FynoError` (the mirror unchanged)
    when Fyno refuses or cannot be reached.
    """
    workspace = Workspace.of(row)
    client = client_for(workspace)
    fyno_id = row.fyno_id
    doomed = mirror_of(workspace).filter(pk=row.pk)
    already_gone = False
    try:
        if not fyno_id:
            entry = _lookup(client.list_suppressions(), row)
            if entry is None:
                already_gone = True
            elif entry.id:
                fyno_id = entry.id
            elif entry.distinct_id:
                client.delete_suppression(distinct_id=entry.distinct_id)
                doomed = mirror_of(workspace).filter(distinct_id=row.distinct_id)
            else:
                client.delete_suppression(destination=entry.destination or "")
                doomed = mirror_of(workspace).filter(destination=row.destination)
        if fyno_id:
            client.delete_suppression(id=fyno_id)
    except FynoNotFoundError:  # "Unable to delete non existing data!"
        already_gone = True
        doomed = mirror_of(workspace).filter(pk=row.pk)
    with transaction.atomic():
        removed = list(doomed.select_for_update().order_by("pk"))
        FynoSuppression.objects.filter(pk__in=[other.pk for other in removed]).delete()
    removed.sort(key=lambda other: other.pk != row.pk)  # the row itself first
    return RemoveOutcome(removed=tuple(removed), already_gone=already_gone)
