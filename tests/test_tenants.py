"""Two tenants, one emulator serving two workspaces: each workspace gets its own traffic only.

Every profile mirror and outbox row records its workspace when written; sync,
delivery, deletion and the shared pause all work per workspace, with that
workspace's credentials (docs/settings.md, CLIENT_RESOLVER).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import override_settings

from django_fyno import notify, outbox, properties
from django_fyno.clients import Workspace
from django_fyno.emulator.live import LiveEmulator
from django_fyno.models import FynoOutbox, FynoProfile
from django_fyno.pause import SharedPause

User = get_user_model()

KEYS = {"FYA": "key-of-tenant-a", "FYB": "key-of-tenant-b"}


def tenant_of(user: Any) -> str:
    """The test's tenancy: usernames starting with "b" belong to tenant B."""
    return "FYB" if user.username.startswith("b") else "FYA"


def resolver(user: Any = None, *, workspace: Any = None) -> dict[str, str] | None:
    if workspace is not None:  # credentials for a workspace a stored row belongs to
        key = KEYS.get(workspace.wsid)
        return None if key is None else {"WSID": workspace.wsid, "API_KEY": key}
    wsid = "FYA" if user is None else tenant_of(user)
    return {"WSID": wsid, "API_KEY": KEYS[wsid]}


@pytest.fixture(scope="module")
def live() -> Iterator[LiveEmulator]:
    with LiveEmulator(workspaces=dict(KEYS)) as emulator:
        yield emulator


@pytest.fixture
def tenants(live: LiveEmulator, transactional_db: None) -> Iterator[LiveEmulator]:
    live.reset()
    fyno = {
        **settings.FYNO,
        "WSID": "",
        "API_KEY": "",
        "ENDPOINT": live.endpoint,
        "CLIENT_RESOLVER": "tests.test_tenants.resolver",
        "TASK_MODE": "inline",
        # No client-side retries: a 429 must show up as the shared pause at once.
        "RETRY": {"MAX_ATTEMPTS": 1},
        "OUTBOX_CACHE": "default",
    }
    with override_settings(FYNO=fyno):
        yield live
    from django.core.cache import cache

    cache.clear()


def ids_in(live: LiveEmulator, wsid: str) -> set[str]:
    """Every distinct id a workspace's requests named, in paths and bodies."""
    found: set[str] = set()
    for entry in live.workspace(wsid).request_log:
        body = entry.body if isinstance(entry.body, (dict, list)) else {}
        items = (
            body
            if isinstance(body, list)
            else [body, *body.get("batch", []), *body.get("events", [])]
        )
        for item in items:
            if isinstance(item, dict) and "distinct_id" in item:
                named = item["distinct_id"]
                found.update(map(str, named) if isinstance(named, list) else [str(named)])
        for user_pk in (p for p in entry.path.split("/") if p.isdigit()):
            found.add(user_pk)
    return found


def test_each_workspace_receives_exactly_its_own_users_traffic(tenants: LiveEmulator) -> None:
    with transaction.atomic():
        a1 = User.objects.create(username="ada", email="ada@example.com")
        a2 = User.objects.create(username="alan", email="alan@example.com")
        b1 = User.objects.create(username="bob", email="bob@example.com")
    a_ids, b_ids = {str(a1.pk), str(a2.pk)}, {str(b1.pk)}
    assert set(tenants.workspace("FYA").profiles("test")) == a_ids
    assert set(tenants.workspace("FYB").profiles("test")) == b_ids
    rows = {row.user_id: row.wsid for row in FynoProfile.objects.all()}
    assert rows == {a1.pk: "FYA", a2.pk: "FYA", b1.pk: "FYB"}

    a1.first_name, b1.first_name = "Ada", "Bob"
    a1.save()
    b1.save()
    assert tenants.workspace("FYA").profile("test", str(a1.pk))["name"] == "Ada"
    assert tenants.workspace("FYB").profile("test", str(b1.pk))["name"] == "Bob"

    with transaction.atomic():  # mixed tenants in one transaction
        notify("welcome", [a1, b1, a2], {"plan": "pro"})
        properties(b1).add("logins", 1)
    assert dict(FynoOutbox.objects.values_list("distinct_id", "wsid")) == {
        str(a1.pk): "FYA",
        str(a2.pk): "FYA",
        str(b1.pk): "FYB",
    }
    assert set(FynoOutbox.objects.values_list("state", flat=True)) == {"sent"}
    a_events = {e["distinct_id"] for e in tenants.workspace("FYA").events_log}
    b_events = {e["distinct_id"] for e in tenants.workspace("FYB").events_log}
    assert (a_events, b_events) == (a_ids, b_ids)

    with transaction.atomic():
        a2.delete()
        b1.delete()
    assert set(tenants.workspace("FYA").profiles("test")) == {str(a1.pk)}
    assert tenants.workspace("FYB").profiles("test") == {}
    assert FynoProfile.objects.count() == 1

    # Not one request named another tenant's user, and every request was authorised.
    assert ids_in(tenants, "FYA") <= a_ids
    assert ids_in(tenants, "FYB") <= b_ids
    for wsid in KEYS:
        statuses = {entry.status for entry in tenants.workspace(wsid).request_log}
        assert statuses <= {200, 201, 202}, (wsid, statuses)


def test_a_429_in_one_workspace_does_not_pause_the_other(tenants: LiveEmulator) -> None:
    a1 = User.objects.create(username="ada")
    b1 = User.objects.create(username="bob")
    tenants.workspace("FYA").set_fault("*", throttle_rate=1.0, retry_after=30)
    with transaction.atomic():
        notify("welcome", [a1, b1])
    states = dict(FynoOutbox.objects.values_list("wsid", "state"))
    assert states == {"FYA": "pending", "FYB": "sent"}
    workspace_a = Workspace.of(FynoOutbox.objects.get(wsid="FYA"))
    workspace_b = Workspace.of(FynoOutbox.objects.get(wsid="FYB"))
    assert SharedPause(workspace_a).gate().open is False
    assert SharedPause(workspace_b).gate().open is True

    before_a = len(tenants.workspace("FYA").request_log)
    with transaction.atomic():
        notify("reminder", [a1, b1])
    # B is sent at once; A's workspace is paused, so nothing more is even tried there.
    assert FynoOutbox.objects.filter(wsid="FYB", state="sent").count() == 2
    assert FynoOutbox.objects.filter(wsid="FYA", state="pending").count() == 2
    assert len(tenants.workspace("FYA").request_log) == before_a


def test_a_row_whose_workspace_can_no_longer_be_resolved_fails_and_goes_nowhere(
    tenants: LiveEmulator,
) -> None:
    row = FynoOutbox.objects.create(
        kind="event",
        event="welcome",
        distinct_id="u1",
        wsid="FYGONE",
        version="test",
        endpoint=tenants.endpoint,
    )
    outbox.drain()
    row.refresh_from_db()
    assert row.state == "failed"
    assert "workspace FYGONE can no longer be resolved" in row.last_error
    assert all(tenants.workspace(wsid).request_log == [] for wsid in KEYS)
