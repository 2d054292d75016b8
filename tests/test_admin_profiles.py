"""The profile admin: the list, and its actions (sync, compare, delete, retry) against the emulator.

Every action: allowed (``django_fyno.sync_profiles``) → its effect in the emulator and the
database; a staff user with only ``view_fynoprofile`` → the action is absent and a
forged POST changes nothing; a Fyno 503 or timeout → an admin message, no 500, nothing
half-changed here. No page shows an API key. Each row's calls go to its own workspace.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.admin.sites import site
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.core.cache import caches
from django.test import Client, RequestFactory, override_settings
from django.urls import reverse

from django_fyno import sync
from django_fyno.admin.profiles import COMPARE_LIMIT, FynoProfileAdmin
from django_fyno.clients import Workspace, client_for, get_client
from django_fyno.conf import fyno_settings
from django_fyno.models import FynoProfile
from django_fyno.receivers import skip_sync
from tests.conftest import here, make_user

User = get_user_model()

pytestmark = pytest.mark.django_db

# The custom user model of tests.settings_custom_user has no is_staff, no permissions:
# it cannot log into the admin (the search test below runs with it all the same).
needs_admin_users = pytest.mark.skipif(
    not hasattr(User, "is_staff"), reason="the user model cannot log into the admin"
)

ACTIONS = ("sync_now", "compare_with_fyno", "delete_from_fyno", "retry_failed")
KEYS = {"FYA": "key-of-tenant-a", "FYB": "key-of-tenant-b"}
TWO_WORKSPACES = {"workspaces": dict(KEYS)}
SECRETS = ("test-api-key", *KEYS.values())


def fyno(**extra: Any) -> dict[str, Any]:
    """No sync on save (staff users stay out of it); the client does not retry by itself."""
    return {**settings.FYNO, "AUTO_SYNC": False, "RETRY": {"MAX_ATTEMPTS": 1}, **extra}


@pytest.fixture(autouse=True)
def _settings() -> Iterator[None]:
    caches[fyno_settings.OUTBOX_CACHE].clear()  # no pause inherited from another test
    # The staff face's URLconf (not @pytest.mark.urls: the test settings have no
    # ROOT_URLCONF for it to swap).
    with override_settings(FYNO=fyno(), ROOT_URLCONF="tests.admin_urls"):
        yield
    caches[fyno_settings.OUTBOX_CACHE].clear()


# -- people and profiles -------------------------------------------------------------------


def staff_client(*codenames: str, superuser: bool = False) -> Client:
    """A logged-in staff user holding exactly these permissions (codenames of django_fyno)."""
    user = User.objects.create_user(  # type: ignore[attr-defined]
        username=f"staff{User.objects.count()}", is_staff=True, is_superuser=superuser
    )
    for codename in codenames:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="django_fyno", codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def operator() -> Client:
    """May see the profiles and act on them: not a superuser."""
    return staff_client("view_fynoprofile", "sync_profiles")


@pytest.fixture
def viewer() -> Client:
    """May only see the profiles."""
    return staff_client("view_fynoprofile")


def new_user(name: str, *, synced: bool = True) -> Any:
    user = make_user(name, save=False)
    setattr(user, user.get_email_field_name(), f"{name}@example.com")
    with skip_sync(user):
        user.save()
    if synced:
        sync.sync_profile(user.pk)
    return user


def row_of(user: Any) -> FynoProfile:
    return FynoProfile.objects.get(user_id=user.pk)


def snapshot() -> list[dict[str, Any]]:
    """Every mirror row, all columns: "nothing changed" means this is equal."""
    return list(FynoProfile.objects.order_by("pk").values())


def fyno_email(handle: Any, user: Any, version: str = "test") -> str | None:
    profile = handle.emulator.profile(version, str(user.pk))
    return None if profile is None else profile["channel"].get("email")


def changelist() -> str:
    return reverse("admin:django_fyno_fynoprofile_changelist")


def act(client: Client, action: str, *rows: FynoProfile, **extra: str) -> Any:
    """POST an action from the changelist, as its form does."""
    data: dict[str, Any] = {"action": action, "index": "0"}
    data["_selected_action"] = [str(row.pk) for row in rows]
    data.update(extra)
    return client.post(changelist(), data)


def confirm(client: Client, action: str, *rows: FynoProfile) -> Any:
    """POST an intermediate page's form (no ``index``, ``post=yes``), as its template does."""
    data = {"action": action, "post": "yes", "_selected_action": [str(row.pk) for row in rows]}
    return client.post(changelist(), data)


