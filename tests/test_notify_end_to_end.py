"""notify() end to end with real parts: the caller's transaction on PostgreSQL, a real
Celery worker on Redis, the emulator over HTTP, and Fyno's delivery report posted
back to the webhook served by a live Django server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("celery", reason="Celery is an optional extra and is not installed")
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import override_settings
from django.urls import reverse

from django_fyno import notify
from django_fyno.models import FynoDeliveryReport, FynoOutbox
from django_fyno.testing import FynoEmulatorHandle
from tests.conftest import wait_until

SECRET = "e2e-webhook-secret"


@pytest.fixture
def fyno(
    celery_worker_on_redis: Any,
    fyno_live_emulator: FynoEmulatorHandle,
    webhook_live_server: Any,
) -> Iterator[FynoEmulatorHandle]:
    """Work through the worker, Fyno over HTTP, the webhook registered and verified."""
    live = {
        **settings.FYNO,
        "ENDPOINT": fyno_live_emulator.endpoint,
        "TASK_MODE": "celery",
        "WEBHOOK_SECRET": SECRET,
    }
    with override_settings(FYNO=live, ROOT_URLCONF="tests.urls"):
        path = reverse("django_fyno:webhook", kwargs={"secret": SECRET})
        verified = fyno_live_emulator.emulator.register_webhook(
            webhook_live_server.url + path, verify=True
        )
        assert verified["verified"] is True
        yield fyno_live_emulator


def test_notify_is_sent_by_the_worker_and_its_delivery_report_lands(
    fyno: FynoEmulatorHandle,
) -> None:
    user = get_user_model().objects.create_user("ada", email="ada@example.com")
    wait_until(lambda: fyno.emulator.profile("test", str(user.pk)), "the user's profile")

    with transaction.atomic():
        row = notify("welcome", to=user, data={"name": "Ada"})
        assert isinstance(row, FynoOutbox)
        # Nothing leaves before commit.
        assert fyno.emulator.events_log == []

    sent = wait_until(
        lambda: FynoOutbox.objects.filter(pk=row.pk, state="sent").first(), "the row sent"
    )
    [event] = [e for e in fyno.emulator.events_log if e["event"] == "welcome"]
    assert event["callback"]["custom_id"] == str(row.pk)
    assert event["request_id"] == sent.request_id
    assert sent.result["email"]["destination"] == "ada@example.com"

    answers = fyno.emulator.send_delivery_report(custom_id=str(row.pk), status="delivered")
    assert [answer["status_code"] for answer in answers] == [200]
    row.refresh_from_db()
    assert row.delivery == {"email": "delivered"}
    assert row.delivered_at is not None
    assert FynoDeliveryReport.objects.get().outbox_id == row.pk


def _failing_request() -> None:
    with transaction.atomic():
        notify("welcome", to={"email": "grace@example.com"})
        raise RuntimeError("the caller's request failed")


def test_a_rolled_back_notify_sends_nothing(fyno: FynoEmulatorHandle) -> None:
    with pytest.raises(RuntimeError):
        _failing_request()
    committed = notify("receipt", to={"email": "grace@example.com"})
    assert isinstance(committed, FynoOutbox)
    wait_until(
        lambda: FynoOutbox.objects.filter(pk=committed.pk, state="sent").exists(), "the receipt"
    )
    assert [e["event"] for e in fyno.emulator.events_log] == ["receipt"]
    assert FynoOutbox.objects.count() == 1
