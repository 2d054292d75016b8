"""ProfileAdapter: the user -> Fyno profile mapping, its normalisation and its resolution."""

from __future__ import annotations

import datetime
import logging
import math
import os
import subprocess
import sys
import uuid
import zoneinfo
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core import checks
from django.test import override_settings

from django_fyno.adapter import (
    SYNCED_CHANNELS,
    ProfileAdapter,
    ProfilePayload,
    get_adapter,
)
from django_fyno.exceptions import FynoConfigurationError, FynoValidationError
from tests.conftest import run_pytest_with_custom_user
from tests.testapp.models import EmailUser

REPO_ROOT = Path(__file__).resolve().parent.parent
LOGGER = "django_fyno.adapter"
PHONE = "+14155550100"


def fyno(**overrides: Any) -> dict[str, Any]:
    """The test settings' FYNO dict with some keys changed."""
    return {**settings.FYNO, **overrides}


def adapter_returning(**returns: Any) -> ProfileAdapter:
    """An adapter whose ``get_<name>`` methods return the given raw values."""
    methods = {f"get_{name}": (lambda self, user, v=value: v) for name, value in returns.items()}
    return type("StubAdapter", (ProfileAdapter,), methods)()


class NicknameAdapter(ProfileAdapter):
    """What a project writes: one override, and the fields it reads."""

    sync_fields = ("email", "first_name", "is_active", "no_such_field")

    def get_name(self, user: Any) -> str | None:
        return user.first_name or None


class NotAnAdapter:
    pass


@pytest.fixture
def auth_user() -> User:
    return User(pk=42, username="ada", email="ada@example.com", first_name="Ada", last_name="L")


@pytest.fixture
def email_user() -> EmailUser:
    return EmailUser(email="grace@example.com", phone=PHONE)


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The adapter's warnings, formatted."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    return lambda: [r.getMessage() for r in caplog.records if r.name == LOGGER]


# The default mapping


def test_default_payload_from_the_django_user(auth_user: User, warnings: Any) -> None:
    payload = ProfileAdapter().build_payload(auth_user)
    assert payload == ProfilePayload(
        distinct_id="42",
        name="Ada L",
        timezone=None,
        status=1,
        channels={"email": "ada@example.com"},
        properties={},
    )
    assert warnings() == []


def test_inactive_user_has_status_0(auth_user: User) -> None:
    auth_user.is_active = False
    assert ProfileAdapter().build_payload(auth_user).status == 0


def test_empty_values_are_omitted_without_a_warning(warnings: Any) -> None:
    user = User(pk=7, username="nobody", email="", first_name="", last_name="")
    payload = ProfileAdapter().build_payload(user)
    assert (payload.name, payload.channels, payload.timezone) == (None, {}, None)
    assert warnings() == []


@override_settings(FYNO=fyno(PHONE_ATTRIBUTE="phone"))
def test_phone_attribute_fills_the_phone_channels(email_user: EmailUser) -> None:
    email_user.phone = "+1 (415) 555-0100"  # formatting characters are removed
    channels = ProfileAdapter().build_payload(email_user).channels
    assert channels == {
        "email": "grace@example.com",
        "sms": PHONE,
        "whatsapp": PHONE,
        "voice": PHONE,
    }


def test_payload_digest_is_stable_and_content_sensitive(auth_user: User) -> None:
    adapter = ProfileAdapter()
    first, second = adapter.build_payload(auth_user), adapter.build_payload(auth_user)
    assert first.digest() == second.digest()
    auth_user.email = "ada@example.org"
    assert adapter.build_payload(auth_user).digest() != first.digest()


def test_zoneinfo_timezones_and_good_properties_are_kept(auth_user: User, warnings: Any) -> None:
    properties = {"plan": "pro", "seats": 3, "score": 1.5, "beta": True, "tags": ("a", 1)}
    adapter = adapter_returning(
        timezone=zoneinfo.ZoneInfo("Asia/Kolkata"), properties={**properties, "unset": None}
    )
    payload = adapter.build_payload(auth_user)
    assert payload.timezone == "Asia/Kolkata"
    # A tuple becomes a list; None means "nothing to $set", not a bad value.
    assert payload.properties == {**properties, "tags": ["a", 1]}
    assert warnings() == []


def test_overriding_one_method_keeps_the_others(auth_user: User) -> None:
    payload = NicknameAdapter().build_payload(auth_user)
    assert (payload.name, payload.channels) == ("Ada", {"email": "ada@example.com"})


