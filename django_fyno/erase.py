"""Right to erasure: one person's data out of Fyno and out of django-fyno's own rows.

:func:`plan_erasure` finds, without writing anything, what belongs to a person (a
user's primary key, or a distinct id): the profile in each workspace it may live
in, the mirror rows, the outbox rows addressed to the person (by distinct id, or to
one of the person's destinations) and their delivery reports. :func:`erase` then:

1. refuses, changing nothing, while the Django user still exists and would be
   synced to Fyno again at its next save (unless ``allow_existing_user``);
2. refuses, changing nothing, while one of the person's messages is being sent
   (``sending``: run it again a minute later); cancels those not yet sent
   (``pending``), so nothing more goes out;
3. deletes the profile in each workspace and waits until Fyno answers "not
   found" for it; if Fyno fails, stops there (nothing is scrubbed yet: run it again);
4. in one transaction, removes the mirror rows and scrubs the outbox rows and
   delivery reports: destinations, event data, callback fields, Fyno's per-channel
   destinations, the report bodies, the distinct id itself, and error texts
   (which may quote them) go; ids, states, event names, timestamps, attempt
   counts, Fyno's request and message ids, channels and statuses stay;
5. writes one line on the ``django_fyno.audit`` logger: who, when, the outcome,
   the workspaces and the row ids, never the person's data (the distinct id
   included: it may be an email address).

Erasing twice is harmless: the second run finds nothing left, and Fyno's "not found"
counts as deleted. The Django user is never deleted or changed here: that is the
project's data (see docs/commands.md, ``fyno_erase``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from django_fyno.adapter import get_adapter
from django_fyno.client.exceptions import FynoError, FynoNotFoundError
from django_fyno.client.validation import CHANNELS
from django_fyno.clients import Workspace, client_for, default_workspace, workspace_for
from django_fyno.models import FynoDeliveryReport, FynoOutbox, FynoProfile
from django_fyno.signals import profile_deleted

__all__ = [
    "AUDIT_LOGGER",
    "CONFIRM_TIMEOUT",
    "ERASED",
    "ErasureError",
    "ErasurePlan",
    "ErasureRefused",
    "ErasureReport",
    "erase",
    "plan_erasure",
]

#: The logger of the audit line (one per erasure, refused and failed ones included).
AUDIT_LOGGER = "django_fyno.audit"
audit = logging.getLogger(AUDIT_LOGGER)

#: What a scrubbed outbox row says in ``last_error`` (the row's error may quote data).
ERASED = "personal data erased (fyno_erase)"
#: Seconds to wait for Fyno to answer "not found" for a deleted profile.
CONFIRM_TIMEOUT = 10.0
CONFIRM_INTERVAL = 0.5
#: What a scrubbed delivery report keeps of Fyno's body.
REPORT_KEYS = frozenset(
    {"request_id", "custom_id", "event", "version", "channel", "status", "msg_id", "timestamp"}
)
#: What a scrubbed outbox row keeps of Fyno's per-channel answer (not the destination).
RESULT_KEYS = frozenset({"msg_id", "status"})
#: Ids listed in an audit line (the rest are counted).
AUDIT_IDS = 100

_Outbox = FynoOutbox.State
Clock = Callable[[], float]
Sleep = Callable[[float], None]


class ErasureError(FynoError):
    """The erasure did not complete; the message says what was done and what to do.

    ``audit`` is what the audit line says of it: no data of the person, no text from Fyno.
    """

    def __init__(self, message: str, *, audit: str = "") -> None:
        super().__init__(message)
        self.audit = audit or message


class ErasureRefused(ErasureError):
    """The erasure was refused before anything changed."""


@dataclass
class ErasurePlan:
    """What belongs to one person, found without writing anything."""

    target: str
    # Every distinct id the person's profile and messages are known by.
    distinct_ids: list[str] = field(default_factory=list)
    # The Django user, when it still exists.
    user_pk: Any = None
    # It exists and the adapter syncs it: its next save creates a new profile.
    synced_again: bool = False
    # The profile to delete in Fyno: (workspace, distinct id).
    fyno: list[tuple[Workspace, str]] = field(default_factory=list)
    # Why no workspace could be found to delete the profile in ("" when one was).
    no_workspace: str = ""
    profile_pks: list[int] = field(default_factory=list)
    outbox_pks: list[int] = field(default_factory=list)
    pending_pks: list[int] = field(default_factory=list)
    sending_pks: list[int] = field(default_factory=list)
    report_pks: list[int] = field(default_factory=list)

    @property
    def workspaces(self) -> list[Workspace]:
        return sorted({workspace for workspace, _ in self.fyno}, key=lambda w: w.key)

    @property
    def holds_local_data(self) -> bool:
        return bool(self.profile_pks or self.outbox_pks or self.report_pks)


@dataclass
class ErasureReport:
    """What :func:`erase` did (also what its audit line says)."""

    plan: ErasurePlan
    operator: str
    reference: str
    at: datetime
    cancelled: list[int] = field(default_factory=list)
    deleted_in: list[Workspace] = field(default_factory=list)
    profiles_removed: list[int] = field(default_factory=list)
    outbox_scrubbed: list[int] = field(default_factory=list)
    reports_scrubbed: list[int] = field(default_factory=list)


# -- finding ---------------------------------------------------------------------------


def _user(target: str) -> Any:
    """The user whose primary key is ``target``, or None (also for a malformed key)."""
    try:
        return get_user_model()._base_manager.filter(pk=target).first()
    except (ValueError, TypeError, ValidationError):
        return None


def _strings(values: Iterable[Any]) -> set[str]:
    return {value for value in values if isinstance(value, str) and value}


def _destinations(profiles: Iterable[FynoProfile], user: Any) -> set[str]:
    found: set[str] = set()
    for profile in profiles:
        payload = profile.payload if isinstance(profile.payload, dict) else {}
        for channels in (profile.channels, payload.get("channels")):
            if isinstance(channels, dict):
                found |= _strings(channels.values())
    if user is not None:
        with contextlib.suppress(FynoError):
            found |= _strings(get_adapter().get_channels(user).values())
    return found


def _to_any_of(destinations: set[str]) -> Q:
    """Rows whose explicit destinations (``to``) include one of ``destinations``."""
    matches = Q(pk__in=[])
    if destinations:
        values = sorted(destinations)
        for channel in sorted(CHANNELS):  # known channel names only: never a lookup name
            matches |= Q(**{f"to__{channel}__in": values})
    return matches


def _reports_of(outbox_pks: list[int], ids: set[str], destinations: set[str]) -> Q:
    matches = Q(outbox_id__in=outbox_pks) | Q(custom_id__in=[str(pk) for pk in outbox_pks])
    if ids:
        matches |= Q(raw__distinct_id__in=sorted(ids))
    if destinations:
        matches |= Q(raw__destination__in=sorted(destinations))
    return matches


def plan_erasure(target: str) -> ErasurePlan:
    """What belongs to ``target``: a user's primary key first, else a distinct id.

    Reads only. A user who no longer exists is found by the distinct id its rows
    carry (with the default adapter, its primary key).
    """
    target = str(target).strip()
    if not target:
        raise ErasureRefused("give a user's primary key or a distinct id")
    plan = ErasurePlan(target=target)
    user = _user(target)
    ids: set[str] = set()
    if user is None:
        ids.add(target)
        holder = FynoProfile.objects.filter(distinct_id=target, user__isnull=False).first()
        if holder is not None:
            user = holder.user
    adapter = get_adapter()
    if user is not None:
        plan.user_pk = user.pk
        plan.synced_again = bool(adapter.should_sync(user))
        # A broken adapter: the ids the rows hold are all there is.
        with contextlib.suppress(FynoError):
            ids.add(adapter.checked_distinct_id(user))
    mine = Q(distinct_id__in=sorted(ids))
    if user is not None:
        mine |= Q(user_id=user.pk)
    profiles = list(FynoProfile.objects.filter(mine).order_by("pk"))
    ids |= _strings(profile.distinct_id for profile in profiles)
    plan.distinct_ids = sorted(ids)
    plan.profile_pks = [profile.pk for profile in profiles]

    addressed = FynoOutbox.objects.filter(distinct_id__in=plan.distinct_ids)
    destinations = _destinations(profiles, user)
    for to in addressed.values_list("to", flat=True):
        if isinstance(to, dict):
            destinations |= _strings(to.values())
    linked = FynoDeliveryReport.objects.filter(outbox__in=addressed).values_list("raw", flat=True)
    destinations |= _strings(raw.get("destination") for raw in linked if isinstance(raw, dict))

    rows = FynoOutbox.objects.filter(
        Q(distinct_id__in=plan.distinct_ids) | _to_any_of(destinations)
    )
    for pk, state in rows.order_by("pk").values_list("pk", "state"):
        plan.outbox_pks.append(pk)
        if state == _Outbox.PENDING:
            plan.pending_pks.append(pk)
        elif state == _Outbox.SENDING:
            plan.sending_pks.append(pk)
    plan.report_pks = list(
        FynoDeliveryReport.objects.filter(_reports_of(plan.outbox_pks, ids, destinations))
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    plan.fyno, plan.no_workspace = _where_in_fyno(plan, profiles, user)
    return plan


def _where_in_fyno(
    plan: ErasurePlan, profiles: list[FynoProfile], user: Any
) -> tuple[list[tuple[Workspace, str]], str]:
    """Each (workspace, distinct id) the profile may exist as in Fyno."""
    found: set[tuple[Workspace, str]] = {
        (Workspace.of(profile), profile.distinct_id)
        for profile in profiles
        if profile.distinct_id and profile.wsid
    }
    spaces = {
        Workspace(*fields)
        for fields in FynoOutbox.objects.filter(distinct_id__in=plan.distinct_ids)
        .exclude(wsid="")
        .values_list("wsid", "version", "endpoint")
        .distinct()
        .order_by()
    }
    problem = ""
    if user is not None:
        try:
            spaces.add(workspace_for(user))
        except FynoError as error:
            problem = str(error)
    if not spaces and not found:
        try:  # nothing local says where: the project's workspace
            spaces.add(default_workspace())
        except FynoError as error:
            problem = str(error)
    found |= {(space, distinct_id) for space in spaces for distinct_id in plan.distinct_ids}
    ordered = sorted(found, key=lambda pair: (pair[0].key, pair[1]))
    return ordered, "" if ordered else (problem or "no workspace is known")


# -- erasing ---------------------------------------------------------------------------


def _hashes(pks: list[int]) -> str:
    """``#1, #2…`` (at most AUDIT_IDS of them)."""
    shown = ", ".join(f"#{pk}" for pk in pks[:AUDIT_IDS])
    return shown + (f" and {len(pks) - AUDIT_IDS} more" if len(pks) > AUDIT_IDS else "")


