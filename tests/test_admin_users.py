"""A user's Fyno state on the project's own user admin (django_fyno/admin/users.py).

The project keeps its ``UserAdmin``: it either adds :class:`FynoProfileInline` to its
``inlines``, or mixes :class:`FynoUserAdminMixin` in. Both are tried here on admin
sites of this module (it is the URLconf of these tests): with Django's own
``UserAdmin`` and, in a subprocess under ``tests.settings_custom_user``, with the
custom user model EmailUser and its own small admin. The inline is read-only for
everyone, superusers included.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib import admin
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.messages.storage.cookie import CookieStorage
from django.core.cache import cache
from django.test import Client, RequestFactory
from django.urls import path, reverse

from django_fyno import notify
from django_fyno.adapter import ProfileAdapter
from django_fyno.admin.users import FynoProfileInline, FynoUserAdminMixin
from django_fyno.clients import default_workspace
from django_fyno.models import FynoOutbox, FynoProfile
from django_fyno.testing import FynoEmulatorHandle
from tests.conftest import run_pytest_with_custom_user

pytestmark = pytest.mark.django_db

User = get_user_model()
CUSTOM = django_settings.AUTH_USER_MODEL == "testapp.EmailUser"
INLINE_SITE = "fyno_inline_site"
MIXIN_SITE = "fyno_mixin_site"
SECRET = "sk-users-admin-DISTINCTIVE-9f8e7d"
USER_OPTS = f"{User._meta.app_label}_{User._meta.model_name}"
VIEW_USER = f"{User._meta.app_label}.view_{User._meta.model_name}"

# Django's User can log in to the admin. EmailUser has no is_staff and no permissions
# (like many custom models): its tests render the views for a staff member of another
# kind (StaffMember below), and run only under tests.settings_custom_user.
default_only = pytest.mark.skipif(CUSTOM, reason="Django's User model")
custom_only = pytest.mark.skipif(
    not CUSTOM,
    reason="needs --ds=tests.settings_custom_user (test_the_inline_works_with_a_custom_user_model)",
)


# -- the project's user admins, on two admin sites --------------------------------------

if CUSTOM:

    class BaseUserAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
        """What a project with a custom user model has: its own small admin."""

        list_display = ("email", "is_active")
        fields = ("email", "phone", "is_active")
        ordering = ("email",)

else:
    BaseUserAdmin = auth_admin.UserAdmin  # type: ignore[misc]


class UserAdminWithInline(BaseUserAdmin):
    """The project adds the inline to its own admin's inlines."""

    inlines = (*BaseUserAdmin.inlines, FynoProfileInline)


class UserAdminWithMixin(FynoUserAdminMixin, BaseUserAdmin):
    """The project mixes the mixin in, and shows the column."""

    list_display = (*BaseUserAdmin.list_display, "fyno_state")
    list_select_related = ("fyno_profile",)


inline_site = admin.AdminSite(name=INLINE_SITE)
inline_site.register(User, UserAdminWithInline)
mixin_site = admin.AdminSite(name=MIXIN_SITE)
mixin_site.register(User, UserAdminWithMixin)

# This module is the URLconf of its tests: the default site (the Fyno admin, with its
# preferences and outbox pages) and the two sites above.
urlpatterns = [
    path("admin/", admin.site.urls),
    path("inline-admin/", inline_site.urls),
    path("mixin-admin/", mixin_site.urls),
]


@pytest.fixture(autouse=True)
def users_admin(settings: Any, fyno_emulator: FynoEmulatorHandle) -> Iterator[None]:
    # Through the settings fixture: the test settings have no ROOT_URLCONF for
    # pytest-django's urls marker to swap. The emulator answers whatever is sent.
    settings.ROOT_URLCONF = __name__
    settings.FYNO = {**django_settings.FYNO, "API_KEY": SECRET}
    cache.clear()
    yield
    cache.clear()


# -- helpers ---------------------------------------------------------------------------


def new_user(name: str, **extra: Any) -> Any:
    fields: dict[str, Any] = {"email": f"{name}@example.com", **extra}
    if not CUSTOM:
        fields.setdefault("username", name)
        fields.setdefault("first_name", name.capitalize())
    return User.objects.create(**fields)


