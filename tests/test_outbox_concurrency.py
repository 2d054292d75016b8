"""Several drainers at once, drainers that die, and the sweeper that cleans up after them."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from django_fyno import outbox
from django_fyno.clients import default_workspace
from django_fyno.models import FynoOutbox
from django_fyno.outbox import delivery
from django_fyno.outbox.claim import claim
from django_fyno.outbox.record import Writer
from django_fyno.testing import FynoEmulatorHandle
from tests.conftest import here
from tests.test_outbox_delivery import (
    BASE_FYNO,
    Clock,
    drain_side_by_side,
    make_events,
    requests_of,
    require_shared_database,
    sends_per_row,
    states,
)

State = FynoOutbox.State


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_drainers_send_each_of_1000_rows_exactly_once(
    fyno_live_emulator: FynoEmulatorHandle, settings: Any
) -> None:
    require_shared_database()
    settings.FYNO = {**BASE_FYNO, "ENDPOINT": fyno_live_emulator.endpoint, "OUTBOX_BULK_SIZE": 50}
    rows = make_events(1000)
    # A little latency, so the two drainers' claims really interleave.
    fyno_live_emulator.emulator.set_fault("send_bulk", latency=0.005)

    reports = drain_side_by_side(2)

    assert states() == {State.SENT: 1000}
    assert sends_per_row(fyno_live_emulator) == {str(row.pk): 1 for row in rows}
    assert requests_of(fyno_live_emulator, "send_bulk") == 20
    claimed = sorted(report.claimed for report in reports)
    assert sum(claimed) == 1000
    assert claimed[0] > 0, claimed  # both drainers took a share


@pytest.mark.django_db
@pytest.mark.parametrize("policy", ["retry", "hold"])
def test_a_drainer_killed_before_sending_loses_nothing_and_duplicates_nothing(
    fyno_emulator: FynoEmulatorHandle, settings: Any, monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    # TASK_MODE "off": the test drains itself, on its own clock.
    settings.FYNO = {**BASE_FYNO, "TASK_MODE": "off", "UNKNOWN_POLICY": policy}
    rows = make_events(250)
    clock = Clock()

    class Killed(BaseException):
        """Stands for the worker process dying: nothing after it runs."""

    def die(*args: Any, **kwargs: Any) -> None:
        raise Killed

    with monkeypatch.context() as patched:
        patched.setattr(delivery, "_deliver", die)
        with pytest.raises(Killed):
            outbox.drain(clock=clock)
    assert states() == {State.SENDING: 100, State.PENDING: 150}

    # Another drainer delivers what it can claim; the 100 leased rows are not its to send.
    outbox.drain(clock=clock)
    assert states() == {State.SENDING: 100, State.SENT: 150}
    assert outbox.sweep_outbox(clock=clock).reclaimed == 0  # lease still running

    clock.advance(301)  # past OUTBOX_LEASE_SECONDS
    swept = outbox.sweep_outbox(clock=clock)
    if policy == "hold":
        # At-most-once: the sweeper cannot tell that they never left; staff decide.
        assert swept.held == 100
        assert states() == {State.UNKNOWN: 100, State.SENT: 150}
        assert len(fyno_emulator.emulator.events_log) == 150
        return
    assert swept.reclaimed == 100
    assert swept.scheduled == 1
    assert outbox.drain(clock=clock).sent == 100
    assert states() == {State.SENT: 250}
    # Killed before sending: every row reached Fyno exactly once.
    assert sends_per_row(fyno_emulator) == {str(row.pk): 1 for row in rows}


@pytest.mark.django_db
def test_a_drainer_killed_after_fyno_accepted_causes_one_duplicate_per_row_under_retry(
    fyno_emulator: FynoEmulatorHandle, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.FYNO = {**BASE_FYNO, "TASK_MODE": "off"}
    rows = make_events(30)
    clock = Clock()

    class Killed(BaseException):
        pass

    def die(*args: Any, **kwargs: Any) -> None:
        raise Killed  # Fyno has the batch; the worker dies before writing it down

    with monkeypatch.context() as patched:
        patched.setattr(Writer, "sent_all", die)
        with pytest.raises(Killed):
            outbox.drain(clock=clock)
    assert states() == {State.SENDING: 30}

    clock.advance(301)
    assert outbox.sweep_outbox(clock=clock).reclaimed == 30
    assert FynoOutbox.objects.filter(attempts=1, state=State.PENDING).count() == 30
    outbox.drain(clock=clock)

    assert states() == {State.SENT: 30}
    # At-least-once, honestly: the whole killed batch went to Fyno twice.
    assert sends_per_row(fyno_emulator) == {str(row.pk): 2 for row in rows}


@pytest.mark.django_db
def test_a_late_drainer_cannot_overwrite_a_row_someone_else_reclaimed(
    fyno_emulator: FynoEmulatorHandle, settings: Any
) -> None:
    settings.FYNO = {**BASE_FYNO, "TASK_MODE": "off"}
    make_events(3)
    clock = Clock()
    rows, token = claim(default_workspace(), 10, clock)
    assert token is not None
    assert len(rows) == 3

    clock.advance(301)
    outbox.sweep_outbox(clock=clock)
    outbox.drain(clock=clock)  # a second drainer re-claims and sends them
    assert states() == {State.SENT: 3}

    # The first drainer wakes up and reports a failure it saw long ago.
    late = outbox.DrainReport()
    Writer(token, late, clock).failed(rows, "stale news")
    assert late.failed == 0
    assert late.lost == 3
    assert states() == {State.SENT: 3}


@pytest.mark.django_db
def test_the_sweeper_requests_a_drain_for_due_rows_never_scheduled(
    fyno_emulator: FynoEmulatorHandle, settings: Any
) -> None:
    settings.FYNO = {**BASE_FYNO, "TASK_MODE": "inline"}
    make_events(5)  # as if the broker had been down at commit time
    FynoOutbox.objects.create(
        **here(),
        kind="event",
        event="later",
        distinct_id="u9",
        next_attempt_at=Clock().now + timedelta(hours=1),
    )

    report = outbox.sweep_outbox()

    assert report.scheduled == 1
    assert Counter(FynoOutbox.objects.values_list("state", flat=True)) == {
        State.SENT: 5,
        State.PENDING: 1,
    }
    assert outbox.sweep_outbox().scheduled == 0  # nothing due: no drain requested
