"""Error mapping, secrecy of the API key, and logging."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import pytest
import requests
import responses

import django_fyno.client
from django_fyno.client import (
    FynoAlreadyExistsError,
    FynoAuthError,
    FynoBadRequestError,
    FynoClient,
    FynoConnectionError,
    FynoError,
    FynoNotFoundError,
    FynoServerError,
    FynoValidationError,
)
from django_fyno.client.exceptions import NOT_FOUND_MESSAGES

from .conftest import BASE, ENDPOINT, SECRET, WSID, FakeTime, error

CLIENT_DIR = str(Path(django_fyno.client.__file__).parent)


def test_401_is_an_auth_error(client: FynoClient, mocked: responses.RequestsMock):
    mocked.get(f"{BASE}/profiles/U1", json=error("Invalid API details"), status=401)
    with pytest.raises(FynoAuthError) as caught:
        client.get_profile("U1")
    assert caught.value.status == 401
    assert caught.value.path == "/{WSID}/{version}/profiles/{distinct_id}"


@pytest.mark.parametrize("message", sorted(NOT_FOUND_MESSAGES))
def test_not_found_messages(client: FynoClient, mocked: responses.RequestsMock, message: str):
    mocked.get(f"{BASE}/profiles/U1", json=error(message), status=400)
    with pytest.raises(FynoNotFoundError) as caught:
        client.get_profile("U1")
    assert caught.value.message == message


def test_duplicate_profile(client: FynoClient, mocked: responses.RequestsMock):
    message = "Distinct ID 'U1' already exists in the 'live' version of your workspace"
    mocked.post(f"{BASE}/profiles", json=error(message), status=400)
    with pytest.raises(FynoAlreadyExistsError):
        client.create_profile("U1")


def test_wrong_otp_is_false_but_other_400s_raise(
    client: FynoClient, mocked: responses.RequestsMock
):
    mocked.post(f"{BASE}/verify/validate", json=error("otp expired"), status=400)
    with pytest.raises(FynoBadRequestError):
        client.verify_otp("1234", request_id="R")


def test_non_json_502_is_a_server_error(
    client: FynoClient, mocked: responses.RequestsMock, fake_time: FakeTime
):
    mocked.get(f"{BASE}/profiles/U1", body="<html>Bad Gateway</html>", status=502)
    with pytest.raises(FynoServerError) as caught:
        client.get_profile("U1")
    assert "Bad Gateway" in caught.value.message
    assert len(mocked.calls) == 4  # idempotent: retried, then given up


def _assert_secret_absent(exc: BaseException) -> None:
    for text in (str(exc), repr(exc), repr(exc.args)):
        assert SECRET not in text
    assert SECRET not in "".join(traceback.format_exception(exc))
    frame_tb = exc.__traceback__
    checked = 0
    while frame_tb is not None:
        frame = frame_tb.tb_frame
        if frame.f_code.co_filename.startswith(CLIENT_DIR):
            assert SECRET not in repr(frame.f_locals), frame.f_code.co_name
            checked += 1
        frame_tb = frame_tb.tb_next
    assert checked, "no client frame was inspected"


@pytest.mark.parametrize("status", [401, 500])
def test_api_key_is_absent_from_http_errors_and_logs(
    client: FynoClient,
    mocked: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
    status: int,
):
    mocked.post(f"{BASE}/profiles/properties/set", json=error("nope"), status=status)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(FynoError) as caught:
        client.set_properties("U1", {"plan": "pro"})
    _assert_secret_absent(caught.value)
    assert caplog.records
    assert all(SECRET not in record.getMessage() for record in caplog.records)
    assert SECRET not in repr(client)
    assert SECRET not in repr(client.config)
    assert SECRET not in str(client.config)


def test_api_key_is_absent_from_connection_errors(
    client: FynoClient, mocked: responses.RequestsMock, caplog: pytest.LogCaptureFixture
):
    mocked.post(f"{BASE}/event", body=requests.ConnectionError("reset"))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(FynoConnectionError) as caught:
        client.send_event("welcome", distinct_id="U1")
    assert caught.value.may_have_reached_fyno is True
    _assert_secret_absent(caught.value)
    assert all(SECRET not in record.getMessage() for record in caplog.records)


def test_api_key_is_absent_from_validation_errors(client: FynoClient):
    with pytest.raises(FynoValidationError) as caught:
        client.set_properties("U1", {"bio": "x" * 300})
    _assert_secret_absent(caught.value)


def test_info_line_has_template_and_status_but_no_body(
    client: FynoClient, mocked: responses.RequestsMock, caplog: pytest.LogCaptureFixture
):
    mocked.post(f"{BASE}/profiles/properties/set", json={"request_id": "REQ-9"}, status=202)
    caplog.set_level(logging.INFO, logger="django_fyno.client")
    client.set_properties("secret-user", {"plan": "very-private-plan"})
    (record,) = [r for r in caplog.records if r.levelno == logging.INFO]
    line = record.getMessage()
    assert record.name == "django_fyno.client"
    assert "POST /{WSID}/{version}/profiles/properties/set" in line
    assert "202" in line
    assert "request_id=REQ-9" in line
    assert "very-private-plan" not in line
    assert "secret-user" not in line


def test_info_line_uses_the_path_template_not_the_id(
    client: FynoClient, mocked: responses.RequestsMock, caplog: pytest.LogCaptureFixture
):
    mocked.get(f"{ENDPOINT}/{WSID}/live/profiles/U-777", json=error("x"), status=401)
    caplog.set_level(logging.INFO, logger="django_fyno.client")
    with pytest.raises(FynoAuthError):
        client.get_profile("U-777")
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert "/{WSID}/{version}/profiles/{distinct_id}" in line
    assert "401" in line
    assert "U-777" not in line


def test_retries_are_logged_at_warning(
    client: FynoClient, mocked: responses.RequestsMock, caplog: pytest.LogCaptureFixture
):
    mocked.get(f"{BASE}/profiles/U1", json=error("busy"), status=503)
    caplog.set_level(logging.WARNING, logger="django_fyno.client")
    with pytest.raises(FynoServerError):
        client.get_profile("U1")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert all("GET /{WSID}/{version}/profiles/{distinct_id}" in w for w in warnings)
