"""The suppression admin: list, search, refresh, add and delete, written through to Fyno.

One in-process emulator serves two workspaces, FYA (the project's default) and FYB;
a CLIENT_RESOLVER puts users whose username starts with "b" in FYB. Permissions:
every write needs django_fyno.manage_suppressions, viewing the view permission.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from django_fyno.clients import Workspace, client_for
from django_fyno.emulator.live import LiveEmulator
from django_fyno.models import FynoSuppression
from django_fyno.testing import FynoEmulatorHandle

User = get_user_model()

KEYS = {"FYA": "admin-suppr-key-of-tenant-a", "FYB": "admin-suppr-key-of-tenant-b"}
ENDPOINT = "https://api.fyno.io/v1"
FYA = Workspace("FYA", "test", ENDPOINT)
FYB = Workspace("FYB", "test", ENDPOINT)

CHANGELIST = "admin:django_fyno_fynosuppression_changelist"
ADD = "admin:django_fyno_fynosuppression_add"
REFRESH = "admin:django_fyno_fynosuppression_refresh"


def resolver(user: Any = None, *, workspace: Any = None) -> dict[str, str] | None:
    if workspace is not None:
        key = KEYS.get(workspace.wsid)
        return None if key is None else {"WSID": workspace.wsid, "API_KEY": key}
    wsid = "FYB" if user is not None and user.username.startswith("b") else "FYA"
    return {"WSID": wsid, "API_KEY": KEYS[wsid]}


def tenant_settings(endpoint: str, **extra: Any) -> dict[str, Any]:
    return {
        "WSID": "",
        "API_KEY": "",
        "VERSION": "test",
        "TASK_MODE": "inline",
        "ENDPOINT": endpoint,
        "CLIENT_RESOLVER": "tests.test_admin_suppressions.resolver",
        # One attempt: a fault of fail_next=1 is what the admin sees.
        "RETRY": {"MAX_ATTEMPTS": 1},
        **extra,
    }


@pytest.fixture(autouse=True)
def _admin_urls(settings: Any) -> None:
    # The staff face's URLconf. (Not @pytest.mark.urls: it needs a ROOT_URLCONF to
    # swap, and the test settings have none.)
    settings.ROOT_URLCONF = "tests.admin_urls"


@pytest.fixture
def fyno_emulator_options() -> dict[str, Any]:
    return {"workspaces": dict(KEYS)}


@pytest.fixture
def fyno(fyno_emulator: FynoEmulatorHandle, settings: Any, db: None) -> FynoEmulatorHandle:
    settings.FYNO = tenant_settings(fyno_emulator.endpoint)
    return fyno_emulator


def staff(name: str, *codenames: str) -> Client:
    """A logged-in staff member holding exactly these django_fyno permissions."""
    user = User.objects.create(username=name, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="django_fyno", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer(fyno: FynoEmulatorHandle) -> Client:
    return staff("viewer", "view_fynosuppression")


@pytest.fixture
def manager(fyno: FynoEmulatorHandle) -> Client:
    return staff("manager", "view_fynosuppression", "manage_suppressions")


def in_fyno(fyno: FynoEmulatorHandle, wsid: str) -> set[tuple[str, str, str, str]]:
    return {
        (item["channel"], item["distinct_id"], item["destination"], item["description"])
        for item in fyno.workspace(wsid).emulator.suppressions
    }


def mirror(wsid: str) -> set[tuple[str, str, str, str, str]]:
    return {
        (row.channel, row.distinct_id, row.destination, row.reason, row.added_by)
        for row in FynoSuppression.objects.filter(wsid=wsid)
    }


def texts(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def seed(workspace: Workspace, channel: str, **entry: str) -> None:
    client_for(workspace).add_suppression(channel, **entry)


def mirrored(workspace: Workspace, channel: str, **entry: str) -> FynoSuppression:
    """An entry in Fyno and in the mirror (with Fyno's id)."""
    seed(workspace, channel, **entry)
    listed = client_for(workspace).list_suppressions()
    found = next(
        item
        for item in listed
        if item.channel == channel
        and (item.distinct_id or "") == entry.get("distinct_id", "")
        and (item.destination or "") == entry.get("destination", "")
    )
    row: FynoSuppression = FynoSuppression.objects.create(
        **workspace.fields(),
        fyno_id=found.id or "",
        channel=channel,
        distinct_id=entry.get("distinct_id", ""),
        destination=entry.get("destination", ""),
        reason=entry.get("description", ""),
    )
    return row


def change_url(row: FynoSuppression) -> str:
    return reverse("admin:django_fyno_fynosuppression_change", args=[row.pk])


def delete_url(row: FynoSuppression) -> str:
    return reverse("admin:django_fyno_fynosuppression_delete", args=[row.pk])


def logged(action_flag: int) -> list[LogEntry]:
    return list(LogEntry.objects.filter(action_flag=action_flag).order_by("pk"))


# -- the list and its search ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("+919879000001", {"+919879000001"}),
        ("a@example", {"a@example.com"}),
        ("U-42", {""}),  # the user's entry: by distinct id
        ("whatsapp", {"+919879000002"}),
        ("bounced", {"a@example.com"}),
    ],
)
def test_search_finds_by_destination_distinct_id_channel_and_reason(
    viewer: Client, query: str, expected: set[str]
) -> None:
    FynoSuppression.objects.create(**FYA.fields(), channel="sms", destination="+919879000001")
    FynoSuppression.objects.create(**FYA.fields(), channel="whatsapp", destination="+919879000002")
    FynoSuppression.objects.create(
        **FYA.fields(), channel="email", destination="a@example.com", reason="hard bounced"
    )
    FynoSuppression.objects.create(**FYB.fields(), channel="email", distinct_id="U-42")

    response = viewer.get(reverse(CHANGELIST), {"q": query})

    assert response.status_code == 200
    assert {row.destination for row in response.context["cl"].result_list} == expected


