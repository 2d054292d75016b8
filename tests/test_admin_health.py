"""The admin's health page (``admin:django_fyno_health``): per workspace, what the outbox,
the profiles, the pause and the credentials say; never the key; ``view_health`` only."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from html import unescape
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.cache import caches
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from django_fyno import health
from django_fyno.clients import Workspace, reset_clients
from django_fyno.emulator.live import LiveEmulator
from django_fyno.models import FynoOutbox, FynoProfile
from django_fyno.pause import SharedPause
from django_fyno.testing import FynoEmulatorHandle

pytestmark = pytest.mark.django_db

ENDPOINT = "https://api.fyno.io/v1"
KEYS = {"FYA": "sk-health-A-7f3c9e1d2b", "FYB": "sk-health-B-0a9d8c7e6f"}
# Rows recorded this workspace; the resolver no longer knows it.
GONE = "FYGONE"
A = Workspace("FYA", "test", ENDPOINT)
B = Workspace("FYB", "test", ENDPOINT)
C = Workspace(GONE, "test", ENDPOINT)


def resolver(user: Any = None, *, workspace: Any = None) -> dict[str, str] | None:
    if workspace is not None:
        key = KEYS.get(workspace.wsid)
        return None if key is None else {"WSID": workspace.wsid, "API_KEY": key}
    return {"WSID": "FYA", "API_KEY": KEYS["FYA"]}


@pytest.fixture(scope="module")
def fyno_emulator_options() -> dict[str, Any]:
    return {"workspaces": dict(KEYS)}


@pytest.fixture(autouse=True)
def tenants(settings: Any) -> Iterator[None]:
    # The staff face's URLconf, through the settings fixture (the test settings have no
    # ROOT_URLCONF for pytest-django's urls marker to swap).
    settings.ROOT_URLCONF = "tests.admin_urls"
    fyno = {
        **django_settings.FYNO,
        "WSID": "",
        "API_KEY": "",
        "ENDPOINT": ENDPOINT,
        "CLIENT_RESOLVER": "tests.test_admin_health.resolver",
        "RETRY": {"MAX_ATTEMPTS": 1},
    }
    caches["default"].clear()
    with override_settings(FYNO=fyno):
        yield
    caches["default"].clear()
    reset_clients()


def outbox(workspace: Workspace, state: str, **fields: Any) -> FynoOutbox:
    created_at = fields.pop("created_at", None)
    row = FynoOutbox.objects.create(
        kind="event", event="welcome", distinct_id="1", state=state, **workspace.fields(), **fields
    )
    if created_at is not None:  # auto_now_add: set it afterwards
        FynoOutbox.objects.filter(pk=row.pk).update(created_at=created_at)
    return row


def staff(*codenames: str) -> Client:
    """A client logged in as a staff member holding only these permissions."""
    user = get_user_model().objects.create_user(username="staffer", is_staff=True)
    for codename in codenames:
        app_label, name = codename.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=name)
        )
    client = Client()
    client.force_login(user)
    return client


def sections(html: str) -> dict[str, str]:
    """The page's text per workspace, keyed on the workspace id."""
    parts = html.split('<div class="module fyno-workspace"')[1:]
    found = {}
    for part in parts:
        heading = re.search(r"<h2>(.*?)</h2>", part, re.S)
        assert heading is not None
        wsid = heading.group(1).split()[1]
        text = unescape(re.sub(r"<[^>]+>", " ", part))
        found[wsid] = " ".join(text.split())
    return found


def page(client: Client) -> str:
    response = client.get(reverse("admin:django_fyno_health"))
    assert response.status_code == 200
    html: str = response.content.decode()
    return html


