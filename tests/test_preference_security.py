"""The preference center under attack: forged links, other users, CSRF, hostile JSON.

Each test checks that nothing reached Fyno (no write in the emulator's request
log), that nobody else's preferences changed, and that the pages say nothing
about whose link it was.
"""

from __future__ import annotations

import json
import time
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.urls import NoReverseMatch, reverse

from django_fyno import links
from django_fyno.clients import Workspace, default_workspace
from django_fyno.models import FynoProfile
from tests.test_preference_pages import (
    API,
    API_KEY,
    IN,
    OUT,
    PAGE,
    Form,
    _urls,  # noqa: F401 - the autouse URLconf fixture
    ada,  # noqa: F401 - fixture
    ada_client,  # noqa: F401 - fixture
    api_client,
    assert_strict_csp_friendly,
    bob,  # noqa: F401 - fixture
    fyno,  # noqa: F401 - fixture
    logged_in,
    page_form,
    signed_page,
    stored,
    unsubscribe_link,
    writes,
)

pytestmark = pytest.mark.django_db

ONE_CLICK = "List-Unsubscribe=One-Click"
FORM_TYPE = "application/x-www-form-urlencoded"
NOT_VALID = "This link is not valid."


def tampered(url: str) -> str:
    """The URL with one character of its token's signature changed (same alphabet)."""
    head, last = url[:-2], url[-2]
    return f"{head}{'B' if last == 'A' else 'A'}/"


def truncated(url: str) -> str:
    return url[:-12] + "/"


def expired(make: Any) -> str:
    """A link made 31 days ago (the default maximum age is 30 days)."""
    month_ago = time.time() - 31 * 24 * 3600
    with mock.patch("django.core.signing.time.time", return_value=month_ago):
        return str(make())


def other_workspace_page() -> str:
    workspace = Workspace("OTHER", "test", default_workspace().endpoint)
    token = links.preferences_token("ada-1", workspace)
    return reverse("django_fyno:preferences_signed", kwargs={"token": token})


def other_version_unsubscribe() -> str:
    workspace = Workspace(default_workspace().wsid, "live", default_workspace().endpoint)
    token = links.unsubscribe_token("ada-1", workspace)
    return reverse("django_fyno:unsubscribe", kwargs={"token": token})


def assert_generic_error(response: Any, status: int, text: str = NOT_VALID) -> None:
    assert response.status_code == status
    html = response.content.decode()
    assert text in html
    assert "This link cannot be used" in html
    for leak in ("ada-1", "ada@example.com", "FYTEST", "OTHER", API_KEY):
        assert leak not in html
    assert response["Referrer-Policy"] == "same-origin"
    assert_strict_csp_friendly(html)


# -- forged, expired and misplaced links --------------------------------------------

BAD_PAGE_LINKS = {
    "tampered": (lambda: tampered(signed_page()), 400, NOT_VALID),
    "truncated": (lambda: truncated(signed_page()), 400, NOT_VALID),
    "expired": (lambda: expired(signed_page), 400, "This link has expired."),
    "other-workspace": (other_workspace_page, 404, NOT_VALID),
    "unknown-profile": (lambda: signed_page("nobody-9"), 404, NOT_VALID),
    # An unsubscribe token is no preference token.
    "unsubscribe-token": (
        lambda: unsubscribe_link().replace("/unsubscribe/", "/preferences/"),
        400,
        NOT_VALID,
    ),
}


@pytest.mark.parametrize("case", BAD_PAGE_LINKS.values(), ids=BAD_PAGE_LINKS.keys())
def test_a_bad_preference_link_shows_an_error_and_changes_nothing(
    fyno: Any,  # noqa: F811
    ada: FynoProfile,  # noqa: F811
    client: Client,
    case: tuple[Any, int, str],
) -> None:
    make, status, text = case
    url = make()

    assert_generic_error(client.get(url), status, text)
    form = page_form(logged_in(ada))  # a genuine form, posted to the bad link
    assert_generic_error(client.post(url, form.data(untick=("fyno:SNEWS:email",))), status, text)

    assert writes(fyno) == []
    assert stored(fyno)["SNEWS"] == {"email": IN, "sms": IN}


