"""Hostile delivery-report bodies: a 400 (or an ignored timestamp), never a 500.

Each body is one a database cannot store or read back (NaN, a lone surrogate,
NUL, nesting deep enough to exhaust the stack) or a timestamp at the edge of
the calendar. Run on SQLite and on PostgreSQL (``DATABASE_URL``): they fail
differently (PostgreSQL refuses NUL in text and JSON, and stores BC dates).
Whatever the body, nothing of it is half-stored, and the outbox row and the
reports stay readable and keep taking reports.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from django.db import IntegrityError
from django.test import Client
from django.urls import reverse
from django.utils import timezone as django_timezone

from django_fyno import webhooks
from django_fyno.models import FynoDeliveryReport, FynoOutbox
from tests.conftest import here
from tests.webhook_suite import WebhookSecuritySuite

SECRET = WebhookSecuritySuite.secret
STAMP = "2025-03-01T10:00:00Z"
# How deep the nesting is in the "deep" bodies: just under Python's default
# recursion limit, where json.loads may or may not manage depending on the stack.
DEEP = 990

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _urls(settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.urls"
    settings.FYNO = {**settings.FYNO, "WEBHOOK_SECRET": SECRET}


@pytest.fixture
def post() -> Callable[[bytes], Any]:
    """POST raw bytes; an unexpected error is the 500 Fyno would get, not an exception."""
    client = Client(raise_request_exception=False)
    url = reverse("django_fyno:webhook", kwargs={"secret": SECRET})

    def post(body: bytes) -> Any:
        return client.post(url, data=body, content_type="application/json")

    return post


def outbox_row() -> FynoOutbox:
    row: FynoOutbox = FynoOutbox.objects.create(
        **here(), kind="event", event="welcome", distinct_id="u1", state="sent", request_id="req-1"
    )
    return row


def report_text(row: FynoOutbox, channel: str = "email", **raw: str) -> str:
    """A report as JSON text, with the values of ``raw`` spliced in as JSON text, as given
    (the keys are encoded by ``json.dumps``, which escapes NUL and lone surrogates).

    ``json.dumps`` cannot write most hostile bodies (NaN it writes, a lone
    surrogate it escapes, but not deep nesting past its own limit): the body is
    built as text.
    """
    fields = {
        "request_id": '"req-1"',
        "custom_id": json.dumps(row.custom_id),
        "event": '"welcome"',
        "distinct_id": '"u1"',
        "channel": json.dumps(channel),
        "destination": '"ada@example.com"',
        "msg_id": json.dumps(f"msg-{channel}"),
        "status": '"delivered"',
        "timestamp": json.dumps(STAMP),
        **raw,
    }
    return "{" + ", ".join(f"{json.dumps(key)}: {value}" for key, value in fields.items()) + "}"


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# Field name -> JSON text of its value: each makes the report one to refuse.
REFUSED: dict[str, dict[str, str]] = {
    "NaN": {"custom1": "NaN"},
    "Infinity": {"custom1": "Infinity"},
    "-Infinity": {"custom2": "-Infinity"},
    "a number that overflows to infinity": {"custom1": "1e400"},
    "NaN as the timestamp": {"timestamp": "NaN"},
    "a lone surrogate": {"destination": r'"ada\ud800@example.com"'},
    "a lone low surrogate": {"custom3": r'"\udfff"'},
    "a lone surrogate in a column's field": {"status": r'"deliv\ud800ered"'},
    "a lone surrogate in a key": {"cust\udc00om": '"x"'},
    "NUL in a string": {"destination": r'"ada\u0000@example.com"'},
    "NUL in a column's field": {"msg_id": r'"msg\u0000"'},
    "NUL in a key": {"x\x00y": '"x"'},
    "NUL deep inside": {"custom1": r'{"a": [1, {"b": "\u0000"}]}'},
    "nesting 990 deep": {"custom1": nested(DEEP)},
    "nesting 100000 deep": {"custom1": nested(100_000)},
    "nesting 100 deep": {"custom1": nested(100)},
}


def assert_readable(row: FynoOutbox) -> None:
    """The row and every report are readable, and the row still takes a report."""
    assert FynoOutbox.objects.get(pk=row.pk).pk == row.pk
    for stored in FynoDeliveryReport.objects.all():
        assert isinstance(stored.raw, dict)
    assert list(FynoOutbox.objects.filter(pk=row.pk).values_list("delivered_at", "delivery"))


@pytest.mark.parametrize("fields", REFUSED.values(), ids=REFUSED.keys())
def test_a_body_a_database_cannot_hold_is_400(
    post: Callable[[bytes], Any], fields: dict[str, str]
) -> None:
    row = outbox_row()
    response = post(report_text(row, **fields).encode())
    assert response.status_code == 400, response.content[:300]
    # Where it is (or, when the parser gave up on the nesting, that it nests too deep).
    assert response.content.startswith((b"Bad request: report 0", b"Bad request: body nests"))
    assert FynoDeliveryReport.objects.count() == 0
    row.refresh_from_db()
    assert (row.delivery, row.delivered_at) == ({}, None)
    # The row is untouched and still takes the next, ordinary report.
    assert post(report_text(row).encode()).status_code == 200
    assert_readable(row)
    row.refresh_from_db()
    assert row.delivery == {"email": "delivered"}


@pytest.mark.parametrize("fields", REFUSED.values(), ids=REFUSED.keys())
def test_one_hostile_report_rejects_the_whole_batch(
    post: Callable[[bytes], Any], fields: dict[str, str]
) -> None:
    row = outbox_row()
    body = f"[{report_text(row, 'sms')}, {report_text(row, **fields)}]"
    response = post(body.encode())
    assert response.status_code == 400
    assert response.content.startswith((b"Bad request: report 1", b"Bad request: body nests"))
    assert FynoDeliveryReport.objects.count() == 0
    row.refresh_from_db()
    assert row.delivery == {}


@pytest.mark.parametrize("body", [nested(DEEP), nested(100_000), "{" + '"a":{' * DEEP + "}" * DEEP])
def test_a_deeply_nested_body_is_400(post: Callable[[bytes], Any], body: str) -> None:
    response = post(body.encode())
    assert response.status_code == 400
    assert FynoDeliveryReport.objects.count() == 0


def test_what_the_databases_can_hold_is_stored(post: Callable[[bytes], Any]) -> None:
    # The limit is on depth, not on shape: a few levels of lists pass (the report
    # object is the first level). A surrogate pair is one character, a backslash
    # before "u0000" is not NUL, and 1e308 is a finite number.
    row = outbox_row()
    inner = nested(webhooks.MAX_DEPTH - 1)
    body = report_text(row, custom1=inner, destination=r'"\ud83d\ude00 \\u0000"', custom2="1e308")
    assert post(body.encode()).status_code == 200
    stored = FynoDeliveryReport.objects.get()
    assert stored.raw["custom1"] == json.loads(inner)
    assert stored.raw["destination"] == "\U0001f600 \\u0000"
    # PostgreSQL's jsonb gives the number back as the integer 10**308.
    assert float(stored.raw["custom2"]) == 1e308
    too_deep = nested(webhooks.MAX_DEPTH)
    assert post(report_text(row, "sms", custom1=too_deep).encode()).status_code == 400
    assert FynoDeliveryReport.objects.count() == 1


# --- timestamps -----------------------------------------------------------------

# Timestamps no delivery can have: ignored, as an unreadable one is.
IGNORED_TIMESTAMPS = {
    "year 1, east of UTC (a BC instant)": '"0001-01-01T00:00:00+14:00"',
    "year 9999, west of UTC (past year 9999)": '"9999-12-31T23:59:59-14:00"',
    "year 1": '"0001-01-01T00:00:00Z"',
    "year 9999": '"9999-12-31T23:59:59Z"',
    "naive year 1": '"0001-01-01T00:00:00"',
    "before 2000": '"1999-12-31T23:59:59Z"',
    "one second after the epoch": "1",
    "next century": '"2200-01-01T00:00:00Z"',
    "an epoch too large for a float": "1" + "0" * 400,
    "epoch milliseconds in year 3000": "32503680000000",
}


@pytest.mark.parametrize("timestamp", IGNORED_TIMESTAMPS.values(), ids=IGNORED_TIMESTAMPS.keys())
def test_a_timestamp_outside_the_window_is_ignored(
    post: Callable[[bytes], Any], timestamp: str
) -> None:
    row = outbox_row()
    before = django_timezone.now()
    response = post(report_text(row, timestamp=timestamp).encode())
    after = django_timezone.now()
    assert response.status_code == 200
    row.refresh_from_db()
    # Stored, with delivered_at the time the report arrived, as without a timestamp.
    assert row.delivered_at is not None
    assert before <= row.delivered_at <= after
    stored = FynoDeliveryReport.objects.get()
    assert stored.raw["timestamp"] == json.loads(timestamp)
    # The row stays readable and keeps taking reports.
    assert post(report_text(row, "sms").encode()).status_code == 200
    assert_readable(row)
    row.refresh_from_db()
    assert row.delivery == {"email": "delivered", "sms": "delivered"}


def _window_cases() -> list[tuple[str, datetime | None]]:
    now = django_timezone.now()
    earliest = datetime(2000, 1, 1, tzinfo=timezone.utc)
    return [
        (earliest.isoformat(), earliest),
        ((now + timedelta(hours=23)).isoformat(), (now + timedelta(hours=23))),
        ("1999-12-31T23:59:59Z", None),
        ((now + timedelta(days=2)).isoformat(), None),
        # An offset is converted to UTC.
        ("2025-03-01T12:00:00+02:00", datetime(2025, 3, 1, 10, tzinfo=timezone.utc)),
    ]


def test_the_window_of_timestamps(post: Callable[[bytes], Any]) -> None:
    for timestamp, expected in _window_cases():
        row = outbox_row()
        before = django_timezone.now()
        assert post(report_text(row, timestamp=json.dumps(timestamp)).encode()).status_code == 200
        row.refresh_from_db()
        if expected is None:  # ignored: the time it arrived
            assert row.delivered_at is not None
            assert before <= row.delivered_at <= django_timezone.now(), timestamp
        else:
            assert row.delivered_at == expected, timestamp


# --- custom_id 42 and "42" --------------------------------------------------------


def test_a_quoted_and_a_bare_custom_id_are_the_same_report(post: Callable[[bytes], Any]) -> None:
    row = outbox_row()
    quoted = report_text(row, custom_id=json.dumps(str(row.pk)))
    bare = report_text(row, custom_id=str(row.pk))
    first, second = post(bare.encode()), post(quoted.encode())
    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.json()["created"], second.json()["created"]) == (1, 0)
    assert FynoDeliveryReport.objects.count() == 1
    # And in one batch.
    batch = post(
        f"[{report_text(row, 'sms', custom_id=str(row.pk))}, {report_text(row, 'sms')}]".encode()
    )
    assert batch.json() == {"received": 2, "created": 1}
    assert FynoDeliveryReport.objects.count() == 2


def test_the_fingerprint_does_not_care_whether_custom_id_is_quoted() -> None:
    body = json.loads(report_text(outbox_row()))
    assert webhooks.fingerprint({**body, "custom_id": 42}) == webhooks.fingerprint(
        {**body, "custom_id": "42"}
    )
    # Other values keep their type: the strings "true" and "1" are not true and 1.
    assert webhooks.fingerprint({**body, "custom1": 1}) != webhooks.fingerprint(
        {**body, "custom1": "1"}
    )


# --- an error that is no duplicate ------------------------------------------------


def test_an_integrity_error_that_is_no_duplicate_is_not_taken_for_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Only the unique fingerprint means "stored before": any other refusal (a CHECK
    # constraint) reaches Django's error handling as itself, not as DoesNotExist.
    def refuse(**fields: Any) -> Any:
        raise IntegrityError("CHECK constraint failed")

    monkeypatch.setattr(FynoDeliveryReport.objects, "create", refuse)
    with pytest.raises(IntegrityError, match="CHECK constraint failed"):
        webhooks.receive_reports(report_text(outbox_row()).encode())