def test_each_workspace_has_its_counts_failures_pause_and_credentials(
    admin_client: Client, fyno_emulator: FynoEmulatorHandle
) -> None:
    FynoProfile.objects.all().delete()  # the admin user's own mirror row
    now = timezone.now()
    outbox(A, "pending", created_at=now - timedelta(hours=3))
    outbox(A, "pending")
    outbox(A, "sent", request_id="req-a-old", sent_at=now - timedelta(minutes=5))
    outbox(A, "sent", request_id="req-a-new", sent_at=now)
    outbox(A, "failed", last_error="Fyno answered 400: event is not live")
    outbox(A, "failed", last_error="Fyno answered 400: event is not live")
    outbox(A, "dead", last_error="Fyno answered 503: try later")
    # Older than the window: not counted as a recent failure.
    outbox(A, "failed", last_error="an old refusal", created_at=now - timedelta(days=2))
    outbox(B, "pending", created_at=now - timedelta(minutes=10))
    outbox(B, "unknown", last_error="timed out waiting for Fyno's answer")
    FynoProfile.objects.create(distinct_id="p1", state="failed", last_error="bad", **A.fields())
    FynoProfile.objects.create(distinct_id="p2", state="synced", dirty_since=now, **A.fields())
    FynoProfile.objects.create(distinct_id="p3", state="synced", **B.fields())
    outbox(C, "pending")
    SharedPause(B).rate_limited(600)

    html = page(admin_client)
    found = sections(html)

    assert list(found) == ["FYA", "FYB", GONE]  # the default first
    a, b, c = found["FYA"], found["FYB"], found[GONE]
    assert "(default)" in a
    assert "(default)" not in b
    # Outbox counts by state, in the state order of the model.
    assert "pending sending sent failed dead unknown cancelled 2 0 2 3 1 0 0" in a
    assert "pending sending sent failed dead unknown cancelled 1 0 0 0 0 1 0" in b
    assert "3 hours old" in a
    assert "10 minutes old" in b
    # Failures of the last 24 h, grouped by Fyno's message, most frequent first.
    assert "outbox Fyno answered 400: event is not live 2" in a
    assert "outbox Fyno answered 503: try later 1" in a
    assert "profiles bad 1" in a
    assert "an old refusal" not in a
    assert "outbox timed out waiting for Fyno's answer 1" in b
    assert "req-a-new" in a
    assert "req-a-old" not in a
    assert "2 mirrored: 1 failed, 1 waiting for a sync, 0 waiting for deletion" in a
    assert "1 mirrored: 0 failed, 0 waiting for a sync" in b
    # The pause: B is paused, with its end; A flows.
    assert "flowing" in a
    assert "paused until" in b
    assert "Fyno asked to slow down (429)" in b
    assert re.search(r"\(in (9|10) minutes\)", b)
    # Credentials: one call per workspace that can be resolved.
    assert "working: credentials work" in a
    assert "working: credentials work" in b
    assert "this workspace cannot be resolved" in c
    calls = {
        wsid: [(e.method, e.path) for e in fyno_emulator.workspace(wsid).requests] for wsid in KEYS
    }
    assert calls == {"FYA": [("GET", "/FYA/suppressions")], "FYB": [("GET", "/FYB/suppressions")]}
    # Never a key.
    for key in KEYS.values():
        assert key not in html


def test_the_credentials_check_is_cached(
    admin_client: Client, fyno_emulator: FynoEmulatorHandle
) -> None:
    page(admin_client)
    page(admin_client)
    assert len(fyno_emulator.workspace("FYA").requests) == 1
    caches["default"].clear()
    page(admin_client)
    assert len(fyno_emulator.workspace("FYA").requests) == 2


def test_refused_credentials_show_as_not_working_without_the_key(
    admin_client: Client, fyno_emulator: FynoEmulatorHandle
) -> None:
    wrong = "sk-wrong-key-5e4d3c2b1a"

    def wrong_key(user: Any = None, *, workspace: Any = None) -> dict[str, str]:
        return {"WSID": "FYA", "API_KEY": wrong}

    with override_settings(FYNO={**django_settings.FYNO, "CLIENT_RESOLVER": wrong_key}):
        html = page(admin_client)
    a = sections(html)["FYA"]
    assert "not working: Fyno refused the API key or workspace id (401" in a
    assert wrong not in html


@pytest.mark.parametrize(
    ("fault", "shown"),
    [
        ({"error_rate": 1.0, "error_status": 503}, "not working: Fyno answered 503"),
        ({"fail_next": 1, "fail_next_status": "drop"}, "not working: cannot reach"),
    ],
)
def test_fyno_errors_are_shown_on_the_page_never_a_500(
    admin_client: Client, fyno_emulator: FynoEmulatorHandle, fault: dict[str, Any], shown: str
) -> None:
    fyno_emulator.workspace("FYA").set_fault("list_suppressions", **fault)
    html = page(admin_client)
    assert shown in sections(html)["FYA"]


def test_an_unreachable_endpoint_is_shown(
    admin_client: Client, fyno_emulator: FynoEmulatorHandle
) -> None:
    # The emulator's mock answers for its own host only: any other is unreachable.
    FynoProfile.objects.all().delete()  # the admin user's mirror row, at the old endpoint
    elsewhere = "https://fyno.unreachable.invalid/v1"
    with override_settings(FYNO={**django_settings.FYNO, "ENDPOINT": elsewhere}):
        html = page(admin_client)
    assert f"not working: cannot reach {elsewhere}" in sections(html)["FYA"]


