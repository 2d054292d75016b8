"""``manage.py fyno_outbox``: counts, retry with filters, purge, drain."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_fyno.models import FynoOutbox
from django_fyno.testing import FynoEmulatorHandle
from tests.conftest import here
from tests.test_outbox_delivery import BASE_FYNO, states

State = FynoOutbox.State


def run(*args: str) -> str:
    out = StringIO()
    call_command("fyno_outbox", *args, stdout=out)
    return out.getvalue()


def row(state: str, event: str = "welcome", age_days: int = 0, **fields: Any) -> FynoOutbox:
    created = FynoOutbox.objects.create(
        **here(), kind="event", event=event, distinct_id="u1", state=state, attempts=3, **fields
    )
    if age_days:  # created_at is auto_now_add: backdate it afterwards
        FynoOutbox.objects.filter(pk=created.pk).update(
            created_at=timezone.now() - timedelta(days=age_days)
        )
    return created


@pytest.fixture(autouse=True)
def _no_delivery(settings: Any) -> None:
    # Nothing is sent unless a test says so: retried rows stay pending to be counted.
    settings.FYNO = {**BASE_FYNO, "TASK_MODE": "off"}


@pytest.mark.django_db
def test_counts_by_state(django_assert_num_queries: Any) -> None:
    for state, count in [(State.PENDING, 2), (State.SENT, 3), (State.DEAD, 1)]:
        for _ in range(count):
            row(state)

    with django_assert_num_queries(1) as captured:  # one GROUP BY, whatever the row count
        output = run()
    assert "GROUP BY" in captured.captured_queries[0]["sql"]
    lines = dict(line.split() for line in output.splitlines())

    assert lines == {
        "pending": "2",
        "sending": "0",
        "sent": "3",
        "failed": "0",
        "dead": "1",
        "unknown": "0",
        "cancelled": "0",
        "total": "6",
    }


@pytest.mark.django_db
def test_retry_puts_failed_dead_and_unknown_back_to_pending() -> None:
    kept = row(State.SENT)
    for state in (State.FAILED, State.DEAD, State.UNKNOWN):
        row(state, next_attempt_at=timezone.now() + timedelta(days=1))

    assert run("--retry") == "Put 3 message(s) back in the queue.\n"

    assert states() == {State.PENDING: 3, State.SENT: 1}
    retried = FynoOutbox.objects.filter(state=State.PENDING)
    assert set(retried.values_list("attempts", flat=True)) == {0}
    assert all(r.next_attempt_at <= timezone.now() for r in retried)
    kept.refresh_from_db()
    assert kept.attempts == 3


@pytest.mark.django_db
def test_retry_filters_by_state_event_and_age() -> None:
    row(State.FAILED, event="a", age_days=10)
    row(State.FAILED, event="a", age_days=1)
    row(State.FAILED, event="b", age_days=10)
    row(State.DEAD, event="a", age_days=10)
    row(State.UNKNOWN, event="a", age_days=10)

    out = run(
        "--retry", "--state", "failed", "--state", "dead", "--event", "a", "--older-than", "5"
    )

    assert out == "Put 2 message(s) back in the queue.\n"
    pending = FynoOutbox.objects.filter(state=State.PENDING)
    assert sorted(pending.values_list("event", flat=True)) == ["a", "a"]
    assert states() == {State.PENDING: 2, State.FAILED: 2, State.UNKNOWN: 1}


@pytest.mark.django_db
def test_retry_schedules_a_drain(
    fyno_emulator: FynoEmulatorHandle, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.FYNO = {**BASE_FYNO, "TASK_MODE": "inline"}
    row(State.FAILED, to={"email": "ada@example.com"})

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        run("--retry")

    assert len(callbacks) == 1
    assert states() == {State.SENT: 1}
    assert len(fyno_emulator.emulator.events_log) == 1


@pytest.mark.django_db
def test_purge_sent_deletes_only_old_sent_rows() -> None:
    now = timezone.now()
    row(State.SENT, sent_at=now - timedelta(days=40))
    row(State.SENT, sent_at=now - timedelta(days=40))
    row(State.SENT, sent_at=now - timedelta(days=2))
    row(State.FAILED, age_days=40)

    assert run("--purge-sent", "30") == "Deleted 2 sent message(s) older than 30 day(s).\n"
    assert states() == {State.SENT: 1, State.FAILED: 1}


@pytest.mark.django_db
def test_drain_delivers_now(fyno_emulator: FynoEmulatorHandle) -> None:
    row(State.PENDING, to={"email": "ada@example.com"})

    out = run("--drain")

    assert "sent 1," in out
    assert states() == {State.SENT: 1}


@pytest.mark.django_db
def test_filters_need_retry() -> None:
    with pytest.raises(CommandError, match="only go with --retry"):
        run("--event", "a")
