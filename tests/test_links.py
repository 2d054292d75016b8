"""Signed links (django_fyno.links): tokens bound to a profile and its workspace, with
their own salts and an age limit; absolute URLs; the List-Unsubscribe headers; and
notify()'s ADD_LINKS_TO_EVENTS."""

from __future__ import annotations

from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from django.core import signing
from django.core.checks import run_checks
from django.test import RequestFactory, override_settings
from django.urls import resolve

from django_fyno import links, notify
from django_fyno.clients import Workspace, default_workspace
from django_fyno.exceptions import FynoConfigurationError, FynoValidationError
from django_fyno.links import ExpiredLink, InvalidLink, LinkTarget
from django_fyno.receivers import skip_sync
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

SITE = "https://shop.example.com"
HERE = Workspace("FYTEST", "test", "https://api.fyno.io/v1")
ELSEWHERE = Workspace("FYOTHER", "test", "https://api.fyno.io/v1")


@pytest.fixture(autouse=True)
def _urls_and_site(settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.admin_urls"  # django_fyno.urls under /fyno/
    settings.FYNO = {**django_settings.FYNO, "SITE_URL": SITE, "AUTO_SYNC": False}


def user(name: str) -> Any:
    person = make_user(name, save=False)
    with skip_sync(person):
        person.save()
    return person


def token_of(url: str) -> str:
    match = resolve(urlsplit(url).path)
    return str(match.kwargs["token"])


# -- tokens -----------------------------------------------------------------------------


def test_a_token_names_its_profile_and_workspace() -> None:
    token = links.preferences_token("42", HERE)
    assert links.read_preferences_token(token) == LinkTarget("42", "FYTEST", "test")
    assert links.read_preferences_token(token).matches(
        mock.Mock(distinct_id="42", wsid="FYTEST", version="test")
    )
    for other in (
        mock.Mock(distinct_id="43", wsid="FYTEST", version="test"),
        mock.Mock(distinct_id="42", wsid="FYOTHER", version="test"),
        mock.Mock(distinct_id="42", wsid="FYTEST", version="live"),
    ):
        assert not links.read_preferences_token(token).matches(other)


def test_an_unsubscribe_token_carries_its_topic() -> None:
    assert (
        links.read_unsubscribe_token(links.unsubscribe_token("7", HERE, "sub-1")).topic == "sub-1"
    )
    assert links.read_unsubscribe_token(links.unsubscribe_token("7", HERE)).topic is None


def test_each_kind_of_link_has_its_own_salt() -> None:
    with pytest.raises(InvalidLink):
        links.read_unsubscribe_token(links.preferences_token("42", HERE))
    with pytest.raises(InvalidLink):
        links.read_preferences_token(links.unsubscribe_token("42", HERE))
    # Nor is anything else SECRET_KEY signed (a session-like value) a link.
    with pytest.raises(InvalidLink):
        links.read_preferences_token(signing.dumps({"d": "42", "w": "FYTEST", "v": "test"}))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda token: token[:-1],
        lambda token: token[: len(token) // 2],
        lambda token: token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),
        lambda token: "x" + token,
        lambda token: token.replace(":", ""),
        lambda token: "",
        lambda token: "\x00" + token,
        lambda token: token + "\ud800",
        lambda token: token * 50,
    ],
)
def test_a_tampered_or_truncated_token_is_invalid(mangle: Any) -> None:
    token = links.preferences_token("42", HERE)
    with pytest.raises(InvalidLink) as caught:
        links.read_preferences_token(mangle(token))
    assert "42" not in str(caught.value)


@pytest.mark.parametrize("value", [None, 42, b"bytes", ["list"]])
def test_a_token_that_is_not_a_string_is_invalid(value: Any) -> None:
    with pytest.raises(InvalidLink):
        links.read_preferences_token(value)


def test_a_token_expires_after_the_max_age(settings: Any) -> None:
    settings.FYNO = {**settings.FYNO, "PREFERENCE_LINK_MAX_AGE": 3600}
    with mock.patch("django.core.signing.time.time", return_value=1_000_000.0):
        token = links.unsubscribe_token("42", HERE)
    with mock.patch("django.core.signing.time.time", return_value=1_000_000.0 + 3599):
        assert links.read_unsubscribe_token(token).distinct_id == "42"
    with (
        mock.patch("django.core.signing.time.time", return_value=1_000_000.0 + 3601),
        pytest.raises(ExpiredLink) as caught,
    ):
        links.read_unsubscribe_token(token)
    assert str(caught.value) == "This link has expired."


def test_the_default_age_is_thirty_days() -> None:
    day = 24 * 3600
    with mock.patch("django.core.signing.time.time", return_value=1_000_000.0):
        token = links.preferences_token("42", HERE)
    with mock.patch("django.core.signing.time.time", return_value=1_000_000.0 + 30 * day - 1):
        links.read_preferences_token(token)
    with (
        mock.patch("django.core.signing.time.time", return_value=1_000_000.0 + 30 * day + 1),
        pytest.raises(ExpiredLink),
    ):
        links.read_preferences_token(token)


def test_a_token_made_with_another_secret_key_is_invalid(settings: Any) -> None:
    token = links.preferences_token("42", HERE)
    settings.SECRET_KEY = "another-secret-key-entirely"
    with pytest.raises(InvalidLink):
        links.read_preferences_token(token)


