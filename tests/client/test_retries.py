"""Retries: counted requests and recorded sleeps (nothing actually waits)."""

from __future__ import annotations

import logging
import socket
from email.utils import formatdate
from typing import Any

import pytest
import requests
import responses
from urllib3.exceptions import ProtocolError

from django_fyno.client import (
    FynoBadRequestError,
    FynoClient,
    FynoConnectionError,
    FynoRateLimitedError,
    FynoServerError,
    FynoTimeoutError,
    RetryPolicy,
)
from django_fyno.client.transport import RETRY_AFTER_MAX

from .conftest import BASE, SECRET, WSID, FakeTime, ack, error

PROFILE_URL = f"{BASE}/profiles/U1"
EVENT_URL = f"{BASE}/event"
UPDATED = ack("1 Record(s) updated successfully")
EVENT_SENT = {"event": "welcome", "received_time": "t", "request_id": "R", "response": {}}
PUT_LABEL = "PUT /{WSID}/{version}/profiles/{distinct_id}"


def _dropped() -> requests.ConnectionError:
    """What requests raises when the connection dies after the request went out."""
    return requests.ConnectionError(
        ProtocolError("Connection aborted.", ConnectionResetError("reset by peer"))
    )


def _policy(fake_time: FakeTime, **overrides: Any) -> RetryPolicy:
    settings: dict[str, Any] = {
        "max_attempts": 4,
        "backoff_base": 0.5,
        "deadline": 60,
        "random": lambda: 0.5,
        **overrides,
    }
    return RetryPolicy(
        sleep=fake_time.sleep, clock=fake_time.clock, wall_clock=fake_time.wall_clock, **settings
    )


def _client(policy: RetryPolicy) -> FynoClient:
    return FynoClient(wsid=WSID, api_key=SECRET, endpoint="https://api.fyno.io/v1", retry=policy)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_idempotent_call_retries_503_twice_then_succeeds(
    client: FynoClient, mocked: responses.RequestsMock, fake_time: FakeTime
):
    mocked.put(PROFILE_URL, json=error("busy"), status=503)
    mocked.put(PROFILE_URL, json=error("busy"), status=503)
    mocked.put(PROFILE_URL, json=UPDATED)
    assert client.update_profile("U1", name="Ada").message == UPDATED["_message"]
    assert len(mocked.calls) == 3
    # Full jitter with random() = 0.5: half of 0.5 * 2**0, then half of 0.5 * 2**1.
    assert fake_time.sleeps == [0.25, 0.5]


def test_retry_after_seconds_is_honoured(
    client: FynoClient, mocked: responses.RequestsMock, fake_time: FakeTime
):
    mocked.put(PROFILE_URL, json=error("slow down"), status=429, headers={"Retry-After": "2"})
    mocked.put(PROFILE_URL, json=UPDATED)
    client.update_profile("U1", name="Ada")
    assert len(mocked.calls) == 2
    assert len(fake_time.sleeps) == 1
    assert fake_time.sleeps[0] >= 2


def test_retry_after_http_date_is_honoured(
    client: FynoClient, mocked: responses.RequestsMock, fake_time: FakeTime
):
    when = formatdate(fake_time.wall + 7, usegmt=True)
    mocked.put(PROFILE_URL, json=error("slow down"), status=429, headers={"Retry-After": when})
    mocked.put(PROFILE_URL, json=UPDATED)
    client.update_profile("U1", name="Ada")
    assert len(mocked.calls) == 2
    assert len(fake_time.sleeps) == 1
    assert 6 <= fake_time.sleeps[0] <= 7


def test_send_event_is_not_retried_on_503(
    client: FynoClient, mocked: responses.RequestsMock, fake_time: FakeTime
):
    mocked.post(f"{BASE}/event", json=error("busy"), status=503)
    with pytest.raises(FynoServerError) as caught:
        client.send_event("welcome", distinct_id="U1")
    assert caught.value.status == 503
    assert len(mocked.calls) == 1
    assert fake_time.sleeps == []


def test_send_event_is_retried_on_429(
    client: FynoClient, mocked: responses.RequestsMock, fake_time: FakeTime
):
    mocked.post(f"{BASE}/event", json=error("slow"), status=429, headers={"Retry-After": "1"})
    mocked.post(
        f"{BASE}/event",
        status=202,
        json={"event": "welcome", "received_time": "t", "request_id": "R", "response": {}},
    )
    assert client.send_event("welcome", distinct_id="U1").request_id == "R"
    assert len(mocked.calls) == 2
    assert fake_time.sleeps == [1.0]


def test_send_event_is_not_retried_on_read_timeout(
    client: FynoClient, mocked: responses.RequestsMock
):
    mocked.post(f"{BASE}/event", body=requests.ReadTimeout("slow"))
    with pytest.raises(FynoTimeoutError) as caught:
        client.send_event("welcome", distinct_id="U1")
    assert caught.value.may_have_reached_fyno is True
    assert len(mocked.calls) == 1


