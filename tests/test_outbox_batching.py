"""Batching and concurrency: what one batch costs the database, and requests in flight at once.

A batch of rows costs a fixed number of SQL statements, however many rows
it holds (the claim, and one write of every row's outcome). With
``OUTBOX_CONCURRENCY`` above 1 a drain keeps that many requests in flight,
never two operations of one user at once, claims the next batch while the
last requests are in flight, and hands that batch back when it stops.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection

from django_fyno import outbox
from django_fyno.models import FynoOutbox
from django_fyno.outbox import delivery
from django_fyno.outbox.send import Reply, next_wave
from django_fyno.testing import FynoEmulatorHandle
from tests.conftest import here
from tests.test_outbox_delivery import (
    BASE_FYNO,
    drain_side_by_side,
    make_events,
    requests_of,
    require_shared_database,
    sends_per_row,
    states,
)

State = FynoOutbox.State

# Statements per batch: the claim (one statement on PostgreSQL; on SQLite a
# SELECT, a conditional UPDATE and a SELECT of the rows, in a savepoint inside
# the test's transaction) and one UPDATE writing every row's outcome.
PER_BATCH = {"postgresql": 2, "sqlite": 6}
# Once per drain: the workspaces with due rows, the claim that finds nothing
# more, and when the next row is due.
PER_DRAIN = {"postgresql": 3, "sqlite": 5}


@pytest.fixture(autouse=True)
def outbox_settings(settings: Any) -> Iterator[None]:
    settings.FYNO = {**BASE_FYNO, "OUTBOX_BULK_SIZE": 100}
    cache.clear()  # the shared pause lives there
    yield
    cache.clear()


def configure(settings: Any, **values: Any) -> None:
    settings.FYNO = {**BASE_FYNO, **values}


def statements(batches: int) -> int:
    return PER_DRAIN[connection.vendor] + batches * PER_BATCH[connection.vendor]


def make_adds(users: list[str]) -> list[FynoOutbox]:
    """One ``$add`` of 1 to ``n`` per entry of ``users`` (a user may appear more than once)."""
    return FynoOutbox.objects.bulk_create(
        FynoOutbox(**here(), kind="property", event="$add", distinct_id=user, payload={"n": 1})
        for user in users
    )


def counter(handle: FynoEmulatorHandle, user: str) -> Any:
    profile = handle.emulator.profile("test", user)
    return None if profile is None else profile["properties"].get("n")


# -- what a batch costs ------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("count", "batches"), [(1, 1), (2, 1), (50, 1), (100, 1), (101, 2)])
def test_a_batch_of_events_costs_the_same_statements_whatever_its_size(
    fyno_emulator: FynoEmulatorHandle,
    django_assert_max_num_queries: Any,
    count: int,
    batches: int,
) -> None:
    make_events(count)

    with django_assert_max_num_queries(statements(batches)):
        report = outbox.drain()

    assert report.sent == count
    assert requests_of(fyno_emulator, "send_bulk") + requests_of(fyno_emulator, "send_event") == (
        batches
    )


@pytest.mark.django_db
@pytest.mark.parametrize(("count", "batches"), [(2, 1), (100, 1), (200, 2)])
def test_a_batch_of_property_operations_costs_the_same_statements_whatever_its_size(
    fyno_emulator: FynoEmulatorHandle,
    django_assert_max_num_queries: Any,
    count: int,
    batches: int,
) -> None:
    make_adds([f"user{n}" for n in range(count)])

    with django_assert_max_num_queries(statements(batches)):
        report = outbox.drain()

    assert report.sent == count
    assert requests_of(fyno_emulator, "batch_properties") == batches
    assert counter(fyno_emulator, "user0") == 1


# -- requests in flight at once ------------------------------------------------------------


class InFlight:
    """Wraps the drain's send: counts requests in flight and the users they carry."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, hold: float = 0.05) -> None:
        self.lock = threading.Lock()
        self.now: list[list[FynoOutbox]] = []
        self.most = 0
        self.shared_user = False
        self.threads: set[str] = set()
        real_send = delivery.send

        def send(client: Any, unit: list[FynoOutbox]) -> Reply:
            users = {row.distinct_id for row in unit if row.kind == "property"}
            with self.lock:
                for other in self.now:
                    if users & {row.distinct_id for row in other if row.kind == "property"}:
                        self.shared_user = True
                self.now.append(unit)
                self.most = max(self.most, len(self.now))
                self.threads.add(threading.current_thread().name)
            try:
                time.sleep(hold)  # long enough for the others of its wave to start
                return real_send(client, unit)
            finally:
                with self.lock:
                    self.now.remove(unit)

        monkeypatch.setattr(delivery, "send", send)