@pytest.mark.parametrize("bad", ["", "\x00", "a\x00b", "\ud800", 42])
def test_a_hostile_distinct_id_makes_no_token(bad: Any) -> None:
    with pytest.raises(FynoValidationError):
        links.preferences_token(bad, HERE)


@pytest.mark.parametrize("bad", ["\x00", "sub\ud800"])
def test_a_hostile_topic_makes_no_token(bad: str) -> None:
    with pytest.raises(FynoValidationError):
        links.unsubscribe_token("42", HERE, bad)


# -- URLs -------------------------------------------------------------------------------


def test_urls_for_a_user_are_absolute_on_site_url() -> None:
    ada = user("ada")
    url = links.preferences_url(ada)
    assert url.startswith(f"{SITE}/fyno/")
    target = links.read_preferences_token(token_of(url))
    assert target == LinkTarget(str(ada.pk), default_workspace().wsid, "test")

    everything = links.unsubscribe_url(ada)
    one_topic = links.unsubscribe_url(ada, "sub-news")
    assert links.read_unsubscribe_token(token_of(everything)).topic is None
    assert links.read_unsubscribe_token(token_of(one_topic)).topic == "sub-news"


def test_urls_take_the_host_of_the_request() -> None:
    ada = user("ada")
    request = RequestFactory().get("/", HTTP_HOST="tenant.example.org", secure=True)
    with override_settings(ALLOWED_HOSTS=["tenant.example.org"]):
        url = links.unsubscribe_url(ada, request=request)
    assert url.startswith("https://tenant.example.org/fyno/")


def test_without_site_url_or_request_a_link_cannot_be_made(settings: Any) -> None:
    settings.FYNO = {**settings.FYNO, "SITE_URL": ""}
    with pytest.raises(FynoConfigurationError, match="SITE_URL"):
        links.preferences_url(user("ada"))


def test_site_url_must_be_http(settings: Any) -> None:
    settings.FYNO = {**settings.FYNO, "SITE_URL": "javascript:alert(1)"}
    with pytest.raises(FynoConfigurationError, match="SITE_URL"):
        links.preferences_url(user("ada"))


def test_list_unsubscribe_headers_follow_rfc_8058() -> None:
    ada = user("ada")
    headers = links.list_unsubscribe_headers(ada, "sub-news")
    assert set(headers) == {"List-Unsubscribe", "List-Unsubscribe-Post"}
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    value = headers["List-Unsubscribe"]
    assert value.startswith(f"<{SITE}/")
    assert value.endswith(">")
    assert links.read_unsubscribe_token(token_of(value[1:-1])).topic == "sub-news"


def test_the_helpers_are_importable_from_the_package() -> None:
    import django_fyno

    assert django_fyno.unsubscribe_url is links.unsubscribe_url
    assert django_fyno.preferences_url is links.preferences_url
    assert django_fyno.list_unsubscribe_headers is links.list_unsubscribe_headers


# -- notify(): ADD_LINKS_TO_EVENTS -----------------------------------------------------


def test_notify_adds_no_links_by_default() -> None:
    row = notify("welcome", to=user("ada"), data={"name": "Ada"})
    assert row.payload == {"name": "Ada"}


def test_notify_adds_each_recipients_own_links(settings: Any) -> None:
    settings.FYNO = {**settings.FYNO, "ADD_LINKS_TO_EVENTS": True}
    ada, bob = user("ada"), user("bob")

    rows = notify("welcome", to=[ada, bob], data={"greeting": "hi"})

    for row, person in zip(rows, (ada, bob), strict=True):
        data = row.payload
        assert data["greeting"] == "hi"
        assert links.read_unsubscribe_token(token_of(data["unsubscribe_url"])) == LinkTarget(
            str(person.pk), row.wsid, row.version
        )
        assert links.read_preferences_token(token_of(data["preferences_url"])).distinct_id == str(
            person.pk
        )
        assert data["unsubscribe_url"].startswith(SITE)


def test_notify_keeps_the_callers_own_link(settings: Any) -> None:
    settings.FYNO = {**settings.FYNO, "ADD_LINKS_TO_EVENTS": True}
    row = notify("welcome", to=user("ada"), data={"unsubscribe_url": "https://mine.example/u"})
    assert row.payload["unsubscribe_url"] == "https://mine.example/u"
    assert row.payload["preferences_url"].startswith(SITE)


def test_notify_adds_no_link_for_bare_destinations(settings: Any) -> None:
    settings.FYNO = {**settings.FYNO, "ADD_LINKS_TO_EVENTS": True}
    row = notify("welcome", to={"email": "someone@example.com"}, data={})
    assert row.payload == {}


def test_links_cost_no_query(settings: Any, django_assert_num_queries: Any) -> None:
    people = [user(f"p{index}") for index in range(5)]
    plain = notify("welcome", to=people, data={})
    assert all("unsubscribe_url" not in row.payload for row in plain)
    settings.FYNO = {**settings.FYNO, "ADD_LINKS_TO_EVENTS": True}
    with django_assert_num_queries(1):  # the one bulk INSERT, as without links
        rows = notify("welcome", to=people, data={})
    assert all("unsubscribe_url" in row.payload for row in rows)


def test_links_without_site_url_fail_the_checks_and_notify(settings: Any) -> None:
    settings.FYNO = {**settings.FYNO, "ADD_LINKS_TO_EVENTS": True, "SITE_URL": ""}
    assert "fyno.E009" in [message.id for message in run_checks()]
    with pytest.raises(FynoConfigurationError, match="SITE_URL"):
        notify("welcome", to=user("ada"), data={})