def said(response: Any) -> list[tuple[str, str]]:
    return [(message.level_tag, str(message)) for message in get_messages(response.wsgi_request)]


def assert_no_key(html: str) -> None:
    for secret in SECRETS:
        assert secret not in html


def assert_no_inline_style_or_script(html: str) -> None:
    """Our part of a page holds no script and no inline style (a CSP may forbid both)."""
    content = html[html.index('<div id="content"') : html.index("<!-- END Content -->")]
    assert "<script" not in content
    assert "<style" not in content
    assert "style=" not in content
    assert " onclick=" not in content


# -- the list ------------------------------------------------------------------------------


@needs_admin_users
def test_the_list_shows_user_id_workspace_state_sync_and_error(fyno_emulator: Any) -> None:
    ada = new_user("ada")
    bob = new_user("bob", synced=False)
    FynoProfile.objects.create(user=bob, state="failed", last_error="Fyno answered 400: nope")
    client = staff_client("view_fynoprofile")

    response = client.get(changelist())

    assert response.status_code == 200
    html = response.content.decode()
    assert f'<a href="/admin/django_fyno/fynoprofile/{row_of(ada).pk}/change/">{ada.pk}</a>' in (
        html
    )
    assert ada.get_username() in html
    assert "FYTEST (test)" in html
    assert "Fyno answered 400: nope" in html
    assert ">synced<" in html
    assert ">failed<" in html
    # The filters: by state, by workspace (WSID and version).
    assert "?state__exact=failed" in html
    assert "?workspace=FYTEST%7Ctest" in html
    assert_no_key(html)


@needs_admin_users
def test_the_workspace_filter_keeps_one_workspace(fyno_emulator: Any) -> None:
    ada, bob = new_user("ada"), new_user("bob")
    FynoProfile.objects.filter(user=bob).update(wsid="FYOTHER", version="live")
    client = staff_client("view_fynoprofile")

    html = client.get(changelist(), {"workspace": "FYOTHER|live"}).content.decode()

    assert "FYOTHER (live)" in html
    assert f">{bob.pk}</a>" in html
    assert f">{ada.pk}</a>" not in html


@needs_admin_users
def test_search_by_distinct_id_username_and_email(fyno_emulator: Any) -> None:
    ada, bob = new_user("ada"), new_user("bob")
    User.objects.filter(pk=bob.pk).update(email="robert@elsewhere.example")
    client = staff_client("view_fynoprofile")

    def found(term: str) -> set[int]:
        response = client.get(changelist(), {"q": term})
        return {row.pk for row in response.context["cl"].result_list}

    assert found(str(ada.pk)) == {row_of(ada).pk}
    assert found("bob@example.com") == {row_of(bob).pk}  # the username
    assert found("robert@elsewhere") == {row_of(bob).pk}  # the email


def test_search_fields_follow_the_user_model(fyno_emulator: Any) -> None:
    """With any user model (also tests.settings_custom_user's: email login, no username)."""
    ada, bob = new_user("ada"), new_user("bob")
    model_admin = FynoProfileAdmin(FynoProfile, site)
    request = RequestFactory().get("/")
    user_model = get_user_model()

    fields = model_admin.get_search_fields(request)

    assert fields[0] == "distinct_id"
    assert f"user__{user_model.USERNAME_FIELD}" in fields
    assert f"user__{user_model.get_email_field_name()}" in fields
    assert len(fields) == len(set(fields))
    found, _ = model_admin.get_search_results(request, FynoProfile.objects.all(), "bob@example")
    assert list(found) == [row_of(bob)]
    found, _ = model_admin.get_search_results(request, FynoProfile.objects.all(), str(ada.pk))
    assert row_of(ada) in list(found)
    # The user column shows the login (an email here, a username there), never a key.
    assert model_admin.user_display(row_of(bob)) == bob.get_username()


