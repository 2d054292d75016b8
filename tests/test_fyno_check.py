"""``manage.py fyno_check``: settings checks, then one authenticated call to Fyno."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from django_fyno.clients import reset_clients
from django_fyno.testing import FynoEmulatorHandle

SECRET = "sk-DISTINCTIVE-secret-4242"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fresh_clients() -> Iterator[None]:
    reset_clients()
    yield
    reset_clients()


def _closed_port() -> int:
    """A local port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _fyno(handle: FynoEmulatorHandle, **extra: Any) -> dict[str, Any]:
    return {
        "WSID": handle.wsid,
        "API_KEY": handle.api_key,
        "VERSION": "test",
        "ENDPOINT": handle.endpoint,
        # Not "celery": the check must pass with or without the celery extra installed.
        "TASK_MODE": "inline",
        **extra,
    }


def _run(**options: Any) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("fyno_check", stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def _fail(**options: Any) -> tuple[str, str, str]:
    """Run the command expecting failure: (error message, stdout, stderr)."""
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as exc:
        call_command("fyno_check", stdout=out, stderr=err, **options)
    return str(exc.value), out.getvalue(), err.getvalue()


def test_credentials_ok(fyno_emulator: FynoEmulatorHandle) -> None:
    with override_settings(FYNO=_fyno(fyno_emulator)):
        out, err = _run()
    assert out == (
        "credentials OK (workspace FYTEST, version test, endpoint https://api.fyno.io/v1)\n"
    )
    assert err == ""
    # Exactly one harmless read reached Fyno.
    assert [(entry.method, entry.path) for entry in fyno_emulator.requests] == [
        ("GET", "/FYTEST/suppressions")
    ]


def test_verbosity_zero_is_silent_on_success(fyno_emulator: FynoEmulatorHandle) -> None:
    with override_settings(FYNO=_fyno(fyno_emulator)):
        assert _run(verbosity=0) == ("", "")


def test_verbosity_two_tells_each_step(fyno_emulator: FynoEmulatorHandle) -> None:
    with override_settings(FYNO=_fyno(fyno_emulator)):
        out, _ = _run(verbosity=2)
    assert "Fyno system checks: no issues" in out
    assert "Calling Fyno: list suppressions" in out
    assert "0 suppression(s)" in out
    assert out.endswith(
        "credentials OK (workspace FYTEST, version test, endpoint https://api.fyno.io/v1)\n"
    )


def test_wrong_key_is_reported_as_401(fyno_emulator: FynoEmulatorHandle) -> None:
    with override_settings(FYNO=_fyno(fyno_emulator, API_KEY=SECRET)):
        message, out, err = _fail()
    assert message.startswith("Fyno rejected the API key or workspace id (401 Invalid API details)")
    assert "workspace FYTEST" in message
    assert SECRET not in message + out + err


def test_wrong_workspace_is_reported_as_401(fyno_emulator: FynoEmulatorHandle) -> None:
    with override_settings(FYNO=_fyno(fyno_emulator, WSID="FYWRONG")):
        message, _, _ = _fail()
    assert "Fyno rejected the API key or workspace id (401 Invalid API details)" in message
    assert "workspace FYWRONG" in message


def test_unreachable_endpoint_fails_after_one_attempt() -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}/v1"
    # The project's retry policy would back off for a while; the command must not.
    fyno = {"WSID": "FYTEST", "API_KEY": SECRET, "ENDPOINT": endpoint, "VERSION": "test"}
    fyno["TASK_MODE"] = "inline"  # the check must pass with or without Celery installed
    with override_settings(FYNO={**fyno, "RETRY": {"MAX_ATTEMPTS": 10, "BACKOFF_BASE": 60}}):
        message, out, err = _fail()
    assert message.startswith(f"cannot reach {endpoint}: could not connect to Fyno")
    assert "refused" in message.lower()
    assert SECRET not in message + out + err


def test_other_api_errors_show_status_and_message(fyno_emulator: FynoEmulatorHandle) -> None:
    fyno_emulator.emulator.set_fault("list_suppressions", fail_next=1, fail_next_status=503)
    with override_settings(FYNO=_fyno(fyno_emulator, API_KEY=fyno_emulator.api_key)):
        message, _, _ = _fail()
    assert message.startswith("Fyno API error: Fyno answered 503")
    assert len(fyno_emulator.requests) == 1  # not retried


def test_settings_errors_stop_before_any_call(fyno_emulator: FynoEmulatorHandle) -> None:
    with override_settings(FYNO=_fyno(fyno_emulator, API_KEY=SECRET, TYPO=1)):
        message, out, err = _fail()
    assert message == "Fyno settings have 1 error(s); fix them before checking credentials."
    assert "fyno.E001: settings.FYNO has an unknown key 'TYPO'." in err
    assert fyno_emulator.requests == []
    assert SECRET not in message + out + err


def test_missing_credentials_are_reported() -> None:
    with override_settings(FYNO={"WSID": "FYTEST"}):
        message, _, err = _fail()
    assert "fyno.E002: Fyno credentials are missing: API_KEY." in err
    assert "error(s)" in message


def test_invalid_value_not_covered_by_checks_is_reported() -> None:
    with override_settings(FYNO={"WSID": "FYTEST", "API_KEY": SECRET, "ENDPOINT": "ftp://x"}):
        message, out, err = _fail()
    assert "error(s)" in message
    assert "fyno.E008: FYNO['ENDPOINT'] must be an http(s) URL, not 'ftp://x'" in err
    assert SECRET not in message + out + err


def test_warnings_are_shown_and_the_call_still_made(fyno_emulator: FynoEmulatorHandle) -> None:
    with override_settings(DEBUG=True, FYNO=_fyno(fyno_emulator, VERSION="live")):
        out, err = _run()
    assert "fyno.W001" in out
    assert "credentials OK (workspace FYTEST, version live" in out
    assert err == ""


def test_silenced_checks_are_not_shown(fyno_emulator: FynoEmulatorHandle) -> None:
    with override_settings(
        DEBUG=True,
        SILENCED_SYSTEM_CHECKS=["fyno.W001"],
        FYNO=_fyno(fyno_emulator, VERSION="live"),
    ):
        out, _ = _run()
    assert "fyno.W001" not in out


def test_skip_call_only_validates_settings(fyno_emulator: FynoEmulatorHandle) -> None:
    with override_settings(FYNO=_fyno(fyno_emulator)):
        out, _ = _run(skip_call=True)
    assert out.startswith("settings OK (workspace FYTEST")
    assert fyno_emulator.requests == []


def test_exit_status_is_non_zero_from_the_command_line() -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "FYNO_ENDPOINT": f"http://127.0.0.1:{_closed_port()}/v1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "django", "fyno_check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "cannot reach http://127.0.0.1:" in done.stderr
    assert "test-api-key" not in done.stdout + done.stderr
