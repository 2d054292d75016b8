"""Profile sync: rebuild a user's payload from the database, send Fyno only what changed.

Plain functions, callable with or without Celery: the tasks in
:mod:`django_fyno.tasks`, the receivers' ``on_commit`` mode and the
``fyno_sync`` command all end up here. Nothing here carries a payload between
processes: a sync always rebuilds it from the database as it is *now*, so a
duplicate or late task cannot push stale data.
"""

from __future__ import annotations

import enum
import json
import logging
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Case, DateTimeField, F, Value, When
from django.utils import timezone

from django_fyno.adapter import SYNCED_CHANNELS, ProfilePayload, get_adapter
from django_fyno.client import FynoClient
from django_fyno.client.exceptions import (
    FynoAlreadyExistsError,
    FynoError,
    FynoNotFoundError,
    FynoTransientError,
    FynoValidationError,
)
from django_fyno.clients import get_client
from django_fyno.conf import fyno_settings
from django_fyno.models import FynoProfile
from django_fyno.signals import (
    SyncVetoed,
    pre_profile_sync,
    profile_deleted,
    profile_sync_failed,
    profile_synced,
)

__all__ = [
    "SINGLE_DESTINATION_CHANNELS",
    "SyncOutcome",
    "delete_pending_profiles",
    "has_pending_deletions",
    "mark_deleting",
    "mark_dirty",
    "stale_user_pks",
    "sync_profile",
]

logger = logging.getLogger(__name__)

# Channels with one destination each. push/inapp hold tokens that Fyno's SDKs
# register directly: we never send or delete those.
SINGLE_DESTINATION_CHANNELS = SYNCED_CHANNELS
# Fyno's answer when the channel to delete is already gone: nothing left to do.
_CHANNEL_ALREADY_GONE = "Unable to delete channel since the channel does not exist"
_MAX_ERROR_LENGTH = 2000


class SyncOutcome(str, enum.Enum):
    """What :func:`sync_profile` did."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    # Nothing sent: sync disabled, ``should_sync()`` said no, or a receiver vetoed it.
    SKIPPED = "skipped"
    VETOED = "vetoed"
    # The user no longer exists (its deletion is handled separately).
    MISSING = "missing"


# -- request-path writes (one query each) --------------------------------------------


def mark_dirty(user_pk: Any, using: str = "default") -> None:
    """Flag the user's mirror row as needing a sync: one INSERT … ON CONFLICT UPDATE."""
    now = timezone.now()
    FynoProfile.objects.using(using).bulk_create(
        # state: the default, PENDING, on insert and (through EXCLUDED) on conflict.
        [FynoProfile(user_id=user_pk, dirty_since=now)],
        update_conflicts=True,
        unique_fields=["user"],
        update_fields=["dirty_since", "state", "updated_at"],
    )


def mark_deleting(using: str = "default") -> int:
    """Queue the profiles of deleted users for deletion (one UPDATE).

    When a user is deleted, ``on_delete=SET_NULL`` has already cut the row
    loose, so every row without a user that is not yet queued is one to delete.
    """
    return int(
        FynoProfile.objects.using(using)
        .filter(user__isnull=True)
        .exclude(state__in=[FynoProfile.State.DELETING, FynoProfile.State.DELETED])
        .update(state=FynoProfile.State.DELETING, updated_at=timezone.now())
    )


# -- sync ----------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """``value`` as it comes back from a JSONField (dates as ISO strings…)."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def _only_single_destination(payload: ProfilePayload) -> ProfilePayload:
    dropped = sorted(set(payload.channels) - SINGLE_DESTINATION_CHANNELS)
    if not dropped:
        return payload
    logger.warning(
        "Fyno profile %s: ignoring channels %s (only single-destination channels are synced)",
        payload.distinct_id,
        dropped,
    )
    channels = {k: v for k, v in payload.channels.items() if k in SINGLE_DESTINATION_CHANNELS}
    return replace(payload, channels=channels)


def _dirty_cleared(seen: datetime | None) -> Any:
    """Clear ``dirty_since`` only if no newer save bumped it while we were syncing."""
    if seen is None:
        return F("dirty_since")
    return Case(
        When(dirty_since=seen, then=Value(None)),
        default=F("dirty_since"),
        output_field=DateTimeField(),
    )


def _error_text(error: BaseException) -> str:
    # FynoError messages carry Fyno's answer and the path template, never the key.
    return str(error)[:_MAX_ERROR_LENGTH]


