"""The end-user preference center: the pages, the unsubscribe link, the JSON API, the tag.

Forms are posted as a browser would post the rendered page; what counts is what
the emulator holds afterwards and what the page shows. The attacks (forged
tokens, other users, CSRF, hostile bodies) are in test_preference_security.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.template import Context, Template
from django.test import Client, RequestFactory, override_settings
from django.urls import reverse

from django_fyno import links
from django_fyno.adapter import get_adapter
from django_fyno.clients import default_workspace, get_client
from django_fyno.models import FynoProfile
from django_fyno.receivers import skip_sync
from tests.conftest import here, make_user, wait_until
from tests.preference_topics import EVERY, IN, OUT, SECTIONS, Form

pytestmark = pytest.mark.django_db

VERSION = settings.FYNO["VERSION"]
API_KEY = settings.FYNO["API_KEY"]
PAGE = "/fyno/preferences/"
API = "/fyno/preferences/api/"


# -- fixtures and helpers -----------------------------------------------------------


@pytest.fixture(autouse=True)
def _urls(settings: Any) -> None:
    # tests/settings.py has no ROOT_URLCONF: the one including django_fyno.urls.
    settings.ROOT_URLCONF = "tests.urls"
    settings.LOGIN_URL = "/login/"


@pytest.fixture
def fyno(fyno_emulator: Any) -> Iterator[Any]:
    fyno_emulator.emulator.configure_preferences(SECTIONS)
    with override_settings(FYNO={**settings.FYNO, "RETRY": {"MAX_ATTEMPTS": 1}}):
        yield fyno_emulator


def person(name: str, distinct_id: str | None, **fields: Any) -> FynoProfile:
    """A user and the mirror row of their Fyno profile (no sync traffic)."""
    with skip_sync():
        user = make_user(name)
    profile, _ = FynoProfile.objects.update_or_create(
        user=user, defaults={"distinct_id": distinct_id, "state": "synced", **here(), **fields}
    )
    return profile


def logged_in(profile: FynoProfile, **options: Any) -> Client:
    client = Client(**options)
    client.force_login(profile.user)
    return client


@pytest.fixture
def ada(fyno: Any) -> FynoProfile:
    return person("ada", "ada-1")


@pytest.fixture
def bob(fyno: Any) -> FynoProfile:
    return person("bob", "bob-2")


@pytest.fixture
def ada_client(ada: FynoProfile) -> Client:
    return logged_in(ada)


def signed_page(distinct_id: str = "ada-1") -> str:
    token = links.preferences_token(distinct_id, default_workspace())
    return reverse("django_fyno:preferences_signed", kwargs={"token": token})


def unsubscribe_link(distinct_id: str = "ada-1", topic: str | None = None) -> str:
    token = links.unsubscribe_token(distinct_id, default_workspace(), topic)
    return reverse("django_fyno:unsubscribe", kwargs={"token": token})


def operations(fyno: Any) -> list[str | None]:
    return [entry.operation for entry in fyno.emulator.request_log]


def writes(fyno: Any) -> list[Any]:
    return [entry for entry in fyno.emulator.request_log if entry.method != "GET"]


def stored(fyno: Any, distinct_id: str = "ada-1") -> dict[str, Any]:
    reply = fyno.emulator.preferences(VERSION, distinct_id)
    topics = {t["subscription_id"]: t["preference"] for ts in reply["result"].values() for t in ts}
    return {**topics, "all": reply["meta"]["all"]["preference"]}


def someone_else_opts_out(fyno: Any, subscription_id: str, channel: str, who: str) -> None:
    get_client().set_preferences(who, {subscription_id: {channel: OUT}})
    fyno.emulator.clear_request_log()


def page_form(client: Client, url: str = PAGE) -> Form:
    response = client.get(url)
    assert response.status_code == 200
    form = Form(response.content.decode())
    assert form.found
    return form


def editable_checkboxes(html: str) -> list[str]:
    """Every checkbox of the page a user could change."""
    boxes = Form(html.replace('<div class="fyno-center">', '<form id="all">'), "all").checkboxes
    return [box_id for box_id, box in boxes.items() if "disabled" not in box]


def assert_strict_csp_friendly(html: str) -> None:
    assert "<script" not in html
    assert " style=" not in html
    assert "<style" not in html


# -- the signed-in user's page ---------------------------------------------------------


def test_the_page_shows_the_sections_topics_and_channels_fyno_has(
    fyno: Any, ada_client: Client, ada: FynoProfile
) -> None:
    someone_else_opts_out(fyno, "SNEWS", "sms", "ada-1")

    response = ada_client.get(PAGE)

    assert response.status_code == 200
    [request] = fyno.emulator.request_log
    assert request.query == {"distinct_id": "ada-1", "event_list": "true"}
    html = response.content.decode()
    for text in ("Marketing", "Newsletter", "Monthly news.", "newsletter", "Security", "login_otp"):
        assert text in html
    assert "<legend>Marketing</legend>" in html
    assert "<legend>Account</legend>" in html
    form = Form(html)
    assert form.action == PAGE
    boxes = {key: ("checked" in box, "disabled" in box) for key, box in form.checkboxes.items()}
    assert boxes == {
        "fyno-pref-all": (False, False),
        "fyno-pref-0-email": (True, False),
        "fyno-pref-0-sms": (False, False),  # opted out in Fyno
        "fyno-pref-1-email": (True, True),  # required: checked and locked
        "fyno-pref-1-sms": (True, False),
        "fyno-pref-1-push": (True, False),
    }
    for box_id in boxes:
        assert f'<label for="{box_id}">' in html
    assert "csrfmiddlewaretoken" in html
    # Inside the default base template: the page's stylesheet, a language, a viewport.
    assert '<link rel="stylesheet" href="/static/django_fyno/preferences.css">' in html
    assert '<html lang="en-us" dir="ltr">' in html
    assert 'name="viewport"' in html
    assert_strict_csp_friendly(html)
    # Nothing identifying the profile in Fyno is shown.
    assert "ada-1" not in html


def test_anonymous_users_are_sent_to_the_login_page(fyno: Any, client: Client) -> None:
    response = client.get(PAGE)
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/fyno/preferences/"
    assert client.post(PAGE, {"fyno:SNEWS:email": OUT}).status_code == 302
    assert fyno.emulator.request_log == []


def test_saving_one_untick_sends_one_put_with_only_that_change(
    fyno: Any, ada_client: Client
) -> None:
    form = page_form(ada_client)
    fyno.emulator.clear_request_log()

    response = ada_client.post(PAGE, form.data(untick=("fyno:SNEWS:email",)))

    assert response.status_code == 200
    assert operations(fyno) == ["get_preferences", "set_preferences"]
    [put] = writes(fyno)
    assert put.path == f"/FYTEST/{VERSION}/subscriptions/preference"
    assert put.query == {"distinct_id": "ada-1"}
    assert put.body == {"user_preference": {"SNEWS": {"email": OUT}}}
    assert stored(fyno)["SNEWS"] == {"email": OUT, "sms": IN}
    html = response.content.decode()
    assert '<p class="fyno-notice" role="status">Your preferences have been saved.</p>' in html
    # Shown again from Fyno's answer.
    shown = Form(html)
    assert "checked" not in shown.checkboxes["fyno-pref-0-email"]
    assert "checked" in shown.checkboxes["fyno-pref-0-sms"]
    assert_strict_csp_friendly(html)


def test_an_untouched_form_sends_nothing(fyno: Any, ada_client: Client) -> None:
    form = page_form(ada_client)
    fyno.emulator.clear_request_log()

    response = ada_client.post(PAGE, form.data())

    assert operations(fyno) == ["get_preferences"]
    assert "Nothing to save" in response.content.decode()


def test_the_switch_unsubscribes_from_everything(fyno: Any, ada_client: Client) -> None:
    form = page_form(ada_client)

    response = ada_client.post(PAGE, form.data(tick=("fyno:all",)))

    [put] = writes(fyno)
    assert set(put.body["user_preference"]) == {"all"}
    assert set(stored(fyno)["all"]) == set(EVERY)
    assert "checked" in Form(response.content.decode()).checkboxes["fyno-pref-all"]


def test_a_forged_opt_out_of_a_required_channel_is_refused(fyno: Any, ada_client: Client) -> None:
    form = page_form(ada_client)
    fyno.emulator.clear_request_log()
    # A genuine change beside it is not sent either: nothing is.
    data = {**form.data(untick=("fyno:SNEWS:sms",)), "fyno:SSECURITY:email": OUT}

    response = ada_client.post(PAGE, data)

    assert response.status_code == 200
    assert writes(fyno) == []
    assert stored(fyno)["SSECURITY"]["email"] == IN
    assert stored(fyno)["SNEWS"]["sms"] == IN
    html = response.content.decode()
    # The error summary names the problem and links to the field.
    assert 'class="fyno-error-summary"' in html
    assert (
        '<a href="#fyno-pref-1-email">Security: Email is required and cannot be turned off.</a>'
        in html
    )
    assert 'id="fyno-pref-1-email"' in html
    # The user's other choice is kept on the form.
    assert "checked" not in Form(html).checkboxes["fyno-pref-0-sms"]


@pytest.mark.parametrize(
    ("fault", "expected_status"),
    [
        ({"error_rate": 1, "error_status": 503}, 503),
        ({"fail_next": 1, "fail_next_status": "drop"}, 0),
    ],
    ids=["503", "unreachable"],
)
def test_fyno_failing_on_save_keeps_the_choices_and_says_so(
    fyno: Any, ada_client: Client, fault: dict[str, Any], expected_status: int
) -> None:
    form = page_form(ada_client)
    fyno.set_fault("set_preferences", **fault)

    response = ada_client.post(PAGE, form.data(untick=("fyno:SNEWS:email",)))

    assert response.status_code == 200
    assert [entry.status for entry in writes(fyno)] == [expected_status]
    assert stored(fyno)["SNEWS"]["email"] == IN
    html = response.content.decode()
    assert "Your changes could not be saved right now" in html
    shown = Form(html)
    assert "checked" not in shown.checkboxes["fyno-pref-0-email"]  # the user's choice, kept
    assert "503" not in html
    # Saving again, once Fyno is back, sends it.
    fyno.clear_faults()
    ada_client.post(PAGE, shown.data())
    assert stored(fyno)["SNEWS"]["email"] == OUT


def test_a_timeout_on_save_is_a_message_never_a_500(fyno_live_emulator: Any) -> None:
    # Over real HTTP: the emulator answers after 1 s, the client gives up after 0.3 s.
    fyno_live_emulator.emulator.configure_preferences(SECTIONS)
    live = {
        **settings.FYNO,
        "ENDPOINT": fyno_live_emulator.endpoint,
        "RETRY": {"MAX_ATTEMPTS": 1},
        "READ_TIMEOUT": 0.3,
    }
    with override_settings(FYNO=live):
        client = logged_in(person("ada", "ada-1"))
        form = page_form(client)
        fyno_live_emulator.set_fault("set_preferences", latency=1)
        response = client.post(PAGE, form.data(untick=("fyno:SNEWS:email",)))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Your changes could not be saved right now" in html
    assert "checked" not in Form(html).checkboxes["fyno-pref-0-email"]
    logged = wait_until(
        lambda: [e for e in fyno_live_emulator.requests if e.method == "PUT"],
        "the emulator to log the PUT",
    )
    assert [entry.operation for entry in logged] == ["set_preferences"]


@pytest.mark.parametrize(
    "fault",
    [{"error_rate": 1, "error_status": 503}, {"fail_next": 1, "fail_next_status": "drop"}],
    ids=["503", "unreachable"],
)
def test_fyno_failing_on_load_shows_no_editable_checkbox(
    fyno: Any, ada_client: Client, fault: dict[str, Any]
) -> None:
    fyno.set_fault("get_preferences", **fault)

    response = ada_client.get(PAGE)

    assert response.status_code == 200
    html = response.content.decode()
    assert "cannot be loaded right now" in html
    assert editable_checkboxes(html) == []
    assert '<input type="checkbox"' not in html
    assert "Save preferences" not in html
    assert_strict_csp_friendly(html)


def test_a_user_without_a_profile_in_fyno_is_told_so(fyno: Any) -> None:
    pending = person("new", None, state="pending")

    response = logged_in(pending).get(PAGE)

    assert response.status_code == 200
    html = response.content.decode()
    assert "not available yet" in html
    assert '<input type="checkbox"' not in html
    assert fyno.emulator.request_log == []


def test_the_base_template_is_a_setting(fyno: Any, ada_client: Client, settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.admin_urls"  # the admin's base template reverses admin URLs
    with override_settings(
        FYNO={**settings.FYNO, "PREFERENCE_BASE_TEMPLATE": "admin/base_site.html"}
    ):
        html = ada_client.get(PAGE).content.decode()
    # The admin's layout around the page's content.
    assert 'id="site-name"' in html
    assert "<legend>Newsletter</legend>" in html


# -- the signed page -----------------------------------------------------------------


def test_the_signed_page_works_without_logging_in(fyno: Any, client: Client, ada: Any) -> None:
    url = signed_page()
    response = client.get(url)

    assert response.status_code == 200
    html = response.content.decode()
    assert "<legend>Newsletter</legend>" in html
    assert response["Referrer-Policy"] == "same-origin"
    assert "no-store" in response["Cache-Control"]
    assert "ada-1" not in html
    assert "ada@example.com" not in html
    assert_strict_csp_friendly(html)
    form = Form(html)
    assert form.action is None  # posts back to the signed URL

    response = client.post(url, form.data(untick=("fyno:SNEWS:sms",)))

    assert response.status_code == 200
    assert [entry.body for entry in writes(fyno)] == [{"user_preference": {"SNEWS": {"sms": OUT}}}]
    assert stored(fyno)["SNEWS"]["sms"] == OUT
    assert "Your preferences have been saved." in response.content.decode()


def test_links_made_for_a_user_open_their_pages(fyno: Any, client: Client) -> None:
    with skip_sync():
        user = make_user("cy")
    distinct_id = get_adapter().checked_distinct_id(user)
    FynoProfile.objects.create(user=user, distinct_id=distinct_id, state="synced", **here())
    request = RequestFactory().get("/")

    url = links.preferences_url(user, request=request)
    assert url.startswith("http://testserver/fyno/preferences/")
    assert "<legend>Newsletter</legend>" in client.get(url).content.decode()
    url = links.unsubscribe_url(user, "SNEWS", request=request)
    assert "Stop notifications about “Newsletter”?" in client.get(url).content.decode()
    assert {entry.query["distinct_id"] for entry in fyno.emulator.request_log} == {distinct_id}


# -- unsubscribe ---------------------------------------------------------------------


def test_following_an_unsubscribe_link_changes_nothing(fyno: Any, client: Client, ada: Any) -> None:
    for url in (unsubscribe_link(topic="SNEWS"), unsubscribe_link()):
        response = client.get(url)
        assert response.status_code == 200
        html = response.content.decode()
        assert 'name="confirm"' in html
        assert_strict_csp_friendly(html)
        assert client.head(url).status_code == 200
    assert "Stop notifications about “Newsletter”?" in client.get(
        unsubscribe_link(topic="SNEWS")
    ).content.decode("utf-8")
    assert writes(fyno) == []
    assert set(operations(fyno)) == {"get_preferences"}
    assert stored(fyno)["SNEWS"] == {"email": IN, "sms": IN}
    assert stored(fyno)["all"] == {}


def test_the_confirmation_button_unsubscribes_from_a_topic(
    fyno: Any, client: Client, ada: Any
) -> None:
    url = unsubscribe_link(topic="SSECURITY")

    response = client.post(url, {"confirm": "yes"})

    assert response.status_code == 200
    [put] = writes(fyno)
    assert put.body == {"user_preference": {"SSECURITY": {"sms": OUT, "push": OUT}}}
    # The required channel stays on.
    assert stored(fyno)["SSECURITY"] == {"email": IN, "sms": OUT, "push": OUT}
    html = response.content.decode()
    assert "You will no longer receive notifications about “Security”." in html
    assert_strict_csp_friendly(html)
    # A way to the rest of the user's preferences, signed too.
    manage = html.split('<p class="fyno-page__more"><a href="')[1].split('"')[0]
    assert manage.startswith("/fyno/preferences/")
    assert client.get(manage).status_code == 200


def test_the_confirmation_button_unsubscribes_from_everything(
    fyno: Any, client: Client, ada: Any
) -> None:
    response = client.post(unsubscribe_link(), {"confirm": "yes"})

    assert response.status_code == 200
    [put] = writes(fyno)
    assert set(put.body["user_preference"]) == {"all"}
    assert set(stored(fyno)["all"]) == set(EVERY)
    assert "You will no longer receive notifications you can opt out of." in (
        response.content.decode()
    )
    # The page now says so, and offers nothing more to click.
    html = client.get(unsubscribe_link()).content.decode()
    assert "You are already unsubscribed." in html
    assert 'name="confirm"' not in html


@pytest.mark.parametrize("topic", ["SNEWS", None], ids=["topic", "everything"])
def test_rfc_8058_one_click_unsubscribes_without_csrf_and_is_idempotent(
    fyno: Any, ada: Any, topic: str | None
) -> None:
    mail_client = Client(enforce_csrf_checks=True)
    url = unsubscribe_link(topic=topic)

    first = mail_client.post(
        url, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    again = mail_client.post(
        url, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )

    assert (first.status_code, again.status_code) == (200, 200)
    assert len(writes(fyno)) == 1  # the second changed nothing: already unsubscribed
    if topic:
        assert stored(fyno)["SNEWS"] == {"email": OUT, "sms": OUT}
    else:
        assert set(stored(fyno)["all"]) == set(EVERY)


def test_one_click_also_works_as_multipart(fyno: Any, ada: Any) -> None:
    mail_client = Client(enforce_csrf_checks=True)
    response = mail_client.post(unsubscribe_link(topic="SNEWS"), {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert stored(fyno)["SNEWS"] == {"email": OUT, "sms": OUT}


@pytest.mark.parametrize("body", [{}, {"List-Unsubscribe": "Two-Clicks"}, {"unsubscribe": "yes"}])
def test_any_other_post_changes_nothing(
    fyno: Any, client: Client, ada: Any, body: dict[str, str]
) -> None:
    response = client.post(unsubscribe_link(topic="SNEWS"), body)
    assert response.status_code == 400
    assert writes(fyno) == []
    assert "Nothing was changed" in response.content.decode()


def test_fyno_failing_on_unsubscribe_is_a_503_page(fyno: Any, client: Client, ada: Any) -> None:
    fyno.set_fault("set_preferences", error_rate=1, error_status=500)

    response = client.post(unsubscribe_link(topic="SNEWS"), {"confirm": "yes"})

    assert response.status_code == 503
    assert "You could not be unsubscribed right now" in response.content.decode()
    assert stored(fyno)["SNEWS"] == {"email": IN, "sms": IN}
    # Trying again once Fyno is back works.
    fyno.clear_faults()
    assert client.post(unsubscribe_link(topic="SNEWS"), {"confirm": "yes"}).status_code == 200
    assert stored(fyno)["SNEWS"] == {"email": OUT, "sms": OUT}


def test_a_topic_that_no_longer_exists_has_nothing_to_unsubscribe(
    fyno: Any, client: Client, ada: Any
) -> None:
    response = client.post(unsubscribe_link(topic="SGONE"), {"confirm": "yes"})
    assert response.status_code == 200
    assert "This topic no longer exists" in response.content.decode()
    assert writes(fyno) == []


# -- the JSON API --------------------------------------------------------------------


def test_the_api_answers_the_matrix(fyno: Any, ada_client: Client) -> None:
    someone_else_opts_out(fyno, "SNEWS", "sms", "ada-1")

    response = ada_client.get(API)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "all": False,
        "unsubscribed_everywhere": [],
        "sections": [
            {
                "name": "Marketing",
                "topics": [
                    {
                        "id": "SNEWS",
                        "name": "Newsletter",
                        "description": "Monthly news.",
                        "events": ["newsletter"],
                        "channels": {
                            "email": {"label": "Email", "subscribed": True, "required": False},
                            "sms": {"label": "SMS", "subscribed": False, "required": False},
                        },
                    }
                ],
            },
            {
                "name": "Account",
                "topics": [
                    {
                        "id": "SSECURITY",
                        "name": "Security",
                        "description": "Sign-in alerts.",
                        "events": ["login_otp"],
                        "channels": {
                            "email": {"label": "Email", "subscribed": True, "required": True},
                            "sms": {"label": "SMS", "subscribed": True, "required": False},
                            "push": {
                                "label": "Mobile push",
                                "subscribed": True,
                                "required": False,
                            },
                        },
                    }
                ],
            },
        ],
    }


def api_client(profile: FynoProfile) -> tuple[Client, str]:
    """A client enforcing CSRF like a browser, and the token a page would give it."""
    client = logged_in(profile, enforce_csrf_checks=True)
    client.get(PAGE)
    return client, client.cookies[settings.CSRF_COOKIE_NAME].value


def test_the_api_saves_only_what_changed(fyno: Any, ada: FynoProfile) -> None:
    client, token = api_client(ada)
    fyno.emulator.clear_request_log()

    response = client.put(
        API,
        json.dumps({"topics": {"SNEWS": {"email": False, "sms": True}}}),
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )

    assert response.status_code == 200
    [put] = writes(fyno)
    assert put.body == {"user_preference": {"SNEWS": {"email": OUT}}}
    assert stored(fyno)["SNEWS"] == {"email": OUT, "sms": IN}
    assert response.json()["sections"][0]["topics"][0]["channels"]["email"]["subscribed"] is False


def test_the_api_unsubscribes_from_everything_by_post(fyno: Any, ada: FynoProfile) -> None:
    client, token = api_client(ada)

    response = client.post(
        API, {"all": True}, content_type="application/json", headers={"X-CSRFToken": token}
    )

    assert response.status_code == 200
    assert response.json()["all"] is True
    assert set(stored(fyno)["all"]) == set(EVERY)


def test_the_api_refuses_a_required_channel_opt_out(fyno: Any, ada: FynoProfile) -> None:
    client, token = api_client(ada)

    response = client.put(
        API,
        {"topics": {"SSECURITY": {"email": False}, "SNEWS": {"sms": False}}},
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )

    assert response.status_code == 400
    assert response.json() == {
        "error": "Nothing was saved.",
        "problems": ["Security: Email is required and cannot be turned off."],
    }
    assert writes(fyno) == []
    assert stored(fyno)["SSECURITY"]["email"] == IN


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        ({"error_rate": 1, "error_status": 503}, 503),
        ({"fail_next": 1, "fail_next_status": "drop"}, 503),
        ({"error_rate": 1, "error_status": 400}, 502),
    ],
    ids=["503", "unreachable", "400"],
)
def test_fyno_failing_is_a_friendly_json_error(
    fyno: Any, ada: FynoProfile, fault: dict[str, Any], status: int
) -> None:
    client, token = api_client(ada)
    fyno.set_fault("set_preferences", **fault)

    response = client.put(
        API,
        {"topics": {"SNEWS": {"email": False}}},
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )

    assert response.status_code == status
    body = response.json()
    assert body["saved"] is False
    assert body["error"].startswith("Your notification preferences cannot be reached right now")
    assert API_KEY not in response.content.decode()
    assert stored(fyno)["SNEWS"]["email"] == IN


def test_fyno_failing_on_get_is_a_json_error(fyno: Any, ada_client: Client) -> None:
    fyno.set_fault("get_preferences", error_rate=1, error_status=502)
    response = ada_client.get(API)
    assert response.status_code == 503
    assert response.json() == {
        "error": "Your notification preferences cannot be loaded right now. "
        "Please try again in a few minutes."
    }


def test_the_api_without_a_profile_in_fyno_is_404(fyno: Any) -> None:
    response = logged_in(person("new", None, state="pending")).get(API)
    assert response.status_code == 404
    assert response.json() == {
        "error": "Your notification preferences are not available yet. Please try again later."
    }


def test_the_api_answers_other_methods_with_405_json(fyno: Any, ada_client: Client) -> None:
    response = ada_client.delete(API)
    assert response.status_code == 405
    assert "error" in response.json()
    assert writes(fyno) == []


# -- the template tag ----------------------------------------------------------------

HOST_PAGE = "<main>{% load fyno %}<h1>My account</h1>{% fyno_preferences %}</main>"


def render_host_page(user: Any) -> str:
    request = RequestFactory().get("/account/")
    request.user = user
    return Template(HOST_PAGE).render(Context({"request": request}))


def test_the_tag_renders_the_users_form_in_a_host_page(fyno: Any, ada: FynoProfile) -> None:
    html = render_host_page(ada.user)

    assert html.startswith("<main><h1>My account</h1>")
    form = Form(html)
    assert form.found
    assert form.action == reverse("django_fyno:preferences")
    assert "csrfmiddlewaretoken" in html
    assert "<legend>Newsletter</legend>" in html
    assert "checked" in form.checkboxes["fyno-pref-1-email"]
    assert "disabled" in form.checkboxes["fyno-pref-1-email"]
    assert_strict_csp_friendly(html)
    assert [entry.query["distinct_id"] for entry in fyno.emulator.request_log] == ["ada-1"]


def test_the_tag_renders_nothing_for_anonymous_users(fyno: Any) -> None:
    from django.contrib.auth.models import AnonymousUser

    assert render_host_page(AnonymousUser()) == "<main><h1>My account</h1></main>"
    assert Template("{% load fyno %}{% fyno_preferences %}").render(Context({})) == ""
    assert fyno.emulator.request_log == []


def test_the_tag_says_when_fyno_is_unreachable(fyno: Any, ada: FynoProfile) -> None:
    fyno.set_fault("get_preferences", fail_next=1, fail_next_status="drop")

    html = render_host_page(ada.user)

    assert "cannot be loaded right now" in html
    assert "<input" not in html


def test_the_tags_form_posts_to_the_preference_page(
    fyno: Any, ada_client: Client, ada: Any
) -> None:
    form = Form(render_host_page(ada.user))
    fyno.emulator.clear_request_log()

    response = ada_client.post(str(form.action), form.data(untick=("fyno:SNEWS:email",)))

    assert response.status_code == 200
    assert stored(fyno)["SNEWS"]["email"] == OUT


def test_the_tag_takes_a_prefix_for_its_html_ids(fyno: Any, ada: FynoProfile) -> None:
    request = RequestFactory().get("/account/")
    request.user = ada.user
    template = Template('{% load fyno %}{% fyno_preferences id_prefix="account" %}')

    html = template.render(Context({"request": request}))

    form = Form(html, "account-form")
    assert set(form.checkboxes) == {
        "account-all",
        "account-0-email",
        "account-0-sms",
        "account-1-email",
        "account-1-sms",
        "account-1-push",
    }
    assert "fyno-pref-" not in html
