"""The staff face of the outbox and of delivery reports (django_fyno/admin/outbox.py).

Two staff users: one with only the view permissions, one who also holds
``django_fyno.manage_outbox``. Every action is tried by both: the first is
refused and changes nothing, the second's effect shows in the database and,
for a retry, in the emulator once the drain ran after commit (``TASK_MODE``
"inline"). Every page is searched for the API keys.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib import messages
from django.contrib.admin import helpers, site
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import connection, connections
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from django_fyno import outbox
from django_fyno.admin.outbox import (
    RETRY_SKIPS,
    FynoDeliveryReportAdmin,
    FynoOutboxAdmin,
    outcome,
)
from django_fyno.clients import default_workspace
from django_fyno.emulator.app import Emulator
from django_fyno.emulator.responses_adapter import DEFAULT_ENDPOINT, EmulatorMock
from django_fyno.models import FynoDeliveryReport, FynoOutbox
from django_fyno.outbox.claim import claim
from django_fyno.signals import delivery_report_received
from django_fyno.testing import FynoEmulatorHandle, contract_violations
from tests.conftest import here, make_user, require_service, wait_until
from tests.test_outbox_delivery import make_events, sends_per_row

pytestmark = pytest.mark.django_db

State = FynoOutbox.State
API_KEY = "test-api-key"
OTHER_KEY = "key-of-the-other-tenant"
SECRET = "webhook-secret-for-admin-tests"
BASE_FYNO: dict[str, Any] = {
    "WSID": "FYTEST",
    "API_KEY": API_KEY,
    "VERSION": "test",
    "TASK_MODE": "inline",
    # One HTTP attempt per call: the outbox owns retries, and tests never sleep.
    "RETRY": {"MAX_ATTEMPTS": 1},
    "WEBHOOK_SECRET": SECRET,
    # The staff users' own profiles stay out of it: these tests are about the outbox.
    "AUTO_SYNC": False,
}
OUTBOX_LIST = "admin:django_fyno_fynooutbox_changelist"
REPORT_LIST = "admin:django_fyno_fynodeliveryreport_changelist"


@pytest.fixture(autouse=True)
def outbox_settings(settings: Any) -> Iterator[None]:
    # The staff face's URLconf. (Not @pytest.mark.urls: it needs a ROOT_URLCONF to
    # restore, and tests/settings.py has none.)
    settings.ROOT_URLCONF = "tests.admin_urls"
    settings.FYNO = dict(BASE_FYNO)
    cache.clear()  # the shared pause lives there
    yield
    cache.clear()


def staff(name: str, *codenames: str) -> Any:
    """An active staff user holding exactly the django_fyno permissions named."""
    user = make_user(name, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="django_fyno", codename__in=codenames)
    )
    return user


VIEW_ONLY = ("view_fynooutbox", "view_fynodeliveryreport")


@pytest.fixture
def viewer(client: Client) -> Client:
    """A client logged in as a staff user with only the view permissions."""
    client.force_login(staff("viewer", *VIEW_ONLY))
    return client


@pytest.fixture
def manager() -> Client:
    """A client logged in as a staff user who also holds manage_outbox (not a superuser)."""
    client = Client()
    client.force_login(staff("manager", *VIEW_ONLY, "manage_outbox"))
    return client


def row(state: str = State.PENDING, event: str = "order_shipped", **fields: Any) -> FynoOutbox:
    """An event row of the project's workspace, due now, in ``state``."""
    values: dict[str, Any] = {
        **here(),
        "kind": "event",
        "event": event,
        "distinct_id": "u1",
        "to": {"email": "u1@example.com"},
        "payload": {"order": 1},
        "next_attempt_at": timezone.now() - timedelta(seconds=1),
        **fields,
    }
    if state == State.SENDING:
        values.setdefault("lease_expires_at", timezone.now() + timedelta(minutes=5))
    created: FynoOutbox = FynoOutbox.objects.create(state=state, **values)
    return created


def snapshot() -> dict[int, tuple[str, int, Any]]:
    """Every row's state, attempts and lease: what an action could change."""
    return {
        pk: (state, attempts, lease)
        for pk, state, attempts, lease in FynoOutbox.objects.values_list(
            "pk", "state", "attempts", "lease_expires_at"
        )
    }