def test_a_default_workspace_that_cannot_be_resolved_is_said(
    admin_client: Client, fyno_emulator: FynoEmulatorHandle
) -> None:
    def broken(user: Any = None, *, workspace: Any = None) -> dict[str, str] | None:
        return None if workspace is None else resolver(workspace=workspace)

    FynoProfile.objects.all().delete()  # the admin user's mirror row, in FYA
    outbox(B, "pending")
    with override_settings(FYNO={**django_settings.FYNO, "CLIENT_RESOLVER": broken}):
        html = page(admin_client)
    assert "The default workspace cannot be resolved:" in html
    assert list(sections(html)) == ["FYB"]


def test_looking_at_a_half_open_pause_leaves_the_probe_to_the_senders(
    admin_client: Client, fyno_emulator: FynoEmulatorHandle
) -> None:
    # Refused an hour ago: the pause is over, and the next sender probes.
    an_hour_ago = timezone.now() - timedelta(hours=1)
    SharedPause(A, clock=lambda: an_hour_ago).auth_failed("Unauthorized")

    a = sections(page(admin_client))["FYA"]
    assert "pause over; the next request probes Fyno" in a
    assert "Fyno refused the credentials of workspace FYA (test) (401): Unauthorized" in a
    assert "a probe is in flight" not in a
    # The page took no part: the first sender still gets to probe, the second waits.
    assert SharedPause(A).gate().probe is True
    assert SharedPause(A).gate().open is False
    assert "a probe is in flight" in sections(page(admin_client))["FYA"]


def test_staff_without_view_health_get_403_and_no_link(db: None) -> None:
    client = staff("django_fyno.view_fynooutbox")
    response = client.get(reverse("admin:django_fyno_health"))
    assert response.status_code == 403
    index = client.get(reverse("admin:app_list", kwargs={"app_label": "django_fyno"}))
    assert index.status_code == 200
    assert reverse("admin:django_fyno_health") not in index.content.decode()


def test_staff_with_only_view_health_see_the_page_and_the_link(
    fyno_emulator: FynoEmulatorHandle,
) -> None:
    client = staff("django_fyno.view_health", "django_fyno.view_fynooutbox")
    html = page(client)
    assert "Workspace FYA (test) (default)" in html
    index = client.get(reverse("admin:app_list", kwargs={"app_label": "django_fyno"}))
    assert index.status_code == 200
    assert f'href="{reverse("admin:django_fyno_health")}"' in index.content.decode()


def test_anonymous_visitors_are_sent_to_the_login_page(client: Client) -> None:
    response = client.get(reverse("admin:django_fyno_health"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_the_domain_reports_without_calling_fyno_when_asked(
    fyno_emulator: FynoEmulatorHandle,
) -> None:
    outbox(B, "pending")
    # A mirror row whose workspace could not be resolved when it was written.
    FynoProfile.objects.create(state="pending", dirty_since=timezone.now())
    report = health.health(check=False)
    blank = Workspace("", "", "")
    assert [entry.workspace for entry in report.workspaces] == [A, blank, B]
    assert all(entry.credentials is None for entry in report.workspaces)
    assert report.workspaces[2].outbox["pending"] == 1
    assert report.workspaces[1].label == "(no workspace recorded)"
    assert report.workspaces[1].profiles["dirty"] == 1
    assert fyno_emulator.requests == []
    # Checked, the blank one is one that cannot be resolved.
    check = health.check_credentials(blank)
    assert (check.ok, check.unresolved) == (False, True)
    assert "the row records no Fyno workspace" in check.message


@pytest.fixture(scope="module")
def live() -> Iterator[LiveEmulator]:
    with LiveEmulator(workspaces=dict(KEYS)) as emulator:
        yield emulator


def test_over_http_a_slow_fyno_is_a_short_timeout_on_the_page(
    admin_client: Client, live: LiveEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    live.reset()
    FynoProfile.objects.all().delete()  # the admin user's mirror row, at the mocked endpoint
    monkeypatch.setattr(health, "CHECK_READ_TIMEOUT", 0.2)
    live.workspace("FYB").set_fault("list_suppressions", latency=1.0)
    outbox(Workspace("FYB", "test", live.endpoint), "pending")
    try:
        with override_settings(FYNO={**django_settings.FYNO, "ENDPOINT": live.endpoint}):
            html = page(admin_client)
    finally:
        live.reset()
    found = sections(html)
    assert "working: credentials work" in found["FYA"]
    assert (
        f"not working: cannot reach {live.endpoint}: timed out waiting for Fyno's answer"
        in found["FYB"]
    )
    for key in KEYS.values():
        assert key not in html
