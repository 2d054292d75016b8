"""Right to erasure: ``fyno_erase`` and :mod:`django_fyno.erase`, against the emulator.

A person (Ada) with a synced profile, sent and unsent messages, a message to her
address alone, a property update, a refused message whose error quotes her, and
delivery reports; another person (Bob) whose data must stay. After the erasure the
emulator has no profile for her and no local row holds her email, phone or name.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core import serializers
from django.core.cache import cache
from django.core.management import CommandError, call_command

from django_fyno import notify, outbox, properties, sync
from django_fyno.adapter import ProfileAdapter
from django_fyno.clients import Workspace, reset_clients
from django_fyno.emulator.handlers import HANDLERS
from django_fyno.emulator.live import LiveEmulator
from django_fyno.erase import (
    AUDIT_LOGGER,
    ERASED,
    ErasureError,
    ErasureRefused,
    erase,
    plan_erasure,
)
from django_fyno.models import FynoDeliveryReport, FynoOutbox, FynoProfile
from django_fyno.receivers import skip_sync
from django_fyno.signals import profile_deleted
from django_fyno.testing import FynoEmulatorHandle
from django_fyno.webhooks import receive_reports

pytestmark = pytest.mark.django_db

User = get_user_model()
EMAIL = "ada.lovelace@example.com"
PHONE = "+14155550123"
NAME = ("Augusta", "Lovelace")
BOB_EMAIL = "bob@example.com"
KEYS = {"FYTEST": "test-api-key", "FYOTHER": "key-of-the-other-workspace"}


class PhoneAdapter(ProfileAdapter):
    """Distinct ids that are not primary keys, and a phone number (Django's User has none)."""

    def get_distinct_id(self, user: Any) -> str:
        return f"member-{user.username}"

    def get_channels(self, user: Any) -> dict[str, str]:
        channels = super().get_channels(user)
        if user.username == "ada":
            channels["sms"] = PHONE
        return channels


def resolver(user: Any = None, *, workspace: Any = None) -> dict[str, str] | None:
    """Users whose username starts with "o" live in FYOTHER; everyone else in FYTEST."""
    if workspace is not None:
        key = KEYS.get(workspace.wsid)
        return None if key is None else {"WSID": workspace.wsid, "API_KEY": key}
    wsid = "FYOTHER" if user is not None and user.username.startswith("o") else "FYTEST"
    return {"WSID": wsid, "API_KEY": KEYS[wsid]}


@pytest.fixture(scope="module")
def fyno_emulator_options() -> dict[str, Any]:
    return {"workspaces": dict(KEYS)}


@pytest.fixture(autouse=True)
def erase_settings(settings: Any) -> Iterator[None]:
    settings.FYNO = {
        **django_settings.FYNO,
        "WSID": "",
        "API_KEY": "",
        "CLIENT_RESOLVER": f"{__name__}.resolver",
        "PROFILE_ADAPTER": f"{__name__}.PhoneAdapter",
        "TASK_MODE": "off",
        "RETRY": {"MAX_ATTEMPTS": 1},
    }
    cache.clear()
    yield
    cache.clear()
    reset_clients()


@pytest.fixture
def fyno(fyno_emulator: FynoEmulatorHandle) -> FynoEmulatorHandle:
    return fyno_emulator


def make_user(username: str, email: str, first: str = "", last: str = "") -> Any:
    user = User(username=username, email=email, first_name=first, last_name=last)
    with skip_sync(user):
        user.save()
    sync.sync_profile(user.pk)
    return user


def deliver_reports(fyno: FynoEmulatorHandle, row: FynoOutbox) -> None:
    """Fyno's delivery reports for ``row``, received by the webhook."""
    reports = fyno.emulator.delivery_reports(custom_id=str(row.pk))
    receive_reports(json.dumps(reports).encode())


def ada_and_bob(fyno: FynoEmulatorHandle) -> tuple[Any, Any]:
    """Two people with everything django-fyno keeps about a person."""
    ada = make_user("ada", EMAIL, *NAME)
    bob = make_user("bob", BOB_EMAIL, "Bob", "Builder")
    welcome = notify(
        "welcome",
        ada,
        {"name": " ".join(NAME), "phone": PHONE},
        callback={"custom1": EMAIL},
        dedupe_key=f"welcome-{EMAIL}",
    )
    receipt = notify("receipt", {"email": EMAIL}, {"total": 12})
    properties(ada).set(nickname=NAME[0])
    to_bob = notify("welcome", bob, {"name": "Bob Builder"})
    outbox.drain()
    for row in (welcome, receipt, to_bob):
        deliver_reports(fyno, row)
    notify("reminder", ada, {"name": NAME[0]})  # not sent yet
    FynoOutbox.objects.create(
        kind="event",
        event="refused",
        distinct_id="member-ada",
        state="failed",
        last_error=f"Fyno answered 400: invalid email {EMAIL}",
        **Workspace.of(welcome).fields(),
    )
    assert FynoOutbox.objects.get(pk=welcome.pk).state == "sent"
    assert FynoDeliveryReport.objects.count() >= 4
    return ada, bob


def everything() -> str:
    """Every profile mirror, outbox row and delivery report, as text."""
    rows = [
        *FynoProfile.objects.order_by("pk"),
        *FynoOutbox.objects.order_by("pk"),
        *FynoDeliveryReport.objects.order_by("pk"),
    ]
    return serializers.serialize("json", rows)


def run(*args: str) -> str:
    out = StringIO()
    call_command("fyno_erase", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == AUDIT_LOGGER]


# -- end to end ------------------------------------------------------------------------


def test_erasing_a_deleted_user_leaves_nothing_of_them(
    fyno: FynoEmulatorHandle,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    ada, _bob = ada_and_bob(fyno)
    distinct_id = "member-ada"
    assert fyno.emulator.profile("test", distinct_id) is not None
    bob_rows = serializers.serialize("json", FynoOutbox.objects.filter(distinct_id="member-bob"))
    before = everything()
    for data in (EMAIL, PHONE, *NAME, distinct_id):
        assert data in before
    ada_outbox = list(
        FynoOutbox.objects.exclude(distinct_id="member-bob").values_list("pk", "state", "event")
    )
    deleted: list[Any] = []

    def receiver(**kwargs: Any) -> None:
        deleted.append(kwargs["distinct_ids"])

    with skip_sync(ada):
        ada.delete()  # the mirror row waits for its deletion (the job has not run)
    assert FynoProfile.objects.get(distinct_id=distinct_id).state == "deleting"

    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    profile_deleted.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            out = run(distinct_id, "--operator", "dpo@example.org", "--reference", "GDPR-42")
    finally:
        profile_deleted.disconnect(receiver)

    assert "Erased." in out
    # Fyno: no profile any more, Bob's untouched.
    assert fyno.emulator.profile("test", distinct_id) is None
    assert fyno.emulator.profile("test", "member-bob") is not None
    # No local row holds her email, phone, name or distinct id.
    after = everything()
    for data in (EMAIL, PHONE, *NAME, distinct_id):
        assert data not in after, data
    assert not FynoProfile.objects.filter(user__isnull=True).exists()
    # Ids, states (the unsent one cancelled), event names and counts are kept.
    kept = dict(FynoOutbox.objects.values_list("pk", "state"))
    for pk, state, _event in ada_outbox:
        assert kept[pk] == ("cancelled" if state == "pending" else state)
    events = set(FynoOutbox.objects.values_list("event", flat=True))
    assert {"welcome", "receipt", "$set", "reminder", "refused"} <= events
    welcome = FynoOutbox.objects.get(event="welcome", distinct_id="")
    assert welcome.request_id
    assert welcome.sent_at is not None
    assert welcome.last_error == ERASED
    assert set(welcome.result) == {"email", "sms"}
    assert all(set(item) <= {"msg_id", "status"} for item in welcome.result.values())
    reports = FynoDeliveryReport.objects.filter(outbox=welcome)
    assert reports.count() == 2
    assert all(report.raw["status"] == "delivered" and report.msg_id for report in reports)
    # Bob's rows are exactly as they were.
    assert serializers.serialize("json", FynoOutbox.objects.filter(distinct_id="member-bob")) == (
        bob_rows
    )
    assert BOB_EMAIL in after
    assert deleted == [[distinct_id]]
    # One audit line: who, when, what; never her data.
    [line] = audit_lines(caplog)
    message = line.getMessage()
    assert line.levelno == logging.INFO
    assert "fyno_erase by dpo@example.org at " in message
    assert "reference GDPR-42: erased" in message
    assert "FYTEST (test)" in message
    assert f"outbox rows scrubbed: {len(ada_outbox)}" in message
    for data in (EMAIL, PHONE, *NAME, distinct_id):
        assert data not in message


def test_a_user_who_still_exists_is_refused_unless_allowed(
    fyno: FynoEmulatorHandle, caplog: pytest.LogCaptureFixture
) -> None:
    ada, _bob = ada_and_bob(fyno)
    before = everything()
    fyno.emulator.clear_request_log()
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)

    with pytest.raises(CommandError, match="still exists and would be synced to Fyno again"):
        run(str(ada.pk))
    assert everything() == before
    assert fyno.emulator.request_log == []
    assert "refused" in audit_lines(caplog)[-1].getMessage()

    err = StringIO()
    call_command("fyno_erase", str(ada.pk), "--allow-existing-user", stdout=StringIO(), stderr=err)
    assert "its next save creates a new Fyno profile" in err.getvalue()
    assert fyno.emulator.profile("test", "member-ada") is None
    after = everything()
    for data in (EMAIL, PHONE, *NAME):
        assert data not in after
    User.objects.get(pk=ada.pk)  # the Django user is left alone


def test_the_profile_is_deleted_in_the_rows_workspace(fyno: FynoEmulatorHandle) -> None:
    olga = make_user("olga", EMAIL, *NAME)
    assert FynoProfile.objects.get(user=olga).wsid == "FYOTHER"
    other = fyno.workspace("FYOTHER")
    assert other.emulator.profile("test", "member-olga") is not None
    fyno.workspace("FYTEST").emulator.clear_request_log()
    with skip_sync(olga):
        olga.delete()

    run("member-olga")

    assert other.emulator.profile("test", "member-olga") is None
    assert [e.operation for e in other.emulator.request_log][-2:] == [
        "delete_profiles",
        "get_profile",
    ]
    assert fyno.workspace("FYTEST").emulator.request_log == []


# -- dry run, twice, failures -----------------------------------------------------------


def test_a_dry_run_changes_nothing_and_calls_nothing(fyno: FynoEmulatorHandle) -> None:
    ada, _bob = ada_and_bob(fyno)
    with skip_sync(ada):
        ada.delete()
    plan = plan_erasure("member-ada")
    before = everything()
    profiles = fyno.emulator.profiles("test")
    fyno.emulator.clear_request_log()

    out = run("member-ada", "--dry-run")

    assert everything() == before
    assert fyno.emulator.profiles("test") == profiles
    assert fyno.emulator.request_log == []
    assert "Would delete the Fyno profile in workspace FYTEST (test)" in out
    assert f"Would scrub outbox messages: {len(plan.outbox_pks)} (#" in out
    assert f"cancel unsent ones: {len(plan.pending_pks)} (#" in out
    assert f"Would scrub delivery reports: {len(plan.report_pks)} (#" in out
    assert "Dry run: nothing was changed." in out
    assert EMAIL not in out


def test_erasing_twice_is_fine(fyno: FynoEmulatorHandle, caplog: pytest.LogCaptureFixture) -> None:
    ada, _bob = ada_and_bob(fyno)
    with skip_sync(ada):
        ada.delete()
    run("member-ada")
    after_first = everything()
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)

    out = run("member-ada")

    assert "Erased." in out
    assert everything() == after_first
    assert fyno.emulator.profile("test", "member-ada") is None
    [line] = audit_lines(caplog)
    assert "erased" in line.getMessage()
    assert "mirror rows removed: 0; outbox rows scrubbed: 0," in line.getMessage()


