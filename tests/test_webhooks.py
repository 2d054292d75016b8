"""The delivery-report webhook: the security suite, storing, the outbox row, the signal."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import requests
from django.core import checks
from django.db import OperationalError, connection
from django.test import Client
from django.urls import reverse
from pytest_django.fixtures import DjangoCaptureOnCommitCallbacks

from django_fyno import outbox, webhooks
from django_fyno.clients import get_client
from django_fyno.models import FynoDeliveryReport, FynoOutbox
from django_fyno.signals import delivery_report_received
from django_fyno.testing import FynoEmulatorHandle
from tests.conftest import here, require_service
from tests.webhook_suite import WebhookSecuritySuite

SECRET = WebhookSecuritySuite.secret
STAMP = "2025-03-01T10:00:00Z"


def outbox_row(state: str = "sent", **fields: Any) -> FynoOutbox:
    fields.setdefault("request_id", "req-1")
    return FynoOutbox.objects.create(
        **here(), kind="event", event="welcome", distinct_id="u1", state=state, **fields
    )


def report(
    row: FynoOutbox | None, channel: str = "email", status: str = "delivered", **extra: Any
) -> dict[str, Any]:
    """A report with the keys Fyno (and the emulator) send."""
    return {
        "request_id": row.request_id if row else "req-x",
        "custom_id": row.custom_id if row else None,
        "custom1": None,
        "custom2": None,
        "custom3": None,
        "event": "welcome",
        "distinct_id": "u1",
        "version": "test",
        "channel": channel,
        "destination": "ada@example.com",
        "msg_id": f"msg-{channel}",
        "status": status,
        "timestamp": STAMP,
        **extra,
    }


class TestDeliveryReportWebhookSecurity(WebhookSecuritySuite):
    """The abstract security suite, against the delivery-report view."""

    def valid_body(self) -> Any:
        return report(outbox_row())

    def unknown_reference_body(self) -> Any:
        return report(None, custom_id="987654321")

    def stored_count(self) -> int:
        return FynoDeliveryReport.objects.count()

    def break_view(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def database_is_gone(parsed: Any) -> Any:
            raise OperationalError("database is gone")

        monkeypatch.setattr(webhooks, "store_reports", database_is_gone)


# --- storing and the outbox row ---------------------------------------------


@pytest.fixture
def post(settings: Any, client: Client) -> Callable[..., Any]:
    settings.FYNO = {**settings.FYNO, "WEBHOOK_SECRET": SECRET}

    def post(body: Any) -> Any:
        url = reverse("django_fyno:webhook", kwargs={"secret": SECRET})
        return client.post(url, data=body, content_type="application/json")

    return post


# A URLconf without django-fyno's URLs, for the test of fyno.W002.
urlpatterns: list[Any] = []


@pytest.fixture(autouse=True)
def _urls(settings: Any) -> None:
    # Through the settings fixture: the test settings have no ROOT_URLCONF for
    # pytest-django's urls marker to swap.
    settings.ROOT_URLCONF = "tests.urls"


@pytest.mark.django_db
def test_a_report_is_stored_and_recorded_on_its_row(post: Callable[..., Any]) -> None:
    row = outbox_row()
    body = report(row)
    response = post(body)
    assert response.status_code == 200
    assert response.json() == {"received": 1, "created": 1}
    stored = FynoDeliveryReport.objects.get()
    assert (stored.outbox, stored.custom_id, stored.request_id) == (row, row.custom_id, "req-1")
    assert (stored.channel, stored.status, stored.msg_id) == ("email", "delivered", "msg-email")
    assert stored.raw == body
    assert stored.fingerprint == webhooks.fingerprint(body)
    row.refresh_from_db()
    assert row.delivery == {"email": "delivered"}
    assert row.delivered_at == datetime(2025, 3, 1, 10, tzinfo=timezone.utc)
    assert row.state == "sent"


@pytest.mark.django_db
def test_a_list_of_reports_fills_each_channel(post: Callable[..., Any]) -> None:
    row = outbox_row()
    response = post([report(row, "email"), report(row, "sms", status="sent")])
    assert response.json() == {"received": 2, "created": 2}
    row.refresh_from_db()
    assert row.delivery == {"email": "delivered", "sms": "sent"}
    assert FynoDeliveryReport.objects.filter(outbox=row).count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["sent", "failed", "bounced"])
def test_only_a_delivered_status_sets_delivered_at(post: Callable[..., Any], status: str) -> None:
    row = outbox_row()
    post(report(row, status=status))
    row.refresh_from_db()
    assert row.delivery == {"email": status}
    assert row.delivered_at is None


@pytest.mark.django_db
def test_delivered_at_is_the_first_delivery(post: Callable[..., Any]) -> None:
    row = outbox_row()
    post(report(row, "email"))
    post(report(row, "sms", timestamp="2025-03-02T10:00:00Z"))
    row.refresh_from_db()
    assert row.delivered_at == datetime(2025, 3, 1, 10, tzinfo=timezone.utc)


@pytest.mark.django_db
@pytest.mark.parametrize("timestamp", [None, "yesterday", 1740823200000, 1740823200])
def test_delivered_at_without_a_readable_timestamp(
    post: Callable[..., Any], timestamp: Any
) -> None:
    row = outbox_row()
    assert post(report(row, timestamp=timestamp)).status_code == 200
    row.refresh_from_db()
    assert row.delivered_at is not None
    if isinstance(timestamp, int):  # epoch in ms or s: the same instant
        assert row.delivered_at == datetime(2025, 3, 1, 10, tzinfo=timezone.utc)


@pytest.mark.django_db
def test_delivered_at_without_time_zone_support(post: Callable[..., Any], settings: Any) -> None:
    # USE_TZ = False: the report's time is stored as the naive local time it stands for.
    settings.USE_TZ = False
    settings.TIME_ZONE = "Asia/Kolkata"
    row = outbox_row()
    assert post(report(row, timestamp="2025-03-01T10:00:00+01:00")).status_code == 200
    row.refresh_from_db()
    assert row.delivered_at == datetime(2025, 3, 1, 14, 30)


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["delivered", "failed"])
def test_a_report_resolves_an_unknown_row_to_sent(post: Callable[..., Any], status: str) -> None:
    row = outbox_row(state="unknown")
    post(report(row, status=status))
    row.refresh_from_db()
    assert row.state == "sent"
    assert row.sent_at is not None


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["pending", "unknown", "sending", "dead"])
def test_a_report_proves_delivery_and_nothing_is_resent(
    post: Callable[..., Any], fyno_emulator: Any, state: str
) -> None:
    # A row Fyno accepted while we thought otherwise (a lost answer, a retry waiting).
    row = outbox_row(state=state, lease_expires_at=None)
    post(report(row))
    row.refresh_from_db()
    assert (row.state, row.lease_expires_at) == ("sent", None)
    assert row.sent_at is not None
    # Nothing is due any more: a drain sends nothing.
    assert outbox.drain().claimed == 0
    assert fyno_emulator.requests == []


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["sent", "failed"])
def test_sent_and_refused_rows_keep_their_state(post: Callable[..., Any], state: str) -> None:
    row = outbox_row(state=state)
    post(report(row))
    row.refresh_from_db()
    assert row.state == state


def test_the_state_names_match_the_model() -> None:
    assert webhooks.OUTBOX_SENT == FynoOutbox.State.SENT
    assert webhooks.PROVEN_BY_A_REPORT < set(FynoOutbox.State.values)


@pytest.mark.django_db
def test_one_unknown_custom_id_rejects_the_whole_batch(post: Callable[..., Any]) -> None:
    row = outbox_row()
    response = post([report(row), report(None, custom_id=str(row.pk + 1000))])
    assert response.status_code == 400
    assert b"report 1" in response.content
    assert FynoDeliveryReport.objects.count() == 0
    row.refresh_from_db()
    assert row.delivery == {}


@pytest.mark.django_db
@pytest.mark.parametrize("custom_id", ["abc", "12a", "-3", "1" * 19, "\u0663"])
def test_a_custom_id_that_is_no_row_id_is_400(post: Callable[..., Any], custom_id: str) -> None:
    assert post(report(None, custom_id=custom_id)).status_code == 400
    assert FynoDeliveryReport.objects.count() == 0


@pytest.mark.django_db
def test_a_numeric_custom_id_is_accepted(post: Callable[..., Any]) -> None:
    row = outbox_row()
    assert post(report(row, custom_id=row.pk)).status_code == 200
    assert FynoDeliveryReport.objects.get().outbox == row


@pytest.mark.django_db
@pytest.mark.parametrize("custom_id", [None, "", "absent"])
def test_a_report_without_custom_id_is_stored_unlinked(
    post: Callable[..., Any], custom_id: str | None
) -> None:
    body = report(None, custom_id=custom_id)
    if custom_id == "absent":
        del body["custom_id"]
    assert post(body).status_code == 200
    stored = FynoDeliveryReport.objects.get()
    assert (stored.outbox, stored.custom_id) == (None, "")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "bad",
    [{"channel": 3}, {"status": ["delivered"]}, {"status": "x" * 65}, {"custom_id": True}],
    ids=["int channel", "list status", "long status", "bool custom_id"],
)
def test_field_types_and_lengths_are_checked(post: Callable[..., Any], bad: dict[str, Any]) -> None:
    assert post(report(outbox_row(), **bad)).status_code == 400
    assert FynoDeliveryReport.objects.count() == 0


def test_the_fingerprint_ignores_key_order_but_not_values() -> None:
    body = report(None)
    assert webhooks.fingerprint(body) == webhooks.fingerprint(dict(reversed(body.items())))
    assert webhooks.fingerprint(body) != webhooks.fingerprint({**body, "status": "read"})


@pytest.mark.django_db
def test_a_duplicate_in_one_batch_is_stored_once(post: Callable[..., Any]) -> None:
    row = outbox_row()
    response = post([report(row), report(row)])
    assert response.json() == {"received": 2, "created": 1}
    assert FynoDeliveryReport.objects.count() == 1


@pytest.mark.django_db
def test_a_duplicate_does_not_apply_again(post: Callable[..., Any]) -> None:
    row = outbox_row()
    first = report(row, status="delivered")
    post(first)
    post(report(row, status="read"))
    post(first)  # Fyno delivering the first report again must not undo "read"
    row.refresh_from_db()
    assert row.delivery == {"email": "read"}
    assert FynoDeliveryReport.objects.count() == 2


@pytest.mark.django_db
def test_a_body_over_the_upload_limit_is_400(post: Callable[..., Any], settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    assert post(report(outbox_row())).status_code == 400
    assert FynoDeliveryReport.objects.count() == 0


# --- the signal --------------------------------------------------------------


@pytest.fixture
def received() -> Iterator[list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        calls.append(kwargs)

    delivery_report_received.connect(receiver, dispatch_uid="test-webhooks")
    yield calls
    delivery_report_received.disconnect(dispatch_uid="test-webhooks")


@pytest.mark.django_db
def test_the_signal_is_sent_after_commit(
    post: Callable[..., Any],
    received: list[dict[str, Any]],
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    row = outbox_row()
    with django_capture_on_commit_callbacks() as callbacks:
        post(report(row))
    assert received == []  # not before the commit
    for callback in callbacks:
        callback()
    (call,) = received
    assert call["sender"] is FynoDeliveryReport
    assert call["report"] == FynoDeliveryReport.objects.get()
    assert call["outbox"] == row
    assert call["outbox"].delivery == {"email": "delivered"}
    assert call["created"] is True


@pytest.mark.django_db
def test_the_signal_says_when_a_report_is_a_duplicate(
    post: Callable[..., Any],
    received: list[dict[str, Any]],
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        post(report(None))
    with django_capture_on_commit_callbacks(execute=True):
        post(report(None))
    assert [(call["created"], call["outbox"]) for call in received] == [(True, None), (False, None)]


@pytest.mark.django_db
def test_a_failing_receiver_does_not_fail_the_webhook(
    post: Callable[..., Any],
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    delivery_report_received.connect(broken, dispatch_uid="test-broken")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = post(report(outbox_row()))
    finally:
        delivery_report_received.disconnect(dispatch_uid="test-broken")
    assert response.status_code == 200
    assert FynoDeliveryReport.objects.count() == 1
    assert "receiver bug" in caplog.text


# --- the system check --------------------------------------------------------


def _check_ids() -> list[str]:
    return [message.id or "" for message in checks.run_checks(databases=[])]


def test_w002_when_the_urls_are_installed_without_a_secret(settings: Any) -> None:
    settings.FYNO = {**settings.FYNO, "WEBHOOK_SECRET": ""}
    assert "fyno.W002" in _check_ids()
    settings.FYNO = {**settings.FYNO, "WEBHOOK_SECRET": ["", SECRET]}
    assert "fyno.W002" not in _check_ids()


def test_no_w002_when_the_urls_are_not_installed(settings: Any) -> None:
    settings.ROOT_URLCONF = __name__
    settings.FYNO = {**settings.FYNO, "WEBHOOK_SECRET": ""}
    assert "fyno.W002" not in _check_ids()


# --- with the emulator's own reports ------------------------------------------


@pytest.mark.django_db
def test_the_emulators_reports_are_accepted(
    post: Callable[..., Any], fyno_emulator: FynoEmulatorHandle
) -> None:
    row = outbox_row(state="sending", request_id="")
    sent = get_client().send_event(
        "welcome",
        to={"email": "ada@example.com", "sms": "+919876543210"},
        callback={"custom_id": row.custom_id},
    )
    reports = fyno_emulator.emulator.delivery_reports(custom_id=row.custom_id, status="delivered")
    FynoOutbox.objects.filter(pk=row.pk).update(state="sent", request_id=sent.request_id)
    assert post(reports).status_code == 200
    row.refresh_from_db()
    assert row.delivery == {"email": "delivered", "sms": "delivered"}
    assert {r.request_id for r in FynoDeliveryReport.objects.all()} == {sent.request_id}


@pytest.mark.django_db(transaction=True)
def test_end_to_end_over_http(
    webhook_live_server: Any, fyno_live_emulator: FynoEmulatorHandle, settings: Any
) -> None:
    """Fyno's verification GET and a delivery report, both over real HTTP."""
    emulator = fyno_live_emulator
    settings.FYNO = {
        **settings.FYNO,
        "WEBHOOK_SECRET": SECRET,
        "ENDPOINT": emulator.endpoint,
        "WSID": emulator.wsid,
        "API_KEY": emulator.api_key,
    }
    row = outbox_row(state="sending", request_id="")
    sent = get_client().send_event(
        "welcome", to={"email": "ada@example.com"}, callback={"custom_id": row.custom_id}
    )
    assert sent.request_id
    FynoOutbox.objects.filter(pk=row.pk).update(state="sent", request_id=sent.request_id)

    wrong = webhook_live_server.url + reverse("django_fyno:webhook", kwargs={"secret": "wrong"})
    with pytest.raises(ValueError, match="did not echo"):
        emulator.emulator.register_webhook(wrong, verify=True)
    url = webhook_live_server.url + reverse("django_fyno:webhook", kwargs={"secret": SECRET})
    assert emulator.emulator.register_webhook(url, verify=True)["verified"] is True

    answers = emulator.emulator.send_delivery_report(custom_id=row.custom_id, status="delivered")
    assert [a["status_code"] for a in answers] == [200]
    row.refresh_from_db()
    assert row.delivery == {"email": "delivered"}
    assert row.delivered_at is not None
    assert FynoDeliveryReport.objects.get().outbox == row

    # Fyno retrying the same report is harmless (the emulator stamps each report
    # it builds with the current time, so resend the very same one).
    again = requests.post(url, json=answers[0]["report"], timeout=10)
    assert again.json() == {"received": 1, "created": 0}
    assert FynoDeliveryReport.objects.count() == 1