def _ids(pks: list[int]) -> str:
    """``3 (#1, #2, #3)``: a count, and the ids."""
    return f"{len(pks)}" + (f" ({_hashes(pks)})" if pks else "")


def _audit(report: ErasureReport, outcome: str, *, level: int = logging.INFO) -> None:
    spaces = ", ".join(str(space) for space in report.deleted_in) or "none"
    reference = f", reference {report.reference}" if report.reference else ""
    audit.log(
        level,
        "fyno_erase by %s at %s%s: %s; profile deleted and confirmed gone in: %s; "
        "mirror rows removed: %s; outbox rows scrubbed: %s, of which cancelled unsent: %s; "
        "delivery reports scrubbed: %s",
        report.operator,
        report.at.isoformat(),
        reference,
        outcome,
        spaces,
        _ids(report.profiles_removed),
        _ids(report.outbox_scrubbed),
        _ids(report.cancelled),
        _ids(report.reports_scrubbed),
        extra={
            "fyno_erasure": {
                "operator": report.operator,
                "reference": report.reference,
                "at": report.at.isoformat(),
                "outcome": outcome,
                "workspaces": [space.key for space in report.deleted_in],
                "mirror_rows": report.profiles_removed,
                "outbox_rows": report.outbox_scrubbed,
                "cancelled": report.cancelled,
                "delivery_reports": report.reports_scrubbed,
            }
        },
    )


