"""The outbox end to end: rows committed on PostgreSQL, one task through Redis, a real
Celery worker draining them into the emulator over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("celery", reason="Celery is an optional extra and is not installed")
from django.core.cache import cache
from django.db import transaction
from django.test import override_settings

from django_fyno import outbox
from django_fyno.clients import default_workspace
from django_fyno.models import FynoOutbox
from django_fyno.testing import FynoEmulatorHandle
from tests.conftest import wait_until
from tests.test_outbox_delivery import BASE_FYNO, make_events, sends_per_row


@pytest.fixture
def fyno(
    celery_worker_on_redis: Any, fyno_live_emulator: FynoEmulatorHandle
) -> Iterator[FynoEmulatorHandle]:
    """The app pointed at the emulator over HTTP, delivery going through the worker."""
    over_http = {**BASE_FYNO, "ENDPOINT": fyno_live_emulator.endpoint, "TASK_MODE": "celery"}
    cache.clear()
    with override_settings(FYNO=over_http):
        yield fyno_live_emulator
    cache.clear()


def test_rows_committed_in_a_transaction_are_drained_by_the_worker(
    fyno: FynoEmulatorHandle, monkeypatch: pytest.MonkeyPatch, celery_tasks: Any
) -> None:
    published = 0
    apply_async = celery_tasks.deliver_outbox_task.apply_async

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal published
        published += 1
        return apply_async(*args, **kwargs)

    monkeypatch.setattr(celery_tasks.deliver_outbox_task, "apply_async", counting)
    with transaction.atomic():
        rows = make_events(120)
        for _ in rows:  # as notify() does: once per row, published once per transaction
            outbox.schedule_delivery([default_workspace()])
        assert published == 0  # nothing leaves before the commit

    wait_until(
        lambda: FynoOutbox.objects.filter(state="sent").count() == 120, "120 rows to be sent"
    )
    assert published == 1
    assert sends_per_row(fyno) == {str(row.pk): 1 for row in rows}
    assert [e.operation for e in fyno.emulator.request_log] == ["send_bulk", "send_bulk"]
    row = FynoOutbox.objects.get(pk=rows[0].pk)
    assert row.request_id
    assert row.result["email"]["status"] == "ok"


def test_after_five_503s_the_wake_up_chain_delivers_every_row_without_a_sweeper(
    fyno: FynoEmulatorHandle,
) -> None:
    """No sweeper, no new commit: each drain that leaves rows backing off schedules the
    one wake-up of the workspace, and the chain goes on until every row is sent."""
    backoff_max = 2.0
    settings_now = {
        **BASE_FYNO,
        "ENDPOINT": fyno.endpoint,
        "TASK_MODE": "celery",
        "OUTBOX_BACKOFF_BASE": 0.5,
        "OUTBOX_BACKOFF_MAX": backoff_max,
        "OUTBOX_CIRCUIT_THRESHOLD": 100,  # the backoff alone paces the retries here
        "RETRY": {"MAX_ATTEMPTS": 1},
    }
    fyno.emulator.set_fault("send_bulk", fail_next=5, fail_next_status=503)
    with override_settings(FYNO=settings_now):
        with transaction.atomic():
            rows = make_events(10)
            outbox.schedule_delivery([default_workspace()])
        wait_until(
            lambda: FynoOutbox.objects.filter(state="sent").count() == 10,
            "every row to be sent through the wake-up chain",
            timeout=60,
        )
    log = fyno.emulator.request_log
    statuses = [entry.status for entry in log if entry.operation == "send_bulk"]
    # Five refusals, then only successes (the rows' jittered backoffs may split them
    # over several requests).
    assert statuses[:5] == [503] * 5
    assert set(statuses[5:]) == {202}
    last_failure = [entry for entry in log if entry.status == 503][-1].time
    sent_at = max(FynoOutbox.objects.values_list("sent_at", flat=True))
    # The last backoff is at most OUTBOX_BACKOFF_MAX; the wake-up is due at max(1 s, it).
    assert sent_at.timestamp() - last_failure <= max(1.0, backoff_max) + 5.0
    assert sends_per_row(fyno) == {str(row.pk): 1 for row in rows}