def test_send_event_retries_connection_refused_then_gives_up(policy: RetryPolicy, fake_time):
    endpoint = f"http://127.0.0.1:{_closed_port()}/v1"
    fyno = FynoClient(wsid=WSID, api_key=SECRET, endpoint=endpoint, retry=policy)
    with fyno, pytest.raises(FynoConnectionError) as caught:
        fyno.send_event("welcome", distinct_id="U1")
    assert caught.value.may_have_reached_fyno is False
    # Four attempts: three waits between them.
    assert fake_time.sleeps == [0.25, 0.5, 1.0]


def test_max_attempts_is_respected(
    client: FynoClient, mocked: responses.RequestsMock, fake_time: FakeTime
):
    mocked.put(PROFILE_URL, json=error("down"), status=500)
    with pytest.raises(FynoServerError):
        client.update_profile("U1", name="Ada")
    assert len(mocked.calls) == 4
    assert len(fake_time.sleeps) == 3


def test_deadline_is_respected(fake_time: FakeTime, mocked: responses.RequestsMock):
    policy = RetryPolicy(
        max_attempts=10,
        backoff_base=4,
        deadline=10,
        sleep=fake_time.sleep,
        clock=fake_time.clock,
        random=lambda: 1.0,
    )
    mocked.put(PROFILE_URL, json=error("down"), status=502)
    with (
        FynoClient(
            wsid=WSID, api_key=SECRET, endpoint="https://api.fyno.io/v1", retry=policy
        ) as fyno,
        pytest.raises(FynoServerError),
    ):
        fyno.update_profile("U1", name="Ada")
    # Waits of 4 then 8 would end 12 s after the start: the second is refused.
    assert fake_time.sleeps == [4.0]
    assert len(mocked.calls) == 2


def test_retry_after_beyond_the_deadline_raises_rate_limited(
    client: FynoClient, mocked: responses.RequestsMock, fake_time: FakeTime
):
    mocked.put(PROFILE_URL, json=error("later"), status=429, headers={"Retry-After": "3600"})
    with pytest.raises(FynoRateLimitedError) as caught:
        client.update_profile("U1", name="Ada")
    assert caught.value.retry_after == 3600
    assert len(mocked.calls) == 1
    assert fake_time.sleeps == []


def test_400_is_never_retried(
    client: FynoClient, mocked: responses.RequestsMock, fake_time: FakeTime
):
    mocked.put(PROFILE_URL, json=error("bad input"), status=400)
    with pytest.raises(FynoBadRequestError):
        client.update_profile("U1", name="Ada")
    assert len(mocked.calls) == 1
    assert fake_time.sleeps == []


def test_connect_timeout_says_the_request_never_reached_fyno(
    client: FynoClient, mocked: responses.RequestsMock, fake_time: FakeTime
):
    mocked.get(PROFILE_URL, body=requests.ConnectTimeout("no route"))
    with pytest.raises(FynoTimeoutError) as caught:
        client.get_profile("U1")
    assert caught.value.may_have_reached_fyno is False
    assert len(mocked.calls) == 4
    assert fake_time.sleeps == [0.25, 0.5, 1.0]


def test_send_event_is_retried_after_a_connect_timeout(
    client: FynoClient, mocked: responses.RequestsMock, fake_time: FakeTime
):
    # A connect timeout means nothing was sent: safe even for an event.
    mocked.post(EVENT_URL, body=requests.ConnectTimeout("no route"))
    mocked.post(EVENT_URL, status=202, json=EVENT_SENT)
    assert client.send_event("welcome", distinct_id="U1").request_id == "R"
    assert len(mocked.calls) == 2
    assert fake_time.sleeps == [0.25]


def test_send_event_is_not_retried_after_a_dropped_connection(
    client: FynoClient, mocked: responses.RequestsMock, fake_time: FakeTime
):
    mocked.post(EVENT_URL, body=_dropped())
    with pytest.raises(FynoConnectionError) as caught:
        client.send_event("welcome", distinct_id="U1")
    assert caught.value.may_have_reached_fyno is True
    assert len(mocked.calls) == 1
    assert fake_time.sleeps == []


def test_idempotent_call_retries_read_timeouts_and_dropped_connections(
    client: FynoClient, mocked: responses.RequestsMock, fake_time: FakeTime
):
    mocked.put(PROFILE_URL, body=requests.ReadTimeout("slow"))
    mocked.put(PROFILE_URL, body=_dropped())
    mocked.put(PROFILE_URL, json=UPDATED)
    assert client.update_profile("U1", name="Ada").message == UPDATED["_message"]
    assert len(mocked.calls) == 3
    assert fake_time.sleeps == [0.25, 0.5]