@pytest.mark.parametrize("operation", ["delete_profiles", "get_profile"])
def test_a_fyno_503_leaves_things_consistent_and_fails(
    fyno: FynoEmulatorHandle, caplog: pytest.LogCaptureFixture, operation: str
) -> None:
    ada, _bob = ada_and_bob(fyno)
    with skip_sync(ada):
        ada.delete()
    unsent = set(FynoOutbox.objects.filter(state="pending").values_list("pk", flat=True))
    fyno.set_fault(operation, error_rate=1.0, error_status=503)
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)

    with pytest.raises(CommandError, match="Fyno did not confirm the deletion") as failed:
        run("member-ada")

    assert "run it again" in str(failed.value)
    assert "member-ada" not in str(failed.value)
    # Nothing scrubbed; only the unsent messages were withdrawn (they must not go out).
    after = everything()
    for data in (EMAIL, PHONE, *NAME):
        assert data in after
    assert FynoProfile.objects.filter(distinct_id="member-ada").exists()
    assert set(FynoOutbox.objects.filter(pk__in=unsent).values_list("state", flat=True)) == {
        "cancelled"
    }
    [line] = audit_lines(caplog)
    assert line.levelno == logging.ERROR
    assert (
        "FAILED: Fyno did not confirm the deletion in workspace FYTEST (test) "
        "(FynoServerError 503)" in line.getMessage()
    )
    assert "cancelled unsent: 1 (#" in line.getMessage()
    assert "member-ada" not in line.getMessage()

    fyno.clear_faults()
    run("member-ada")
    assert fyno.emulator.profile("test", "member-ada") is None
    assert EMAIL not in everything()


