"""Settings are read when used, with env fallbacks, defaults and system checks."""

from __future__ import annotations

import pytest
from django.core import checks
from django.test import override_settings

from django_fyno.conf import DEFAULTS, TaskMode, UnknownPolicy, Version, fyno_settings
from django_fyno.exceptions import FynoConfigurationError


def _ids(**fyno: object) -> list[str]:
    with override_settings(FYNO=fyno):
        return sorted(message.id or "" for message in checks.run_checks(databases=[]))


def test_settings_are_read_at_the_moment_of_use() -> None:
    assert fyno_settings.WSID == "FYTEST"
    with override_settings(FYNO={"WSID": "FYOTHER"}):
        assert fyno_settings.WSID == "FYOTHER"
    assert fyno_settings.WSID == "FYTEST"


def test_env_names_are_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FYNO_WSID", "FYENV")
    monkeypatch.setenv("FYNO_ENDPOINT", "http://127.0.0.1:8765/v1")
    with override_settings(FYNO={}):
        assert fyno_settings.WSID == "FYENV"
        assert fyno_settings.ENDPOINT == "http://127.0.0.1:8765/v1"
    with override_settings(FYNO={"WSID": "FYDICT"}):
        assert fyno_settings.WSID == "FYDICT"


def test_defaults_and_partial_dicts() -> None:
    with override_settings(FYNO={"RETRY": {"MAX_ATTEMPTS": 2}}):
        assert fyno_settings.ENDPOINT == DEFAULTS["ENDPOINT"]
        assert fyno_settings.RETRY == {**DEFAULTS["RETRY"], "MAX_ATTEMPTS": 2}
    # Defaults are copies: mutating what we got cannot change the next read.
    fyno_settings.RETRY["MAX_ATTEMPTS"] = 99
    assert fyno_settings.RETRY["MAX_ATTEMPTS"] == DEFAULTS["RETRY"]["MAX_ATTEMPTS"]


def test_unknown_attribute_is_an_error() -> None:
    with pytest.raises(AttributeError, match="NOPE"):
        _ = fyno_settings.NOPE


def test_the_test_settings_pass_the_checks() -> None:
    assert [m for m in checks.run_checks(databases=[]) if m.id and m.id.startswith("fyno.")] == []


def test_typo_is_an_error() -> None:
    assert "fyno.E001" in _ids(WSID="FY1", API_KEY="k", VERSON="test")


def test_missing_credentials_are_an_error_unless_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FYNO_WSID", raising=False)
    monkeypatch.delenv("FYNO_API_KEY", raising=False)
    assert "fyno.E002" in _ids()
    assert "fyno.E002" not in _ids(ENABLED=False)


def test_bad_version_and_task_mode() -> None:
    assert "fyno.E003" in _ids(WSID="FY1", API_KEY="k", VERSION="prod")
    assert "fyno.E004" in _ids(WSID="FY1", API_KEY="k", TASK_MODE="threads")


def test_live_version_in_debug_is_a_warning() -> None:
    with override_settings(DEBUG=True):
        assert "fyno.W001" in _ids(WSID="FY1", API_KEY="k", VERSION="live")
        assert "fyno.W001" not in _ids(WSID="FY1", API_KEY="k", VERSION="test")


def test_api_key_is_not_in_any_check_message() -> None:
    with override_settings(FYNO={"WSID": "", "API_KEY": "sk-SECRET-123", "VERSON": 1}):
        text = " ".join(f"{m.msg} {m.hint}" for m in checks.run_checks(databases=[]))
    assert "sk-SECRET-123" not in text


def test_celery_mode_without_a_configured_celery_app_is_an_error() -> None:
    current_app = pytest.importorskip("celery").current_app

    conf = current_app.conf
    assert "fyno.E005" not in _ids(WSID="FY1", API_KEY="k", TASK_MODE="celery")
    saved = conf.broker_url, conf.task_always_eager
    conf.broker_url, conf.task_always_eager = None, False
    try:
        assert "fyno.E005" in _ids(WSID="FY1", API_KEY="k", TASK_MODE="celery")
        assert "fyno.E005" not in _ids(WSID="FY1", API_KEY="k", TASK_MODE="inline")
        conf.task_always_eager = True  # eager Celery runs tasks in-process: fine
        assert "fyno.E005" not in _ids(WSID="FY1", API_KEY="k", TASK_MODE="celery")
    finally:
        conf.broker_url, conf.task_always_eager = saved


def test_unknown_policy_must_be_retry_or_hold() -> None:
    assert "fyno.E007" in _ids(WSID="FY1", API_KEY="k", UNKNOWN_POLICY="maybe")
    assert "fyno.E007" not in _ids(WSID="FY1", API_KEY="k", UNKNOWN_POLICY="hold")