def other_workspace_unsubscribe() -> str:
    workspace = Workspace("OTHER", "test", default_workspace().endpoint)
    token = links.unsubscribe_token("ada-1", workspace, "SNEWS")
    return reverse("django_fyno:unsubscribe", kwargs={"token": token})


BAD_UNSUBSCRIBE_LINKS = {
    "tampered": (lambda: tampered(unsubscribe_link(topic="SNEWS")), 400, NOT_VALID),
    "truncated": (lambda: truncated(unsubscribe_link(topic="SNEWS")), 400, NOT_VALID),
    "expired": (
        lambda: expired(lambda: unsubscribe_link(topic="SNEWS")),
        400,
        "This link has expired.",
    ),
    "other-workspace": (other_workspace_unsubscribe, 404, NOT_VALID),
    "other-version": (other_version_unsubscribe, 404, NOT_VALID),
    "unknown-profile": (lambda: unsubscribe_link("nobody-9"), 404, NOT_VALID),
    # A preference token is no unsubscribe token.
    "preference-token": (
        lambda: signed_page().replace("/preferences/", "/unsubscribe/"),
        400,
        NOT_VALID,
    ),
}


@pytest.mark.parametrize("case", BAD_UNSUBSCRIBE_LINKS.values(), ids=BAD_UNSUBSCRIBE_LINKS.keys())
def test_a_bad_unsubscribe_link_shows_an_error_and_changes_nothing(
    fyno: Any,  # noqa: F811
    ada: FynoProfile,  # noqa: F811
    case: tuple[Any, int, str],
) -> None:
    make, status, text = case
    url = make()
    mail_client = Client(enforce_csrf_checks=True)

    assert_generic_error(mail_client.get(url), status, text)
    assert_generic_error(mail_client.post(url, {"confirm": "yes"}), status, text)
    assert_generic_error(mail_client.post(url, ONE_CLICK, content_type=FORM_TYPE), status, text)

    assert fyno.emulator.request_log == []
    assert stored(fyno)["SNEWS"] == {"email": IN, "sms": IN}
    assert stored(fyno)["all"] == {}


def test_a_link_whose_profile_lost_its_user_is_refused(
    fyno: Any,  # noqa: F811
    ada: FynoProfile,  # noqa: F811
    client: Client,
) -> None:
    url = unsubscribe_link()
    FynoProfile.objects.filter(pk=ada.pk).update(user=None)
    assert_generic_error(client.post(url, ONE_CLICK, content_type=FORM_TYPE), 404)
    assert fyno.emulator.request_log == []


@pytest.mark.parametrize("state", ["deleting", "deleted"])
def test_a_link_of_a_profile_deleted_from_fyno_is_refused(
    fyno: Any,  # noqa: F811
    ada: FynoProfile,  # noqa: F811
    client: Client,
    state: str,
) -> None:
    url = unsubscribe_link()
    FynoProfile.objects.filter(pk=ada.pk).update(state=state)
    assert_generic_error(client.post(url, ONE_CLICK, content_type=FORM_TYPE), 404)
    assert_generic_error(client.get(signed_page()), 404)
    assert fyno.emulator.request_log == []


def test_tokens_never_hold_a_slash() -> None:
    with pytest.raises(NoReverseMatch):
        reverse("django_fyno:unsubscribe", kwargs={"token": "abc/def"})
    client = Client()
    assert client.get("/fyno/unsubscribe/abc/def/").status_code == 404


# -- CSRF ----------------------------------------------------------------------------


def test_the_signed_in_form_needs_its_csrf_token(
    fyno: Any,  # noqa: F811
    ada: FynoProfile,  # noqa: F811
) -> None:
    browser = logged_in(ada, enforce_csrf_checks=True)
    form = page_form(browser)
    data = form.data(untick=("fyno:SNEWS:email",))
    forged = {name: value for name, value in data.items() if name != "csrfmiddlewaretoken"}

    assert browser.post(PAGE, forged).status_code == 403
    assert writes(fyno) == []
    assert stored(fyno)["SNEWS"]["email"] == IN

    # The form as rendered, token included, is accepted.
    assert browser.post(PAGE, data).status_code == 200
    assert stored(fyno)["SNEWS"]["email"] == OUT


