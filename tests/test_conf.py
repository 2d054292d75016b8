"""Settings are read when used, with env fallbacks, defaults and system checks."""

from __future__ import annotations

import pytest
from django.core import checks
from django.test import override_settings

from django_fyno.conf import DEFAULTS, fyno_settings


def _ids(**fyno: object) -> list[str]:
    with override_settings(FYNO=fyno):
        return sorted(message.id or "" for message in checks.run_checks())


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
    assert [m for m in checks.run_checks() if m.id and m.id.startswith("fyno.")] == []


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
        text = " ".join(f"{m.msg} {m.hint}" for m in checks.run_checks())
    assert "sk-SECRET-123" not in text


def test_celery_mode_without_a_configured_celery_app_is_an_error() -> None:
    from celery import current_app

    conf = current_app.conf
    assert "fyno.E005" not in _ids(WSID="FY1", API_KEY="k", TASK_MODE="celery")
    saved = conf.broker_url, conf.task_always_eager
    conf.broker_url, conf.task_always_eager = None, False
    try:
        assert "fyno.E005" in _ids(WSID="FY1", API_KEY="k", TASK_MODE="celery")
        assert "fyno.E005" not in _ids(WSID="FY1", API_KEY="k", TASK_MODE="on_commit")
        conf.task_always_eager = True  # eager Celery runs tasks in-process: fine
        assert "fyno.E005" not in _ids(WSID="FY1", API_KEY="k", TASK_MODE="celery")
    finally:
        conf.broker_url, conf.task_always_eager = saved


def test_unknown_policy_must_be_retry_or_hold() -> None:
    assert "fyno.E007" in _ids(WSID="FY1", API_KEY="k", UNKNOWN_POLICY="maybe")
    assert "fyno.E007" not in _ids(WSID="FY1", API_KEY="k", UNKNOWN_POLICY="hold")