def _refuse_unless_safe(plan: ErasurePlan, allow_existing_user: bool) -> None:
    if plan.synced_again and not allow_existing_user:
        raise ErasureRefused(
            f"user {plan.user_pk} still exists and would be synced to Fyno again at its next "
            "save: delete the user first (or keep it out of Fyno with the adapter's "
            "should_sync()), or pass allow_existing_user (--allow-existing-user) to erase "
            "anyway; nothing was changed",
            audit="the Django user still exists and would be synced to Fyno again",
        )
    if not plan.fyno:
        raise ErasureRefused(
            f"no Fyno workspace to delete the profile in ({plan.no_workspace}); "
            "nothing was changed",
            audit="no Fyno workspace to delete the profile in",
        )
    if plan.sending_pks:
        being_sent = f"{len(plan.sending_pks)} message(s) being sent ({_hashes(plan.sending_pks)})"
        raise ErasureRefused(
            f"{being_sent} to this person right now: run it again in a minute; nothing was changed",
            audit=being_sent,
        )


def _cancel_pending(plan: ErasurePlan) -> list[int]:
    """Cancel the person's unsent messages (one conditional UPDATE)."""
    pending = FynoOutbox.objects.filter(pk__in=plan.pending_pks, state=_Outbox.PENDING)
    pending.update(
        state=_Outbox.CANCELLED,
        lease_expires_at=None,
        last_error="cancelled: its recipient is being erased (fyno_erase)",
    )
    cancelled = list(
        FynoOutbox.objects.filter(pk__in=plan.pending_pks, state=_Outbox.CANCELLED).values_list(
            "pk", flat=True
        )
    )
    # A drainer that claimed one in between holds it ("sending"): wait for it.
    sending = list(
        FynoOutbox.objects.filter(pk__in=plan.outbox_pks, state=_Outbox.SENDING).values_list(
            "pk", flat=True
        )
    )
    if sending:
        being_sent = f"{len(sending)} message(s) started being sent ({_hashes(sending)})"
        raise ErasureError(
            f"{being_sent} to this person: {len(cancelled)} unsent message(s) were cancelled; "
            "run it again in a minute",
            audit=being_sent,
        )
    return cancelled


