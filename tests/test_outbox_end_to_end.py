"""The outbox end to end: rows committed on PostgreSQL, one task through Redis, a real
Celery worker draining them into the emulator over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.db import transaction
from django.test import override_settings

from django_fyno import outbox
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
    fyno: FynoEmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    published = 0
    apply_async = outbox.deliver_outbox_task.apply_async

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal published
        published += 1
        return apply_async(*args, **kwargs)

    monkeypatch.setattr(outbox.deliver_outbox_task, "apply_async", counting)
    with transaction.atomic():
        rows = make_events(120)
        for _ in rows:  # as notify() does: once per row, published once per transaction
            outbox.schedule_delivery("default")
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
