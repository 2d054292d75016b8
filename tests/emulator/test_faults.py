"""Fault injection: latency, errors, 429, drops, fail-next, seeding."""

from __future__ import annotations

import time

import pytest

from django_fyno.emulator.app import DropConnection, Emulator
from django_fyno.emulator.faults import Fault
from tests.emulator.wsgi import Api, call

EVENT = {"event": "e", "to": {"email": "a@x.io"}}


def _statuses(api: Api, n: int) -> list[int]:
    return [api.post("event", EVENT).status for _ in range(n)]


def test_no_faults_by_default() -> None:
    assert set(_statuses(Api(Emulator()), 20)) == {202}


def test_error_rate_with_status_is_seedable() -> None:
    def run() -> list[int]:
        emulator = Emulator(
            faults={"send_event": {"error_rate": 0.5, "error_status": 502}}, seed=42
        )
        return _statuses(Api(emulator), 40)

    first = run()
    assert set(first) == {202, 502}
    assert first == run()


def test_per_operation_fault_leaves_others_alone() -> None:
    emulator = Emulator()
    emulator.set_fault("send_event", error_rate=1, error_status=503)
    api = Api(emulator)
    assert api.post("event", EVENT).status == 503
    assert api.post("profiles", {"distinct_id": "U1"}).status == 201


def test_global_fault_applies_to_every_operation() -> None:
    emulator = Emulator()
    emulator.set_fault(error_rate=1, error_status=500)
    api = Api(emulator)
    reply = api.post("profiles", {"distinct_id": "U1"})
    assert reply.status == 500
    assert reply.json["status"] == "error"
    assert emulator.profiles("live") == {}  # the request never took effect


def test_throttling_sends_retry_after() -> None:
    emulator = Emulator(faults={"*": Fault(throttle_rate=1, retry_after=7)})
    reply = Api(emulator).post("event", EVENT)
    assert reply.status == 429
    assert reply.headers["Retry-After"] == "7"


def test_dropped_connection_raises_and_is_logged() -> None:
    emulator = Emulator(faults={"send_event": {"drop_rate": 1}})
    with pytest.raises(DropConnection):
        Api(emulator).post("event", EVENT)
    [entry] = emulator.request_log
    assert entry.status == 0
    assert entry.reply is None
    assert emulator.events_log == []


def test_fail_next_n_then_recover() -> None:
    emulator = Emulator()
    emulator.set_fault("send_event", fail_next=2, fail_next_status=503)
    assert _statuses(Api(emulator), 4) == [503, 503, 202, 202]
    assert emulator.faults_config()["faults"]["send_event"]["fail_next"] == 0


def test_fail_next_with_drop() -> None:
    emulator = Emulator(faults={"*": {"fail_next": 1, "fail_next_status": "drop"}})
    api = Api(emulator)
    with pytest.raises(DropConnection):
        api.post("event", EVENT)
    assert api.post("event", EVENT).status == 202


def test_after_applies_the_request_then_loses_the_reply() -> None:
    emulator = Emulator(faults={"create_profile": {"fail_next": 1, "after": True}})
    api = Api(emulator)
    assert api.post("profiles", {"distinct_id": "U1"}).status == 503
    assert emulator.profile("live", "U1") is not None
    assert api.post("profiles", {"distinct_id": "U1"}).status == 400  # the retry is a duplicate


def test_latency_is_added() -> None:
    emulator = Emulator(faults={"get_profile": {"latency": 0.05, "jitter": 0.01}})
    started = time.perf_counter()
    Api(emulator).get("profiles/U1")
    assert time.perf_counter() - started >= 0.05


def test_faults_never_apply_to_the_control_api() -> None:
    emulator = Emulator(faults={"*": {"error_rate": 1}})
    assert call(emulator, "GET", "/_emulator/state", auth=None).status == 200


def test_bad_knobs_are_refused() -> None:
    emulator = Emulator()
    with pytest.raises(ValueError, match="error_rate"):
        emulator.set_fault(error_rate=2)
    with pytest.raises(ValueError, match="unknown fault knob"):
        emulator.set_fault(bogus=1)
    with pytest.raises(ValueError, match="unknown operation"):
        emulator.set_fault("no_such_op", error_rate=1)


def test_clear_removes_faults_and_reset_returns_to_the_start_configuration() -> None:
    emulator = Emulator(faults={"*": {"error_rate": 1}, "send_event": {"fail_next": 2}})
    emulator.clear_faults("*")
    assert set(emulator.faults_config()["faults"]) == {"send_event"}
    emulator.set_fault("get_profile", error_rate=1)
    emulator.reset()
    faults = emulator.faults_config()["faults"]
    # Faults set at run time are gone; the constructor's are back, counters and all.
    assert set(faults) == {"*", "send_event"}
    assert faults["send_event"]["fail_next"] == 2
    emulator.clear_faults()
    assert emulator.faults_config()["faults"] == {}