def _delete_and_confirm(
    workspace: Workspace,
    distinct_id: str,
    timeout: float,
    clock: Clock,
    sleep: Callable[[float], None],
) -> None:
    """Delete the profile in Fyno, then ask until Fyno says it has none."""
    client = client_for(workspace)
    # "Cannot delete non existing user": already gone.
    with contextlib.suppress(FynoNotFoundError):
        client.delete_profiles([distinct_id])
    deadline = clock() + timeout
    while True:
        try:
            client.get_profile(distinct_id)
        except FynoNotFoundError:
            return
        if clock() >= deadline:
            raise ErasureError(
                f"Fyno still has the profile in workspace {workspace} {timeout:g} s after "
                "deleting it",
                audit="Fyno still had the profile after the wait",
            )
        sleep(CONFIRM_INTERVAL)


def _scrubbed_result(result: Any) -> dict[str, Any]:
    """Fyno's per-channel answer without the destinations: ids and statuses only."""
    if not isinstance(result, dict):
        return {}
    kept: dict[str, Any] = {}
    for key, value in result.items():
        if not (key in CHANNELS or str(key).startswith("$")):
            continue
        if isinstance(value, dict):
            kept[key] = {
                name: item
                for name, item in value.items()
                if name in RESULT_KEYS and isinstance(item, (str, int, float, bool))
            }
        elif value == "ok":
            kept[key] = value
    return kept