@needs_admin_users
def test_rows_are_read_only_here(fyno_emulator: Any) -> None:
    ada = new_user("ada")
    row = row_of(ada)
    client = staff_client(superuser=True)
    change = reverse("admin:django_fyno_fynoprofile_change", args=[row.pk])

    page = client.get(change)
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert_no_key(page.content.decode())
    before = snapshot()
    assert client.post(change, {"state": "failed"}).status_code == 403
    assert client.get(reverse("admin:django_fyno_fynoprofile_add")).status_code == 403
    delete = reverse("admin:django_fyno_fynoprofile_delete", args=[row.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert snapshot() == before
    # Nor the bulk "delete selected": it would leave the profile in Fyno.
    assert "delete_selected" not in client.get(changelist()).content.decode()


# -- permissions -----------------------------------------------------------------------------


@needs_admin_users
def test_a_viewer_sees_no_action(fyno_emulator: Any, viewer: Client) -> None:
    new_user("ada")
    html = viewer.get(changelist()).content.decode()
    for action in ACTIONS:
        assert action not in html


@needs_admin_users
def test_an_operator_sees_the_four_actions(fyno_emulator: Any, operator: Client) -> None:
    new_user("ada")
    html = operator.get(changelist()).content.decode()
    for action in ACTIONS:
        assert f'<option value="{action}">' in html


@needs_admin_users
@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("confirmed", [False, True], ids=["action", "confirmation"])
def test_a_forged_post_from_a_viewer_changes_nothing(
    fyno_emulator: Any, viewer: Client, action: str, confirmed: bool
) -> None:
    ada = new_user("ada")
    get_client().update_channels(str(ada.pk), {"email": "eve@example.com"})
    FynoProfile.objects.filter(user=ada).update(state="failed")
    fyno_emulator.emulator.clear_request_log()
    before = snapshot()

    post = confirm if confirmed else act
    response = post(viewer, action, row_of(ada))

    # The list again, the POST ignored: no intermediate page, no message, no effect.
    assert response.status_code == 200
    assert response.templates[0].name == "admin/change_list.html"
    assert said(response) == []
    assert fyno_emulator.emulator.request_log == []
    assert snapshot() == before
    assert fyno_email(fyno_emulator, ada) == "eve@example.com"


@needs_admin_users
def test_staff_without_the_view_permission_get_a_403(fyno_emulator: Any) -> None:
    ada = new_user("ada")
    client = staff_client("sync_profiles")  # an action permission without the view one
    assert client.get(changelist()).status_code == 403
    before = snapshot()
    assert act(client, "sync_now", row_of(ada)).status_code == 403
    assert snapshot() == before


# -- sync_now --------------------------------------------------------------------------------


@needs_admin_users
def test_sync_now_puts_back_what_fyno_lost(fyno_emulator: Any, operator: Client) -> None:
    ada = new_user("ada")
    get_client().update_channels(str(ada.pk), {"email": "eve@example.com"})
    FynoProfile.objects.filter(user=ada).update(synced_at=None)

    response = act(operator, "sync_now", row_of(ada))

    assert response.status_code == 302
    assert said(response) == [("success", "1 synced")]
    assert fyno_email(fyno_emulator, ada) == "ada@example.com"
    row = row_of(ada)
    assert (row.state, row.synced_at is not None) == ("synced", True)


@needs_admin_users
def test_sync_now_reports_each_row(fyno_emulator: Any, operator: Client) -> None:
    users = [new_user(name) for name in ("ada", "bob", "cy", "dan")]
    for user in users:
        get_client().update_channels(str(user.pk), {"email": "eve@example.com"})
    fyno_emulator.set_fault("update_channels", fail_next=1, fail_next_status=503)

    response = act(operator, "sync_now", *[row_of(user) for user in users])

    [(level, text)] = said(response)
    assert level == "error"
    assert text.startswith("3 synced, 1 failed: Fyno answered 503 (PATCH ")
    assert [fyno_email(fyno_emulator, user) for user in users].count("ada@example.com") == 0
    assert sorted(fyno_email(fyno_emulator, user) for user in users) == sorted(
        ["eve@example.com", "bob@example.com", "cy@example.com", "dan@example.com"]
    )


@needs_admin_users
def test_sync_now_a_503_is_a_message_and_nothing_half_changed(
    fyno_emulator: Any, operator: Client
) -> None:
    ada = new_user("ada")
    setattr(ada, ada.get_email_field_name(), "ada@new.example.com")
    with skip_sync(ada):
        ada.save()
    before = row_of(ada)
    fyno_emulator.set_fault("update_channels", fail_next=1, fail_next_status=503)

    response = act(operator, "sync_now", before)

    assert response.status_code == 302
    [(level, text)] = said(response)
    assert level == "error"
    assert "0 synced, 1 failed: Fyno answered 503" in text
    after = row_of(ada)
    # What Fyno last accepted is still what the row says.
    assert (after.payload, after.payload_hash, after.state, after.synced_at) == (
        before.payload,
        before.payload_hash,
        before.state,
        before.synced_at,
    )
    assert_no_key(text)


@needs_admin_users
def test_sync_now_a_timeout_is_a_message(fyno_live_emulator: Any) -> None:
    with override_settings(FYNO=fyno(ENDPOINT=fyno_live_emulator.endpoint, READ_TIMEOUT=0.2)):
        ada = new_user("ada")
        before = snapshot()
        fyno_live_emulator.set_fault("update_channels", latency=1.0)
        setattr(ada, ada.get_email_field_name(), "ada@new.example.com")
        with skip_sync(ada):
            ada.save()
        before = row_of(ada)
        operator = staff_client("view_fynoprofile", "sync_profiles")

        response = act(operator, "sync_now", before)

    assert response.status_code == 302
    [(level, text)] = said(response)
    assert level == "error"
    assert "0 synced, 1 failed: timed out waiting for Fyno's answer" in text
    after = row_of(ada)
    assert (after.payload, after.payload_hash, after.state) == (
        before.payload,
        before.payload_hash,
        before.state,
    )


@needs_admin_users
def test_sync_now_skips_the_row_of_a_deleted_user(fyno_emulator: Any, operator: Client) -> None:
    ada = new_user("ada")
    row = row_of(ada)
    ada.delete()
    fyno_emulator.emulator.clear_request_log()

    response = act(operator, "sync_now", row)

    assert said(response) == [("warning", "0 synced, 1 skipped: its user was deleted")]
    assert fyno_emulator.emulator.request_log == []


# -- compare_with_fyno -----------------------------------------------------------------------


@needs_admin_users
def test_compare_highlights_the_field_fyno_changed(fyno_emulator: Any, operator: Client) -> None:
    ada, bob = new_user("ada"), new_user("bob")
    get_client().update_channels(str(ada.pk), {"email": "eve@example.com"})
    fyno_emulator.emulator.clear_request_log()
    before = snapshot()

    response = act(operator, "compare_with_fyno", row_of(ada), row_of(bob))

    assert response.status_code == 200
    assert response.templates[0].name == "admin/django_fyno/fynoprofile/compare.html"
    html = response.content.decode()
    # ada: the email differs, marked on both sides; bob: nothing marked.
    assert '<th scope="row"><mark>channels.email</mark></th>' in html
    assert "<td><mark>ada@example.com</mark></td>" in html
    assert "<td><mark>eve@example.com</mark></td>" in html
    assert "(changed in Fyno)" in html
    assert "<td>bob@example.com</td>" in html
    assert "<mark>bob@example.com</mark>" not in html
    assert html.count('class="fyno-differs"') == 1
    assert "1 field differs from Fyno." in html
    assert "0 fields differ from Fyno." in html
    # Only reads, each in the row's workspace; nothing written here.
    assert [(e.operation, e.path) for e in fyno_emulator.emulator.request_log] == [
        ("get_profile", f"/FYTEST/test/profiles/{ada.pk}"),
        ("get_profile", f"/FYTEST/test/profiles/{bob.pk}"),
    ]
    assert snapshot() == before
    # The page's own form resends them (sync_now), without script.
    assert '<input type="hidden" name="action" value="sync_now">' in html
    assert_no_inline_style_or_script(html)
    assert_no_key(html)


@needs_admin_users
def test_compare_then_sync_these_now(fyno_emulator: Any, operator: Client) -> None:
    ada = new_user("ada")
    get_client().update_channels(str(ada.pk), {"email": "eve@example.com"})
    act(operator, "compare_with_fyno", row_of(ada))

    response = confirm(operator, "sync_now", row_of(ada))  # the compare page's form

    assert said(response) == [("success", "1 synced")]
    assert fyno_email(fyno_emulator, ada) == "ada@example.com"


@needs_admin_users
def test_compare_a_profile_missing_in_fyno(fyno_emulator: Any, operator: Client) -> None:
    ada = new_user("ada")
    get_client().delete_profiles([str(ada.pk)])

    html = act(operator, "compare_with_fyno", row_of(ada)).content.decode()

    assert "Missing in Fyno" in html
    assert "<td><mark>—</mark></td>" in html


@needs_admin_users
@pytest.mark.parametrize("fault", ["503", "timeout"])
def test_compare_a_fyno_failure_is_a_message_on_the_page(
    fyno_live_emulator: Any, fault: str
) -> None:
    with override_settings(FYNO=fyno(ENDPOINT=fyno_live_emulator.endpoint, READ_TIMEOUT=0.2)):
        ada = new_user("ada")
        if fault == "503":
            fyno_live_emulator.set_fault("get_profile", fail_next=1, fail_next_status=503)
        else:
            fyno_live_emulator.set_fault("get_profile", latency=1.0)
        before = snapshot()
        operator = staff_client("view_fynoprofile", "sync_profiles")

        response = act(operator, "compare_with_fyno", row_of(ada))

    assert response.status_code == 200
    html = response.content.decode()
    expected = "Fyno answered 503" if fault == "503" else "timed out waiting for Fyno"
    [(level, text)] = said(response)
    assert level == "error"
    assert text.startswith("0 compared, 1 failed: ")
    assert expected in text
    assert '<p class="errornote">' in html
    assert expected in html
    assert "<mark>" not in html  # nothing is known to differ: Fyno did not say
    assert snapshot() == before
    assert_no_key(html)


@needs_admin_users
def test_compare_shows_at_most_the_limit(fyno_emulator: Any, operator: Client) -> None:
    rows = []
    with skip_sync():
        for n in range(COMPARE_LIMIT + 2):
            rows.append(FynoProfile(user=make_user(f"u{n}"), distinct_id=f"d{n}", **here()))
    FynoProfile.objects.bulk_create(rows)

    response = act(operator, "compare_with_fyno", *FynoProfile.objects.all())

    assert response.status_code == 200
    assert (
        "warning",
        f"Compared the first {COMPARE_LIMIT} of the {COMPARE_LIMIT + 2} selected profiles.",
    ) in said(response)
    assert len(fyno_emulator.emulator.request_log) == COMPARE_LIMIT


# -- delete_from_fyno ------------------------------------------------------------------------


@needs_admin_users
def test_delete_asks_first_then_deletes_in_fyno_and_here(
    fyno_emulator: Any, operator: Client
) -> None:
    ada, bob = new_user("ada"), new_user("bob")
    fyno_emulator.emulator.clear_request_log()

    page = act(operator, "delete_from_fyno", row_of(ada))

    assert page.status_code == 200
    assert page.templates[0].name == "admin/django_fyno/fynoprofile/delete_from_fyno.html"
    html = page.content.decode()
    assert f'<th scope="row">{ada.pk}</th>' in html
    assert "belongs to a user who still exists" in html
    assert '<input type="hidden" name="post" value="yes">' in html
    assert f'href="{changelist()}" class="button cancel-link"' in html  # no script
    assert_no_inline_style_or_script(html)
    assert_no_key(html)
    assert fyno_emulator.emulator.request_log == []  # asking deletes nothing
    assert FynoProfile.objects.filter(user=ada).exists()

    response = confirm(operator, "delete_from_fyno", row_of(ada))

    assert response.status_code == 302
    assert said(response) == [("success", "1 deleted")]
    assert fyno_emulator.emulator.profile("test", str(ada.pk)) is None
    assert fyno_emulator.emulator.profile("test", str(bob.pk)) is not None
    assert list(FynoProfile.objects.values_list("user_id", flat=True)) == [bob.pk]


@needs_admin_users
@pytest.mark.parametrize("fault", ["503", "timeout"])
def test_delete_a_fyno_failure_is_a_message_and_nothing_changes(
    fyno_live_emulator: Any, fault: str
) -> None:
    with override_settings(FYNO=fyno(ENDPOINT=fyno_live_emulator.endpoint, READ_TIMEOUT=0.2)):
        ada = new_user("ada")
        if fault == "503":
            fyno_live_emulator.set_fault("delete_profiles", fail_next=1, fail_next_status=503)
        else:
            fyno_live_emulator.set_fault("delete_profiles", latency=1.0)
        before = snapshot()
        operator = staff_client("view_fynoprofile", "sync_profiles")

        response = confirm(operator, "delete_from_fyno", row_of(ada))

    assert response.status_code == 302
    [(level, text)] = said(response)
    assert level == "error"
    expected = "Fyno answered 503" if fault == "503" else "timed out waiting for Fyno"
    assert text.startswith(f"0 deleted, 1 failed: {expected}")
    assert snapshot() == before
    if fault == "503":
        assert fyno_live_emulator.emulator.profile("test", str(ada.pk)) is not None


# -- retry_failed ----------------------------------------------------------------------------


def failed_sync(user: Any) -> None:
    """The user changed here, and its sync failed (as Fyno refusing it leaves the row)."""
    setattr(user, user.get_email_field_name(), f"new.{getattr(user, user.get_email_field_name())}")
    with skip_sync(user):
        user.save()
    FynoProfile.objects.filter(user=user).update(state="failed", last_error="Fyno answered 400")


@needs_admin_users
def test_retry_failed_syncs_the_failed_and_deletes_again_for_deleted_users(
    fyno_emulator: Any, operator: Client
) -> None:
    ada, bob, cy = new_user("ada"), new_user("bob"), new_user("cy")
    failed_sync(ada)
    cy_id, cy_row = str(cy.pk), row_of(cy)
    cy.delete()
    FynoProfile.objects.filter(pk=cy_row.pk).update(state="failed")  # its deletion failed
    get_client().update_channels(str(bob.pk), {"email": "eve@example.com"})  # bob: synced

    response = act(operator, "retry_failed", row_of(ada), row_of(bob), cy_row)

    assert said(response) == [("success", "2 retried")]
    assert fyno_email(fyno_emulator, ada) == "new.ada@example.com"
    assert (row_of(ada).state, row_of(ada).last_error) == ("synced", "")
    assert fyno_emulator.emulator.profile("test", cy_id) is None
    assert not FynoProfile.objects.filter(pk=cy_row.pk).exists()
    assert fyno_email(fyno_emulator, bob) == "eve@example.com"  # not failed: left alone


@needs_admin_users
def test_retry_failed_with_nothing_failed_says_so(fyno_emulator: Any, operator: Client) -> None:
    ada = new_user("ada")
    fyno_emulator.emulator.clear_request_log()
    response = act(operator, "retry_failed", row_of(ada))
    assert said(response) == [("warning", "None of the selected profiles has failed.")]
    assert fyno_emulator.emulator.request_log == []


@needs_admin_users
@pytest.mark.parametrize("fault", ["503", "timeout"])
def test_retry_failed_a_fyno_failure_is_a_message(fyno_live_emulator: Any, fault: str) -> None:
    with override_settings(FYNO=fyno(ENDPOINT=fyno_live_emulator.endpoint, READ_TIMEOUT=0.2)):
        ada = new_user("ada")
        failed_sync(ada)
        if fault == "503":
            fyno_live_emulator.set_fault("update_channels", fail_next=1, fail_next_status=503)
        else:
            fyno_live_emulator.set_fault("update_channels", latency=1.0)
        before = row_of(ada)
        operator = staff_client("view_fynoprofile", "sync_profiles")

        response = act(operator, "retry_failed", before)

    assert response.status_code == 302
    [(level, text)] = said(response)
    assert level == "error"
    expected = "Fyno answered 503" if fault == "503" else "timed out waiting for Fyno"
    assert text.startswith(f"0 retried, 1 failed: {expected}")
    after = row_of(ada)
    assert (after.state, after.payload, after.payload_hash) == (
        "failed",
        before.payload,
        before.payload_hash,
    )


# -- two workspaces ---------------------------------------------------------------------------


def tenant_resolver(user: Any = None, *, workspace: Any = None) -> dict[str, str] | None:
    """Users whose email starts with "b" belong to workspace FYB, the others to FYA."""
    if workspace is not None:
        key = KEYS.get(workspace.wsid)
        return None if key is None else {"WSID": workspace.wsid, "API_KEY": key}
    email = str(getattr(user, user.get_email_field_name())) if user is not None else ""
    wsid = "FYB" if email.startswith("b") else "FYA"
    return {"WSID": wsid, "API_KEY": KEYS[wsid]}


@needs_admin_users
@pytest.mark.parametrize("fyno_emulator_options", [TWO_WORKSPACES])
def test_a_row_of_workspace_b_is_compared_synced_and_deleted_in_b(fyno_emulator: Any) -> None:
    tenants = fyno(WSID="", API_KEY="", CLIENT_RESOLVER="tests.test_admin_profiles.tenant_resolver")
    a, b = fyno_emulator.workspace("FYA"), fyno_emulator.workspace("FYB")
    with override_settings(FYNO=tenants):
        ada, bob = new_user("ada"), new_user("bob")
        assert (row_of(ada).wsid, row_of(bob).wsid) == ("FYA", "FYB")
        client_for(Workspace.of(row_of(bob))).update_channels(
            str(bob.pk), {"email": "eve@example.com"}
        )
        operator = staff_client("view_fynoprofile", "sync_profiles")
        a.emulator.clear_request_log()
        b.emulator.clear_request_log()

        html = act(operator, "compare_with_fyno", row_of(bob)).content.decode()
        assert "FYB (test)" in html
        assert "<td><mark>eve@example.com</mark></td>" in html

        act(operator, "sync_now", row_of(bob))
        assert b.emulator.profile("test", str(bob.pk))["channel"]["email"] == "bob@example.com"

        confirm(operator, "delete_from_fyno", row_of(bob))
        assert b.emulator.profile("test", str(bob.pk)) is None

        changelist_html = operator.get(changelist()).content.decode()

    assert a.emulator.request_log == []  # not one request for bob went to A
    assert {entry.status for entry in b.emulator.request_log} <= {200, 201, 202}
    assert a.emulator.profile("test", str(ada.pk)) is not None
    assert list(FynoProfile.objects.values_list("wsid", flat=True)) == ["FYA"]
    assert "FYA (test)" in changelist_html
    assert_no_key(html + changelist_html)


# -- no page shows a key ----------------------------------------------------------------------


@needs_admin_users
def test_no_page_shows_an_api_key(fyno_emulator: Any, operator: Client) -> None:
    ada = new_user("ada")
    row = row_of(ada)
    superuser = staff_client(superuser=True)
    fyno_emulator.set_fault("get_profile", fail_next=1, fail_next_status=401)
    pages = [
        operator.get(changelist()),
        operator.get(changelist(), {"q": "ada", "state__exact": "synced"}),
        operator.get(reverse("admin:django_fyno_fynoprofile_change", args=[row.pk])),
        superuser.get(changelist()),
        act(operator, "compare_with_fyno", row),  # Fyno refuses the key (401) here
        act(operator, "compare_with_fyno", row),
        act(operator, "delete_from_fyno", row),
    ]
    for page in pages:
        assert page.status_code == 200
        assert_no_key(page.content.decode())
    assert "Fyno answered 401" in pages[4].content.decode()


def test_the_change_page_links_to_the_subscriptions(
    settings: Any, admin_client: Any, fyno_emulator: Any
) -> None:
    settings.ROOT_URLCONF = "tests.admin_urls"
    user = get_user_model()(username="linked", email="linked@example.com")
    with skip_sync(user):
        user.save()
    row = FynoProfile.objects.create(user=user, distinct_id=str(user.pk), **here())
    page = admin_client.get(f"/admin/django_fyno/fynoprofile/{row.pk}/change/")
    assert page.status_code == 200
    assert f"/admin/django_fyno/fynoprofile/{row.pk}/preferences/" in page.content.decode()