def act(
    client: Client,
    action: str,
    rows: list[Any],
    *,
    confirmed: bool = True,
    listing: str = OUTBOX_LIST,
    **extra: Any,
) -> Any:
    """POST an admin action on ``rows`` from the changelist (``confirmed``: as the
    confirmation page posts it back)."""
    data: dict[str, Any] = {
        "action": action,
        helpers.ACTION_CHECKBOX_NAME: [str(item.pk) for item in rows],
        "index": "0",
        **extra,
    }
    if confirmed:
        data["post"] = "yes"
    return client.post(reverse(listing), data, follow=True)


def page_messages(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def sent_ids(handle: Any) -> list[str]:
    """The custom ids (outbox row ids) of the events Fyno accepted, in order."""
    return [str(entry["custom_id"]) for entry in handle.emulator.events_log]


# -- the view-only user ---------------------------------------------------------------


def test_a_view_only_user_sees_the_outbox_without_any_action(viewer: Client) -> None:
    message = row(State.FAILED, last_error="Fyno said no")

    listing = viewer.get(reverse(OUTBOX_LIST))
    detail = viewer.get(reverse("admin:django_fyno_fynooutbox_change", args=[message.pk]))

    assert listing.status_code == 200
    assert detail.status_code == 200
    html = listing.content.decode()
    assert f">{message.pk}</a>" in html
    assert 'name="action"' not in html  # no action bar at all
    assert "retry_messages" not in html
    assert "cancel_messages" not in html
    assert 'name="_save"' not in detail.content.decode()  # read-only: nothing to save
    assert "Fyno said no" in detail.content.decode()


def test_a_view_only_user_cannot_add_change_or_delete(viewer: Client) -> None:
    message = row(State.FAILED)
    before = snapshot()
    change = reverse("admin:django_fyno_fynooutbox_change", args=[message.pk])

    assert viewer.get(reverse("admin:django_fyno_fynooutbox_add")).status_code == 403
    assert viewer.post(change, {"state": State.PENDING, "event": "hacked"}).status_code == 403
    assert (
        viewer.post(
            reverse("admin:django_fyno_fynooutbox_delete", args=[message.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert snapshot() == before
    assert FynoOutbox.objects.get().event == "order_shipped"


def test_even_a_superuser_cannot_add_edit_or_delete_rows(admin_client: Client) -> None:
    message = row(State.FAILED)
    change = reverse("admin:django_fyno_fynooutbox_change", args=[message.pk])

    assert admin_client.get(reverse("admin:django_fyno_fynooutbox_add")).status_code == 403
    assert admin_client.post(change, {"event": "hacked"}).status_code == 403
    listing = admin_client.get(reverse(OUTBOX_LIST)).content.decode()
    assert "delete_selected" not in listing
    assert FynoOutbox.objects.get().event == "order_shipped"


def test_staff_without_the_view_permission_get_403(client: Client) -> None:
    client.force_login(staff("nobody"))
    message = row(State.FAILED)

    assert client.get(reverse(OUTBOX_LIST)).status_code == 403
    assert client.get(reverse(REPORT_LIST)).status_code == 403
    assert (
        client.get(reverse("admin:django_fyno_fynooutbox_change", args=[message.pk])).status_code
        == 403
    )


@pytest.mark.parametrize("action", ["retry_messages", "cancel_messages"])
def test_a_forged_action_post_from_a_view_only_user_changes_nothing(
    viewer: Client,
    fyno_emulator: FynoEmulatorHandle,
    django_capture_on_commit_callbacks: Any,
    action: str,
) -> None:
    rows = [row(State.FAILED), row(State.UNKNOWN), row(State.PENDING), row(State.DEAD)]
    before = snapshot()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = act(viewer, action, rows)

    assert response.status_code == 403
    assert snapshot() == before
    assert callbacks == []  # no drain was even asked for
    assert fyno_emulator.emulator.events_log == []
    assert not LogEntry.objects.exists()


def test_the_actions_refuse_a_user_without_manage_outbox_even_when_called_directly() -> None:
    user = staff("viewer", *VIEW_ONLY)
    request = RequestFactory().post("/")
    request.user = user
    row(State.FAILED)
    row(State.PENDING)
    before = snapshot()
    outbox_admin = FynoOutboxAdmin(FynoOutbox, site)
    report_admin = FynoDeliveryReportAdmin(FynoDeliveryReport, site)

    with pytest.raises(PermissionDenied):
        outbox_admin.retry_messages(request, FynoOutbox.objects.all())
    with pytest.raises(PermissionDenied):
        outbox_admin.cancel_messages(request, FynoOutbox.objects.all())
    with pytest.raises(PermissionDenied):
        report_admin.replay_reports(request, FynoDeliveryReport.objects.all())
    assert snapshot() == before
    assert outbox_admin.get_actions(request) == {}
    assert report_admin.get_actions(request) == {}


def test_a_manager_cannot_run_an_action_the_admin_does_not_offer(manager: Client) -> None:
    rows = [row(State.FAILED), row(State.SENT)]

    response = act(manager, "delete_selected", rows)

    assert response.status_code == 403
    assert FynoOutbox.objects.count() == 2


# -- retry -------------------------------------------------------------------------------


def test_the_message_counts_rows_that_changed_state_meanwhile() -> None:
    level, text = outcome(
        1, "retried", {State.FAILED: 2, State.SENT: 1}, {State.FAILED}, RETRY_SKIPS
    )

    assert level == messages.WARNING
    assert text == "1 retried, 2 skipped: 1 already sent, 1 changed state meanwhile"
    assert outcome(2, "retried", {State.FAILED: 2}, {State.FAILED}, RETRY_SKIPS) == (
        messages.SUCCESS,
        "2 retried",
    )


def test_retry_puts_failed_rows_back_and_the_drain_sends_them(
    manager: Client, fyno_emulator: FynoEmulatorHandle, django_capture_on_commit_callbacks: Any
) -> None:
    failed = [row(State.FAILED, attempts=3, last_error="Fyno said no") for _ in range(3)]
    done = row(State.SENT, request_id="already")

    with django_capture_on_commit_callbacks(execute=True):
        response = act(manager, "retry_messages", [*failed, done])

    assert page_messages(response) == ["3 retried, 1 skipped: already sent"]
    # The drain ran after commit: Fyno got the three, once each; the sent one stayed.
    assert sorted(sent_ids(fyno_emulator)) == sorted(str(item.pk) for item in failed)
    for item in failed:
        item.refresh_from_db()
        assert item.state == State.SENT
        assert item.attempts == 1  # counted from zero again
        assert item.request_id
    done.refresh_from_db()
    assert (done.state, done.request_id) == (State.SENT, "already")
    # Each retried row's history says who retried it.
    logged = LogEntry.objects.filter(change_message="Retried.")
    assert sorted(int(entry.object_id) for entry in logged) == sorted(item.pk for item in failed)
    assert {entry.user.username for entry in logged} == {"manager@example.com"}


def test_retry_of_unknown_or_dead_rows_asks_first(
    manager: Client, fyno_emulator: FynoEmulatorHandle, django_capture_on_commit_callbacks: Any
) -> None:
    rows = [row(State.UNKNOWN), row(State.DEAD), row(State.PENDING)]
    before = snapshot()

    with django_capture_on_commit_callbacks(execute=True):
        asked = act(manager, "retry_messages", rows, confirmed=False)

    assert asked.status_code == 200
    page = asked.content.decode()
    assert "may deliver them twice" in page
    assert "2 of the 3 selected messages will be put back in the queue" in page
    assert 'name="post" value="yes"' in page
    assert snapshot() == before
    assert fyno_emulator.emulator.events_log == []

    with django_capture_on_commit_callbacks(execute=True):
        confirmed = act(manager, "retry_messages", rows)

    assert page_messages(confirmed) == ["2 retried, 1 skipped: already waiting to be sent"]
    # The pending row was due too: the drain the retry asked for sent all three.
    assert sorted(sent_ids(fyno_emulator)) == sorted(str(item.pk) for item in rows)
    assert set(FynoOutbox.objects.values_list("state", flat=True)) == {State.SENT}


def test_retry_reports_each_reason_for_skipping(
    manager: Client, fyno_emulator: FynoEmulatorHandle, django_capture_on_commit_callbacks: Any
) -> None:
    failed = row(State.FAILED)
    others = [row(State.SENT), row(State.SENT), row(State.SENDING), row(State.CANCELLED)]
    before = snapshot()

    with django_capture_on_commit_callbacks(execute=True):
        response = act(manager, "retry_messages", [failed, *others])

    assert page_messages(response) == [
        "1 retried, 4 skipped: 2 already sent, 1 being sent, 1 cancelled"
    ]
    assert sent_ids(fyno_emulator) == [str(failed.pk)]
    after = snapshot()
    for item in others:
        assert after[item.pk] == before[item.pk]


# A real request: no test transaction around it, so the retry commits and the drain
# ("inline") runs in the request, before the answer is made.
@pytest.mark.django_db(transaction=True)
def test_a_fyno_outage_during_a_retry_is_an_error_message_not_a_500(
    manager: Client, fyno_emulator: FynoEmulatorHandle
) -> None:
    fyno_emulator.set_fault(error_rate=1.0, error_status=503)
    rows = [row(State.FAILED), row(State.FAILED)]

    response = act(manager, "retry_messages", rows)

    assert response.status_code == 200
    assert {request.status for request in fyno_emulator.requests} == {503}
    retried, refused = page_messages(response)
    assert retried == "2 retried"
    assert refused.startswith("Fyno did not take 2 of them yet: ")
    assert "503" in refused
    for item in rows:
        item.refresh_from_db()
        assert item.state in (State.PENDING, State.UNKNOWN)
        assert item.attempts == 1
        assert item.last_error in refused
    assert API_KEY not in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_dropped_connection_during_a_retry_is_an_error_message_not_a_500(
    manager: Client, fyno_emulator: FynoEmulatorHandle
) -> None:
    fyno_emulator.set_fault(drop_rate=1.0)
    failed = row(State.FAILED)

    response = act(manager, "retry_messages", [failed])

    assert response.status_code == 200
    failed.refresh_from_db()
    assert failed.state in (State.PENDING, State.UNKNOWN)
    assert failed.last_error
    assert page_messages(response) == [
        "1 retried",
        f"Fyno did not take 1 of them yet: {failed.last_error}",
    ]
    assert API_KEY not in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_retry_fyno_takes_reports_no_error(
    manager: Client, fyno_emulator: FynoEmulatorHandle
) -> None:
    failed = row(State.FAILED, attempts=4, last_error="an old error")

    response = act(manager, "retry_messages", [failed])

    assert page_messages(response) == ["1 retried"]
    assert sent_ids(fyno_emulator) == [str(failed.pk)]


# -- cancel ------------------------------------------------------------------------------


def test_cancel_asks_first_then_cancels_only_rows_not_sent_nor_being_sent(
    manager: Client, fyno_emulator: FynoEmulatorHandle, django_capture_on_commit_callbacks: Any
) -> None:
    cancellable = [row(State.PENDING), row(State.FAILED), row(State.DEAD), row(State.UNKNOWN)]
    leased, sent, cancelled = row(State.SENDING), row(State.SENT), row(State.CANCELLED)
    everything = [*cancellable, leased, sent, cancelled]
    before = snapshot()

    asked = act(manager, "cancel_messages", everything, confirmed=False)

    assert asked.status_code == 200
    assert "4 of the 7 selected messages will be cancelled" in asked.content.decode()
    assert snapshot() == before

    with django_capture_on_commit_callbacks(execute=True):
        response = act(manager, "cancel_messages", everything)

    assert page_messages(response) == [
        "4 cancelled, 3 skipped: 1 already cancelled, 1 already sent, 1 being sent"
    ]
    after = snapshot()
    for item in cancellable:
        assert after[item.pk][0] == State.CANCELLED
    for item in (leased, sent, cancelled):
        assert after[item.pk] == before[item.pk]  # the drainer keeps its lease
    logged = LogEntry.objects.filter(change_message="Cancelled.")
    assert sorted(int(entry.object_id) for entry in logged) == sorted(
        item.pk for item in cancellable
    )
    # Cancelled rows are never sent: not by a drain, not after the sweeper, not by a retry.
    outbox.sweep_outbox()
    outbox.drain()
    assert outbox.retry(FynoOutbox.objects.filter(pk__in=[item.pk for item in cancellable])) == 0
    outbox.drain()
    assert fyno_emulator.emulator.events_log == []
    assert set(
        FynoOutbox.objects.filter(pk__in=[item.pk for item in cancellable]).values_list(
            "state", flat=True
        )
    ) == {State.CANCELLED}


def test_cancel_of_all_matching_rows_posts_back_the_rows_it_showed(manager: Client) -> None:
    pending = [row(State.PENDING, event="welcome"), row(State.PENDING, event="welcome")]
    other = row(State.PENDING, event="reminder")
    url = reverse(OUTBOX_LIST) + "?event=welcome"

    across = {"action": "cancel_messages", "select_across": "1", "index": "0"}
    asked = manager.post(url, {**across, helpers.ACTION_CHECKBOX_NAME: [str(pending[0].pk)]})

    assert asked.status_code == 200
    posted = re.findall(
        rf'name="{helpers.ACTION_CHECKBOX_NAME}" value="(\d+)"', asked.content.decode()
    )
    assert sorted(int(pk) for pk in posted) == sorted(item.pk for item in pending)
    # A row written after the page was shown is not cancelled with them.
    late = row(State.PENDING, event="welcome")
    confirmed = manager.post(
        url,
        {"action": "cancel_messages", "post": "yes", helpers.ACTION_CHECKBOX_NAME: posted},
        follow=True,
    )

    assert page_messages(confirmed) == ["2 cancelled"]
    states = dict(FynoOutbox.objects.values_list("pk", "state"))
    assert [states[item.pk] for item in pending] == [State.CANCELLED, State.CANCELLED]
    assert states[other.pk] == State.PENDING
    assert states[late.pk] == State.PENDING


def test_cancel_leaves_rows_a_drainer_claimed_to_it(fyno_emulator: FynoEmulatorHandle) -> None:
    rows = [row(State.PENDING), row(State.PENDING)]
    claimed, token = claim(default_workspace(), 10, timezone.now)
    assert token is not None
    assert {item.pk for item in claimed} == {item.pk for item in rows}

    assert outbox.operations.cancel(FynoOutbox.objects.all()) == 0

    assert set(FynoOutbox.objects.values_list("state", flat=True)) == {State.SENDING}
    assert set(FynoOutbox.objects.values_list("lease_expires_at", flat=True)) == {token}


@pytest.mark.django_db(transaction=True)
def test_a_cancel_racing_a_drain_never_cancels_a_row_it_sends(
    fyno_live_emulator: FynoEmulatorHandle, settings: Any
) -> None:
    require_service(
        "PostgreSQL",
        connection.vendor == "postgresql",
        f"a drain in a thread needs a database shared across connections; {connection.vendor}",
    )
    settings.FYNO = {**BASE_FYNO, "ENDPOINT": fyno_live_emulator.endpoint, "OUTBOX_BULK_SIZE": 10}
    rows = make_events(200)
    # Each request takes a while, so the cancel lands in the middle of the drain.
    fyno_live_emulator.emulator.set_fault("send_bulk", latency=0.05)
    errors: list[BaseException] = []

    def drainer() -> None:
        try:
            outbox.drain()
        except BaseException as error:  # surfaced below
            errors.append(error)
        finally:
            connections.close_all()  # this thread's own connection

    thread = threading.Thread(target=drainer)
    thread.start()
    wait_until(lambda: FynoOutbox.objects.filter(state=State.SENT).exists(), "a first send")
    cancelled = outbox.operations.cancel(FynoOutbox.objects.all())
    thread.join(60)

    assert errors == []
    final = dict(FynoOutbox.objects.values_list("pk", "state"))
    sent = {pk for pk, state in final.items() if state == State.SENT}
    assert set(final.values()) == {State.SENT, State.CANCELLED}
    assert len(final) - len(sent) == cancelled > 0
    # Every row Fyno got is one the cancel left alone, and Fyno got it once.
    assert sends_per_row(fyno_live_emulator) == {str(pk): 1 for pk in sent}
    assert len(rows) == 200


def test_a_cancelled_row_is_not_claimed(fyno_emulator: FynoEmulatorHandle) -> None:
    cancelled, kept = row(State.PENDING), row(State.PENDING)
    assert outbox.operations.cancel(FynoOutbox.objects.filter(pk=cancelled.pk)) == 1

    report = outbox.drain()

    assert report.sent == 1
    assert sent_ids(fyno_emulator) == [str(kept.pk)]
    cancelled.refresh_from_db()
    assert (cancelled.state, cancelled.attempts, cancelled.sent_at) == (State.CANCELLED, 0, None)


# -- what a row shows --------------------------------------------------------------------


def test_payload_and_reply_are_shown_as_escaped_formatted_json(viewer: Client) -> None:
    message = row(
        State.SENT,
        payload={"note": "<script>alert('payload')</script>", "order": 7},
        to={"email": "<script>alert('to')</script>@example.com"},
        result={"email": {"destination": "u1@example.com", "msg_id": "m-1", "status": "ok"}},
        delivery={"email": "<script>alert('status')</script>"},
    )

    detail = viewer.get(reverse("admin:django_fyno_fynooutbox_change", args=[message.pk]))
    listing = viewer.get(reverse(OUTBOX_LIST))

    for page in (detail.content.decode(), listing.content.decode()):
        assert "<script>alert(" not in page
    html = detail.content.decode()
    assert "&lt;script&gt;alert(&#x27;payload&#x27;)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(&#x27;to&#x27;)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(&#x27;status&#x27;)&lt;/script&gt;" in listing.content.decode()
    # Formatted: one key per line, indented, in a <pre>; Fyno's reply too.
    blocks = re.findall(r'<pre class="fyno-json">(.*?)</pre>', html, re.DOTALL)
    assert "{\n  &quot;note&quot;: &quot;&lt;script&gt;" in blocks[1]
    assert "\n  &quot;order&quot;: 7\n}" in blocks[1]
    assert any("&quot;msg_id&quot;: &quot;m-1&quot;" in block for block in blocks)


def test_the_delivery_state_of_each_channel_shows_on_the_row(
    viewer: Client, fyno_emulator: FynoEmulatorHandle
) -> None:
    message = row(State.PENDING, to={"email": "u1@example.com", "sms": "+14155550100"})
    outbox.drain()
    message.refresh_from_db()
    assert message.state == State.SENT
    # Fyno reports on each channel: the webhook records them on the row.
    webhook = reverse("django_fyno:webhook", kwargs={"secret": SECRET})
    for channel, status in (("email", "delivered"), ("sms", "failed")):
        reports = fyno_emulator.emulator.delivery_reports(
            custom_id=str(message.pk), channel=channel, status=status
        )
        answer = viewer.post(webhook, json.dumps(reports), content_type="application/json")
        assert answer.status_code == 200

    listing = viewer.get(reverse(OUTBOX_LIST)).content.decode()

    assert (
        '<div class="fyno-delivery">email: delivered</div>'
        '<div class="fyno-delivery">sms: failed</div>'
    ) in listing
    detail = viewer.get(reverse("admin:django_fyno_fynooutbox_change", args=[message.pk]))
    reports_url = reverse(REPORT_LIST) + f"?outbox__id__exact={message.pk}"
    assert f'href="{reports_url}"' in detail.content.decode()
    assert "2 reports" in detail.content.decode()
    linked = viewer.get(reports_url)
    assert sorted(report.channel for report in linked.context["cl"].result_list) == [
        "email",
        "sms",
    ]


# -- filters -----------------------------------------------------------------------------


def listed(client: Client, query: str) -> set[int]:
    response = client.get(reverse(OUTBOX_LIST) + query)
    assert response.status_code == 200
    return {item.pk for item in response.context["cl"].result_list}


def test_filters_by_state_event_workspace_and_age(viewer: Client) -> None:
    fresh = row(State.FAILED, event="welcome")
    hour = row(State.PENDING, event="welcome")
    day = row(State.FAILED, event="reminder")
    week = row(State.SENT, event="reminder", wsid="FYOTHER")
    now = timezone.now()
    ages = {hour.pk: timedelta(hours=2), day.pk: timedelta(days=2), week.pk: timedelta(days=8)}
    for pk, age in ages.items():
        FynoOutbox.objects.filter(pk=pk).update(created_at=now - age)
    ours = default_workspace()
    theirs = type(ours)("FYOTHER", ours.version, ours.endpoint)

    assert listed(viewer, "") == {fresh.pk, hour.pk, day.pk, week.pk}
    assert listed(viewer, "?state=failed") == {fresh.pk, day.pk}
    assert listed(viewer, "?event=welcome") == {fresh.pk, hour.pk}
    assert listed(viewer, f"?workspace={ours.key}") == {fresh.pk, hour.pk, day.pk}
    assert listed(viewer, f"?workspace={theirs.key}") == {week.pk}
    assert listed(viewer, "?workspace=nonsense") == set()
    assert listed(viewer, "?age=1h") == {hour.pk, day.pk, week.pk}
    assert listed(viewer, "?age=1d") == {day.pk, week.pk}
    assert listed(viewer, "?age=7d") == {week.pk}
    assert listed(viewer, "?age=7d&state=failed") == set()
    page = viewer.get(reverse(OUTBOX_LIST)).content.decode()
    assert "older than 1 hour" in page
    assert "FYOTHER (test)" in page


# -- delivery reports --------------------------------------------------------------------


@pytest.fixture
def stored_report(fyno_emulator: FynoEmulatorHandle) -> FynoDeliveryReport:
    """A report Fyno posted for a message it was sent, stored by the webhook."""
    message = row(State.PENDING)
    outbox.drain()
    body = fyno_emulator.emulator.delivery_reports(custom_id=str(message.pk))
    response = Client().post(
        reverse("django_fyno:webhook", kwargs={"secret": SECRET}),
        json.dumps(body),
        content_type="application/json",
    )
    assert response.status_code == 200
    report: FynoDeliveryReport = FynoDeliveryReport.objects.get()
    return report


@pytest.fixture
def receiver_calls() -> Iterator[list[dict[str, Any]]]:
    """What delivery_report_received receivers were sent (a receiver recording them)."""
    calls: list[dict[str, Any]] = []

    def record(sender: Any, **kwargs: Any) -> None:
        calls.append(kwargs)

    delivery_report_received.connect(record, dispatch_uid="test_admin_outbox.record")
    yield calls
    delivery_report_received.disconnect(dispatch_uid="test_admin_outbox.record")


def test_a_report_is_read_only_and_linked_to_its_outbox_row(
    viewer: Client, stored_report: FynoDeliveryReport
) -> None:
    change = reverse("admin:django_fyno_fynodeliveryreport_change", args=[stored_report.pk])
    row_url = reverse("admin:django_fyno_fynooutbox_change", args=[stored_report.outbox_id])

    listing = viewer.get(reverse(REPORT_LIST)).content.decode()
    detail = viewer.get(change).content.decode()

    assert f'href="{row_url}"' in listing
    assert f'href="{row_url}"' in detail
    assert "&quot;status&quot;: &quot;delivered&quot;" in detail  # the raw report, formatted
    assert 'name="action"' not in listing
    assert 'name="_save"' not in detail
    assert viewer.get(reverse("admin:django_fyno_fynodeliveryreport_add")).status_code == 403
    assert viewer.post(change, {"status": "failed"}).status_code == 403
    delete = reverse("admin:django_fyno_fynodeliveryreport_delete", args=[stored_report.pk])
    assert viewer.post(delete, {"post": "yes"}).status_code == 403
    stored_report.refresh_from_db()
    assert stored_report.status == "delivered"


def test_replay_sends_the_signal_again_marked_as_a_replay(
    manager: Client, stored_report: FynoDeliveryReport, receiver_calls: list[dict[str, Any]]
) -> None:
    asked = act(manager, "replay_reports", [stored_report], confirmed=False, listing=REPORT_LIST)

    assert asked.status_code == 200
    assert "1 report will be sent again" in asked.content.decode()
    assert "replayed=True" in asked.content.decode()
    assert receiver_calls == []

    response = act(manager, "replay_reports", [stored_report], listing=REPORT_LIST)

    assert page_messages(response) == ["1 replayed"]
    assert len(receiver_calls) == 1
    call = receiver_calls[0]
    assert call["report"] == stored_report
    assert call["outbox"] == stored_report.outbox
    assert (call["created"], call["replayed"]) == (False, True)
    # Nothing stored changed: the report had been applied when it arrived.
    assert FynoDeliveryReport.objects.count() == 1
    assert FynoOutbox.objects.get().delivery == {"email": "delivered"}


def test_a_receiver_failing_a_replay_is_an_error_message_naming_it_not_a_500(
    manager: Client, stored_report: FynoDeliveryReport
) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"boom with {API_KEY}")

    delivery_report_received.connect(broken, dispatch_uid="test_admin_outbox.broken")
    try:
        response = act(manager, "replay_reports", [stored_report], listing=REPORT_LIST)
    finally:
        delivery_report_received.disconnect(dispatch_uid="test_admin_outbox.broken")

    assert response.status_code == 200
    [message] = page_messages(response)
    assert message.startswith(f"0 replayed, 1 failed: #{stored_report.pk} (")
    assert "broken raised RuntimeError" in message
    assert API_KEY not in response.content.decode()  # the exception's text is not shown


def test_a_forged_replay_from_a_view_only_user_sends_nothing(
    viewer: Client, stored_report: FynoDeliveryReport, receiver_calls: list[dict[str, Any]]
) -> None:
    response = act(viewer, "replay_reports", [stored_report], listing=REPORT_LIST)

    assert response.status_code == 403
    assert receiver_calls == []


# -- tenants -----------------------------------------------------------------------------

TENANT_KEYS = {"FYTEST": API_KEY, "FYOTHER": OTHER_KEY}


def tenant_resolver(user: Any = None, *, workspace: Any = None) -> dict[str, str] | None:
    if workspace is not None:
        key = TENANT_KEYS.get(workspace.wsid)
        return None if key is None else {"WSID": workspace.wsid, "API_KEY": key}
    return {"WSID": "FYTEST", "API_KEY": API_KEY}


@pytest.fixture
def tenants(settings: Any, request: pytest.FixtureRequest) -> Iterator[FynoEmulatorHandle]:
    """An in-process emulator serving two workspaces, and a resolver for both."""
    settings.FYNO = {**BASE_FYNO, "CLIENT_RESOLVER": "tests.test_admin_outbox.tenant_resolver"}
    emulator = Emulator(workspaces=dict(TENANT_KEYS))
    with EmulatorMock(emulator, DEFAULT_ENDPOINT) as mocked:
        yield FynoEmulatorHandle(emulator, mocked.endpoint, mocked.url, emulator.api_key)
    logs = [entry for space in emulator.workspaces.values() for entry in space.request_log]
    assert contract_violations(logs) == []


def test_a_retry_sends_each_row_to_its_own_workspace(
    manager: Client, tenants: FynoEmulatorHandle, django_capture_on_commit_callbacks: Any
) -> None:
    ours = [row(State.FAILED), row(State.FAILED)]
    theirs = [row(State.FAILED, wsid="FYOTHER"), row(State.DEAD, wsid="FYOTHER")]

    with django_capture_on_commit_callbacks(execute=True):
        response = act(manager, "retry_messages", [*ours, *theirs])

    assert page_messages(response) == ["4 retried"]
    mine = tenants.workspace("FYTEST").emulator.events_log
    other = tenants.workspace("FYOTHER").emulator.events_log
    assert sorted(str(entry["custom_id"]) for entry in mine) == sorted(str(r.pk) for r in ours)
    assert sorted(str(entry["custom_id"]) for entry in other) == sorted(str(r.pk) for r in theirs)
    assert set(FynoOutbox.objects.values_list("state", flat=True)) == {State.SENT}
    page = manager.get(reverse(OUTBOX_LIST)).content.decode()
    assert API_KEY not in page
    assert OTHER_KEY not in page


# -- over real HTTP ----------------------------------------------------------------------


def test_a_retry_reaches_the_emulator_over_http(
    manager: Client,
    fyno_live_emulator: FynoEmulatorHandle,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.FYNO = {**BASE_FYNO, "ENDPOINT": fyno_live_emulator.endpoint}
    failed = row(State.FAILED)

    with django_capture_on_commit_callbacks(execute=True):
        response = act(manager, "retry_messages", [failed])

    assert page_messages(response) == ["1 retried"]
    assert sent_ids(fyno_live_emulator) == [str(failed.pk)]
    failed.refresh_from_db()
    assert failed.state == State.SENT


# -- the API key -------------------------------------------------------------------------


def test_the_api_key_is_on_no_page(
    admin_client: Client, manager: Client, viewer: Client, stored_report: FynoDeliveryReport
) -> None:
    rows = [
        row(State.FAILED, last_error="Fyno said no (400)"),
        row(State.UNKNOWN),
        row(State.PENDING, payload={"n": 1}),
    ]
    pages = []
    for who in (admin_client, manager, viewer):
        for url in (
            reverse(OUTBOX_LIST),
            reverse(OUTBOX_LIST) + "?state=failed&age=1h&event=order_shipped",
            reverse(OUTBOX_LIST) + f"?workspace={default_workspace().key}",
            reverse(OUTBOX_LIST) + "?q=u1",
            reverse(REPORT_LIST),
            reverse("admin:django_fyno_fynodeliveryreport_change", args=[stored_report.pk]),
            reverse("admin:django_fyno_fynodeliveryreport_history", args=[stored_report.pk]),
            *(reverse("admin:django_fyno_fynooutbox_change", args=[item.pk]) for item in rows),
            *(reverse("admin:django_fyno_fynooutbox_history", args=[item.pk]) for item in rows),
            reverse("admin:app_list", args=["django_fyno"]),
        ):
            response = who.get(url)
            assert response.status_code == 200, url
            pages.append(response)
    # The confirmation pages, and the pages after each action.
    for action in ("retry_messages", "cancel_messages"):
        pages.append(act(manager, action, rows, confirmed=False))
        pages.append(act(manager, action, rows))
    for confirmed in (False, True):
        pages.append(
            act(
                manager, "replay_reports", [stored_report], confirmed=confirmed, listing=REPORT_LIST
            )
        )

    assert len(pages) == 3 * 14 + 6
    for response in pages:
        assert response.status_code == 200
        assert API_KEY not in response.content.decode()


def test_the_templates_hold_no_inline_script_or_style() -> None:
    """Django's Content-Security-Policy support must be able to forbid both."""
    root = Path(__file__).resolve().parent.parent / "django_fyno/templates/admin/django_fyno"
    templates = [
        root / folder / name
        for folder in ("fynooutbox", "fynodeliveryreport")
        for name in ("action_confirmation.html", "change_form_object_tools.html")
    ]

    for path in templates:
        text = path.read_text().lower()
        assert "<script" not in text, path
        assert "<style" not in text, path
        assert "style=" not in text, path
        assert not re.search(r"\bon[a-z]+=", text), path  # no onclick= and the like