def test_idempotent_call_gives_up_on_read_timeouts_after_max_attempts(
    client: FynoClient, mocked: responses.RequestsMock, fake_time: FakeTime
):
    mocked.put(PROFILE_URL, body=requests.ReadTimeout("slow"))
    with pytest.raises(FynoTimeoutError) as caught:
        client.update_profile("U1", name="Ada")
    assert caught.value.may_have_reached_fyno is True
    assert len(mocked.calls) == 4
    assert fake_time.sleeps == [0.25, 0.5, 1.0]


def test_errors_a_retry_cannot_cure_are_not_retried(
    client: FynoClient, mocked: responses.RequestsMock, fake_time: FakeTime
):
    mocked.put(PROFILE_URL, body=requests.exceptions.ContentDecodingError("bad gzip"))
    with pytest.raises(FynoConnectionError):
        client.update_profile("U1", name="Ada")
    assert len(mocked.calls) == 1
    assert fake_time.sleeps == []


def test_a_single_attempt_policy_never_retries(fake_time: FakeTime, mocked: responses.RequestsMock):
    mocked.put(PROFILE_URL, json=error("busy"), status=503)
    with _client(_policy(fake_time, max_attempts=1)) as fyno, pytest.raises(FynoServerError):
        fyno.update_profile("U1", name="Ada")
    assert len(mocked.calls) == 1
    assert fake_time.sleeps == []


def test_the_deadline_also_stops_retries_of_connection_errors(
    fake_time: FakeTime, mocked: responses.RequestsMock
):
    policy = _policy(fake_time, max_attempts=10, backoff_base=4, deadline=10, random=lambda: 1.0)
    mocked.put(PROFILE_URL, body=requests.ConnectTimeout("no route"))
    with _client(policy) as fyno, pytest.raises(FynoTimeoutError):
        fyno.update_profile("U1", name="Ada")
    assert fake_time.sleeps == [4.0]
    assert len(mocked.calls) == 2


def test_a_retry_after_shorter_than_the_backoff_waits_the_backoff(
    client: FynoClient, mocked: responses.RequestsMock, fake_time: FakeTime
):
    mocked.put(PROFILE_URL, json=error("slow down"), status=429, headers={"Retry-After": "0"})
    mocked.put(PROFILE_URL, json=UPDATED)
    client.update_profile("U1", name="Ada")
    assert fake_time.sleeps == [0.25]


def test_retry_after_on_a_503_is_honoured_for_idempotent_calls(
    client: FynoClient, mocked: responses.RequestsMock, fake_time: FakeTime
):
    mocked.put(PROFILE_URL, json=error("busy"), status=503, headers={"Retry-After": "5"})
    mocked.put(PROFILE_URL, json=UPDATED)
    client.update_profile("U1", name="Ada")
    assert fake_time.sleeps == [5.0]


def test_a_huge_retry_after_is_capped(fake_time: FakeTime, mocked: responses.RequestsMock):
    policy = _policy(fake_time, deadline=10**7)
    mocked.put(PROFILE_URL, json=error("later"), status=429, headers={"Retry-After": "9999999"})
    mocked.put(PROFILE_URL, json=UPDATED)
    with _client(policy) as fyno:
        fyno.update_profile("U1", name="Ada")
    assert fake_time.sleeps == [RETRY_AFTER_MAX]
    assert len(mocked.calls) == 2


def test_retries_and_refusals_are_logged_without_the_key(
    client: FynoClient,
    mocked: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
):
    caplog.set_level(logging.WARNING, logger="django_fyno.client")
    mocked.put(PROFILE_URL, json=error("busy"), status=503)
    mocked.put(PROFILE_URL, json=error("later"), status=429, headers={"Retry-After": "3600"})
    with pytest.raises(FynoRateLimitedError):
        client.update_profile("U1", name="Ada")
    lines = [r.getMessage() for r in caplog.records if r.name == "django_fyno.client"]
    assert lines == [
        f"Fyno {PUT_LABEL}: status 503 on attempt 1, retrying in 0.25s",
        f"Fyno {PUT_LABEL}: not retrying after status 429 (attempt 2): "
        "the deadline of 60.0s would pass",
    ]
    assert all(SECRET not in record.getMessage() for record in caplog.records)


def test_a_connection_error_retry_names_urllib3s_error(
    policy: RetryPolicy, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING, logger="django_fyno.client")
    endpoint = f"http://127.0.0.1:{_closed_port()}/v1"
    with (
        FynoClient(wsid=WSID, api_key=SECRET, endpoint=endpoint, retry=policy) as fyno,
        pytest.raises(FynoConnectionError),
    ):
        fyno.get_profile("U1")
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == 3
    assert all("NewConnectionError on attempt" in line for line in retries)
