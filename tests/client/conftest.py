"""Fixtures for the client tests: a ``responses`` mock checked against the contract,
and a client whose retry waits are recorded instead of slept."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses

from django_fyno.client import FynoClient, RetryPolicy
from django_fyno.emulator import contract

ENDPOINT = "https://api.fyno.io/v1"
WSID = "FYTEST0001"
SECRET = "sk-SECRET-123"
BASE = f"{ENDPOINT}/{WSID}/live"
API_BASE_PATH = "/v1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "contract_violation_expected: the test sends or mocks something the contract refuses",
    )


@dataclass
class FakeTime:
    """A clock that only moves when the client sleeps; records every sleep."""

    now: float = 1000.0
    wall: float = 1_700_000_000.0
    sleeps: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.wall += seconds

    def clock(self) -> float:
        return self.now

    def wall_clock(self) -> float:
        return self.wall


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def policy(fake_time: FakeTime) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=4,
        backoff_base=0.5,
        backoff_max=30,
        deadline=60,
        sleep=fake_time.sleep,
        clock=fake_time.clock,
        wall_clock=fake_time.wall_clock,
        random=lambda: 0.5,
    )


@pytest.fixture
def client(policy: RetryPolicy) -> Iterator[FynoClient]:
    with FynoClient(wsid=WSID, api_key=SECRET, endpoint=ENDPOINT, retry=policy) as fyno:
        yield fyno


def _decode(raw: Any) -> Any:
    if raw in (None, b"", ""):
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def contract_problems(mock: responses.RequestsMock) -> list[str]:
    """Every way the recorded requests and mocked replies break the contract."""
    problems = []
    for call in mock.calls:
        request = call.request
        url = urlsplit(str(request.url))
        assert url.path.startswith(API_BASE_PATH + "/"), url.path
        path = url.path[len(API_BASE_PATH) :]
        found = contract.find_operation(str(request.method), path)
        where = f"{request.method} {path}"
        if found is None:
            problems.append(f"{where}: no such operation")
            continue
        op, params = found
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        unknown = set(query) - op.allowed_query
        problems += [f"{where}: unknown query parameter {name}" for name in sorted(unknown)]
        problems += [
            f"{where} request: {problem}"
            for problem in contract.validate_request(op, params, query, _decode(request.body))
        ]
        reply = call.response
        if reply is None or isinstance(reply, BaseException):
            continue
        problems += [
            f"{where} reply {reply.status_code}: {problem}"
            for problem in contract.validate_reply(op, reply.status_code, _decode(reply.content))
        ]
    return problems


@pytest.fixture(autouse=True)
def contract_check(request: pytest.FixtureRequest) -> Iterator[list[responses.RequestsMock]]:
    """After the test, check every recorded request and mocked reply against the contract."""
    mocks: list[responses.RequestsMock] = []
    yield mocks
    problems = [problem for mock in mocks for problem in contract_problems(mock)]
    if problems and not request.node.get_closest_marker("contract_violation_expected"):
        pytest.fail("contract violations:\n" + "\n".join(problems))


@pytest.fixture
def mocked(
    contract_check: list[responses.RequestsMock],
) -> Iterator[responses.RequestsMock]:
    """The far side of the network. Stopped, not reset, so the contract check sees its calls."""
    mock = responses.RequestsMock(assert_all_requests_are_fired=False)
    mock.start()
    contract_check.append(mock)
    yield mock
    mock.stop(allow_assert=False)


def ack(message: str = "ok", status: str = "ok") -> dict[str, str]:
    return {"_message": message, "status": status}


def error(message: str) -> dict[str, str]:
    return {"_message": message, "status": "error"}


def sent_json(mock: responses.RequestsMock, index: int = -1) -> Any:
    return _decode(mock.calls[index].request.body)