# The custom user model (UUID key, email login, no names)


@override_settings(FYNO=fyno(PHONE_ATTRIBUTE="phone"))
def test_custom_user_model_payload(email_user: EmailUser, warnings: Any) -> None:
    assert isinstance(email_user.pk, uuid.UUID)
    payload = ProfileAdapter().build_payload(email_user)
    assert payload.distinct_id == str(email_user.pk)
    assert payload.name is None
    assert payload.channels == {
        "email": "grace@example.com",
        "sms": PHONE,
        "whatsapp": PHONE,
        "voice": PHONE,
    }
    assert warnings() == []


@override_settings(AUTH_USER_MODEL="testapp.EmailUser", FYNO=fyno(PHONE_ATTRIBUTE="phone"))
def test_custom_user_model_sync_fields_are_only_those_it_has() -> None:
    assert get_user_model() is EmailUser
    assert ProfileAdapter().get_sync_fields() == {"email", "phone", "is_active"}


def test_django_user_sync_fields() -> None:
    fields = ProfileAdapter().get_sync_fields()
    assert fields == {"email", "first_name", "last_name", "is_active"}
    assert "last_login" not in fields  # a login alone never syncs
    # A PHONE_ATTRIBUTE the model has no field for is left out.
    with override_settings(FYNO=fyno(PHONE_ATTRIBUTE="phone")):
        assert ProfileAdapter().get_sync_fields() == fields


def test_sync_fields_class_attribute_overrides_the_default() -> None:
    assert NicknameAdapter().get_sync_fields() == {"email", "first_name", "is_active"}