def synced(user: Any, distinct_id: str | None = None, **fields: Any) -> FynoProfile:
    """The user's mirror row (saving the user made it), as a sync would leave it."""
    FynoProfile.objects.filter(user=user).update(
        state=fields.pop("state", "synced"),
        distinct_id=distinct_id or str(user.pk),
        dirty_since=None,
        **default_workspace().fields(),
        **fields,
    )
    return FynoProfile.objects.get(user=user)


def staff(name: str, *codenames: str) -> Client:
    """A client logged in as a staff member holding exactly these permissions."""
    member = new_user(name, is_staff=True)
    for label in codenames:
        app_label, codename = label.split(".")
        member.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = Client()
    client.force_login(member)
    return client


def superuser() -> Client:
    client = Client()
    client.force_login(new_user("root", is_staff=True, is_superuser=True))
    return client


def get_page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    html: str = response.content.decode()
    assert SECRET not in html
    return html


def inline_html(html: str) -> str:
    """The Fyno inline's part of a change page ("" when the page has none)."""
    match = re.search(r'<div[^>]*id="fyno_profile-group".*?</fieldset>', html, re.S)
    return match.group(0) if match else ""


def editable_inputs(fragment: str) -> list[str]:
    """Names of the fields a browser would submit with a value a user could change."""
    names = re.findall(r'<(?:input|select|textarea)[^>]*name="([^"]+)"', fragment)
    hidden = set(re.findall(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"', fragment))
    return [name for name in names if name not in hidden]


class EmailAdapter(ProfileAdapter):
    """Distinct ids made of the email: a user's changes with it."""

    def get_distinct_id(self, user: Any) -> str:
        return f"member-{user.email}"


def change_url(site: str, user: Any) -> str:
    return reverse(f"{site}:{USER_OPTS}_change", args=[user.pk])


# -- Django's UserAdmin --------------------------------------------------------------------


@default_only
def test_the_inline_shows_the_mirror_row_the_subscriptions_link_and_recent_messages() -> None:
    client = superuser()
    ada = new_user("ada")
    bob = new_user("bob")
    profile = synced(ada)
    first = notify("welcome", ada, {"plan": "pro"})
    second = notify("password_reset", ada)
    notify("not_for_ada", bob)

    fyno = inline_html(get_page(client, change_url(INLINE_SITE, ada)))

    assert fyno, "the Fyno inline is on the page"
    assert '<div class="readonly">synced</div>' in fyno
    assert f'<div class="readonly">{ada.pk}</div>' in fyno  # the distinct id
    assert f'<div class="readonly">{default_workspace()}</div>' in fyno
    preferences = reverse("admin:django_fyno_fynoprofile_preferences", args=[profile.pk])
    assert f'href="{preferences}"' in fyno
    # The user's messages, newest first, each linked to its outbox page.
    assert fyno.index("password_reset") < fyno.index("welcome")
    for row in (first, second):
        assert f'href="{reverse("admin:django_fyno_fynooutbox_change", args=[row.pk])}"' in fyno
    assert "not_for_ada" not in fyno
    # Read-only, for a superuser too: nothing of the inline can be submitted.
    assert editable_inputs(fyno) == []


@default_only
def test_messages_are_found_by_the_adapters_distinct_id_and_the_last_synced_one(
    settings: Any,
) -> None:
    client = superuser()
    ada = new_user("ada")
    synced(ada, distinct_id="old-id-of-ada")
    FynoOutbox.objects.create(kind="event", event="sent_to_old_id", distinct_id="old-id-of-ada")
    FynoOutbox.objects.create(
        kind="event", event="sent_to_new_id", distinct_id="member-ada@example.com"
    )
    FynoOutbox.objects.create(kind="event", event="to_someone_else", distinct_id=str(ada.pk))
    settings.FYNO = {**settings.FYNO, "PROFILE_ADAPTER": f"{__name__}.EmailAdapter"}

    fyno = inline_html(get_page(client, change_url(INLINE_SITE, ada)))
    assert "sent_to_old_id" in fyno
    assert "sent_to_new_id" in fyno
    assert "to_someone_else" not in fyno


@default_only
def test_only_the_newest_messages_are_shown() -> None:
    client = superuser()
    ada = new_user("ada")
    synced(ada)
    for number in range(FynoProfileInline.recent_limit + 2):
        notify(f"event_{number:02d}", ada)

    fyno = inline_html(get_page(client, change_url(INLINE_SITE, ada)))
    shown = re.findall(r"<td>(event_\d\d)</td>", fyno)
    assert len(shown) == FynoProfileInline.recent_limit
    assert shown[0] == f"event_{FynoProfileInline.recent_limit + 1:02d}"
    assert "event_00" not in shown


@default_only
def test_a_staff_member_with_only_view_permissions_sees_it_read_only() -> None:
    client = staff(
        "viewer", VIEW_USER, "django_fyno.view_fynoprofile", "django_fyno.view_fynooutbox"
    )
    ada = new_user("ada")
    synced(ada)
    notify("welcome", ada)

    url = change_url(INLINE_SITE, ada)
    fyno = inline_html(get_page(client, url))
    assert '<div class="readonly">synced</div>' in fyno
    assert "welcome" in fyno
    assert editable_inputs(fyno) == []
    # The page is view-only: posting it is refused and changes nothing.
    response = client.post(url, {"fyno_profile-0-state": "failed"})
    assert response.status_code == 403
    assert FynoProfile.objects.get(user=ada).state == "synced"


@default_only
def test_without_the_outbox_permission_the_messages_are_left_out() -> None:
    client = staff("viewer", VIEW_USER, "django_fyno.view_fynoprofile")
    ada = new_user("ada")
    synced(ada)
    notify("welcome", ada)

    fyno = inline_html(get_page(client, change_url(INLINE_SITE, ada)))
    assert '<div class="readonly">synced</div>' in fyno
    assert "welcome" not in fyno
    assert "Recent messages" not in fyno


@default_only
def test_without_the_profile_permission_there_is_no_inline() -> None:
    client = staff("viewer", VIEW_USER)
    ada = new_user("ada")
    synced(ada)

    html = get_page(client, change_url(INLINE_SITE, ada))
    assert inline_html(html) == ""
    assert "fyno_profile-TOTAL_FORMS" not in html


@default_only
def test_a_user_without_a_mirror_row_has_an_empty_inline() -> None:
    client = superuser()
    ada = new_user("ada")
    FynoProfile.objects.filter(user=ada).delete()

    fyno = inline_html(get_page(client, change_url(INLINE_SITE, ada)))
    assert re.search(r'name="fyno_profile-TOTAL_FORMS" value="0"', fyno)
    assert "readonly" not in fyno
    assert editable_inputs(fyno) == []


@default_only
def test_saving_the_user_ignores_anything_posted_for_the_inline() -> None:
    client = superuser()
    ada = new_user("ada")
    profile = synced(ada, last_error="kept")
    form = {
        "username": "ada",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@example.com",
        "is_active": "on",
        "date_joined_0": "2024-01-01",
        "date_joined_1": "00:00:00",
        "initial-date_joined_0": "2024-01-01",
        "initial-date_joined_1": "00:00:00",
        # The inline's management form, and forged values for its fields.
        "fyno_profile-TOTAL_FORMS": "1",
        "fyno_profile-INITIAL_FORMS": "1",
        "fyno_profile-MIN_NUM_FORMS": "0",
        "fyno_profile-MAX_NUM_FORMS": "1",
        "fyno_profile-0-id": str(profile.pk),
        "fyno_profile-0-user": str(ada.pk),
        "fyno_profile-0-distinct_id": "forged",
        "fyno_profile-0-last_error": "forged",
        "fyno_profile-0-state": "excluded",
        "fyno_profile-0-DELETE": "on",
    }
    response = client.post(change_url(INLINE_SITE, ada), form)
    assert response.status_code == 302, response.content.decode()[:3000]
    ada.refresh_from_db()
    assert ada.last_name == "Lovelace"
    row = FynoProfile.objects.get(user=ada)  # not deleted
    assert row.distinct_id == str(ada.pk)
    assert row.last_error == "kept"
    assert row.state != "excluded"


@default_only
def test_the_mixin_adds_the_inline_to_the_change_page_only() -> None:
    client = superuser()
    ada = new_user("ada")
    synced(ada)
    notify("welcome", ada)

    fyno = inline_html(get_page(client, change_url(MIXIN_SITE, ada)))
    assert '<div class="readonly">synced</div>' in fyno
    assert "welcome" in fyno
    assert editable_inputs(fyno) == []
    add = reverse(f"{MIXIN_SITE}:{USER_OPTS}_add")
    assert inline_html(get_page(client, add)) == ""


@default_only
def test_the_mixin_column_shows_each_users_state() -> None:
    client = superuser()
    ada = new_user("ada")
    bob = new_user("bob")
    synced(ada)
    synced(bob, distinct_id="bob-id", state="failed")

    html = get_page(client, reverse(f"{MIXIN_SITE}:{USER_OPTS}_changelist"))
    cells = re.findall(r'<td class="field-fyno_state">([^<]*)</td>', html)
    assert sorted(cells) == ["failed", "pending", "synced"]  # root's own row is pending


def test_the_mixin_does_not_add_the_inline_twice() -> None:
    class Both(FynoUserAdminMixin, UserAdminWithInline):
        pass

    model_admin = Both(User, admin.AdminSite(name="both"))
    request = RequestFactory().get("/")
    assert list(model_admin.get_inlines(request, User())).count(FynoProfileInline) == 1
    assert FynoProfileInline not in UserAdminWithMixin(User, mixin_site).get_inlines(request, None)


# -- a custom user model (run in a subprocess under tests.settings_custom_user) ------------


class StaffMember:
    """A staff member holding exactly ``perms`` (EmailUser cannot be one)."""

    is_active = is_staff = is_authenticated = True
    is_anonymous = is_superuser = False
    pk = id = 0

    def __init__(self, *perms: str) -> None:
        self.perms = set(perms)

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return perm in self.perms

    def has_perms(self, perms: Any, obj: Any = None) -> bool:
        return all(perm in self.perms for perm in perms)

    def has_module_perms(self, app_label: str) -> bool:
        return any(perm.startswith(f"{app_label}.") for perm in self.perms)

    def get_username(self) -> str:
        return "staff"


def render(site: admin.AdminSite, view: str, member: StaffMember, *args: Any) -> str:
    """A GET of one of the site's user admin views, as ``member``."""
    request = RequestFactory().get("/")
    request.user = member
    request._messages = CookieStorage(request)  # type: ignore[attr-defined]
    model_admin = site.get_model_admin(User)
    response: Any = getattr(model_admin, view)(request, *args)
    assert response.status_code == 200, response.status_code
    html: str = response.render().content.decode()
    assert SECRET not in html
    return html


@custom_only
def test_custom_user_model_the_inline_on_the_projects_own_admin() -> None:
    grace = User.objects.create(email="grace@example.com", phone="+14155550100")
    profile = synced(grace)
    notify("welcome", grace)
    viewer = StaffMember(VIEW_USER, "django_fyno.view_fynoprofile", "django_fyno.view_fynooutbox")

    for site in (inline_site, mixin_site):
        fyno = inline_html(render(site, "change_view", viewer, str(grace.pk)))
        assert '<div class="readonly">synced</div>' in fyno
        assert f'<div class="readonly">{grace.pk}</div>' in fyno
        preferences = reverse("admin:django_fyno_fynoprofile_preferences", args=[profile.pk])
        assert f'href="{preferences}"' in fyno
        assert "welcome" in fyno
        assert editable_inputs(fyno) == []


@custom_only
def test_custom_user_model_the_inline_needs_the_profile_permission() -> None:
    grace = User.objects.create(email="grace@example.com")
    synced(grace)
    html = render(inline_site, "change_view", StaffMember(VIEW_USER), str(grace.pk))
    assert "grace@example.com" in html
    assert inline_html(html) == ""


@custom_only
def test_custom_user_model_the_mixin_column() -> None:
    grace = User.objects.create(email="grace@example.com")
    synced(grace, state="failed")
    html = render(mixin_site, "changelist_view", StaffMember(VIEW_USER))
    assert re.findall(r'<td class="field-fyno_state">([^<]*)</td>', html) == ["failed"]


def test_the_inline_works_with_a_custom_user_model() -> None:
    """Runs this module under tests.settings_custom_user (EmailUser: UUID key, email
    login, no names, no is_staff) in a subprocess."""
    if CUSTOM:
        pytest.skip("this is the subprocess")
    result = run_pytest_with_custom_user(__file__)
    assert result.returncode == 0, result.stdout + result.stderr
    # The three custom-model tests and the model-independent one ran.
    assert re.search(r"\b4 passed, 11 skipped\b", result.stdout), result.stdout
