"""The in-process mode: requests -> responses -> WSGI call of the emulator, no socket."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest
import requests
import responses

from django_fyno.emulator.app import DropConnection, Emulator
from django_fyno.emulator.responses_adapter import DEFAULT_ENDPOINT, EmulatorMock


class Recorder:
    """A WSGI app that keeps every environ and answers 201 with a JSON echo."""

    def __init__(self) -> None:
        self.environs: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        environ["body"] = environ["wsgi.input"].read()
        self.environs.append(environ)
        if environ["PATH_INFO"].endswith("/drop"):
            raise DropConnection
        start_response("201 Created", [("Content-Type", "application/json"), ("X-Seen", "yes")])
        return [json.dumps({"path": environ["PATH_INFO"]}).encode()]


def test_method_path_query_headers_and_body_reach_the_app() -> None:
    app = Recorder()
    with EmulatorMock(app):
        reply = requests.put(
            f"{DEFAULT_ENDPOINT}/FYTEST/live/subscriptions/preference?distinct_id=U%201&x=2",
            json={"user_preference": {"all": {"sms": "opted-out"}}},
            headers={"Authorization": "Bearer k1"},
            timeout=5,
        )
    assert reply.status_code == 201
    assert reply.headers["X-Seen"] == "yes"
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.json() == {"path": "/FYTEST/live/subscriptions/preference"}
    (environ,) = app.environs
    assert environ["REQUEST_METHOD"] == "PUT"
    assert environ["SCRIPT_NAME"] == "/v1"
    assert environ["QUERY_STRING"] == "distinct_id=U%201&x=2"
    assert environ["HTTP_AUTHORIZATION"] == "Bearer k1"
    assert environ["CONTENT_TYPE"] == "application/json"
    assert environ["CONTENT_LENGTH"] == str(len(environ["body"]))
    assert json.loads(environ["body"]) == {"user_preference": {"all": {"sms": "opted-out"}}}
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["SERVER_NAME"] == "api.fyno.io"


def test_paths_are_percent_decoded_and_bodyless_requests_have_no_length() -> None:
    app = Recorder()
    with EmulatorMock(app):
        requests.delete(f"{DEFAULT_ENDPOINT}/FYTEST/suppressions?email=a%40b.c", timeout=5)
        requests.get(f"{DEFAULT_ENDPOINT}/FYTEST/live/profiles/a%2Fb%20c", timeout=5)
    deleted, fetched = app.environs
    assert deleted["body"] == b""
    assert deleted["CONTENT_LENGTH"] == ""
    assert fetched["PATH_INFO"] == "/FYTEST/live/profiles/a/b c"


def test_the_control_api_at_the_root_is_routed() -> None:
    app = Recorder()
    with EmulatorMock(app):
        requests.post("https://api.fyno.io/_emulator/reset", timeout=5)
    assert (app.environs[0]["SCRIPT_NAME"], app.environs[0]["PATH_INFO"]) == (
        "",
        "/_emulator/reset",
    )


def test_a_dropped_connection_is_a_connection_error() -> None:
    with EmulatorMock(Recorder()), pytest.raises(requests.exceptions.ConnectionError):
        requests.post(f"{DEFAULT_ENDPOINT}/FYTEST/live/drop", json={}, timeout=5)


def test_other_hosts_are_not_routed() -> None:
    app = Recorder()
    with EmulatorMock(app), pytest.raises(requests.exceptions.ConnectionError):
        requests.get("https://api.fyno.io.example.com/v1/FYTEST/live/event", timeout=5)
    assert app.environs == []


def test_a_custom_endpoint_with_a_port() -> None:
    app = Recorder()
    with EmulatorMock(app, "http://fyno.local:8080/api/v1/") as mocked:
        requests.get("http://fyno.local:8080/api/v1/FY1/live/profiles/U1", timeout=5)
    assert mocked.endpoint == "http://fyno.local:8080/api/v1"
    assert mocked.url == "http://fyno.local:8080"
    environ = app.environs[0]
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/api/v1", "/FY1/live/profiles/U1")
    assert environ["SERVER_PORT"] == "8080"


def test_routes_can_be_added_to_a_mock_you_run() -> None:
    app = Recorder()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get("https://example.com/other", json={"other": True})
        EmulatorMock(app, mock=mock).start()
        assert requests.get("https://example.com/other", timeout=5).json() == {"other": True}
        assert requests.get(f"{DEFAULT_ENDPOINT}/FY/live/event", timeout=5).status_code == 201
    assert len(app.environs) == 1


def test_the_mock_stops_intercepting_when_stopped() -> None:
    mocked = EmulatorMock(Recorder()).start()
    mocked.stop()
    mocked.stop()  # idempotent
    assert mocked.start() is mocked  # and can start again
    try:
        assert requests.get(f"{DEFAULT_ENDPOINT}/FY/x", timeout=5).status_code == 201
    finally:
        mocked.stop()


def test_a_relative_endpoint_is_refused() -> None:
    with pytest.raises(ValueError, match="absolute URL"):
        EmulatorMock(Recorder(), "/v1")


def test_the_emulator_itself_answers_through_the_mock() -> None:
    emulator = Emulator("FYTEST", "k")
    with EmulatorMock(emulator):
        reply = requests.get(
            f"{DEFAULT_ENDPOINT}/FYTEST/live/profiles/U1",
            headers={"Authorization": "Bearer k"},
            timeout=5,
        )
    assert reply.headers["Content-Type"].startswith("application/json")
    assert isinstance(reply.json(), dict)