def test_the_signed_page_keeps_csrf_protection(
    fyno: Any,  # noqa: F811
    ada: FynoProfile,  # noqa: F811
) -> None:
    browser = Client(enforce_csrf_checks=True)
    url = signed_page()
    form = Form(browser.get(url).content.decode())
    data = form.data(untick=("fyno:SNEWS:email",))
    forged = {name: value for name, value in data.items() if name != "csrfmiddlewaretoken"}

    assert browser.post(url, forged).status_code == 403
    assert writes(fyno) == []
    assert browser.post(url, data).status_code == 200
    assert stored(fyno)["SNEWS"]["email"] == OUT


def test_the_api_needs_the_csrf_header(
    fyno: Any,  # noqa: F811
    ada: FynoProfile,  # noqa: F811
) -> None:
    client, _token = api_client(ada)
    body = {"topics": {"SNEWS": {"email": False}}}

    assert client.put(API, body, content_type="application/json").status_code == 403
    assert client.post(API, body, content_type="application/json").status_code == 403
    wrong = {"X-CSRFToken": "x" * 32}
    assert client.put(API, body, content_type="application/json", headers=wrong).status_code == 403
    assert writes(fyno) == []
    assert stored(fyno)["SNEWS"]["email"] == IN


def test_the_api_is_403_json_for_anonymous_users(
    fyno: Any,  # noqa: F811
    ada: FynoProfile,  # noqa: F811
) -> None:
    anonymous = Client()
    for response in (
        anonymous.get(API),
        anonymous.put(API, {"all": True}, content_type="application/json"),
    ):
        assert response.status_code == 403
        assert response["Content-Type"] == "application/json"
        assert "error" in response.json()
        assert "Location" not in response
    assert fyno.emulator.request_log == []


def test_login_required_middleware_leaves_the_links_and_the_api_alone(
    fyno: Any,  # noqa: F811
    ada: FynoProfile,  # noqa: F811
    settings: Any,
) -> None:
    settings.MIDDLEWARE = [
        *settings.MIDDLEWARE,
        "django.contrib.auth.middleware.LoginRequiredMiddleware",
    ]
    anonymous = Client()
    assert anonymous.get(signed_page()).status_code == 200
    assert anonymous.post(unsubscribe_link(), ONE_CLICK, content_type=FORM_TYPE).status_code == 200
    assert anonymous.get(API).status_code == 403
    assert anonymous.get(PAGE).status_code == 302


# -- another user's preferences --------------------------------------------------------


def test_no_id_in_the_request_reaches_another_users_preferences(
    fyno: Any,  # noqa: F811
    ada: FynoProfile,  # noqa: F811
    bob: FynoProfile,  # noqa: F811
    ada_client: Client,  # noqa: F811
) -> None:
    others = {
        "distinct_id": "bob-2",
        "user": str(bob.user_id),
        "user_id": str(bob.user_id),
        "profile": str(bob.pk),
        "pk": str(bob.pk),
    }
    query = "?" + "&".join(f"{name}={value}" for name, value in others.items())
    form = page_form(ada_client, PAGE + query)
    data = {**form.data(untick=("fyno:SNEWS:email",)), **others}

    response = ada_client.post(PAGE + query, data)
    assert response.status_code == 200
    api = ada_client.get(API + query)
    assert api.status_code == 200

    assert {entry.query["distinct_id"] for entry in fyno.emulator.request_log} == {"ada-1"}
    assert stored(fyno)["SNEWS"]["email"] == OUT
    assert stored(fyno, "bob-2")["SNEWS"] == {"email": IN, "sms": IN}


