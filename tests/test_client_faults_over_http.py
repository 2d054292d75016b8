"""The client's retry rules against the emulator's faults, over a real socket.

Counts what the emulator received: an idempotent call is retried through
5xx, dropped connections and read timeouts; an event is sent once and the
ambiguous failure is handed to the caller. Also: many threads sharing one
client keep to its connection pool, each call with its own retry rules.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from django_fyno.client import (
    FynoClient,
    FynoConfig,
    FynoServerError,
    FynoTimeoutError,
    FynoTransportError,
    RetryPolicy,
)
from django_fyno.testing import FynoEmulatorHandle
from tests.conftest import wait_until


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(fyno_live_emulator: FynoEmulatorHandle, sleeps: Sleeps) -> Iterator[FynoClient]:
    with FynoClient(
        wsid=fyno_live_emulator.wsid,
        api_key=fyno_live_emulator.api_key,
        endpoint=fyno_live_emulator.endpoint,
        read_timeout=0.3,
        retry=RetryPolicy(max_attempts=3, sleep=sleeps),
    ) as fyno:
        fyno.create_profile("u1", channel={"email": "ada@example.com"})
        yield fyno


def received(handle: FynoEmulatorHandle, operation: str) -> list[int]:
    """Statuses of the requests the emulator saw for ``operation`` (0: dropped)."""
    return [entry.status for entry in handle.emulator.request_log if entry.operation == operation]


def received_eventually(handle: FynoEmulatorHandle, operation: str, count: int) -> list[int]:
    """Like :func:`received`, once the emulator has answered ``count`` requests.

    A request is logged when the emulator answers it, which for a slow answer
    is after the client gave up waiting; bounded at 5 s.
    """
    wait_until(
        lambda: len(received(handle, operation)) >= count,
        f"{count} {operation} request(s)",
        timeout=5,
    )
    return received(handle, operation)


def test_idempotent_call_retries_through_503s(
    client: FynoClient, fyno_live_emulator: FynoEmulatorHandle, sleeps: Sleeps
) -> None:
    fyno_live_emulator.emulator.set_fault("get_profile", fail_next=2, fail_next_status=503)
    assert client.get_profile("u1").channel["email"] == "ada@example.com"
    assert received(fyno_live_emulator, "get_profile") == [503, 503, 200]
    assert len(sleeps) == 2


def test_event_is_not_retried_after_a_503(
    client: FynoClient, fyno_live_emulator: FynoEmulatorHandle
) -> None:
    fyno_live_emulator.emulator.set_fault("send_event", fail_next=1, fail_next_status=503)
    with pytest.raises(FynoServerError) as raised:
        client.send_event("welcome", distinct_id="u1")
    assert raised.value.status == 503
    assert received(fyno_live_emulator, "send_event") == [503]


def test_429_waits_for_retry_after_even_for_events(
    client: FynoClient, fyno_live_emulator: FynoEmulatorHandle, sleeps: Sleeps
) -> None:
    fyno_live_emulator.emulator.set_fault("send_event", fail_next=1, fail_next_status=429)
    assert client.send_event("welcome", distinct_id="u1").request_id
    assert received(fyno_live_emulator, "send_event") == [429, 202]
    assert len(sleeps) == 1


def test_idempotent_call_retries_through_a_dropped_connection(
    client: FynoClient, fyno_live_emulator: FynoEmulatorHandle
) -> None:
    fyno_live_emulator.emulator.set_fault("get_profile", fail_next=1, fail_next_status="drop")
    assert client.get_profile("u1").distinct_id == "u1"
    assert received(fyno_live_emulator, "get_profile") == [0, 200]


def test_event_whose_connection_dropped_is_ambiguous_and_not_retried(
    client: FynoClient, fyno_live_emulator: FynoEmulatorHandle
) -> None:
    # The event takes effect, then the answer is lost: a retry would duplicate it.
    fyno_live_emulator.emulator.set_fault(
        "send_event", fail_next=1, fail_next_status="drop", after=True
    )
    with pytest.raises(FynoTransportError) as raised:
        client.send_event("welcome", distinct_id="u1")
    assert raised.value.may_have_reached_fyno is True
    assert len(fyno_live_emulator.emulator.events_log) == 1


def test_read_timeout_retries_idempotent_calls_until_attempts_run_out(
    client: FynoClient, fyno_live_emulator: FynoEmulatorHandle
) -> None:
    fyno_live_emulator.emulator.set_fault("get_profile", latency=0.6)
    with pytest.raises(FynoTimeoutError) as raised:
        client.get_profile("u1")
    assert raised.value.may_have_reached_fyno is True
    assert received_eventually(fyno_live_emulator, "get_profile", 3) == [200, 200, 200]


def test_read_timeout_on_an_event_is_raised_at_once(
    client: FynoClient, fyno_live_emulator: FynoEmulatorHandle
) -> None:
    fyno_live_emulator.emulator.set_fault("send_event", latency=0.6)
    with pytest.raises(FynoTimeoutError) as raised:
        client.send_event("welcome", distinct_id="u1")
    assert raised.value.may_have_reached_fyno is True
    assert received_eventually(fyno_live_emulator, "send_event", 1) == [202]
    time.sleep(0.1)  # no retry is on its way either
    assert received(fyno_live_emulator, "send_event") == [202]


def _in_threads(count: int, work: Callable[[int], object]) -> list[object]:
    """Run ``work(i)`` on ``count`` threads that start together; re-raise any failure."""
    start = threading.Barrier(count, timeout=10)

    def run(index: int) -> object:
        start.wait()
        return work(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return [future.result(timeout=60) for future in [pool.submit(run, i) for i in range(count)]]


@pytest.mark.parametrize(("pool_size", "discards"), [(32, False), (8, True)])
def test_32_threads_share_a_pool_of_pool_size_connections(
    fyno_live_emulator: FynoEmulatorHandle,
    caplog: pytest.LogCaptureFixture,
    pool_size: int,
    discards: bool,
) -> None:
    # pool_size=8 is the control: it shows this test sees a pool that is too small.
    threads, calls = 32, 4
    assert fyno_live_emulator.live is not None
    server = fyno_live_emulator.live.server
    config = FynoConfig(
        wsid=fyno_live_emulator.wsid,
        api_key=fyno_live_emulator.api_key,
        endpoint=fyno_live_emulator.endpoint,
        pool_size=pool_size,
        retry=RetryPolicy(max_attempts=1),
    )
    with FynoClient(config=config) as fyno:
        fyno.create_profile("u1", channel={"email": "ada@example.com"})
        # Slow answers keep all 32 threads inside a request at the same time.
        fyno_live_emulator.emulator.set_fault("get_profile", latency=0.05)
        caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")
        opened_before = server.connections_accepted
        _in_threads(threads, lambda _: [fyno.get_profile("u1") for _ in range(calls)])
        opened = server.connections_accepted - opened_before

    assert received(fyno_live_emulator, "get_profile") == [200] * (threads * calls)
    full = [r for r in caplog.records if "Connection pool is full" in r.getMessage()]
    if discards:
        assert full, "a pool smaller than the thread count should discard connections"
        assert opened > pool_size
    else:
        assert full == []
        # Kept alive and reused: one connection per thread at most, not one per call.
        assert 1 <= opened <= pool_size


def test_concurrent_calls_each_keep_their_own_retry_rules(
    fyno_live_emulator: FynoEmulatorHandle,
) -> None:
    # Every answer is a 503: a profile read is tried max_attempts times, an
    # event once, however the threads interleave.
    sleeps = Sleeps()
    with FynoClient(
        wsid=fyno_live_emulator.wsid,
        api_key=fyno_live_emulator.api_key,
        endpoint=fyno_live_emulator.endpoint,
        retry=RetryPolicy(max_attempts=3, sleep=sleeps),
        connect_timeout=5,
    ) as fyno:
        fyno.create_profile("u1", channel={"email": "ada@example.com"})
        for operation in ("get_profile", "send_event"):
            fyno_live_emulator.emulator.set_fault(
                operation, error_rate=1.0, error_status=503, latency=0.02
            )

        def call(index: int) -> str:
            try:
                if index % 2:
                    fyno.send_event("welcome", distinct_id="u1")
                else:
                    fyno.get_profile("u1")
            except FynoServerError as error:
                return str(error.status)
            return "no error"

        outcomes = _in_threads(16, call)

    assert outcomes == ["503"] * 16
    assert received(fyno_live_emulator, "get_profile") == [503] * (8 * 3)
    assert received(fyno_live_emulator, "send_event") == [503] * 8
    assert len(sleeps) == 8 * 2