def _scrubbed_report(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        return {}
    return {
        key: value
        for key, value in raw.items()
        if key in REPORT_KEYS and isinstance(value, (str, int, float, bool))
    }


def _scrub(plan: ErasurePlan, report: ErasureReport) -> None:
    """Remove the mirror rows and scrub the rows, all or nothing (found afresh)."""
    with transaction.atomic():
        fresh = plan_erasure(plan.target)
        rows: QuerySet[FynoOutbox] = FynoOutbox.objects.select_for_update().filter(
            pk__in=fresh.outbox_pks
        )
        locked = list(rows.order_by("pk"))
        sending = [row.pk for row in locked if row.state == _Outbox.SENDING]
        if sending:
            being_sent = f"{len(sending)} message(s) started being sent ({_hashes(sending)})"
            raise ErasureError(
                f"{being_sent} to this person meanwhile: the profile was deleted in Fyno, "
                "nothing was scrubbed locally; run it again in a minute",
                audit=being_sent,
            )
        # Written since the first step (a user that stays can be notified meanwhile).
        newly_pending = [row.pk for row in locked if row.state == _Outbox.PENDING]
        FynoOutbox.objects.filter(pk__in=newly_pending).update(
            state=_Outbox.CANCELLED, lease_expires_at=None
        )
        report.cancelled += newly_pending
        for row in locked:
            row.result = _scrubbed_result(row.result)
        FynoOutbox.objects.bulk_update(locked, ["result"], batch_size=500)
        FynoOutbox.objects.filter(pk__in=fresh.outbox_pks).update(
            distinct_id="",
            to={},
            payload={},
            callback={},
            dedupe_key=None,
            dedupe_hash=None,
            last_error=ERASED,
        )
        reports = list(
            FynoDeliveryReport.objects.select_for_update()
            .filter(pk__in=fresh.report_pks)
            .order_by("pk")
        )
        for item in reports:
            # The fingerprint stays: the same report posted again is still a duplicate,
            # and is not stored again with the data.
            item.raw = _scrubbed_report(item.raw)
        FynoDeliveryReport.objects.bulk_update(reports, ["raw"], batch_size=500)
        FynoProfile.objects.filter(pk__in=fresh.profile_pks).delete()
        report.profiles_removed = fresh.profile_pks
        report.outbox_scrubbed = fresh.outbox_pks
        report.reports_scrubbed = fresh.report_pks
        distinct_ids = sorted({distinct_id for _, distinct_id in plan.fyno})
        transaction.on_commit(
            lambda: profile_deleted.send(sender=FynoProfile, distinct_ids=distinct_ids)
        )


def erase(
    target: str,
    *,
    operator: str,
    reference: str = "",
    allow_existing_user: bool = False,
    confirm_timeout: float = CONFIRM_TIMEOUT,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> ErasureReport:
    """Erase ``target``'s data from Fyno and from the local rows (see the module's doc).

    ``operator`` (who asked) and ``reference`` (a ticket, say) go into the audit line.
    Raises :class:`ErasureRefused` when nothing was changed, :class:`ErasureError`
    when it stopped part way (its message says what was done); running it again
    finishes the work.
    """
    plan = plan_erasure(target)
    report = ErasureReport(plan=plan, operator=operator, reference=reference, at=timezone.now())
    try:
        _refuse_unless_safe(plan, allow_existing_user)
        report.cancelled = _cancel_pending(plan)
        for workspace, distinct_id in plan.fyno:
            try:
                _delete_and_confirm(workspace, distinct_id, confirm_timeout, clock, sleep)
            except FynoError as error:
                done = (
                    f"; {len(report.cancelled)} unsent message(s) were cancelled"
                    if report.cancelled
                    else ""
                )
                status = getattr(error, "status", None)
                why = getattr(error, "audit", None) or (
                    type(error).__name__ + (f" {status}" if status else "")
                )
                raise ErasureError(
                    "Fyno did not confirm the deletion of the profile in workspace "
                    f"{workspace}: {error}. Nothing was scrubbed locally{done}; run it again",
                    audit=f"Fyno did not confirm the deletion in workspace {workspace} ({why})",
                ) from None
            if workspace not in report.deleted_in:
                report.deleted_in.append(workspace)
        _scrub(plan, report)
    except ErasureRefused as error:
        _audit(report, f"refused: {error.audit}", level=logging.WARNING)
        raise
    except ErasureError as error:
        _audit(report, f"FAILED: {error.audit}", level=logging.ERROR)
        raise
    _audit(report, "erased")
    return report