def _diff_update(client: FynoClient, new: dict[str, Any], previous: dict[str, Any]) -> None:
    """Send the parts of ``new`` that differ from ``previous`` (both JSON forms)."""
    distinct_id = new["distinct_id"]
    fields: dict[str, Any] = {}
    for key in ("name", "timezone", "status"):
        value = new[key]
        if value == previous.get(key):
            continue
        if key == "name" and value is None:
            value = ""  # the client drops None; an empty name clears it
        if value is not None:
            fields[key] = value
    if fields:
        # Never `channel` here: PUT with a channel replaces push/inapp tokens too.
        client.update_profile(distinct_id, **fields)

    old_channels: dict[str, Any] = previous.get("channels") or {}
    changed = {k: v for k, v in new["channels"].items() if old_channels.get(k) != v}
    if changed:
        client.update_channels(distinct_id, changed)
    removed = sorted(set(old_channels) - set(new["channels"]))
    if removed:
        try:
            client.delete_channels(distinct_id, channels=removed)
        except FynoNotFoundError as error:
            if error.message != _CHANNEL_ALREADY_GONE:
                raise

    missing = object()
    old_properties: dict[str, Any] = previous.get("properties") or {}
    set_now = {k: v for k, v in new["properties"].items() if old_properties.get(k, missing) != v}
    if set_now:
        client.set_properties(distinct_id, set_now)
    unset = sorted(set(old_properties) - set(new["properties"]))
    if unset:
        client.unset_properties(distinct_id, unset)


def _send(
    client: FynoClient, new: dict[str, Any], previous: dict[str, Any], old_id: str | None
) -> bool:
    """Bring Fyno's profile to ``new``; True when it was created."""
    distinct_id = new["distinct_id"]
    # Whatever else we knew, only the channels we sent may be deleted again.
    channels_only = {"channels": previous.get("channels") or {}}
    if old_id is None:
        try:
            client.create_profile(
                distinct_id,
                name=new["name"],
                status=new["status"],
                timezone=new["timezone"],
                channel=new["channels"] or None,
            )
        except FynoAlreadyExistsError:
            # Someone (an SDK, an earlier attempt) created it: bring it up to date.
            _diff_update(client, new, channels_only)
            return False
        if new["properties"]:
            client.set_properties(distinct_id, new["properties"])
        return True
    if old_id != distinct_id:
        try:
            client.merge_profiles(old_id, distinct_id)
        except FynoNotFoundError:
            return _send(client, new, {}, None)  # the old profile is gone
        # The merge kept the target's values where both had one: send everything.
        _diff_update(client, new, channels_only)
        return False
    try:
        _diff_update(client, new, previous)
    except FynoNotFoundError:
        # Deleted in Fyno behind our back: create it again from scratch.
        return _send(client, new, {}, None)
    return False


def _after_commit(signal: Any, **kwargs: Any) -> None:
    transaction.on_commit(lambda: signal.send(sender=FynoProfile, **kwargs))


def sync_profile(user_pk: Any, *, force: bool = False) -> SyncOutcome:
    """Bring the user's Fyno profile up to date with the database, sending only changes.

    Returns what happened. Raises :class:`~django_fyno.client.FynoTransientError`
    (after counting the attempt on the row) so that a task can retry; any other
    :class:`~django_fyno.client.FynoError` marks the row ``failed`` instead.
    ``force`` sends the payload even if its hash matches the last one sent.
    """
    if not fyno_settings.ENABLED:
        return SyncOutcome.SKIPPED
    user = get_user_model()._base_manager.filter(pk=user_pk).first()
    if user is None:
        return SyncOutcome.MISSING
    row, _ = FynoProfile.objects.get_or_create(user=user)
    seen_dirty = row.dirty_since
    rows = FynoProfile.objects.filter(pk=row.pk)

    adapter = get_adapter()
    if not adapter.should_sync(user):
        if seen_dirty is not None:
            rows.update(dirty_since=_dirty_cleared(seen_dirty), updated_at=timezone.now())
        return SyncOutcome.SKIPPED
    try:
        payload = _only_single_destination(adapter.build_payload(user))
    except FynoError as error:  # e.g. a blank distinct id: retrying cannot help
        return _failed(row, user, error, seen_dirty)
    digest = payload.digest()
    if not force and row.distinct_id == payload.distinct_id and row.payload_hash == digest:
        if seen_dirty is not None or row.state != FynoProfile.State.SYNCED:
            rows.exclude(state=FynoProfile.State.DELETING).update(
                state=FynoProfile.State.SYNCED,
                dirty_since=_dirty_cleared(seen_dirty),
                updated_at=timezone.now(),
            )
        return SyncOutcome.UNCHANGED

    try:
        pre_profile_sync.send(sender=FynoProfile, user=user, profile=row, payload=payload)
    except SyncVetoed as veto:
        logger.info("Fyno sync of user %s vetoed: %s", user_pk, veto)
        rows.update(dirty_since=_dirty_cleared(seen_dirty), updated_at=timezone.now())
        return SyncOutcome.VETOED

    new = _jsonable(asdict(payload))
    previous: dict[str, Any] = row.payload or {}
    old_id = row.distinct_id
    try:
        if old_id != payload.distinct_id:
            old_id, previous = _claim_distinct_id(row, payload.distinct_id, old_id, previous)
        created = _send(get_client(user), new, previous, old_id)
    except FynoTransientError as error:
        logger.warning("Fyno sync of user %s will be retried: %s", user_pk, error)
        rows.update(
            attempts=F("attempts") + 1, last_error=_error_text(error), updated_at=timezone.now()
        )
        raise
    except FynoError as error:
        return _failed(row, user, error, seen_dirty)

    now = timezone.now()
    rows.exclude(state=FynoProfile.State.DELETING).update(
        distinct_id=payload.distinct_id,
        payload_hash=digest,
        payload=new,
        channels=new["channels"],
        state=FynoProfile.State.SYNCED,
        synced_at=now,
        attempts=0,
        last_error="",
        dirty_since=_dirty_cleared(seen_dirty),
        updated_at=now,
    )
    row.refresh_from_db()
    _after_commit(profile_synced, user=user, profile=row, payload=payload, created=created)
    return SyncOutcome.CREATED if created else SyncOutcome.UPDATED