# --- concurrency (PostgreSQL: SQLite serialises writers anyway) ---------------


def _in_threads(bodies: list[Any]) -> list[Any]:
    """Run receive_reports on each body at once, each in its own thread and connection."""
    barrier = threading.Barrier(len(bodies))
    results: list[Any] = [None] * len(bodies)

    def work(index: int, body: Any) -> None:
        try:
            barrier.wait()
            results[index] = webhooks.receive_reports(body)
        except Exception as error:
            results[index] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=pair) for pair in enumerate(bodies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def _require_postgresql() -> None:
    require_service(
        "PostgreSQL", connection.vendor == "postgresql", "the database is not PostgreSQL"
    )


@pytest.mark.django_db(transaction=True)
def test_the_same_report_racing_is_stored_once() -> None:
    _require_postgresql()

    body = json.dumps(report(None)).encode()
    results = _in_threads([body] * 8)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert FynoDeliveryReport.objects.count() == 1
    assert sorted(r[0].created for r in results) == [False] * 7 + [True]


@pytest.mark.django_db(transaction=True)
def test_reports_racing_for_one_row_lose_no_channel() -> None:
    _require_postgresql()

    row = outbox_row()
    channels = [f"channel{i}" for i in range(8)]
    results = _in_threads([json.dumps(report(row, name)).encode() for name in channels])
    assert not [r for r in results if isinstance(r, Exception)], results
    row.refresh_from_db()
    assert row.delivery == dict.fromkeys(channels, "delivered")
