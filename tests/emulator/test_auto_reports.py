"""Automatic delivery reports: with ``auto_delivery_reports`` (``--auto-delivery-reports``),
an accepted event's "delivered" reports reach the registered webhook on their own, as
Fyno's would; without it, nothing is sent until asked."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from django_fyno.emulator.__main__ import build_emulator, parse_args
from django_fyno.emulator.app import Emulator
from tests.emulator.wsgi import Api


class Hook:
    """A webhook on loopback that records the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        received = self.reports

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.reports) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.reports


@pytest.fixture
def hook() -> Iterator[Hook]:
    receiver = Hook()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def test_an_accepted_event_is_reported_delivered(hook: Hook) -> None:
    emulator = Emulator(auto_delivery_reports=0.05)
    emulator.register_webhook(hook.url)
    sent = (
        Api(emulator)
        .post(
            "event",
            {
                "event": "e",
                "to": {"sms": "+15551234567", "email": "a@example.com"},
                "callback": {"custom_id": "42"},
            },
        )
        .json
    )

    reports = hook.wait(2)

    assert sorted(report["channel"] for report in reports) == ["email", "sms"]
    assert {report["request_id"] for report in reports} == {sent["request_id"]}
    assert {report["custom_id"] for report in reports} == {"42"}
    assert {report["status"] for report in reports} == {"delivered"}


def test_each_row_of_a_bulk_send_is_reported(hook: Hook) -> None:
    emulator = Emulator(auto_delivery_reports=0)
    emulator.register_webhook(hook.url)
    Api(emulator).post(
        "event/bulk",
        {
            "event": "e",
            "batch": [
                {"to": {"email": "a@example.com"}, "callback": {"custom_id": "1"}},
                {"to": {"email": "b@example.com"}, "callback": {"custom_id": "2"}},
            ],
        },
    )
    assert sorted(report["custom_id"] for report in hook.wait(2)) == ["1", "2"]


def test_without_the_option_nothing_is_reported(hook: Hook) -> None:
    emulator = Emulator()
    emulator.register_webhook(hook.url)
    Api(emulator).post("event", {"event": "e", "to": {"email": "a@example.com"}})
    time.sleep(0.3)
    assert hook.reports == []


def test_a_refused_event_is_not_reported(hook: Hook) -> None:
    emulator = Emulator(auto_delivery_reports=0, events=["known"])
    emulator.register_webhook(hook.url)
    reply = Api(emulator).post("event", {"event": "unknown", "to": {"email": "a@example.com"}})
    assert reply.status == 400
    time.sleep(0.3)
    assert hook.reports == []


def test_without_a_webhook_the_option_does_nothing() -> None:
    emulator = Emulator(auto_delivery_reports=0)
    assert Api(emulator).post("event", {"event": "e", "to": {"email": "a@x.io"}}).status == 202


@pytest.mark.parametrize("bad", [-1, 3600, float("nan"), "soon"])
def test_a_bad_delay_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="auto_delivery_reports"):
        Emulator(auto_delivery_reports=bad)


def test_the_command_line_flag() -> None:
    emulator = build_emulator(parse_args(["--auto-delivery-reports", "1.5"]))
    assert emulator.workspace().auto_delivery_reports == 1.5
    assert build_emulator(parse_args([])).workspace().auto_delivery_reports is None