def _failed(
    row: FynoProfile, user: Any, error: FynoError, seen_dirty: datetime | None
) -> SyncOutcome:
    """Record an error that a retry cannot fix: state failed, no retry, a signal."""
    logger.error("Fyno sync of user %s failed: %s", user.pk, error)
    FynoProfile.objects.filter(pk=row.pk).exclude(state=FynoProfile.State.DELETING).update(
        state=FynoProfile.State.FAILED,
        attempts=F("attempts") + 1,
        last_error=_error_text(error),
        dirty_since=_dirty_cleared(seen_dirty),
        updated_at=timezone.now(),
    )
    row.refresh_from_db()
    _after_commit(profile_sync_failed, user=user, profile=row, error=error)
    return SyncOutcome.FAILED


def _claim_distinct_id(
    row: FynoProfile, distinct_id: str, old_id: str | None, previous: dict[str, Any]
) -> tuple[str | None, dict[str, Any]]:
    """Make ``distinct_id`` ours before sending; returns the (old_id, previous) to diff from.

    A row of a deleted user may still hold the id (its deletion is queued): the
    profile is this user's now, so the deletion is cancelled and its channels
    become the ones to clean up. A live user's row holding it is an adapter bug.
    """
    holder = FynoProfile.objects.filter(distinct_id=distinct_id).exclude(pk=row.pk).first()
    if holder is None:
        return old_id, previous
    if holder.user_id is not None:
        raise FynoValidationError(
            "distinct_id", f"{distinct_id!r} is already the profile of another user"
        )
    holder.delete()
    if old_id is None:
        # Update the existing profile in place, deleting its old user's channels.
        return distinct_id, {"channels": holder.channels}
    return old_id, previous


# -- deletions --------------------------------------------------------------------------


def delete_pending_profiles() -> int:
    """Delete the profiles of deleted users in Fyno, DELETE_BATCH_SIZE ids a request.

    A profile Fyno does not have counts as deleted. Mirror rows are removed
    once Fyno has confirmed. Returns how many profiles were deleted.
    """
    if not fyno_settings.ENABLED:
        return 0
    pending = FynoProfile.objects.filter(state=FynoProfile.State.DELETING)
    # Never synced: nothing to delete in Fyno.
    pending.filter(distinct_id__isnull=True).delete()
    batch_size = max(1, int(fyno_settings.DELETE_BATCH_SIZE))
    client = get_client()
    deleted = 0
    last_pk = 0
    while True:
        batch = list(
            pending.filter(pk__gt=last_pk)
            .order_by("pk")
            .values_list("pk", "distinct_id")[:batch_size]
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
        except FynoTransientError:
            raise  # the task retries; rows still pending
        except FynoError as error:
            logger.error("Fyno refused to delete profiles %s: %s", distinct_ids, error)
            pending.filter(pk__in=pks).update(
                state=FynoProfile.State.FAILED,
                attempts=F("attempts") + 1,
                last_error=_error_text(error),
                updated_at=timezone.now(),
            )
            continue
        pending.filter(pk__in=pks).delete()
        deleted += len(pks)
        _after_commit(profile_deleted, distinct_ids=distinct_ids)


def has_pending_deletions() -> bool:
    """Whether rows wait for their profile to be deleted (also queues orphaned rows)."""
    mark_deleting()
    return bool(FynoProfile.objects.filter(state=FynoProfile.State.DELETING).exists())


def stale_user_pks(older_than: float | None = None) -> list[Any]:
    """Pks of users whose row has been dirty for more than ``older_than`` seconds.

    Defaults to ``SWEEP_AFTER``. Rows that failed for good are not dirty, so
    they are not retried until the user changes again (or ``fyno_sync`` runs).
    """
    seconds = fyno_settings.SWEEP_AFTER if older_than is None else older_than
    cutoff = timezone.now() - timedelta(seconds=float(seconds))
    return list(
        FynoProfile.objects.filter(dirty_since__lt=cutoff, user__isnull=False)
        .exclude(state__in=[FynoProfile.State.DELETING, FynoProfile.State.DELETED])
        .order_by("dirty_since")
        .values_list("user_id", flat=True)
    )