# -- typed, validated values ----------------------------------------------------------


def test_values_come_back_typed() -> None:
    with override_settings(FYNO={"TASK_MODE": "inline", "VERSION": "test", "OUTBOX_BULK_SIZE": 7}):
        assert fyno_settings.TASK_MODE is TaskMode.INLINE
        assert fyno_settings.VERSION is Version.TEST
        assert fyno_settings.UNKNOWN_POLICY is UnknownPolicy.RETRY
        assert fyno_settings.OUTBOX_BULK_SIZE == 7
        assert isinstance(fyno_settings.OUTBOX_CIRCUIT_COOLDOWN, float)
        assert fyno_settings.WEBHOOK_SECRET == ()
    # The old name of "inline" is still understood.
    with override_settings(FYNO={"TASK_MODE": "on_commit"}):
        assert fyno_settings.TASK_MODE is TaskMode.INLINE


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("OUTBOX_BULK_SIZE", "100", "FYNO['OUTBOX_BULK_SIZE'] must be an integer, not '100'"),
        ("OUTBOX_BULK_SIZE", 0, "FYNO['OUTBOX_BULK_SIZE'] must be at least 1, not 0"),
        ("OUTBOX_BULK_SIZE", True, "must be an integer"),
        ("OUTBOX_BULK_SIZE", 10**30, None),  # a huge int is an int: accepted
        ("SWEEP_AFTER", float("nan"), "must be a finite number"),
        ("OUTBOX_BACKOFF_MAX", float("inf"), "must be a finite number"),
        ("READ_TIMEOUT", 0, "must be greater than 0"),
        ("ENABLED", "yes", "must be True or False"),
        ("TASK_MODE", "threads", "must be one of 'celery', 'inline', 'off'"),
        ("UNKNOWN_POLICY", None, "must be one of 'retry', 'hold'"),
        ("ENDPOINT", "ftp://x", "must be an http(s) URL"),
        ("RETRY", {"MAX_ATTEMPTS": 0}, "is invalid: must be at least 1"),
        ("RETRY", {"TRIES": 3}, "has unknown keys ['TRIES']"),
        ("CELERY_QUEUE", 5, "must be a string"),
    ],
)
def test_a_wrong_value_is_an_error_naming_the_setting(
    name: str, value: object, message: str | None
) -> None:
    with override_settings(FYNO={name: value}):
        if message is None:
            assert getattr(fyno_settings, name) == value
            return
        with pytest.raises(FynoConfigurationError) as raised:
            getattr(fyno_settings, name)
        assert message in str(raised.value)
        assert f"FYNO['{name}']" in str(raised.value)
        ids = sorted(
            m.id or "" for m in checks.run_checks(databases=[]) if (m.id or "").startswith("fyno.")
        )
        assert any(i in ids for i in ("fyno.E003", "fyno.E004", "fyno.E007", "fyno.E008")), ids


def test_secret_values_are_never_repeated_in_errors() -> None:
    secret = "sk-SECRET-456"
    for name, value in (("API_KEY", [secret]), ("WEBHOOK_SECRET", {secret: 1})):
        with override_settings(FYNO={name: value}), pytest.raises(FynoConfigurationError) as e:
            getattr(fyno_settings, name)
        assert secret not in str(e.value)
        with override_settings(FYNO={name: value}):
            text = " ".join(f"{m.msg} {m.hint}" for m in checks.run_checks(databases=[]))
        assert secret not in text


def test_celery_queue_is_celerys_default_unless_set_and_then_a_warning_names_q() -> None:
    assert fyno_settings.CELERY_QUEUE is None
    assert "fyno.W003" not in _ids(WSID="FY1", API_KEY="k")
    with override_settings(FYNO={"WSID": "FY1", "API_KEY": "k", "CELERY_QUEUE": "fyno"}):
        found = [m for m in checks.run_checks(databases=[]) if m.id == "fyno.W003"]
    assert len(found) == 1
    assert "-Q celery,fyno" in (found[0].hint or "")


@pytest.mark.django_db
def test_manage_py_check_passes_with_the_database_checks_too() -> None:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("check", "--database", "default", stdout=out)
    assert "System check identified no issues" in out.getvalue()


def test_a_lease_shorter_than_one_send_is_a_warning() -> None:
    base = {"WSID": "FY1", "API_KEY": "k"}
    assert "fyno.W004" not in _ids(**base)  # 300 s against 60 + 5 + 30
    assert "fyno.W004" in _ids(**base, OUTBOX_LEASE_SECONDS=95)
    assert "fyno.W004" not in _ids(
        **base, OUTBOX_LEASE_SECONDS=2, RETRY={"DEADLINE": 0}, CONNECT_TIMEOUT=0.5, READ_TIMEOUT=1
    )