def test_custom_user_model_works_as_auth_user_model() -> None:
    """The app's checks, migrations and a test hold with AUTH_USER_MODEL = testapp.EmailUser."""
    commands = [
        ["-m", "django", "check", "--settings=tests.settings_custom_user"],
        [
            "-m",
            "django",
            "makemigrations",
            "--check",
            "--dry-run",
            "--settings=tests.settings_custom_user",
        ],
    ]
    # In-memory SQLite, as for the pytest child below, whatever DATABASE_URL says.
    env = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    for command in commands:
        result = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
            [sys.executable, *command],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    result = run_pytest_with_custom_user(
        "tests/test_adapter.py", "-k", "custom_user_model_is_auth_user_model"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


@pytest.mark.django_db
def test_custom_user_model_is_auth_user_model() -> None:
    """Runs in a subprocess under tests.settings_custom_user (see the test above)."""
    if settings.AUTH_USER_MODEL != "testapp.EmailUser":
        pytest.skip("needs --ds=tests.settings_custom_user")
    user = get_user_model().objects.create_user(email="alan@example.com", phone=PHONE)  # type: ignore[attr-defined]
    payload = get_adapter().build_payload(user)
    assert payload.distinct_id == str(user.pk)
    assert payload.channels == {
        "email": "alan@example.com",
        "sms": PHONE,
        "whatsapp": PHONE,
        "voice": PHONE,
    }
    assert get_adapter().get_sync_fields() == {"email", "phone", "is_active"}


# Normalisation: each bad field is dropped with exactly one warning

BAD_FIELDS = {
    "invalid email": (
        {"channels": {"email": "ada@@example", "slack": "U123"}},
        "email",
        "ada@@example",
        lambda p: p.channels == {"slack": "U123"},
    ),
    "non-E.164 phone on three channels": (
        {"channels": {"email": "ada@example.com", "sms": "0415", "whatsapp": "0415"}},
        "sms",
        "0415",
        lambda p: p.channels == {"email": "ada@example.com"},
    ),
    "unknown timezone": (
        {"timezone": "Mars/Olympus_Mons"},
        "timezone",
        "Mars/Olympus_Mons",
        lambda p: p.timezone is None,
    ),
    "name over 255 characters": (
        {"name": "Ada " + "x" * 255},
        "name",
        "Ada x",
        lambda p: p.name is None,
    ),
    "property string over 255 characters": (
        {"properties": {"bio": "secret " + "y" * 255, "plan": "pro"}},
        "bio",
        "secret",
        lambda p: p.properties == {"plan": "pro"},
    ),
    "unknown channel": (
        {"channels": {"email": "ada@example.com", "fax": "+14155550199"}},
        "fax",
        "+14155550199",
        lambda p: p.channels == {"email": "ada@example.com"},
    ),
    "push channel": (
        {"channels": {"email": "ada@example.com", "push": "token-abc"}},
        "push",
        "token-abc",
        lambda p: p.channels == {"email": "ada@example.com"},
    ),
    "datetime property": (
        {"properties": {"joined": datetime.date(2020, 1, 2), "plan": "pro"}},
        "joined",
        "2020",
        lambda p: p.properties == {"plan": "pro"},
    ),
    "dict property": (
        {"properties": {"address": {"city": "Pune"}}},
        "address",
        "Pune",
        lambda p: p.properties == {},
    ),
    "decimal property": (
        {"properties": {"balance": Decimal("12.34")}},
        "balance",
        "12.34",
        lambda p: p.properties == {},
    ),
    "non-finite float property": (
        {"properties": {"ratio": math.nan}},
        "ratio",
        "nan",
        lambda p: p.properties == {},
    ),
    "list property with a long string": (
        {"properties": {"notes": ["ok", "z" * 256]}},
        "notes",
        "zzz",
        lambda p: p.properties == {},
    ),
    "invalid status": (
        {"status": "yes"},
        "status",
        "yes",
        lambda p: p.status == 1,
    ),
    # Values the databases or JSON cannot hold as given (they used to crash or slip through).
    "property 10**400": (
        {"properties": {"big": 10**400, "plan": "pro"}},
        "big",
        "1000",
        lambda p: p.properties == {"plan": "pro"},
    ),
    "property 2**53": (
        {"properties": {"big": -(2**53), "plan": "pro"}},
        "big",
        str(2**53),
        lambda p: p.properties == {"plan": "pro"},
    ),
    "list property holding 10**400": (
        {"properties": {"scores": [1, 10**400]}},
        "scores",
        "1000",
        lambda p: p.properties == {},
    ),
    "property string with a NUL": (
        {"properties": {"bio": "se\x00cret", "plan": "pro"}},
        "bio",
        "cret",
        lambda p: p.properties == {"plan": "pro"},
    ),
    "property list with a surrogate": (
        {"properties": {"tags": ["ok", "\ud800"], "plan": "pro"}},
        "tags",
        "\ud800",
        lambda p: p.properties == {"plan": "pro"},
    ),
    "property name with a NUL": (
        {"properties": {"pl\x00an": "pro", "seats": 3}},
        "property 'pl\\x00an'",
        "\x00",
        lambda p: p.properties == {"seats": 3},
    ),
    "huge property name": (
        {"properties": {"p" * 100_000: object(), "seats": 3}},
        "property '" + "p" * 32 + "'…",
        "p" * 100,
        lambda p: p.properties == {"seats": 3},
    ),
    "name with a NUL": (
        {"name": "Ada\x00Lovelace"},
        "name",
        "Lovelace",
        lambda p: p.name is None,
    ),
    "name with a surrogate": (
        {"name": "Ada \udc80"},
        "name",
        "Ada",
        lambda p: p.name is None,
    ),
    "slack channel with a NUL": (
        {"channels": {"email": "ada@example.com", "slack": "U1\x00"}},
        "slack",
        "U1",
        lambda p: p.channels == {"email": "ada@example.com"},
    ),
    "huge unknown channel": (
        {"channels": {"email": "ada@example.com", "c" * 100_000: "x"}},
        "channel '" + "c" * 32 + "'…",
        "c" * 100,
        lambda p: p.channels == {"email": "ada@example.com"},
    ),
    "timezone of 5,000 digits": (
        {"timezone": 10**5000},
        "timezone",
        "1000",
        lambda p: p.timezone is None,
    ),
}


@pytest.mark.parametrize(
    ("returns", "field", "bad_value", "payload_ok"), BAD_FIELDS.values(), ids=BAD_FIELDS.keys()
)
def test_bad_field_is_dropped_with_one_warning(
    auth_user: User,
    warnings: Any,
    returns: dict[str, Any],
    field: str,
    bad_value: str,
    payload_ok: Callable[[ProfilePayload], bool],
) -> None:
    payload = adapter_returning(**returns).build_payload(auth_user)
    assert payload_ok(payload), payload
    assert set(payload.channels) <= SYNCED_CHANNELS
    [message] = warnings()
    assert "42" in message
    assert field in message
    assert bad_value not in message
    # Never a huge or binary value: short, and printable (no NUL, no surrogate).
    assert len(message) < 200, message[:300]
    assert message.isprintable(), ascii(message[:300])


def test_each_bad_field_gets_its_own_warning(auth_user: User, warnings: Any) -> None:
    adapter = adapter_returning(
        name="n" * 300,
        timezone="Nowhere/Land",
        channels={"email": "bad", "sms": "123", "whatsapp": "123", "voice": "123", "teams": "T1"},
        properties={"a": object(), "b": "b" * 300, "c": 1},
    )
    payload = adapter.build_payload(auth_user)
    assert payload == ProfilePayload(
        distinct_id="42", channels={"teams": "T1"}, properties={"c": 1}, status=1
    )
    messages = warnings()
    # name, timezone, email, the phone (once for its three channels), a, b.
    assert len(messages) == 6
    assert all(message.startswith("Fyno profile 42: dropped ") for message in messages)
    assert "Fyno profile 42: dropped channels 'sms', 'whatsapp', 'voice' (" in "\n".join(messages)


def test_warning_carries_structured_fields(auth_user: User, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    adapter_returning(timezone="Nowhere/Land").build_payload(auth_user)
    [record] = caplog.records
    assert (record.fyno_distinct_id, record.fyno_field) == ("42", "timezone")


@pytest.mark.parametrize("distinct_id", ["", "   ", None, "x" * 256])
def test_unusable_distinct_id_is_an_adapter_bug(auth_user: User, distinct_id: Any) -> None:
    adapter = adapter_returning(distinct_id=distinct_id)
    with pytest.raises(FynoValidationError) as raised:
        adapter.build_payload(auth_user)
    assert raised.value.field == "distinct_id"


@pytest.mark.parametrize(
    ("distinct_id", "words"),
    [
        ("4\x002", "NUL"),
        ("\ud800", "surrogate"),
        (10**5000, "at most 255"),
    ],
    ids=["NUL", "surrogate", "an int of 5,000 digits"],
)
def test_a_distinct_id_no_database_can_hold_is_an_adapter_bug(
    auth_user: User, distinct_id: Any, words: str
) -> None:
    adapter = adapter_returning(distinct_id=distinct_id)
    with pytest.raises(FynoValidationError, match=words) as raised:
        adapter.build_payload(auth_user)
    assert raised.value.field == "distinct_id"
    assert str(raised.value).isprintable()


def test_int_and_uuid_distinct_ids_become_strings(auth_user: User) -> None:
    key = uuid.uuid4()
    assert adapter_returning(distinct_id=5).build_payload(auth_user).distinct_id == "5"
    assert adapter_returning(distinct_id=key).build_payload(auth_user).distinct_id == str(key)


# get_adapter() and fyno.E006


def test_get_adapter_returns_one_default_instance() -> None:
    adapter = get_adapter()
    assert type(adapter) is ProfileAdapter
    assert get_adapter() is adapter


def test_get_adapter_reads_the_setting_when_called() -> None:
    with override_settings(FYNO=fyno(PROFILE_ADAPTER="tests.test_adapter.NicknameAdapter")):
        adapter = get_adapter()
        assert isinstance(adapter, NicknameAdapter)
        assert get_adapter() is adapter
    assert type(get_adapter()) is ProfileAdapter


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("tests.no_such_module.Adapter", "cannot be imported"),
        ("tests.test_adapter.NoSuchAdapter", "cannot be imported"),
        ("noperiod", "cannot be imported"),
        ("tests.test_adapter.NotAnAdapter", "is not a subclass"),
        ("tests.test_adapter.adapter_returning", "is not a subclass"),
        (None, "dotted path"),
    ],
)
def test_wrong_adapter_path(path: Any, words: str) -> None:
    with override_settings(FYNO=fyno(PROFILE_ADAPTER=path)):
        with pytest.raises(FynoConfigurationError, match=words) as raised:
            get_adapter()
        assert "PROFILE_ADAPTER" in str(raised.value)
        errors = [m for m in checks.run_checks(databases=[]) if m.id == "fyno.E006"]
    assert len(errors) == 1
    assert words in errors[0].msg


def test_e006_is_quiet_for_a_good_adapter() -> None:
    with override_settings(FYNO=fyno(PROFILE_ADAPTER="tests.test_adapter.NicknameAdapter")):
        assert [m for m in checks.run_checks(databases=[]) if m.id == "fyno.E006"] == []
