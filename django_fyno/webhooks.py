"""Fyno's delivery-report webhook: authenticate, parse, store each report once, update
the outbox row it names, and send ``delivery_report_received``.

The HTTP side (routing, CSRF, turning rejections into responses) is in
:mod:`django_fyno.views`; everything that decides something is here, so later
webhook views reuse it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from django_fyno.conf import fyno_settings
from django_fyno.exceptions import (
    FynoConfigurationError,
    FynoWebhookBadRequest,
    FynoWebhookForbidden,
    FynoWebhookRejected,
)
from django_fyno.models import FynoDeliveryReport, FynoOutbox
from django_fyno.signals import delivery_report_received

__all__ = [
    "DELIVERED_STATUSES",
    "EARLIEST_TIMESTAMP",
    "FUTURE_TIMESTAMP_SLACK",
    "MAX_DEPTH",
    "SECRET_HEADER",
    "TOKEN_PARAMETER",
    "FynoWebhookBadRequest",
    "FynoWebhookForbidden",
    "FynoWebhookRejected",
    "ParsedReport",
    "ReceivedReport",
    "check_secret",
    "configured_secrets",
    "fingerprint",
    "parse_reports",
    "receive_reports",
    "replay_report",
    "store_reports",
    "verification_token",
]

logger = logging.getLogger(__name__)

# Header carrying the secret, for senders that cannot put it in the URL path.
SECRET_HEADER = "X-Fyno-Webhook-Secret"  # noqa: S105 - a header name
# Query parameter of Fyno's verification GET; the endpoint answers with its value.
TOKEN_PARAMETER = "fyno_token"  # noqa: S105 - a parameter name
# Fyno's tokens are short; a longer one is not Fyno and is not worth echoing.
MAX_TOKEN_LENGTH = 512
# Statuses that mean the message reached the recipient (they set ``delivered_at``).
DELIVERED_STATUSES = frozenset({"delivered", "read", "opened", "clicked"})
# custom_id is the outbox row id as a decimal string; 18 digits stay within a bigint.
_ROW_ID = re.compile(r"[0-9]{1,18}")
# Text fields copied to FynoDeliveryReport columns, with those columns' lengths,
# so an oversized value is a 400 rather than a database error on PostgreSQL.
_FIELDS = {"custom_id": 255, "request_id": 64, "channel": 32, "status": 64, "msg_id": 255}
# How deep a report may nest objects and lists (the report object is level 1).
# Fyno's reports are flat; the limit keeps a body far from the recursion limit of
# every json.loads/json.dumps that will ever read or write the stored row.
MAX_DEPTH = 32
# A report's timestamp outside [EARLIEST_TIMESTAMP, now + FUTURE_TIMESTAMP_SLACK]
# is no delivery time: it is ignored (as an unreadable one is), so the calendar's
# edges (year 1, year 9999, BC once an offset is applied) never reach a column.
EARLIEST_TIMESTAMP = datetime(2000, 1, 1, tzinfo=dt_timezone.utc)
FUTURE_TIMESTAMP_SLACK = timedelta(days=1)
# FynoOutbox.State values, spelled out because the mypy plugin types TextChoices
# members as tuples (a test checks they match).
OUTBOX_SENT = "sent"
# States a delivery report proves wrong: the row was sent. ("failed" is Fyno's
# own refusal and is kept as it is, for staff to look at.)
PROVEN_BY_A_REPORT = frozenset({"pending", "sending", "unknown", "dead"})


# --- authentication and verification ----------------------------------------


def configured_secrets() -> list[str]:
    """The non-empty secrets of ``FYNO["WEBHOOK_SECRET"]`` (a string or a list of them).

    An invalid value (fyno.E008) counts as none: the webhook fails closed.
    """
    try:
        return list(fyno_settings.WEBHOOK_SECRET)
    except FynoConfigurationError:
        return []


def check_secret(given: str | None) -> None:
    """Raise :class:`FynoWebhookForbidden` unless ``given`` is one of the configured secrets."""
    secrets = configured_secrets()
    if not secrets:
        # Fail closed: an unset secret must not leave the webhook open to anyone.
        raise FynoWebhookForbidden("FYNO['WEBHOOK_SECRET'] is not set; request refused")
    if not given:
        raise FynoWebhookForbidden("webhook secret missing")
    given_bytes = given.encode("utf-8")
    matched = False
    for secret in secrets:
        # Constant time, and every secret compared (no early exit), so timing tells
        # an attacker nothing about how much of a secret they guessed.
        matched |= hmac.compare_digest(given_bytes, secret.encode("utf-8"))
    if not matched:
        raise FynoWebhookForbidden("wrong webhook secret")


def verification_token(query: Mapping[str, str]) -> str:
    """The ``fyno_token`` of Fyno's verification GET, which the answer must echo."""
    token = query.get(TOKEN_PARAMETER, "")
    if not token:
        raise FynoWebhookBadRequest(f"{TOKEN_PARAMETER} is missing")
    if len(token) > MAX_TOKEN_LENGTH:
        raise FynoWebhookBadRequest(f"{TOKEN_PARAMETER} is too long")
    return token


