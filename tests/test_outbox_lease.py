"""The lease: a drainer sends only rows it still holds, and one row is sent a bounded number
of times.

A pass may take longer than ``OUTBOX_LEASE_SECONDS`` (many requests, a slow
Fyno): the drainer renews the lease of its unsent rows before each request,
and never sends a row the sweeper took back. Under ``UNKNOWN_POLICY``
"retry", ``OUTBOX_MAX_SENDS`` bounds how many times one row can be sent.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connections

from django_fyno import outbox
from django_fyno.models import FynoOutbox
from django_fyno.outbox import delivery
from django_fyno.outbox.record import Writer
from django_fyno.outbox.send import Reply
from django_fyno.testing import FynoEmulatorHandle
from tests.conftest import here
from tests.test_outbox_delivery import (
    BASE_FYNO,
    Clock,
    drain_until_settled,
    make_events,
    requests_of,
    require_shared_database,
    sends_per_row,
    states,
)

State = FynoOutbox.State
COUNTER = "counter-user"
SETTLED = (State.SENT, State.FAILED, State.DEAD, State.UNKNOWN)


@pytest.fixture(autouse=True)
def outbox_settings(settings: Any) -> Iterator[None]:
    # TASK_MODE "off": each test drains (and sweeps) itself.
    settings.FYNO = {**BASE_FYNO, "TASK_MODE": "off"}
    cache.clear()  # the shared pause lives there
    yield
    cache.clear()


def configure(settings: Any, **values: Any) -> None:
    settings.FYNO = {**BASE_FYNO, "TASK_MODE": "off", **values}


def make_adds(count: int) -> list[FynoOutbox]:
    """``count`` ``$add`` of 1 to one user's ``n``: one request each (never batched together)."""
    return FynoOutbox.objects.bulk_create(
        FynoOutbox(**here(), kind="property", event="$add", distinct_id=COUNTER, payload={"n": 1})
        for _ in range(count)
    )


def counter(handle: FynoEmulatorHandle) -> Any:
    profile = handle.emulator.profile("test", COUNTER)
    return None if profile is None else profile["properties"].get("n")


def event_sends(handle: FynoEmulatorHandle, rows: list[FynoOutbox]) -> Counter[str]:
    return Counter({key: n for key, n in sends_per_row(handle).items() if key in _pks(rows)})


def _pks(rows: list[FynoOutbox]) -> set[str]:
    return {str(row.pk) for row in rows}


def after_each_request(monkeypatch: pytest.MonkeyPatch, hook: Callable[[], None]) -> None:
    """Run ``hook`` after each request of the drain (as if each request took long).

    Drains the hook starts itself send without it.
    """
    real_send = delivery.send
    busy = threading.local()

    def send(client: Any, unit: list[FynoOutbox]) -> Reply:
        reply = real_send(client, unit)
        if not getattr(busy, "on", False):
            busy.on = True
            try:
                hook()
            finally:
                busy.on = False
        return reply

    monkeypatch.setattr(delivery, "send", send)


# -- a pass longer than its lease -------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("policy", ["retry", "hold"])
def test_a_pass_longer_than_its_lease_keeps_its_rows_and_sends_each_once(
    fyno_emulator: FynoEmulatorHandle,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    policy: str,
) -> None:
    # Eleven requests of 200 s each (on the test's clock) under a 300 s lease:
    # the pass takes 2200 s. A sweeper and a second drainer run after every request.
    configure(settings, UNKNOWN_POLICY=policy)
    events = make_events(10)
    make_adds(10)
    clock = Clock()
    other: list[outbox.DrainReport] = []

    def meanwhile() -> None:
        clock.advance(200)
        outbox.sweep_outbox(clock=clock, schedule=False)
        other.append(outbox.drain(clock=clock))

    after_each_request(monkeypatch, meanwhile)
    first = outbox.drain(clock=clock)

    assert requests_of(fyno_emulator, "send_bulk") == 1
    assert requests_of(fyno_emulator, "increment_properties") == 10
    assert first.sent == 20
    assert first.lost == 0
    assert sum(report.claimed for report in other) == 0  # never anything to take
    assert states() == {State.SENT: 20}
    assert event_sends(fyno_emulator, events) == {str(row.pk): 1 for row in events}
    assert counter(fyno_emulator) == 10
    assert set(FynoOutbox.objects.values_list("attempts", flat=True)) == {1}


