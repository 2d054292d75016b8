"""Delivering outbox rows through the in-process emulator: batching, outcomes, the pause."""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection, connections, transaction
from django.utils import timezone

from django_fyno import dispatch, outbox
from django_fyno.client.exceptions import FynoConnectionError
from django_fyno.clients import default_workspace
from django_fyno.models import FynoOutbox
from django_fyno.pause import Gate, SharedPause
from django_fyno.testing import FynoEmulatorHandle
from tests.conftest import here, require_service

State = FynoOutbox.State
BASE_FYNO: dict[str, Any] = {
    "WSID": "FYTEST",
    "API_KEY": "test-api-key",
    "VERSION": "test",
    "TASK_MODE": "inline",
    # One HTTP attempt per call: the outbox owns retries, and tests never sleep.
    "RETRY": {"MAX_ATTEMPTS": 1},
    "OUTBOX_BACKOFF_MAX": 10.0,
}


class Clock:
    """An injectable clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = timezone.now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_events(count: int, event: str = "order_shipped", **extra: Any) -> list[FynoOutbox]:
    """``count`` pending event rows, each to its own email address."""
    rows = [
        FynoOutbox(
            **here(),
            kind="event",
            event=event,
            distinct_id=f"u{i}",
            to={"email": f"u{i}@example.com"},
            payload={"order": i},
            next_attempt_at=timezone.now() - timedelta(seconds=1),
            **extra,
        )
        for i in range(count)
    ]
    created = FynoOutbox.objects.bulk_create(rows)
    if created and created[0].pk is None:  # a backend that cannot return ids
        return list(FynoOutbox.objects.order_by("id"))
    return created


def sends_per_row(handle: FynoEmulatorHandle) -> Counter[str]:
    """How many times Fyno accepted each row, by the custom_id echoed in callbacks."""
    return Counter(str(entry["custom_id"]) for entry in handle.emulator.events_log)


def requests_of(handle: FynoEmulatorHandle, operation: str) -> int:
    return sum(1 for entry in handle.emulator.request_log if entry.operation == operation)


def states() -> Counter[str]:
    return Counter(FynoOutbox.objects.values_list("state", flat=True))


def require_shared_database() -> None:
    """Drainers in threads need a database every connection sees: PostgreSQL."""
    require_service(
        "PostgreSQL",
        connection.vendor == "postgresql",
        f"drainers in threads need a database shared across connections; {connection.vendor}",
    )


def drain_side_by_side(count: int = 2) -> list[outbox.DrainReport]:
    """``count`` drains started together, each in its own thread; their reports.

    An exception in any drainer fails the caller's test.
    """
    reports: list[outbox.DrainReport] = []
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def drainer() -> None:
        try:
            start.wait()
            reports.append(outbox.drain())
        except BaseException as error:  # surfaced below
            errors.append(error)
        finally:
            connections.close_all()  # this thread's own connection

    threads = [threading.Thread(target=drainer) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(reports) == count
    return reports


@pytest.fixture(autouse=True)
def outbox_settings(settings: Any) -> Iterator[None]:
    settings.FYNO = dict(BASE_FYNO)
    cache.clear()  # the shared pause lives there
    yield
    cache.clear()


def configure(settings: Any, **values: Any) -> None:
    settings.FYNO = {**BASE_FYNO, **values}


# -- batching ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("bulk_size", [100, 40])
def test_250_rows_of_one_event_go_out_in_ceil_n_over_b_bulk_requests(
    fyno_emulator: FynoEmulatorHandle, settings: Any, bulk_size: int
) -> None:
    configure(settings, OUTBOX_BULK_SIZE=bulk_size)
    rows = make_events(250)

    report = outbox.drain()

    assert requests_of(fyno_emulator, "send_bulk") == math.ceil(250 / bulk_size)
    assert requests_of(fyno_emulator, "send_event") == 0
    assert report.sent == report.claimed == 250
    assert report.requests == math.ceil(250 / bulk_size)
    assert states() == {State.SENT: 250}
    # Each row: the bulk request's id, and its own channel result (found by seq).
    logged = {entry["custom_id"]: entry for entry in fyno_emulator.emulator.events_log}
    for row in FynoOutbox.objects.all():
        entry = logged[str(row.pk)]
        assert row.request_id == entry["request_id"]
        assert row.result["email"]["msg_id"] == entry["response"]["email"]["msg_id"]
        assert row.result["email"]["destination"] == f"{row.distinct_id}@example.com"
        assert row.sent_at is not None
        assert row.attempts == 1
        assert row.lease_expires_at is None
    assert len({row.request_id for row in FynoOutbox.objects.all()}) == math.ceil(250 / bulk_size)
    assert sends_per_row(fyno_emulator) == {str(row.pk): 1 for row in rows}


@pytest.mark.django_db
def test_one_row_uses_send_event_with_the_row_id_as_custom_id(
    fyno_emulator: FynoEmulatorHandle,
) -> None:
    row = FynoOutbox.objects.create(
        **here(),
        kind="event",
        event="welcome",
        to={"email": "ada@example.com"},
        payload={"name": "Ada"},
        callback={"custom1": "campaign-7", "custom_id": "ignored"},
    )

    outbox.drain()

    assert requests_of(fyno_emulator, "send_event") == 1
    (entry,) = fyno_emulator.emulator.events_log
    assert entry["callback"] == {"custom1": "campaign-7", "custom_id": str(row.pk)}
    assert entry["data"] == {"name": "Ada"}
    row.refresh_from_db()
    assert row.state == State.SENT
    assert row.request_id == entry["request_id"]
    assert row.result["email"]["msg_id"] == entry["response"]["email"]["msg_id"]


@pytest.mark.django_db
def test_events_of_different_names_go_in_separate_bulks(fyno_emulator: FynoEmulatorHandle) -> None:
    make_events(3, event="a")
    make_events(2, event="b")
    make_events(1, event="c")

    outbox.drain()

    assert requests_of(fyno_emulator, "send_bulk") == 2
    assert requests_of(fyno_emulator, "send_event") == 1
    assert states() == {State.SENT: 6}


@pytest.mark.django_db
def test_rows_not_due_yet_are_left_alone(fyno_emulator: FynoEmulatorHandle) -> None:
    clock = Clock()
    FynoOutbox.objects.create(
        **here(),
        kind="event",
        event="later",
        distinct_id="u1",
        next_attempt_at=clock.now + timedelta(seconds=60),
    )

    report = outbox.drain(clock=clock)

    assert report.claimed == 0
    assert fyno_emulator.emulator.request_log == []
    assert report.retry_in == pytest.approx(60)


@pytest.mark.django_db
def test_a_row_fyno_could_never_accept_fails_without_a_request(
    fyno_emulator: FynoEmulatorHandle,
) -> None:
    row = FynoOutbox.objects.create(**here(), kind="event", event="welcome")  # no recipient at all

    report = outbox.drain()

    row.refresh_from_db()
    assert row.state == State.FAILED
    assert "neither a distinct_id nor destinations" in row.last_error
    assert report.failed == 1
    assert fyno_emulator.emulator.request_log == []


# -- outcomes ---------------------------------------------------------------------------


def drain_until_settled(clock: Clock, *, step: float = 60.0, limit: int = 20) -> int:
    """Drain, moving time on between passes, until nothing is pending; the pass count."""
    for passes in range(1, limit + 1):
        outbox.drain(clock=clock)
        if not FynoOutbox.objects.filter(state__in=[State.PENDING, State.SENDING]).exists():
            return passes
        clock.advance(step)
    raise AssertionError(f"still pending after {limit} passes: {states()}")


@pytest.mark.django_db
def test_five_503s_then_everything_is_delivered_exactly_once(
    fyno_emulator: FynoEmulatorHandle,
) -> None:
    rows = make_events(250)
    fyno_emulator.emulator.set_fault("send_bulk", fail_next=5, fail_next_status=503)
    clock = Clock()

    passes = drain_until_settled(clock)

    assert states() == {State.SENT: 250}
    # The fault answers before the emulator acts: 5 failed requests, 3 good ones.
    assert [e.status for e in fyno_emulator.emulator.request_log] == [503] * 5 + [202] * 3
    assert passes == 6  # one request per failing pass (a failure stops the pass)
    # The 503s were ambiguous, so retried, yet none had an effect: no duplicate.
    assert sends_per_row(fyno_emulator) == {str(row.pk): 1 for row in rows}
    first = FynoOutbox.objects.get(pk=rows[0].pk)
    assert first.attempts == 6
    assert first.last_error == ""


@pytest.mark.django_db
def test_an_effect_whose_reply_is_lost_is_sent_twice_under_retry(
    fyno_emulator: FynoEmulatorHandle,
) -> None:
    rows = make_events(10)
    fyno_emulator.emulator.set_fault("send_bulk", fail_next=1, fail_next_status=503, after=True)
    clock = Clock()

    report = outbox.drain(clock=clock)
    assert report.ambiguous == 10
    assert report.retried == 10
    assert "Outcome unknown (retried)" in FynoOutbox.objects.get(pk=rows[0].pk).last_error
    drain_until_settled(clock)

    assert states() == {State.SENT: 10}
    # At-least-once, honestly: every row of the batch whose reply was lost went twice.
    assert sends_per_row(fyno_emulator) == {str(row.pk): 2 for row in rows}


@pytest.mark.django_db
def test_an_effect_whose_reply_is_lost_is_held_under_hold(
    fyno_emulator: FynoEmulatorHandle, settings: Any
) -> None:
    configure(settings, UNKNOWN_POLICY="hold")
    rows = make_events(10)
    fyno_emulator.emulator.set_fault("send_bulk", fail_next=1, fail_next_status=503, after=True)
    clock = Clock()

    report = outbox.drain(clock=clock)
    clock.advance(3600)
    outbox.drain(clock=clock)

    assert report.held == 10
    assert states() == {State.UNKNOWN: 10}
    assert requests_of(fyno_emulator, "send_bulk") == 1
    # At-most-once: Fyno got each row once, and nothing was sent again.
    assert sends_per_row(fyno_emulator) == {str(row.pk): 1 for row in rows}
    assert "Outcome unknown (held)" in FynoOutbox.objects.get(pk=rows[0].pk).last_error


@pytest.mark.django_db
def test_a_dropped_connection_is_ambiguous(fyno_emulator: FynoEmulatorHandle) -> None:
    make_events(3)
    fyno_emulator.emulator.set_fault("send_bulk", fail_next=1, fail_next_status="drop")

    report = outbox.drain()

    assert report.ambiguous == 3
    assert states() == {State.PENDING: 3}


@pytest.mark.django_db
def test_a_request_that_never_left_is_retried_and_not_ambiguous(
    fyno_emulator: FynoEmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = make_events(3)
    clock = Clock()

    def refused(*args: Any, **kwargs: Any) -> None:
        raise FynoConnectionError("could not connect to Fyno", may_have_reached_fyno=False)

    monkeypatch.setattr("django_fyno.client.FynoClient.send_bulk", refused)
    report = outbox.drain(clock=clock)

    assert report.retried == 3
    assert report.ambiguous == 0
    for row in FynoOutbox.objects.filter(pk__in=[r.pk for r in rows]):
        assert row.state == State.PENDING
        assert row.attempts == 1
        assert clock.now <= row.next_attempt_at <= clock.now + timedelta(seconds=2)
        assert "could not connect" in row.last_error


@pytest.mark.django_db
def test_429_honours_retry_after_and_pauses_every_drainer(
    fyno_emulator: FynoEmulatorHandle,
) -> None:
    make_events(150)  # two bulk requests' worth
    fyno_emulator.emulator.set_fault("send_bulk", fail_next=1, fail_next_status=429, retry_after=7)
    clock = Clock()

    first = outbox.drain(clock=clock)

    assert fyno_emulator.emulator.request_log[-1].status == 429
    assert first.retried == 100
    assert first.released == 0
    assert first.paused is False
    assert first.retry_in is not None
    throttled = FynoOutbox.objects.filter(attempts=0, next_attempt_at__gt=clock.now)
    assert throttled.count() == 100  # a 429 is not counted as an attempt
    for row in throttled:
        assert row.next_attempt_at >= clock.now + timedelta(seconds=7)
    # The shared pause holds a second drainer, though 50 rows are due for it.
    clock.advance(3)
    second = outbox.drain(clock=clock)
    assert second.paused is True
    assert second.claimed == 0
    assert second.retry_in == pytest.approx(4, abs=0.01)
    assert len(fyno_emulator.emulator.request_log) == 1
    # Once Retry-After has passed, everything goes.
    clock.advance(5)
    third = outbox.drain(clock=clock)
    assert third.sent == 150
    assert states() == {State.SENT: 150}


@pytest.mark.django_db
def test_400_for_an_unknown_event_fails_the_rows_without_retry(
    fyno_emulator: FynoEmulatorHandle,
) -> None:
    fyno_emulator.emulator.set_events(["known"])
    make_events(5, event="unknown")
    clock = Clock()

    report = outbox.drain(clock=clock)
    clock.advance(86400)
    outbox.drain(clock=clock)

    assert len(fyno_emulator.emulator.request_log) == 1
    assert report.failed == 5
    assert states() == {State.FAILED: 5}
    message = "The notification event name 'unknown' is invalid or does not exists on test"
    assert set(FynoOutbox.objects.values_list("last_error", flat=True)) == {message}


@pytest.mark.django_db
def test_rows_die_after_max_attempts(fyno_emulator: FynoEmulatorHandle, settings: Any) -> None:
    configure(settings, OUTBOX_MAX_ATTEMPTS=3, OUTBOX_CIRCUIT_THRESHOLD=100)
    make_events(2)
    fyno_emulator.emulator.set_fault("send_bulk", error_rate=1.0, error_status=500)
    clock = Clock()

    drain_until_settled(clock)

    assert states() == {State.DEAD: 2}
    assert requests_of(fyno_emulator, "send_bulk") == 3
    assert set(FynoOutbox.objects.values_list("attempts", flat=True)) == {3}


# -- the circuit breaker ---------------------------------------------------------------


@pytest.mark.django_db
def test_consecutive_failures_open_the_circuit_and_one_probe_closes_it(
    fyno_emulator: FynoEmulatorHandle, settings: Any
) -> None:
    configure(settings, OUTBOX_CIRCUIT_THRESHOLD=2, OUTBOX_CIRCUIT_COOLDOWN=30.0)
    make_events(4)
    fyno_emulator.emulator.set_fault("send_bulk", fail_next=2, fail_next_status=503)
    clock = Clock()

    outbox.drain(clock=clock)
    clock.advance(11)  # past every row's backoff (at most 10 s here)
    outbox.drain(clock=clock)  # the second consecutive failure opens the circuit
    assert requests_of(fyno_emulator, "send_bulk") == 2

    clock.advance(11)  # rows are due again, but the circuit is open
    held = outbox.drain(clock=clock)
    assert held.paused
    assert held.claimed == 0
    assert requests_of(fyno_emulator, "send_bulk") == 2

    clock.advance(30)  # cool-down over: half-open, and only one caller may probe
    pause = SharedPause(default_workspace(), clock)
    assert pause.gate().probe is True
    assert pause.gate().open is False  # everyone else waits for the probe
    cache.delete(pause.probe_key)

    probe = outbox.drain(clock=clock)
    assert probe.sent == 4
    assert states() == {State.SENT: 4}
    assert pause.gate() == Gate(open=True)  # closed again


# -- properties -------------------------------------------------------------------------


@pytest.mark.django_db
def test_property_operations_of_many_users_go_through_the_batch_endpoint(
    fyno_emulator: FynoEmulatorHandle,
) -> None:
    users = [f"p{i}" for i in range(30)]
    operations = [
        ("$add", {"score": 5}),
        ("$add", {"score": 2}),
        ("$append", {"tags": "a"}),
        ("$append", {"tags": "b"}),
        ("$remove", {"tags": "a"}),
    ]
    FynoOutbox.objects.bulk_create(
        FynoOutbox(**here(), kind="property", event=op, distinct_id=user, payload=values)
        for op, values in operations
        for user in users
    )

    outbox.drain()

    # 150 rows, claimed 100 at a time; a batch is cut before a user's second
    # operation: [30 | 30 | 30 | 10] then [20 | 30].
    assert requests_of(fyno_emulator, "batch_properties") == 6
    assert len(fyno_emulator.emulator.request_log) == 6
    assert states() == {State.SENT: 150}
    for entry in fyno_emulator.emulator.request_log:
        batch = entry.body["batch"]
        assert len({item["distinct_id"] for item in batch}) == len(batch)
    for user in users:
        profile = fyno_emulator.emulator.profile("test", user)
        assert profile is not None
        assert profile["properties"] == {"score": 7, "tags": ["b"]}
    row = FynoOutbox.objects.filter(event="$add").first()
    assert row is not None
    assert row.result == {"$add": "ok"}
    assert row.request_id


@pytest.mark.django_db
def test_a_lone_property_operation_uses_its_own_endpoint(
    fyno_emulator: FynoEmulatorHandle,
) -> None:
    FynoOutbox.objects.create(
        **here(),
        kind="property",
        event="$set",
        distinct_id="u1",
        payload={"plan": "pro", "seats": 3},
    )
    outbox.drain()
    FynoOutbox.objects.create(
        **here(), kind="property", event="$unset", distinct_id="u1", payload={"names": ["seats"]}
    )
    outbox.drain()

    assert [e.operation for e in fyno_emulator.emulator.request_log] == [
        "set_properties",
        "unset_properties",
    ]
    profile = fyno_emulator.emulator.profile("test", "u1")
    assert profile is not None
    assert profile["properties"] == {"plan": "pro"}
    assert states() == {State.SENT: 2}


@pytest.mark.django_db
def test_a_refused_batch_item_fails_only_its_row(fyno_emulator: FynoEmulatorHandle) -> None:
    FynoOutbox.objects.bulk_create(
        [
            FynoOutbox(**here(), kind="property", event="$add", distinct_id="u1", payload={"n": 1}),
            FynoOutbox(
                **here(), kind="property", event="$add", distinct_id="u2", payload={"n": "x"}
            ),
            FynoOutbox(
                **here(), kind="property", event="$bogus", distinct_id="u3", payload={"n": 1}
            ),
        ]
    )

    outbox.drain()

    assert dict(FynoOutbox.objects.values_list("distinct_id", "state")) == {
        "u1": State.SENT,
        "u2": State.FAILED,  # refused locally: $add takes numbers
        "u3": State.FAILED,
    }
    assert requests_of(fyno_emulator, "increment_properties") == 1


# -- scheduling -------------------------------------------------------------------------


@pytest.mark.django_db
def test_schedule_delivery_publishes_once_per_transaction(
    celery_tasks: Any,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    configure(settings, TASK_MODE="celery")
    published: list[dict[str, Any]] = []
    monkeypatch.setattr(
        celery_tasks.deliver_outbox_task, "apply_async", lambda **kw: published.append(kw)
    )
    workspace = default_workspace()

    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        for _ in range(50):
            make_events(1)
            outbox.schedule_delivery([workspace])
    assert len(callbacks) == 1
    assert dispatch.flush(5)  # published from the background thread, after the commit
    # Celery's default queue unless CELERY_QUEUE names one.
    assert published == [{"args": (workspace.key,)}]

    def write_then_fail() -> None:
        with transaction.atomic():
            make_events(1)
            outbox.schedule_delivery([workspace])
            raise RuntimeError("rolled back")

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
    ):
        write_then_fail()
    assert callbacks == []
    assert dispatch.flush(5)
    assert len(published) == 1


@pytest.mark.django_db
def test_inline_mode_drains_in_process_and_never_raises(
    fyno_emulator: FynoEmulatorHandle, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        make_events(3)
        outbox.schedule_delivery([default_workspace()])
    assert states() == {State.SENT: 3}

    configure(settings, UNKNOWN_POLICY="bogus")  # drain raises FynoConfigurationError
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        make_events(1)
        outbox.schedule_delivery([default_workspace()])
    assert states() == {State.SENT: 3, State.PENDING: 1}


@pytest.mark.django_db
def test_off_mode_schedules_nothing(settings: Any, django_capture_on_commit_callbacks: Any) -> None:
    configure(settings, TASK_MODE="off")
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        outbox.schedule_delivery([default_workspace()])
    assert callbacks == []


@pytest.mark.django_db
def test_a_paused_deliver_task_schedules_one_wakeup_for_when_the_pause_ends(
    celery_tasks: Any,
    fyno_emulator: FynoEmulatorHandle,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(settings, TASK_MODE="celery")
    make_events(3)
    workspace = default_workspace()
    SharedPause(workspace).rate_limited(20)
    published: list[dict[str, Any]] = []
    monkeypatch.setattr(
        celery_tasks.deliver_outbox_task, "apply_async", lambda **kw: published.append(kw)
    )

    for _ in range(5):  # five tasks find the pause active
        celery_tasks.deliver_outbox_task(workspace.key)

    assert fyno_emulator.emulator.request_log == []
    assert len(published) == 1
    assert published[0]["args"][0] == workspace.key
    assert published[0]["countdown"] == pytest.approx(20, abs=1)
    assert states() == {State.PENDING: 3}


@pytest.mark.django_db
def test_rows_that_fail_for_good_are_logged_at_warning(
    fyno_emulator: FynoEmulatorHandle, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    configure(settings, OUTBOX_MAX_ATTEMPTS=1, OUTBOX_CIRCUIT_THRESHOLD=100)
    fyno_emulator.emulator.set_events(["known"])
    unknown = make_events(2, event="nope")
    caplog.set_level(logging.INFO, logger="django_fyno")
    outbox.drain()
    refused = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(refused) == 1
    text = refused[0].getMessage()
    assert "event nope" in text
    assert all(str(row.pk) in text for row in unknown)
    assert "is invalid or does not exists on test" in text  # Fyno's own message

    caplog.clear()
    dead = make_events(1, event="known")
    fyno_emulator.emulator.set_fault("send_event", fail_next=1, fail_next_status=500)
    outbox.drain()
    assert FynoOutbox.objects.get(pk=dead[0].pk).state == State.DEAD
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("dead after 1 attempts" in w and str(dead[0].pk) in w for w in warnings), warnings