# --- parsing -----------------------------------------------------------------


@dataclass(frozen=True)
class ParsedReport:
    """One delivery report, validated, with the columns it will be stored under."""

    raw: dict[str, Any]
    fingerprint: str
    custom_id: str
    outbox_id: int | None
    request_id: str
    channel: str
    status: str
    msg_id: str
    timestamp: datetime | None


def _custom_id_text(value: Any) -> Any:
    """A numeric custom_id as the string it stands for (a sender may not quote it);
    anything else (booleans included) as it is."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def fingerprint(report: Mapping[str, Any]) -> str:
    """sha256 of the report's canonical JSON: key order and spacing do not matter,
    nor whether ``custom_id`` is quoted (``42`` and ``"42"`` are one report)."""
    if "custom_id" in report:
        report = {**report, "custom_id": _custom_id_text(report["custom_id"])}
    canonical = json.dumps(report, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _text(report: Mapping[str, Any], key: str, where: str) -> str:
    value = report.get(key)
    if value is None:
        return ""
    if key == "custom_id":
        value = _custom_id_text(value)
    if not isinstance(value, str):
        raise FynoWebhookBadRequest(f"{where}: {key} must be a string")
    if len(value) > _FIELDS[key]:
        raise FynoWebhookBadRequest(f"{where}: {key} is longer than {_FIELDS[key]} characters")
    return value


def _timestamp(value: Any) -> datetime | None:
    """Fyno's report time (in UTC; local and naive when ``USE_TZ`` is False), if it
    is one we can read (ISO 8601, or epoch s/ms) and a delivery can have (see
    ``EARLIEST_TIMESTAMP``); else None."""
    parsed: datetime | None = None
    if isinstance(value, str):
        try:
            parsed = parse_datetime(value)
        except ValueError:
            return None
        if parsed is not None and timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed, dt_timezone.utc)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        try:
            seconds = value / 1000 if value > 1e11 else value
            parsed = datetime.fromtimestamp(seconds, tz=dt_timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if parsed is None:
        return None
    try:
        # Year 1 east of UTC, or year 9999 west of it, is outside datetime's range in UTC.
        parsed = parsed.astimezone(dt_timezone.utc)
    except (OverflowError, ValueError):
        return None
    if not EARLIEST_TIMESTAMP <= parsed <= datetime.now(dt_timezone.utc) + FUTURE_TIMESTAMP_SLACK:
        return None
    if timezone.is_naive(timezone.now()):
        # USE_TZ = False: the columns hold naive local times (and refuse aware ones).
        return timezone.make_naive(parsed)
    return parsed


def _load(body: bytes) -> Any:
    """The body as JSON. Python's parser also reads ``NaN`` and ``Infinity`` (as
    floats, which :func:`_check_storable` refuses), and gives up on nesting deep
    enough to exhaust the stack."""
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise FynoWebhookBadRequest("body is not valid JSON") from None
    except RecursionError:
        raise FynoWebhookBadRequest(f"body nests deeper than {MAX_DEPTH} levels") from None


def _check_text(text: str, where: str) -> None:
    if "\x00" in text:
        # PostgreSQL refuses NUL in text and in jsonb (keys included).
        raise FynoWebhookBadRequest(f"{where} holds a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate ("\ud800"): valid JSON, but no Unicode text to store.
        raise FynoWebhookBadRequest(f"{where} holds a lone surrogate") from None


def _check_storable(report: dict[str, Any], where: str) -> None:
    """Refuse a report the databases cannot store or read back: nesting deeper than
    ``MAX_DEPTH``, ``NaN`` or an infinite number (``Infinity``, or ``1e400``, which
    overflows to it; JSON has neither), or a key or string with NUL or a lone
    surrogate. Iterative, so the check itself never recurses."""
    stack: list[tuple[Any, int]] = [(report, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise FynoWebhookBadRequest(f"{where} nests deeper than {MAX_DEPTH} levels")
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_text(key, where)
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_text(value, where)
        elif isinstance(value, float) and not math.isfinite(value):
            raise FynoWebhookBadRequest(f"{where} holds {value}, which is not a JSON number")


def parse_reports(body: bytes) -> list[ParsedReport]:
    """Validate a request body: one report object, or a non-empty list of them.

    Checks shape, field types, and that every report can be stored and read
    back on any database; whether each ``custom_id`` names a row is checked by
    :func:`store_reports`, under the rows' locks. Refuses the whole body when
    one report is refused.
    """
    data = _load(body)
    items = [data] if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise FynoWebhookBadRequest("body must be a report object or a non-empty list of them")
    parsed = []
    for index, item in enumerate(items):
        where = f"report {index}"
        if not isinstance(item, dict):
            raise FynoWebhookBadRequest(f"{where} is not an object")
        _check_storable(item, where)
        custom_id = _text(item, "custom_id", where)
        outbox_id = None
        if custom_id:
            if not _ROW_ID.fullmatch(custom_id):
                raise FynoWebhookBadRequest(f"{where}: custom_id matches no outbox row")
            outbox_id = int(custom_id)
        parsed.append(
            ParsedReport(
                raw=item,
                fingerprint=fingerprint(item),
                custom_id=custom_id,
                outbox_id=outbox_id,
                request_id=_text(item, "request_id", where),
                channel=_text(item, "channel", where),
                status=_text(item, "status", where),
                msg_id=_text(item, "msg_id", where),
                timestamp=_timestamp(item.get("timestamp")),
            )
        )
    return parsed


# --- storing -----------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedReport:
    """A report as stored: the row, its outbox row (or None), and whether it was new."""

    report: FynoDeliveryReport
    outbox: FynoOutbox | None
    created: bool


def _store_once(item: ParsedReport, row: FynoOutbox | None) -> tuple[FynoDeliveryReport, bool]:
    try:
        # A savepoint: the unique fingerprint refusing a duplicate (the same
        # report again, maybe in a concurrent request) must not abort the batch.
        with transaction.atomic():
            report = FynoDeliveryReport.objects.create(
                outbox=row,
                custom_id=item.custom_id,
                request_id=item.request_id,
                channel=item.channel,
                status=item.status,
                msg_id=item.msg_id,
                fingerprint=item.fingerprint,
                raw=item.raw,
            )
    except IntegrityError:
        existing = FynoDeliveryReport.objects.filter(fingerprint=item.fingerprint).first()
        if existing is None:
            raise  # not the unique fingerprint: a real error, not a duplicate
        return existing, False
    return report, True


def _apply(row: FynoOutbox, item: ParsedReport) -> set[str]:
    """Record a new report on its outbox row (in memory); the fields it changed."""
    changed: set[str] = set()
    if item.channel and item.status:
        delivery = dict(row.delivery) if isinstance(row.delivery, dict) else {}
        # Last report wins: Fyno does not promise order, and every report is
        # kept in FynoDeliveryReport for the full history.
        delivery[item.channel] = item.status
        row.delivery = delivery
        changed.add("delivery")
    if item.status.lower() in DELIVERED_STATUSES and row.delivered_at is None:
        row.delivered_at = item.timestamp or timezone.now()
        changed.add("delivered_at")
    if row.state in PROVEN_BY_A_REPORT:
        # Fyno only reports on events it accepted: whatever we thought (an
        # ambiguous send, a retry waiting, a send in flight), it went through,
        # and it must not be sent again.
        row.state = OUTBOX_SENT
        row.lease_expires_at = None
        changed.update({"state", "lease_expires_at"})
        if row.sent_at is None:
            row.sent_at = timezone.now()
            changed.add("sent_at")
    return changed


def _send_signals(received: Sequence[ReceivedReport]) -> None:
    for item in received:
        # Robust: the reports are committed; a failing receiver is logged by
        # Django and must not make Fyno deliver them again.
        delivery_report_received.send_robust(
            sender=FynoDeliveryReport,
            report=item.report,
            outbox=item.outbox,
            created=item.created,
            replayed=False,
        )


def store_reports(parsed: Sequence[ParsedReport]) -> list[ReceivedReport]:
    """Store the reports and update their outbox rows, all or nothing.

    Raises :class:`FynoWebhookBadRequest` (and stores nothing) when a
    ``custom_id`` names no outbox row. ``delivery_report_received`` is sent for
    each report once the transaction commits.
    """
    with transaction.atomic():
        ids = sorted({item.outbox_id for item in parsed if item.outbox_id is not None})
        # Locked in id order, so batches sharing rows cannot deadlock, and a
        # concurrent report for another channel of a row waits here instead of
        # overwriting this one's status in ``delivery``.
        rows = {
            row.pk: row
            for row in FynoOutbox.objects.select_for_update().filter(pk__in=ids).order_by("pk")
        }
        for index, item in enumerate(parsed):
            if item.outbox_id is not None and item.outbox_id not in rows:
                raise FynoWebhookBadRequest(f"report {index}: custom_id matches no outbox row")
        received = []
        changed: dict[int, set[str]] = {}
        for item in parsed:
            row = rows[item.outbox_id] if item.outbox_id is not None else None
            report, created = _store_once(item, row)
            if created and row is not None:
                changed.setdefault(row.pk, set()).update(_apply(row, item))
            received.append(ReceivedReport(report=report, outbox=row, created=created))
        for pk, fields in changed.items():
            if fields:
                rows[pk].save(update_fields=sorted(fields))
        transaction.on_commit(lambda: _send_signals(received))
    return received


def replay_report(report: FynoDeliveryReport) -> list[tuple[Any, Exception]]:
    """Send ``delivery_report_received`` again for a stored report (a receiver failed).

    Nothing stored changes: the report was applied to its outbox row when it
    arrived. The signal goes to every receiver, with ``created=False`` (the report
    is not new) and ``replayed=True`` (the webhook sends ``replayed=False``): a receiver
    that should act on a replay acts when ``created or replayed``. Sent now,
    through ``send_robust``; returns the receivers that raised, with their errors
    (Django logs each).
    """
    answers = delivery_report_received.send_robust(
        sender=FynoDeliveryReport,
        report=report,
        outbox=report.outbox,
        created=False,
        replayed=True,
    )
    return [(found, answer) for found, answer in answers if isinstance(answer, Exception)]


def receive_reports(body: bytes) -> list[ReceivedReport]:
    """Parse, validate and store a delivery-report POST body (the view's one call)."""
    return store_reports(parse_reports(body))
