"""The staff page of a user's subscriptions (django_fyno.admin.preferences).

Staff see the matrix Fyno has (the partial the end-user page shares), change it
with edit_preferences, and never reach Fyno with what the matrix refuses. The
forms are posted as a browser would post the rendered page.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.test import Client, override_settings

from django_fyno.admin.preferences import preferences_url
from django_fyno.clients import get_client
from django_fyno.models import FynoProfile
from django_fyno.receivers import skip_sync
from tests.conftest import here, wait_until
from tests.preference_topics import EVERY, IN, OUT, SECTIONS, Form

pytestmark = pytest.mark.django_db

VERSION = settings.FYNO["VERSION"]
API_KEY = settings.FYNO["API_KEY"]


# -- fixtures -------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _admin_urls(settings: Any) -> None:
    # The staff face's URLconf. (Not @pytest.mark.urls: it needs a ROOT_URLCONF to
    # swap, and tests/settings.py has none.)
    settings.ROOT_URLCONF = "tests.admin_urls"


def make_user(username: str, **fields: Any) -> Any:
    from django.contrib.auth import get_user_model

    user = get_user_model()(username=username, **fields)
    with skip_sync(user):
        user.save()
    return user


def staff(username: str, *codenames: str) -> Client:
    """A logged-in client for a staff user holding only these permissions."""
    user = make_user(username, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def profile_of(username: str, distinct_id: str | None, **fields: Any) -> FynoProfile:
    user = make_user(username)
    profile, _ = FynoProfile.objects.update_or_create(
        user=user,
        defaults={"distinct_id": distinct_id, "state": "synced", **here(), **fields},
    )
    return profile


@pytest.fixture
def fyno(fyno_emulator: Any) -> Iterator[Any]:
    fyno_emulator.emulator.configure_preferences(SECTIONS)
    with override_settings(FYNO={**settings.FYNO, "RETRY": {"MAX_ATTEMPTS": 1}}):
        yield fyno_emulator


@pytest.fixture
def profile(fyno: Any) -> FynoProfile:
    return profile_of("ada", "ada-1")


@pytest.fixture
def url(profile: FynoProfile) -> str:
    return preferences_url(profile)


@pytest.fixture
def editor() -> Client:
    return staff("editor", "view_fynoprofile", "edit_preferences")


@pytest.fixture
def viewer() -> Client:
    return staff("viewer", "view_fynoprofile")


def operations(fyno: Any) -> list[str | None]:
    return [entry.operation for entry in fyno.emulator.request_log]


def writes(fyno: Any) -> list[Any]:
    return [entry for entry in fyno.emulator.request_log if entry.method != "GET"]


def stored(fyno: Any, distinct_id: str = "ada-1") -> dict[str, Any]:
    reply = fyno.emulator.preferences(VERSION, distinct_id)
    topics = {t["subscription_id"]: t["preference"] for ts in reply["result"].values() for t in ts}
    return {**topics, "all": reply["meta"]["all"]["preference"]}


def someone_else_opts_out(
    fyno: Any, subscription_id: str, channel: str, who: str = "ada-1"
) -> None:
    get_client().set_preferences(who, {subscription_id: {channel: OUT}})
    fyno.emulator.clear_request_log()


def matrix_form(client: Client, url: str) -> Form:
    response = client.get(url)
    assert response.status_code == 200
    return Form(response.content.decode(), "fyno-preferences-form")


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


# -- seeing the page ---------------------------------------------------------------


def test_the_page_shows_the_matrix_fyno_has(
    fyno: Any, admin_client: Client, url: str, profile: FynoProfile
) -> None:
    someone_else_opts_out(fyno, "SNEWS", "sms")

    response = admin_client.get(url)

    assert response.status_code == 200
    [request] = fyno.emulator.request_log
    assert request.query == {"distinct_id": "ada-1", "event_list": "true"}
    html = response.content.decode()
    for text in ("Marketing", "Newsletter", "Monthly news.", "newsletter", "Security", "login_otp"):
        assert text in html
    assert "ada-1" in html
    form = Form(html, "fyno-preferences-form")
    boxes = {key: ("checked" in box, "disabled" in box) for key, box in form.checkboxes.items()}
    assert boxes == {
        "fyno-pref-all": (False, False),
        "fyno-pref-0-email": (True, False),
        "fyno-pref-0-sms": (False, False),  # opted out in Fyno
        "fyno-pref-1-email": (True, True),  # required: checked and locked
        "fyno-pref-1-sms": (True, False),
        "fyno-pref-1-push": (True, False),
    }
    # Every checkbox has a real label, and the locked one says why.
    for box_id in boxes:
        assert f'<label for="{box_id}">' in html
    assert 'id="fyno-pref-1-email-required" class="fyno-preferences__required">required<' in html
    assert "<legend>Marketing</legend>" in html
    assert "<legend>Newsletter</legend>" in html
    assert " style=" not in html.split('id="content-main"')[1]
    assert "<script" not in html.split('id="content-main"')[1]


def test_the_api_key_is_on_no_page(fyno: Any, admin_client: Client, url: str) -> None:
    assert API_KEY not in admin_client.get(url).content.decode()
    # Nor in the message of a refused key.
    with override_settings(FYNO={**settings.FYNO, "API_KEY": "wrong-secret-key"}):
        html = admin_client.get(url).content.decode()
    assert "Invalid API details" in html
    assert "wrong-secret-key" not in html
    assert API_KEY not in html


def test_anonymous_users_are_sent_to_the_login_page(fyno: Any, client: Client, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    assert client.post(url, {"action": "save", "fyno:SNEWS:email": OUT}).status_code == 302
    assert fyno.emulator.request_log == []


def test_staff_without_the_view_permission_get_403(fyno: Any, url: str) -> None:
    nobody = staff("nobody")
    edit_only = staff("edit-only", "edit_preferences")
    for client in (nobody, edit_only):
        assert client.get(url).status_code == 403
        assert client.post(url, {"action": "save", "fyno:SNEWS:email": OUT}).status_code == 403
    assert fyno.emulator.request_log == []


def test_view_only_staff_see_the_matrix_locked_and_cannot_change_it(
    fyno: Any, viewer: Client, url: str
) -> None:
    response = viewer.get(url)

    assert response.status_code == 200
    html = response.content.decode()
    assert "Newsletter" in html
    assert "fyno-preferences-form" not in html
    assert "fyno-topic-form" not in html
    assert "Save subscriptions" not in html
    form = Form(html.replace('<div class="fyno-preferences">', '<form id="x">'), "x")
    assert form.checkboxes
    assert all("disabled" in box for box in form.checkboxes.values())
    assert form.fields == []  # nothing it could submit

    for data in (
        {"action": "save", "fyno:SNEWS:email": OUT},
        {"action": "topic", "subscription_id": "SNEWS", "status": OUT},
    ):
        assert viewer.post(url, data).status_code == 403
    assert operations(fyno) == ["get_preferences"]
    assert stored(fyno)["SNEWS"] == {"email": IN, "sms": IN}


def test_change_permission_alone_also_shows_the_page(fyno: Any, url: str) -> None:
    assert staff("changer", "change_fynoprofile").get(url).status_code == 200


@pytest.mark.parametrize("pk", ["999999", "not-a-number"])
def test_a_profile_that_does_not_exist_is_404(fyno: Any, admin_client: Client, pk: str) -> None:
    response = admin_client.get(f"/admin/django_fyno/fynoprofile/{pk}/preferences/")
    assert response.status_code == 404
    assert fyno.emulator.request_log == []


def test_a_profile_without_its_user_is_404(fyno: Any, admin_client: Client) -> None:
    orphan = FynoProfile.objects.create(distinct_id="gone-1", state="synced", **here())
    assert admin_client.get(preferences_url(orphan)).status_code == 404
    assert admin_client.post(preferences_url(orphan), {"action": "save"}).status_code == 404
    assert fyno.emulator.request_log == []


def test_a_profile_not_synced_yet_says_so_and_asks_nothing(fyno: Any, admin_client: Client) -> None:
    pending = profile_of("new", None, state="pending")
    response = admin_client.get(preferences_url(pending))
    assert response.status_code == 200
    assert any("not been synced" in message for message in messages_of(response))
    assert 'type="checkbox"' not in response.content.decode()
    assert fyno.emulator.request_log == []


def test_other_methods_are_405(fyno: Any, admin_client: Client, url: str) -> None:
    assert admin_client.put(url).status_code == 405


# -- changing the matrix ------------------------------------------------------------


def test_saving_sends_one_put_with_only_the_change_and_shows_fynos_answer(
    fyno: Any, editor: Client, url: str, profile: FynoProfile
) -> None:
    form = matrix_form(editor, url)
    fyno.emulator.clear_request_log()

    response = editor.post(url, form.data(untick=("fyno:SNEWS:email",)))

    assert response.status_code == 200
    assert operations(fyno) == ["get_preferences", "set_preferences"]
    [put] = writes(fyno)
    assert put.query == {"distinct_id": "ada-1"}
    assert put.body == {"user_preference": {"SNEWS": {"email": OUT}}}
    assert stored(fyno)["SNEWS"] == {"email": OUT, "sms": IN}
    assert messages_of(response) == ["The subscriptions were saved in Fyno (1 change(s))."]
    shown = Form(response.content.decode(), "fyno-preferences-form")
    assert "checked" not in shown.checkboxes["fyno-pref-0-email"]
    assert "checked" in shown.checkboxes["fyno-pref-0-sms"]
    # The admin's history of the profile records who changed what.
    entry = LogEntry.objects.get(object_id=str(profile.pk))
    assert entry.user.username == "editor"
    assert "SNEWS email opted-out" in entry.get_change_message()


def test_saving_an_untouched_form_sends_nothing(fyno: Any, editor: Client, url: str) -> None:
    form = matrix_form(editor, url)
    fyno.emulator.clear_request_log()

    response = editor.post(url, form.data())

    assert operations(fyno) == ["get_preferences"]
    assert any("Nothing was changed" in message for message in messages_of(response))


def test_a_checkbox_left_alone_does_not_undo_a_change_made_meanwhile(
    fyno: Any, editor: Client, url: str
) -> None:
    form = matrix_form(editor, url)
    someone_else_opts_out(fyno, "SSECURITY", "push")  # after the page was shown

    editor.post(url, form.data(untick=("fyno:SNEWS:sms",)))

    assert [entry.body for entry in writes(fyno)] == [{"user_preference": {"SNEWS": {"sms": OUT}}}]
    assert stored(fyno)["SSECURITY"]["push"] == OUT


def test_the_switch_unsubscribes_from_everything(fyno: Any, editor: Client, url: str) -> None:
    form = matrix_form(editor, url)
    fyno.emulator.clear_request_log()

    response = editor.post(url, form.data(tick=("fyno:all",)))

    [put] = writes(fyno)
    assert put.body == {
        "user_preference": {
            "all": dict.fromkeys(
                (
                    "email",
                    "sms",
                    "whatsapp",
                    "voice",
                    "push",
                    "webpush",
                    "inapp",
                    "slack",
                    "teams",
                    "discord",
                ),
                OUT,
            )
        }
    }
    assert set(stored(fyno)["all"]) == set(EVERY)
    shown = Form(response.content.decode(), "fyno-preferences-form")
    assert "checked" in shown.checkboxes["fyno-pref-all"]
    assert "unsubscribed from everything on this channel" in response.content.decode()


@pytest.mark.parametrize(
    "hostile",
    [
        {"fyno:SOTHER:email": OUT},  # not a topic of this user's matrix
        {"fyno:SNEWS:push": OUT},  # the topic does not have push on
        {"fyno:SNEWS:fax": OUT},  # no such channel
        {"fyno:SSECURITY:email": OUT},  # required
        {"fyno:SNEWS:email": "unsubscribe"},  # garbage value
        {"fyno:SNEWS": OUT},  # garbage field name
        {"fyno:all": "everything"},
    ],
)
def test_hostile_posts_never_reach_fyno(
    fyno: Any, editor: Client, url: str, hostile: dict[str, str]
) -> None:
    form = matrix_form(editor, url)
    fyno.emulator.clear_request_log()
    # A genuine change beside it is not sent either: nothing is.
    data = {**form.data(untick=("fyno:SNEWS:sms",)), **hostile}

    response = editor.post(url, data)

    assert response.status_code == 200
    assert operations(fyno) == ["get_preferences"]
    assert any(message.startswith("Nothing was changed:") for message in messages_of(response))
    assert stored(fyno)["SNEWS"] == {"email": IN, "sms": IN}
    assert stored(fyno)["SSECURITY"]["email"] == IN


def test_only_the_profile_in_the_url_is_changed(
    fyno: Any, editor: Client, url: str, profile: FynoProfile
) -> None:
    other = profile_of("bob", "bob-2")
    form = matrix_form(editor, url)
    data = form.data(untick=("fyno:SNEWS:email",))
    data.update({"distinct_id": "bob-2", "user": str(other.user_id), "object_id": str(other.pk)})

    editor.post(url, data)

    assert {entry.query["distinct_id"] for entry in fyno.emulator.request_log} == {"ada-1"}
    assert stored(fyno, "bob-2")["SNEWS"] == {"email": IN, "sms": IN}
    assert stored(fyno)["SNEWS"]["email"] == OUT


# -- Fyno's errors ------------------------------------------------------------------


def test_fyno_failing_on_load_shows_a_message_and_no_checkboxes(
    fyno: Any, editor: Client, url: str
) -> None:
    fyno.set_fault("get_preferences", error_rate=1, error_status=503)

    response = editor.get(url)

    assert response.status_code == 200
    assert any(
        message.startswith("The subscriptions could not be read from Fyno: Fyno answered 503")
        for message in messages_of(response)
    )
    html = response.content.decode()
    assert 'type="checkbox"' not in html
    assert "Save subscriptions" not in html
    assert "none are shown" in html


def test_fyno_unreachable_shows_a_message_and_no_checkboxes(
    fyno: Any, editor: Client, url: str
) -> None:
    form = matrix_form(editor, url)
    fyno.set_fault("get_preferences", fail_next=5, fail_next_status="drop")

    response = editor.post(url, form.data(untick=("fyno:SNEWS:email",)))

    assert response.status_code == 200
    assert writes(fyno) == []
    assert any("could not be read from Fyno" in message for message in messages_of(response))
    assert 'type="checkbox"' not in response.content.decode()


def test_a_failed_save_keeps_the_choices_on_the_form(fyno: Any, editor: Client, url: str) -> None:
    form = matrix_form(editor, url)
    fyno.set_fault("set_preferences", error_rate=1, error_status=502)

    response = editor.post(url, form.data(untick=("fyno:SNEWS:email",)))

    assert response.status_code == 200
    assert [entry.status for entry in writes(fyno)] == [502]
    assert stored(fyno)["SNEWS"]["email"] == IN
    assert any(message.startswith("Saving to Fyno failed") for message in messages_of(response))
    shown = Form(response.content.decode(), "fyno-preferences-form")
    assert "checked" not in shown.checkboxes["fyno-pref-0-email"]  # the user's choice, kept
    assert not LogEntry.objects.exists()
    # Saving again, once Fyno is back, sends it.
    fyno.clear_faults()
    editor.post(url, shown.data())
    assert stored(fyno)["SNEWS"]["email"] == OUT


def test_a_timeout_becomes_a_message_never_a_500(fyno_live_emulator: Any, editor: Client) -> None:
    # Over real HTTP: the emulator answers after 1 s, the client gives up after 0.2 s.
    fyno_live_emulator.emulator.configure_preferences(SECTIONS)
    fyno_live_emulator.set_fault("get_preferences", latency=1)
    live = {
        **settings.FYNO,
        "ENDPOINT": fyno_live_emulator.endpoint,
        "RETRY": {"MAX_ATTEMPTS": 1},
        "READ_TIMEOUT": 0.2,
    }
    with override_settings(FYNO=live):
        profile = profile_of("ada", "ada-1")
        response = editor.get(preferences_url(profile))

    assert response.status_code == 200
    [message] = messages_of(response)
    assert message.startswith("The subscriptions could not be read from Fyno:")
    assert "timed out" in message
    assert 'type="checkbox"' not in response.content.decode()
    # The emulator logs the request once it has answered: wait, so that it lands in
    # this test's log and not the next one's.
    logged = wait_until(lambda: fyno_live_emulator.requests, "the emulator to log the request")
    assert [entry.operation for entry in logged] == ["get_preferences"]


# -- one topic ----------------------------------------------------------------------


def test_unsubscribing_a_topic_leaves_its_required_channels(
    fyno: Any, editor: Client, url: str
) -> None:
    response = editor.post(url, {"action": "topic", "subscription_id": "SSECURITY", "status": OUT})

    assert [(e.operation, e.body) for e in writes(fyno)] == [
        ("set_subscription", {"channel": "sms", "distinct_id": "ada-1", "status": OUT}),
        ("set_subscription", {"channel": "push", "distinct_id": "ada-1", "status": OUT}),
    ]
    assert stored(fyno)["SSECURITY"] == {"email": IN, "sms": OUT, "push": OUT}
    assert messages_of(response) == ["The user was unsubscribed from the topic (2 channel(s))."]
    shown = Form(response.content.decode(), "fyno-preferences-form")
    assert "checked" not in shown.checkboxes["fyno-pref-1-sms"]
    assert "checked" in shown.checkboxes["fyno-pref-1-email"]


def test_subscribing_one_channel_of_a_topic(fyno: Any, editor: Client, url: str) -> None:
    someone_else_opts_out(fyno, "SNEWS", "sms")
    editor.post(
        url, {"action": "topic", "subscription_id": "SNEWS", "channel": "sms", "status": IN}
    )
    assert [e.body for e in writes(fyno)] == [
        {"channel": "sms", "distinct_id": "ada-1", "status": IN}
    ]
    assert stored(fyno)["SNEWS"] == {"email": IN, "sms": IN}


@pytest.mark.parametrize(
    "hostile",
    [
        {"subscription_id": "SOTHER", "status": OUT},
        {"subscription_id": "SSECURITY", "channel": "email", "status": OUT},  # required
        {"subscription_id": "SNEWS", "channel": "push", "status": OUT},  # not on
        {"subscription_id": "SNEWS", "status": "maybe"},
        {"subscription_id": "SNEWS"},
    ],
)
def test_hostile_topic_posts_never_reach_fyno(
    fyno: Any, editor: Client, url: str, hostile: dict[str, str]
) -> None:
    response = editor.post(url, {"action": "topic", **hostile})
    assert response.status_code == 200
    assert writes(fyno) == []
    assert any(message.startswith("Nothing was changed:") for message in messages_of(response))


def test_an_unknown_action_changes_nothing(fyno: Any, editor: Client, url: str) -> None:
    response = editor.post(url, {"action": "drop-everything", "fyno:SNEWS:email": OUT})
    assert writes(fyno) == []
    assert "Nothing was changed: unknown action." in messages_of(response)


def test_a_failed_topic_change_shows_what_fyno_has_now(fyno: Any, editor: Client, url: str) -> None:
    # The first channel is accepted, the second fails: the page shows the truth.
    from django_fyno.emulator import handlers

    original = handlers.HANDLERS["set_subscription"]
    calls = []

    def second_fails(ctx: Any) -> Any:
        calls.append(ctx.body["channel"])
        if len(calls) == 2:
            return 400, {
                "_message": "Subscription ID 'SSECURITY' does not exist",
                "status": "error",
            }
        return original(ctx)

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(handlers.HANDLERS, "set_subscription", second_fails)
        response = editor.post(
            url, {"action": "topic", "subscription_id": "SSECURITY", "status": OUT}
        )

    assert operations(fyno)[-1] == "get_preferences"
    assert any(m.startswith("Changing the topic in Fyno failed") for m in messages_of(response))
    shown = Form(response.content.decode(), "fyno-preferences-form")
    assert "checked" not in shown.checkboxes["fyno-pref-1-sms"]  # accepted before the failure
    assert "checked" in shown.checkboxes["fyno-pref-1-push"]


def test_the_link_helper(profile: FynoProfile) -> None:
    from django.contrib import admin

    profile_admin = admin.site._registry[FynoProfile]
    assert preferences_url(profile) == f"/admin/django_fyno/fynoprofile/{profile.pk}/preferences/"
    assert preferences_url(profile) in profile_admin.preferences_link(profile)
    assert profile_admin.preferences_link(None) == "-"
