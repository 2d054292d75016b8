"""Bodies a broken or hostile client sends: a 4xx with a message, never a 500,
and never more held in memory than the body limit."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import requests

from django_fyno.emulator.app import MAX_JSON_DEPTH, Emulator
from django_fyno.emulator.environ import MAX_BODY
from django_fyno.emulator.live import LiveEmulator
from django_fyno.emulator.responses_adapter import DEFAULT_ENDPOINT, EmulatorMock
from tests.emulator.wsgi import call

AUTH = {"Authorization": "Bearer test-api-key"}
MB = 1024 * 1024


def nested(depth: int) -> bytes:
    """An event whose data nests lists ``depth`` levels deep."""
    inner = "[" * depth + "]" * depth
    return f'{{"event": "e", "to": {{"email": "a@x.io"}}, "data": {{"x": {inner}}}}}'.encode()


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1_000, 100_000])
def test_deeply_nested_json_is_a_400_with_a_message(depth: int) -> None:
    emulator = Emulator()
    reply = call(emulator, "POST", "/FYTEST/live/event", raw=nested(depth))
    assert reply.status == 400
    assert reply.message == f"Request body nests JSON deeper than {MAX_JSON_DEPTH} levels"
    assert emulator.events_log == []
    [entry] = emulator.request_log
    assert (entry.status, entry.body) == (400, None)  # the log does not hold it either
    control = call(emulator, "POST", "/_emulator/events", raw=b"[" * depth + b"]" * depth)
    assert (control.status, control.message) == (reply.status, reply.message)


def test_deeply_nested_json_over_http_is_a_400_and_the_server_goes_on() -> None:
    with LiveEmulator() as live, requests.Session() as session:
        url = f"{live.endpoint}/FYTEST/live/event"
        headers = {**AUTH, "Content-Type": "application/json"}
        reply = session.post(url, data=nested(100_000), headers=headers, timeout=5)
        assert reply.status_code == 400
        assert "deeper than" in reply.json()["_message"]
        fine = session.post(url, data=nested(MAX_JSON_DEPTH - 3), headers=headers, timeout=5)
        assert fine.status_code == 202


class Unread(io.RawIOBase):
    """A wsgi.input that fails the test if read."""

    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the body over the limit was read")


def test_a_body_over_the_limit_under_another_wsgi_server_is_a_413_unread() -> None:
    emulator = Emulator()
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/FYTEST/live/event",
        "QUERY_STRING": "",
        "CONTENT_LENGTH": str(MAX_BODY + 1),
        "CONTENT_TYPE": "application/json",
        "HTTP_AUTHORIZATION": AUTH["Authorization"],
        "wsgi.input": Unread(),
    }
    seen: list[str] = []
    body = b"".join(emulator(environ, lambda status, headers: seen.append(status)))
    assert [status.split(" ", 1)[0] for status in seen] == ["413"]  # its phrase varies by Python
    assert "limit" in json.loads(body)["_message"]
    assert emulator.events_log == []


class Recorder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.calls += 1
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]


def test_a_streamed_body_over_the_limit_in_process_is_a_413_and_not_drained() -> None:
    app = Recorder()
    yielded = 0

    def chunks() -> Iterator[bytes]:
        nonlocal yielded
        block = b"x" * MB
        for _ in range(4 * MAX_BODY // MB):  # 64 MB, if it were all read
            yielded += 1
            yield block

    with EmulatorMock(app):
        reply = requests.post(f"{DEFAULT_ENDPOINT}/FYTEST/live/event", data=chunks(), timeout=5)
        assert reply.status_code == 413
        assert "limit" in reply.json()["_message"]
        big = requests.post(
            f"{DEFAULT_ENDPOINT}/FYTEST/live/event", data=b"x" * (MAX_BODY + 1), timeout=5
        )
        assert big.status_code == 413
    assert app.calls == 0
    assert yielded == MAX_BODY // MB + 1  # read up to the limit, not to the end