def test_the_api_takes_no_user_from_its_body_or_query(
    fyno: Any,  # noqa: F811
    ada: FynoProfile,  # noqa: F811
    bob: FynoProfile,  # noqa: F811
) -> None:
    client, token = api_client(ada)
    headers = {"X-CSRFToken": token}
    change = {"topics": {"SNEWS": {"email": False}}}

    # A body naming someone is refused as a whole.
    for extra in ({"distinct_id": "bob-2"}, {"user": bob.user_id}):
        response = client.put(
            API, {**change, **extra}, content_type="application/json", headers=headers
        )
        assert response.status_code == 400
    assert writes(fyno) == []
    # The query is ignored: the change is the signed-in user's.
    response = client.put(
        f"{API}?distinct_id=bob-2&user={bob.user_id}",
        change,
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 200
    assert {entry.query["distinct_id"] for entry in writes(fyno)} == {"ada-1"}
    assert stored(fyno)["SNEWS"]["email"] == OUT
    assert stored(fyno, "bob-2")["SNEWS"] == {"email": IN, "sms": IN}


# -- hostile JSON --------------------------------------------------------------------

HOSTILE_BODIES = {
    "not-json": b"{topics: nope",
    "nan": b'{"all": NaN}',
    "infinity": b'{"topics": {"SNEWS": {"email": Infinity}}}',
    "huge-int": b'{"all": 1' + b"0" * 400 + b"}",
    "too-long-int": b'{"all": 1' + b"0" * 5000 + b"}",
    "nul-topic": json.dumps({"topics": {"SNEWS\u0000": {"email": False}}}).encode(),
    "nul-channel": json.dumps({"topics": {"SNEWS": {"em\u0000ail": False}}}).encode(),
    "lone-surrogate": b'{"topics": {"\\ud800": {"email": false}}}',
    "lone-surrogate-channel": b'{"topics": {"SNEWS": {"\\ud800": false}}}',
    "not-utf8": b'{"topics": {"\xff": {"email": false}}}',
    "deep": b"[" * 1000 + b"]" * 1000,
    "deeper": b'{"topics": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "deep-value": b'{"topics": {"SNEWS": {"email": ' + b"[" * 1000 + b"]" * 1000 + b"}}}",
    "list": b"[]",
    "string": b'"all"',
    "null": b"null",
    "all-not-bool": b'{"all": "yes"}',
    "all-number": b'{"all": 1}',
    "topics-list": b'{"topics": ["SNEWS"]}',
    "channel-number": b'{"topics": {"SNEWS": {"email": 0}}}',
    "channel-string": b'{"topics": {"SNEWS": {"email": "false"}}}',
    "channel-null": b'{"topics": {"SNEWS": {"email": null}}}',
    "topic-not-object": b'{"topics": {"SNEWS": false}}',
    "all-as-topic": b'{"topics": {"all": {"email": false}}}',
    "unknown-key": b'{"topic": {"SNEWS": {"email": false}}}',
    "unknown-topic": b'{"topics": {"SOTHER": {"email": false}}}',
    "channel-not-on": b'{"topics": {"SNEWS": {"push": false}}}',
    "no-such-channel": b'{"topics": {"SNEWS": {"fax": false}}}',
    "required": b'{"topics": {"SSECURITY": {"email": false}}}',
    "too-many-topics": json.dumps({"topics": {f"S{i}": {} for i in range(501)}}).encode(),
}


@pytest.mark.parametrize("body", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
def test_hostile_json_is_400_and_sends_nothing(
    fyno: Any,  # noqa: F811
    ada: FynoProfile,  # noqa: F811
    body: bytes,
) -> None:
    client, token = api_client(ada)
    fyno.emulator.clear_request_log()
    headers = {"X-CSRFToken": token}

    for send in (client.put, client.post):
        response = send(API, body, content_type="application/json", headers=headers)
        assert response.status_code == 400
        assert response["Content-Type"] == "application/json"
        assert isinstance(response.json()["error"], str)
    assert writes(fyno) == []
    assert stored(fyno)["SNEWS"] == {"email": IN, "sms": IN}
    assert stored(fyno)["SSECURITY"]["email"] == IN


def test_a_body_that_is_not_json_is_415(
    fyno: Any,  # noqa: F811
    ada: FynoProfile,  # noqa: F811
) -> None:
    client, token = api_client(ada)
    # A form post, not JSON.
    response = client.post(API, {"all": "true"}, headers={"X-CSRFToken": token})
    assert response.status_code == 415
    assert writes(fyno) == []


def test_a_body_too_large_is_413(
    fyno: Any,  # noqa: F811
    ada: FynoProfile,  # noqa: F811
    settings: Any,
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client, token = api_client(ada)
    body = json.dumps({"topics": {"SNEWS": {"email": False}}, "pad": "x" * 2000})
    response = client.put(
        API, body, content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert response.status_code == 413
    assert writes(fyno) == []


# -- redirects, secrets, markup --------------------------------------------------------


def test_next_is_never_followed(
    fyno: Any,  # noqa: F811
    ada: FynoProfile,  # noqa: F811
    ada_client: Client,  # noqa: F811
) -> None:
    evil = "?next=https://evil.example/&redirect_to=//evil.example"
    form = page_form(ada_client, PAGE + evil)
    responses = [
        ada_client.post(PAGE + evil, form.data(untick=("fyno:SNEWS:email",))),
        Client().get(signed_page() + evil),
        Client().post(unsubscribe_link() + evil, {"confirm": "yes"}),
        Client().post(unsubscribe_link() + evil, ONE_CLICK, content_type=FORM_TYPE),
    ]
    for response in responses:
        assert response.status_code == 200
        assert "Location" not in response
        assert "evil.example" not in response.content.decode()
    assert stored(fyno)["SNEWS"]["email"] == OUT
    # An anonymous visitor goes to the login page of this site, nowhere else.
    response = Client().get(PAGE + evil)
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert (location.scheme, location.netloc, location.path) == ("", "", "/login/")


def every_page(fyno: Any, ada: FynoProfile) -> list[Any]:  # noqa: F811
    """A response of each page and state of the preference center."""
    browser = logged_in(ada)
    anonymous = Client()
    form = page_form(browser)
    pages = [
        browser.get(PAGE),
        browser.post(PAGE, form.data(untick=("fyno:SNEWS:email",))),
        browser.post(PAGE, {**form.data(), "fyno:SSECURITY:email": OUT}),
        browser.get(API),
        anonymous.get(API),
        anonymous.get(PAGE),
        anonymous.get(signed_page()),
        anonymous.get(unsubscribe_link(topic="SNEWS")),
        anonymous.post(unsubscribe_link(topic="SNEWS"), {}),
        anonymous.post(unsubscribe_link(topic="SNEWS"), {"confirm": "yes"}),
        anonymous.get(tampered(signed_page())),
        anonymous.get(expired(unsubscribe_link)),
    ]
    fyno.set_fault(None, error_rate=1, error_status=503)
    pages += [
        browser.get(PAGE),
        browser.get(API),
        anonymous.get(unsubscribe_link()),
        anonymous.post(unsubscribe_link(), ONE_CLICK, content_type=FORM_TYPE),
    ]
    fyno.clear_faults()
    return pages


def test_the_api_key_is_in_no_page_header_or_json(
    fyno: Any,  # noqa: F811
    ada: FynoProfile,  # noqa: F811
) -> None:
    pages = every_page(fyno, ada)
    # Nor when Fyno refuses the key.
    with override_settings(FYNO={**settings.FYNO, "API_KEY": "wrong-secret-key"}):
        pages += [logged_in(ada).get(PAGE), logged_in(ada).get(API)]
    for response in pages:
        text = response.content.decode() + str(response.headers) + str(response.cookies)
        assert API_KEY not in text
        assert "wrong-secret-key" not in text
        assert "Bearer" not in text


def test_no_page_has_inline_style_or_script(
    fyno: Any,  # noqa: F811
    ada: FynoProfile,  # noqa: F811
) -> None:
    for response in every_page(fyno, ada):
        if response["Content-Type"].startswith("text/html"):
            assert_strict_csp_friendly(response.content.decode())