@pytest.mark.django_db
def test_single_sends_go_out_concurrently_up_to_outbox_concurrency(
    fyno_emulator: FynoEmulatorHandle, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(settings, OUTBOX_BULK_SIZE=1, OUTBOX_CONCURRENCY=3)
    rows = make_events(10)
    flight = InFlight(monkeypatch)

    report = outbox.drain()

    assert flight.most == 3
    assert report.sent == 10
    assert report.requests == 10
    assert states() == {State.SENT: 10}
    assert sends_per_row(fyno_emulator) == {str(row.pk): 1 for row in rows}
    # Only HTTP leaves the drainer's thread: its database writes stay in it.
    assert threading.current_thread().name not in flight.threads


@pytest.mark.django_db
def test_outbox_concurrency_1_sends_one_request_at_a_time_in_the_drainers_thread(
    fyno_emulator: FynoEmulatorHandle, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(settings, OUTBOX_BULK_SIZE=1)
    make_events(4)
    flight = InFlight(monkeypatch, hold=0.0)

    assert outbox.drain().sent == 4

    assert flight.most == 1
    assert flight.threads == {threading.current_thread().name}


@pytest.mark.django_db
def test_one_users_operations_are_never_in_flight_together(
    fyno_emulator: FynoEmulatorHandle, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Bulk size 1: every operation is its own request; "counter" has five of them.
    configure(settings, OUTBOX_BULK_SIZE=1, OUTBOX_CONCURRENCY=4)
    make_adds(["counter", "a", "counter", "b", "counter", "c", "counter", "counter"])
    flight = InFlight(monkeypatch)

    assert outbox.drain().sent == 8

    assert not flight.shared_user
    assert flight.most > 1  # the others did go out together
    assert counter(fyno_emulator, "counter") == 5
    assert states() == {State.SENT: 8}


def test_a_wave_stops_before_a_second_unit_of_a_user_and_never_exceeds_its_width() -> None:
    def unit(kind: str, *users: str) -> list[FynoOutbox]:
        return [FynoOutbox(kind=kind, event="$add", distinct_id=user) for user in users]

    first, again = unit("property", "a", "b"), unit("property", "c", "a")
    event, other = unit("event", "a"), unit("property", "c")

    assert next_wave([first, again], 4) == [first]
    assert next_wave([first, event, other], 4) == [first, event, other]  # events promise no order
    assert next_wave([event] * 6, 4) == [event] * 4


@pytest.mark.django_db
def test_a_drain_claims_a_batch_per_request_in_flight(
    fyno_emulator: FynoEmulatorHandle, settings: Any
) -> None:
    configure(settings, OUTBOX_BULK_SIZE=5, OUTBOX_CONCURRENCY=3)
    make_events(40)

    report = outbox.drain(max_rows=15)

    assert report.claimed == 15  # one claim of OUTBOX_BULK_SIZE x OUTBOX_CONCURRENCY
    assert requests_of(fyno_emulator, "send_bulk") == 3
    assert states() == {State.SENT: 15, State.PENDING: 25}


@pytest.mark.django_db
def test_the_next_batch_is_claimed_while_requests_are_in_flight(
    fyno_emulator: FynoEmulatorHandle, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(settings, OUTBOX_BULK_SIZE=1, OUTBOX_CONCURRENCY=2)
    make_events(6)
    seen: list[Counter[str]] = []
    real_send = delivery.send

    def send(client: Any, unit: list[FynoOutbox]) -> Reply:
        time.sleep(0.05)  # the drainer's thread claims ahead meanwhile
        return real_send(client, unit)

    real_claim = delivery.claiming.claim

    def claim(*args: Any, **kwargs: Any) -> Any:
        seen.append(states())
        return real_claim(*args, **kwargs)

    monkeypatch.setattr(delivery, "send", send)
    monkeypatch.setattr(delivery.claiming, "claim", claim)

    assert outbox.drain().sent == 6

    # The second claim ran while the first two rows were still "sending".
    assert seen[1][State.SENDING] == 2
    assert states() == {State.SENT: 6}


@pytest.mark.django_db
def test_a_drain_that_stops_hands_back_the_batch_it_claimed_ahead(
    fyno_emulator: FynoEmulatorHandle, settings: Any
) -> None:
    configure(settings, OUTBOX_BULK_SIZE=1, OUTBOX_CONCURRENCY=2)
    make_events(6)
    fyno_emulator.emulator.set_fault("send_event", fail_next=1, fail_next_status=429, retry_after=7)

    report = outbox.drain()

    assert report.sent == 1  # the other request of the first wave
    assert report.retried == 1  # the 429: back to pending, no attempt counted
    assert report.released == 2  # claimed ahead, never sent
    assert not FynoOutbox.objects.filter(state=State.SENDING).exists()
    released = FynoOutbox.objects.filter(state=State.PENDING, attempts=0)
    assert released.count() == 5
    assert requests_of(fyno_emulator, "send_event") == 2


@pytest.mark.django_db
def test_a_refused_request_in_a_wave_fails_only_its_own_row(
    fyno_emulator: FynoEmulatorHandle, settings: Any
) -> None:
    configure(settings, OUTBOX_BULK_SIZE=1, OUTBOX_CONCURRENCY=3)
    make_events(6)
    fyno_emulator.emulator.set_fault("send_event", fail_next=1, fail_next_status=400)

    report = outbox.drain()

    assert report.failed == 1
    assert report.sent == 5
    assert states() == {State.SENT: 5, State.FAILED: 1}


@pytest.mark.django_db(transaction=True)
def test_two_drainers_with_requests_in_flight_send_each_row_exactly_once(
    fyno_live_emulator: FynoEmulatorHandle, settings: Any
) -> None:
    require_shared_database()
    configure(
        settings,
        ENDPOINT=fyno_live_emulator.endpoint,
        OUTBOX_BULK_SIZE=10,
        OUTBOX_CONCURRENCY=4,
    )
    rows = make_events(600)
    fyno_live_emulator.emulator.set_fault("send_bulk", latency=0.005)

    reports = drain_side_by_side(2)

    assert sum(report.sent for report in reports) == 600
    assert all(report.sent for report in reports)  # both took a share
    assert states() == {State.SENT: 600}
    assert sends_per_row(fyno_live_emulator) == {str(row.pk): 1 for row in rows}