def test_a_profile_fyno_still_has_after_the_wait_is_a_failure(
    fyno: FynoEmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    ada, _bob = ada_and_bob(fyno)
    with skip_sync(ada):
        ada.delete()
    # Fyno acknowledges the deletion, but its GET keeps answering with the profile.
    acknowledged = (200, {"_message": "1 User(s) deleted successfully", "status": "ok"})
    monkeypatch.setitem(HANDLERS, "delete_profiles", lambda ctx: acknowledged)
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    with pytest.raises(ErasureError, match=r"Fyno still has the profile .* 2 s after deleting"):
        erase("member-ada", operator="test", confirm_timeout=2.0, clock=lambda: now[0], sleep=sleep)

    assert waits == [0.5, 0.5, 0.5, 0.5]
    gets = [e.operation for e in fyno.emulator.request_log].count("get_profile")
    assert gets == 5
    assert FynoProfile.objects.filter(distinct_id="member-ada").exists()
    assert EMAIL in everything()


def test_a_message_being_sent_is_waited_for(fyno: FynoEmulatorHandle) -> None:
    ada, _bob = ada_and_bob(fyno)
    with skip_sync(ada):
        ada.delete()
    FynoOutbox.objects.filter(event="reminder").update(state="sending")
    before = everything()

    with pytest.raises(CommandError, match=r"being sent \(#\d+\) to this person right now"):
        run("member-ada")
    assert everything() == before
    assert fyno.emulator.profile("test", "member-ada") is not None


def test_an_unknown_target_still_asks_fyno(fyno: FynoEmulatorHandle) -> None:
    out = run("nobody-we-know")
    assert "Erased." in out
    assert [e.operation for e in fyno.emulator.request_log] == ["delete_profiles", "get_profile"]


def test_the_domain_refuses_before_changing_anything(fyno: FynoEmulatorHandle) -> None:
    ada, _bob = ada_and_bob(fyno)
    before = everything()
    with pytest.raises(ErasureRefused):
        erase(str(ada.pk), operator="test")
    assert everything() == before


def test_the_api_key_is_in_no_output(
    fyno: FynoEmulatorHandle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ada, _bob = ada_and_bob(fyno)
    with skip_sync(ada):
        ada.delete()
    fyno.set_fault("delete_profiles", error_rate=1.0, error_status=503)
    with pytest.raises(CommandError) as failed:
        run("member-ada")
    for key in KEYS.values():
        assert key not in str(failed.value)
    out = run("member-ada", "--dry-run", "--verbosity", "2")
    fyno.clear_faults()
    out += run("member-ada", "--verbosity", "2")
    assert "Erased." in out
    for key in KEYS.values():
        assert key not in out
        assert key not in caplog.text


def test_over_http_against_the_live_emulator(settings: Any) -> None:
    with LiveEmulator(workspaces=dict(KEYS)) as live:
        settings.FYNO = {**settings.FYNO, "ENDPOINT": live.endpoint}
        ada = make_user("ada", EMAIL, *NAME)
        notify("welcome", ada, {"name": NAME[0]})
        outbox.drain()
        assert live.workspace("FYTEST").profile("test", "member-ada") is not None
        with skip_sync(ada):
            ada.delete()
        live.workspace("FYTEST").set_fault("get_profile", fail_next=1, fail_next_status=503)

        with pytest.raises(CommandError, match="Fyno did not confirm the deletion"):
            run("member-ada")
        assert EMAIL in everything()

        run("member-ada")
        assert live.workspace("FYTEST").profile("test", "member-ada") is None
        after = everything()
        for data in (EMAIL, PHONE, *NAME, "member-ada"):
            assert data not in after