@pytest.mark.django_db
def test_a_drainer_never_sends_rows_taken_back_while_it_stalled(
    fyno_emulator: FynoEmulatorHandle, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first drainer stalls (a frozen VM, a long GC pause) after its first
    # request; its lease expires, the sweeper takes the rest back and a second
    # drainer sends it. When the first one wakes up, those rows are not its own.
    make_adds(10)
    clock = Clock()
    stalled: list[bool] = []
    real_sent_all = Writer.sent_all

    def sent_then_stall(self: Writer, accepted: list[tuple[Reply, list[FynoOutbox]]]) -> None:
        real_sent_all(self, accepted)
        if not stalled:
            stalled.append(True)
            clock.advance(301)
            assert outbox.sweep_outbox(clock=clock, schedule=False).reclaimed == 9
            assert outbox.drain(clock=clock).sent == 9

    monkeypatch.setattr(Writer, "sent_all", sent_then_stall)
    first = outbox.drain(clock=clock)

    assert first.sent == 1
    assert first.lost == 9  # taken back: neither sent nor written by the first drainer
    assert requests_of(fyno_emulator, "increment_properties") == 10
    assert counter(fyno_emulator) == 10
    assert states() == {State.SENT: 10}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("policy", ["retry", "hold"])
def test_slow_requests_under_a_short_lease_deliver_each_row_exactly_once(
    fyno_live_emulator: FynoEmulatorHandle, settings: Any, policy: str
) -> None:
    require_shared_database()
    configure(
        settings,
        ENDPOINT=fyno_live_emulator.endpoint,
        UNKNOWN_POLICY=policy,
        OUTBOX_LEASE_SECONDS=2,
    )
    events = make_events(10)
    adds = make_adds(10)
    # Eleven requests of 0.5 s: the first drainer's pass takes 5.5 s, its lease is 2 s.
    fyno_live_emulator.emulator.set_fault(None, latency=0.5)
    errors: list[BaseException] = []
    done = threading.Event()

    def settled() -> bool:
        return not FynoOutbox.objects.exclude(state__in=SETTLED).exists()

    def first_drainer() -> None:
        try:
            outbox.drain()
        except BaseException as error:  # surfaced below
            errors.append(error)
        finally:
            connections.close_all()  # this thread's own connection

    def keep_going(job: Callable[[], Any], pause: float) -> Callable[[], None]:
        def run() -> None:
            try:
                time.sleep(0.2)  # the first drainer claims first
                while not done.is_set():
                    job()
                    time.sleep(pause)
            except BaseException as error:
                errors.append(error)
            finally:
                connections.close_all()

        return run

    threads = [
        threading.Thread(target=first_drainer),
        threading.Thread(target=keep_going(outbox.drain, 0.05)),
        threading.Thread(
            target=keep_going(lambda: outbox.sweep_outbox(schedule=False), 0.1),
        ),
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while not settled() and time.monotonic() < deadline:
        time.sleep(0.1)
    threads[0].join(30)
    time.sleep(1.0)  # a duplicate, if any, would be on its way now
    done.set()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert states() == {State.SENT: 20}  # nothing Fyno accepted is left "unknown"
    assert event_sends(fyno_live_emulator, events) == {str(row.pk): 1 for row in events}
    assert requests_of(fyno_live_emulator, "increment_properties") == len(adds)
    assert counter(fyno_live_emulator) == 10


# -- how many times one row can be sent -------------------------------------------------


@pytest.mark.django_db
def test_lost_replies_send_a_row_at_most_outbox_max_sends_times_then_it_is_dead(
    fyno_emulator: FynoEmulatorHandle, settings: Any
) -> None:
    configure(settings, OUTBOX_MAX_SENDS=3, OUTBOX_MAX_ATTEMPTS=10, OUTBOX_CIRCUIT_THRESHOLD=100)
    rows = make_events(5)
    # Fyno acts on every request, and every answer is lost.
    fyno_emulator.emulator.set_fault("send_bulk", error_rate=1.0, error_status=503, after=True)
    clock = Clock()

    drain_until_settled(clock)

    assert sends_per_row(fyno_emulator) == {str(row.pk): 3 for row in rows}
    assert requests_of(fyno_emulator, "send_bulk") == 3
    assert states() == {State.DEAD: 5}
    assert set(FynoOutbox.objects.values_list("attempts", flat=True)) == {3}


@pytest.mark.django_db
def test_an_expired_lease_counts_towards_outbox_max_sends(
    fyno_emulator: FynoEmulatorHandle, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(settings, OUTBOX_MAX_SENDS=2, OUTBOX_MAX_ATTEMPTS=10)
    rows = make_events(4)
    clock = Clock()
    # First send: Fyno acts, the answer is lost.
    fyno_emulator.emulator.set_fault("send_bulk", fail_next=1, fail_next_status=503, after=True)
    assert outbox.drain(clock=clock).retried == 4
    clock.advance(60)

    class Killed(BaseException):
        """The worker dies after Fyno accepted the second send, before writing it down."""

    def die(*args: Any, **kwargs: Any) -> None:
        raise Killed

    with monkeypatch.context() as patched:
        patched.setattr(Writer, "sent_all", die)
        with pytest.raises(Killed):
            outbox.drain(clock=clock)
    clock.advance(301)
    swept = outbox.sweep_outbox(clock=clock, schedule=False)
    clock.advance(3600)
    outbox.drain(clock=clock)

    # Sent twice, the bound: not sent a third time.
    assert swept.dead == 4
    assert swept.reclaimed == 0
    assert sends_per_row(fyno_emulator) == {str(row.pk): 2 for row in rows}
    assert states() == {State.DEAD: 4}