def test_a_view_only_staff_member_sees_the_list_and_no_write(
    fyno: FynoEmulatorHandle, viewer: Client
) -> None:
    row = mirrored(FYA, "sms", destination="+919879000001")

    response = viewer.get(reverse(CHANGELIST))

    page = response.content.decode()
    assert response.status_code == 200
    assert "+919879000001" in page
    assert reverse(REFRESH) not in page
    assert "Refresh from Fyno" not in page
    assert reverse(ADD) not in page
    assert 'name="action"' not in page  # no action at all, so no delete_selected
    detail = viewer.get(change_url(row))
    assert detail.status_code == 200
    assert delete_url(row) not in detail.content.decode()


def test_forged_writes_of_a_view_only_staff_member_are_refused(
    fyno: FynoEmulatorHandle, viewer: Client
) -> None:
    row = mirrored(FYA, "sms", destination="+919879000001")
    before = [entry.operation for entry in fyno.requests]
    add = {"channel": "sms", "destination": "+919879000009"}

    assert viewer.get(reverse(ADD)).status_code == 403
    assert viewer.post(reverse(ADD), add).status_code == 403
    assert viewer.post(reverse(REFRESH), {"workspace": FYA.key}).status_code == 403
    assert viewer.get(reverse(REFRESH)).status_code == 403
    assert viewer.get(delete_url(row)).status_code == 403
    assert viewer.post(delete_url(row), {"post": "yes"}).status_code == 403
    bulk = viewer.post(
        reverse(CHANGELIST),
        {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"},
    )
    assert bulk.status_code in (200, 302)

    assert [entry.operation for entry in fyno.requests] == before
    assert in_fyno(fyno, "FYA") == {("sms", "", "+919879000001", "")}
    assert list(FynoSuppression.objects.values_list("pk", flat=True)) == [row.pk]
    assert not LogEntry.objects.exists()


def test_djangos_own_add_and_delete_permissions_are_not_enough(fyno: FynoEmulatorHandle) -> None:
    client = staff(
        "modeler", "view_fynosuppression", "add_fynosuppression", "delete_fynosuppression"
    )
    row = mirrored(FYA, "sms", destination="+919879000001")

    assert client.get(reverse(ADD)).status_code == 403
    assert client.post(delete_url(row), {"post": "yes"}).status_code == 403
    assert client.post(reverse(REFRESH), {"workspace": FYA.key}).status_code == 403
    assert FynoSuppression.objects.filter(pk=row.pk).exists()


def test_a_manager_sees_the_refresh_form_with_every_known_workspace(
    fyno: FynoEmulatorHandle, manager: Client
) -> None:
    User.objects.create(username="bob")  # a FYB profile: FYB is known
    FynoSuppression.objects.create(**FYA.fields(), channel="sms", destination="+1555")

    response = manager.get(reverse(CHANGELIST))

    page = response.content.decode()
    assert reverse(REFRESH) in page
    assert f'<option value="{FYA.key}">FYA</option>' in page
    assert f'<option value="{FYB.key}">FYB</option>' in page
    assert page.index(FYA.key) < page.index(FYB.key)  # the default first
    assert reverse(ADD) in page
    assert 'value="delete_selected"' in page


# -- refresh ------------------------------------------------------------------------------


def test_refresh_replaces_the_mirror_of_the_chosen_workspace_and_says_how_many(
    fyno: FynoEmulatorHandle, manager: Client
) -> None:
    User.objects.create(username="bob")
    seed(FYA, "sms", destination="+919879000001")
    seed(FYB, "sms", destination="+919879000002", description="DND")
    seed(FYB, "email", destination="b@example.com")
    FynoSuppression.objects.create(**FYA.fields(), channel="sms", destination="+10000000001")
    FynoSuppression.objects.create(**FYB.fields(), channel="sms", destination="+10000000002")

    response = manager.post(reverse(REFRESH), {"workspace": FYB.key}, follow=True)

    assert response.redirect_chain == [(reverse(CHANGELIST), 302)]
    assert texts(response) == [
        "Refreshed the suppressions of FYB from Fyno: 2 entries came back (2 new, 1 removed)."
    ]
    assert mirror("FYB") == {
        ("sms", "", "+919879000002", "DND", ""),
        ("email", "", "b@example.com", "", ""),
    }
    assert mirror("FYA") == {("sms", "", "+10000000001", "", "")}
    [entry] = logged(CHANGE)
    assert entry.user.get_username() == "manager"
    assert entry.object_repr == "Suppressions of FYB"
    assert "2 entries" in entry.change_message


def test_refresh_of_an_unknown_workspace_is_refused(
    fyno: FynoEmulatorHandle, manager: Client
) -> None:
    forged = Workspace("FYB", "test", ENDPOINT).key  # no row or profile names FYB yet

    response = manager.post(reverse(REFRESH), {"workspace": forged}, follow=True)

    assert texts(response) == ["Choose one of the workspaces listed to refresh."]
    assert fyno.workspace("FYB").requests == []
    assert not LogEntry.objects.exists()


def test_refresh_is_post_only(fyno: FynoEmulatorHandle, manager: Client) -> None:
    assert manager.get(reverse(REFRESH)).status_code == 405


def test_a_failed_refresh_is_a_message_and_changes_nothing(
    fyno: FynoEmulatorHandle, manager: Client
) -> None:
    FynoSuppression.objects.create(**FYA.fields(), channel="sms", destination="+10000000001")
    fyno.workspace("FYA").set_fault("list_suppressions", fail_next=1, fail_next_status=503)

    response = manager.post(reverse(REFRESH), {"workspace": FYA.key}, follow=True)

    assert response.status_code == 200
    [message] = texts(response)
    assert message.startswith("The suppressions of FYA were not refreshed: Fyno answered 503")
    assert mirror("FYA") == {("sms", "", "+10000000001", "", "")}
    assert not LogEntry.objects.exists()


# -- add ----------------------------------------------------------------------------------


def test_add_by_user_goes_to_fyno_and_the_mirror_with_who_did_it(
    fyno: FynoEmulatorHandle, manager: Client
) -> None:
    bob = User.objects.create(username="bob")

    response = manager.post(
        reverse(ADD), {"channel": "email", "user": "bob", "reason": "asked us"}, follow=True
    )

    assert response.status_code == 200
    assert in_fyno(fyno, "FYB") == {("email", str(bob.pk), "", "asked us")}
    assert in_fyno(fyno, "FYA") == set()
    assert mirror("FYB") == {("email", str(bob.pk), "", "asked us", "manager")}
    row = FynoSuppression.objects.get()
    assert row.fyno_id == fyno.workspace("FYB").emulator.suppressions[0]["_id"]
    [entry] = logged(ADDITION)
    assert (entry.object_id, entry.user.get_username()) == (str(row.pk), "manager")


def test_add_by_destination_goes_to_the_default_or_the_chosen_workspace(
    fyno: FynoEmulatorHandle, manager: Client
) -> None:
    User.objects.create(username="bob")

    manager.post(reverse(ADD), {"channel": "sms", "destination": "+919879000001"})
    manager.post(
        reverse(ADD),
        {"channel": "email", "destination": "b@example.com", "workspace": FYB.key},
    )

    assert in_fyno(fyno, "FYA") == {("sms", "", "+919879000001", "")}
    assert in_fyno(fyno, "FYB") == {("email", "", "b@example.com", "")}
    assert mirror("FYA") == {("sms", "", "+919879000001", "", "manager")}
    assert mirror("FYB") == {("email", "", "b@example.com", "", "manager")}
    assert len(logged(ADDITION)) == 2


def test_a_refused_add_shows_fynos_error_on_the_form_and_saves_nothing(
    fyno: FynoEmulatorHandle, manager: Client
) -> None:
    response = manager.post(reverse(ADD), {"channel": "sms", "destination": "not-a-number"})

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.non_field_errors() == [
        "Fyno refused the suppression: Invalid destination for channel sms"
    ]
    assert "Invalid destination for channel sms" in response.content.decode()
    assert in_fyno(fyno, "FYA") == set()
    assert not FynoSuppression.objects.exists()
    assert not LogEntry.objects.exists()


@pytest.mark.parametrize(
    ("data", "field", "error"),
    [
        (
            {"channel": "sms"},
            None,
            "Give either a user or a destination (exactly one).",
        ),
        (
            {"channel": "sms", "user": "bob", "destination": "+919879000001"},
            None,
            "Give either a user or a destination (exactly one).",
        ),
        ({"channel": "fax", "destination": "+919879000001"}, "channel", None),
        ({"channel": "sms", "user": "nobody"}, "user", "There is no such user."),
        (
            {"channel": "sms", "user": "bob", "workspace": Workspace("FYA", "test", ENDPOINT).key},
            "workspace",
            "a user's suppression goes to the user's workspace, FYB",
        ),
    ],
)
def test_the_add_form_checks_before_asking_fyno(
    fyno: FynoEmulatorHandle,
    manager: Client,
    data: dict[str, str],
    field: str | None,
    error: str | None,
) -> None:
    User.objects.create(username="bob")

    response = manager.post(reverse(ADD), data)

    assert response.status_code == 200
    form = response.context["adminform"].form
    errors = form.errors.get("__all__" if field is None else field)
    assert errors
    if error is not None:
        assert error in errors
    assert fyno.requests == []
    assert fyno.workspace("FYB").requests == []
    assert not FynoSuppression.objects.exists()


def test_an_add_fyno_cannot_take_is_a_form_error(fyno: FynoEmulatorHandle, manager: Client) -> None:
    fyno.workspace("FYA").set_fault("add_suppression", fail_next=1, fail_next_status=503)

    response = manager.post(reverse(ADD), {"channel": "sms", "destination": "+919879000001"})

    assert response.status_code == 200
    [error] = response.context["adminform"].form.non_field_errors()
    assert error.startswith("Fyno did not add the suppression: Fyno answered 503")
    assert in_fyno(fyno, "FYA") == set()
    assert not FynoSuppression.objects.exists()


def test_an_add_fyno_does_not_list_back_is_kept_and_says_so(
    fyno: FynoEmulatorHandle, manager: Client
) -> None:
    fyno.workspace("FYA").set_fault("list_suppressions", fail_next=1, fail_next_status=503)

    response = manager.post(
        reverse(ADD), {"channel": "sms", "destination": "+919879000001"}, follow=True
    )

    assert any("the next refresh" in message for message in texts(response))
    assert mirror("FYA") == {("sms", "", "+919879000001", "", "manager")}
    assert FynoSuppression.objects.get().fyno_id == ""


# -- delete -------------------------------------------------------------------------------


def test_delete_removes_it_in_fyno_then_the_mirror(
    fyno: FynoEmulatorHandle, manager: Client
) -> None:
    row = mirrored(FYA, "sms", destination="+919879000001")
    kept = mirrored(FYA, "email", destination="a@example.com")

    assert manager.get(delete_url(row)).status_code == 200  # the confirmation page
    response = manager.post(delete_url(row), {"post": "yes"}, follow=True)

    assert response.redirect_chain[-1][0] == reverse(CHANGELIST)
    assert in_fyno(fyno, "FYA") == {("email", "", "a@example.com", "")}
    assert list(FynoSuppression.objects.values_list("pk", flat=True)) == [kept.pk]
    [entry] = logged(DELETION)
    assert (entry.object_id, entry.user.get_username()) == (str(row.pk), "manager")


def test_a_delete_fyno_refuses_keeps_the_row(fyno: FynoEmulatorHandle, manager: Client) -> None:
    row = mirrored(FYA, "sms", destination="+919879000001")
    fyno.workspace("FYA").set_fault("delete_suppression", fail_next=1, fail_next_status=503)

    response = manager.post(delete_url(row), {"post": "yes"}, follow=True)

    assert response.status_code == 200
    assert response.redirect_chain == [(change_url(row), 302)]
    [message] = texts(response)
    assert message.startswith("The suppression was not deleted: Fyno answered 503")
    assert FynoSuppression.objects.filter(pk=row.pk).exists()
    assert in_fyno(fyno, "FYA") == {("sms", "", "+919879000001", "")}
    assert not LogEntry.objects.exists()


def test_deleting_an_entry_fyno_no_longer_has_clears_the_mirror(
    fyno: FynoEmulatorHandle, manager: Client
) -> None:
    row = FynoSuppression.objects.create(
        **FYA.fields(), fyno_id="0123456789abcdef01234567", channel="sms", destination="+1555"
    )

    response = manager.post(delete_url(row), {"post": "yes"}, follow=True)

    assert any("no longer had" in message for message in texts(response))
    assert not FynoSuppression.objects.exists()
    assert len(logged(DELETION)) == 1


def test_bulk_delete_confirms_then_deletes_in_fyno_first(
    fyno: FynoEmulatorHandle, manager: Client
) -> None:
    User.objects.create(username="bob")
    one = mirrored(FYA, "sms", destination="+919879000001")
    two = mirrored(FYB, "email", destination="b@example.com")
    kept = mirrored(FYA, "email", destination="a@example.com")
    selected = {"action": "delete_selected", "_selected_action": [one.pk, two.pk]}

    confirmation = manager.post(reverse(CHANGELIST), selected)
    assert confirmation.status_code == 200
    assert "Are you sure" in confirmation.content.decode()
    assert FynoSuppression.objects.count() == 3

    response = manager.post(reverse(CHANGELIST), {**selected, "post": "yes"}, follow=True)

    assert texts(response) == ["Deleted 2 suppressions in Fyno and here."]
    assert in_fyno(fyno, "FYA") == {("email", "", "a@example.com", "")}
    assert in_fyno(fyno, "FYB") == set()
    assert list(FynoSuppression.objects.values_list("pk", flat=True)) == [kept.pk]
    assert {entry.object_id for entry in logged(DELETION)} == {str(one.pk), str(two.pk)}


def test_bulk_delete_stops_when_fyno_is_out_of_reach(
    fyno: FynoEmulatorHandle, manager: Client
) -> None:
    one = mirrored(FYA, "sms", destination="+919879000001")
    two = mirrored(FYA, "email", destination="a@example.com")
    fyno.workspace("FYA").set_fault("delete_suppression", fail_next=1, fail_next_status=503)

    response = manager.post(
        reverse(CHANGELIST),
        {"action": "delete_selected", "_selected_action": [one.pk, two.pk], "post": "yes"},
        follow=True,
    )

    messages = texts(response)
    assert messages[0].startswith(f"Not deleted: {one}: Fyno answered 503")
    assert messages[1:] == ["1 more suppression was not tried; nothing changed for it."]
    assert FynoSuppression.objects.count() == 2
    assert len(fyno.workspace("FYA").emulator.suppressions) == 2
    assert not LogEntry.objects.exists()


def test_a_workspace_that_can_no_longer_be_resolved_is_a_message(
    fyno: FynoEmulatorHandle, manager: Client
) -> None:
    gone = Workspace("FYGONE", "test", ENDPOINT)  # the resolver has no key for it
    row = FynoSuppression.objects.create(
        **gone.fields(), fyno_id="0123456789abcdef01234567", channel="sms", destination="+1555"
    )

    deleted = manager.post(delete_url(row), {"post": "yes"}, follow=True)
    refreshed = manager.post(reverse(REFRESH), {"workspace": gone.key}, follow=True)

    assert [deleted.status_code, refreshed.status_code] == [200, 200]
    assert "FYGONE can no longer be resolved" in texts(deleted)[0]
    assert "FYGONE can no longer be resolved" in texts(refreshed)[0]
    assert FynoSuppression.objects.filter(pk=row.pk).exists()
    assert not LogEntry.objects.exists()


# -- no API key, no traceback -----------------------------------------------------------------


def test_no_page_shows_an_api_key(fyno: FynoEmulatorHandle, manager: Client) -> None:
    User.objects.create(username="bob")
    row = mirrored(FYB, "sms", destination="+919879000001")
    fyno.workspace("FYB").set_fault("*", fail_next=3, fail_next_status=401)
    pages = [
        manager.get(reverse(CHANGELIST)),
        manager.get(reverse(CHANGELIST), {"q": "sms"}),
        manager.get(reverse(ADD)),
        manager.post(reverse(ADD), {"channel": "sms", "destination": "not-a-number"}),
        manager.post(
            reverse(ADD), {"channel": "sms", "destination": "+1555", "workspace": FYB.key}
        ),
        manager.get(change_url(row)),
        manager.get(delete_url(row)),
        manager.post(delete_url(row), {"post": "yes"}, follow=True),
        manager.post(reverse(REFRESH), {"workspace": FYB.key}, follow=True),
        manager.post(
            reverse(CHANGELIST), {"action": "delete_selected", "_selected_action": [row.pk]}
        ),
    ]
    shown = [
        page.content.decode() + " ".join(texts(page)) for page in pages if page.status_code == 200
    ]

    assert len(shown) == len(pages)
    assert sum("Fyno answered 401" in page for page in shown) == 3  # the failures were shown
    assert [key for key in KEYS.values() for page in shown if key in page] == []


# -- timeouts (over real HTTP) ----------------------------------------------------------------


@pytest.fixture(scope="module")
def live() -> Iterator[LiveEmulator]:
    with LiveEmulator(workspaces=dict(KEYS)) as emulator:
        yield emulator


@pytest.fixture
def slow(live: LiveEmulator, settings: Any, db: None) -> Iterator[LiveEmulator]:
    live.reset()
    settings.FYNO = tenant_settings(live.endpoint, READ_TIMEOUT=0.3)
    yield live
    live.reset()


def test_timeouts_are_errors_on_the_form_and_in_messages(slow: LiveEmulator) -> None:
    manager = staff("manager", "view_fynosuppression", "manage_suppressions")
    workspace = Workspace("FYA", "test", slow.endpoint)
    seed(workspace, "sms", destination="+919879000001")
    row = FynoSuppression.objects.create(
        **workspace.fields(),
        fyno_id=slow.workspace("FYA").suppressions[0]["_id"],
        channel="sms",
        destination="+919879000001",
    )
    for operation in ("add_suppression", "delete_suppression", "list_suppressions"):
        slow.workspace("FYA").set_fault(operation, latency=1.0)

    added = manager.post(reverse(ADD), {"channel": "email", "destination": "a@example.com"})
    deleted = manager.post(delete_url(row), {"post": "yes"}, follow=True)
    refreshed = manager.post(reverse(REFRESH), {"workspace": workspace.key}, follow=True)

    assert added.status_code == 200
    [error] = added.context["adminform"].form.non_field_errors()
    assert error.startswith("Fyno did not add the suppression:")
    assert "timed out" in error.lower()
    assert texts(deleted)[0].startswith("The suppression was not deleted:")
    assert texts(refreshed)[0].startswith("The suppressions of FYA were not refreshed:")
    assert list(FynoSuppression.objects.values_list("pk", flat=True)) == [row.pk]
