"""The control API under /_emulator/ and its Python mirror."""

from __future__ import annotations

from typing import Any

import pytest
import responses

from django_fyno.emulator.app import Emulator
from tests.emulator.wsgi import Api, Reply, call


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(seed=9)


@pytest.fixture
def api(emulator: Emulator) -> Api:
    return Api(emulator)


def _control(emulator: Emulator, method: str, name: str, body: Any = None, **kw: Any) -> Reply:
    return call(emulator, method, f"/_emulator/{name}", body, auth=None, **kw)


def test_state_dump_and_reset(api: Api, emulator: Emulator) -> None:
    api.post("profiles", {"distinct_id": "U1"})
    api.post("event", {"event": "e", "distinct_id": "U1"})
    api.post("suppressions", {"channel": "email", "destination": "a@x.io"})
    state = _control(emulator, "GET", "state").json
    assert set(state["versions"]["live"]["profiles"]) == {"U1"}
    assert len(state["versions"]["live"]["events"]) == 1
    assert state["versions"]["test"]["profiles"] == {}
    assert len(state["suppressions"]) == 1
    assert _control(emulator, "POST", "reset").status == 200
    assert emulator.profiles("live") == {}
    assert emulator.events_log == []
    assert emulator.request_log == []


def test_faults_endpoints(api: Api, emulator: Emulator) -> None:
    reply = _control(
        emulator, "POST", "faults", {"faults": {"send_event": {"fail_next": 1}}, "seed": 3}
    )
    assert reply.status == 200
    assert reply.json["seed"] == 3
    assert api.post("event", {"event": "e", "to": {"email": "a@x.io"}}).status == 503
    assert _control(emulator, "GET", "faults").json["faults"]["send_event"]["fail_next"] == 0
    bad = _control(emulator, "POST", "faults", {"faults": {"*": {"error_rate": 9}}})
    assert bad.status == 400
    assert _control(emulator, "DELETE", "faults").json["faults"] == {}


def test_events_endpoint_sets_the_allowed_list(api: Api, emulator: Emulator) -> None:
    assert _control(emulator, "POST", "events", {"events": ["ok"]}).json == {"events": ["ok"]}
    assert api.post("event", {"event": "other", "to": {"email": "a@x.io"}}).status == 400
    _control(emulator, "POST", "events", {"events": None})
    assert api.post("event", {"event": "other", "to": {"email": "a@x.io"}}).status == 202


def test_preferences_endpoint(api: Api, emulator: Emulator) -> None:
    sections = {"S": [{"subscription_id": "SX", "name": "X", "channel_config": {"sms": "on"}}]}
    assert _control(emulator, "POST", "preferences", {"sections": sections}).status == 200
    got = api.get("subscriptions/preference", query={"distinct_id": "U1"}).json
    assert [t["subscription_id"] for t in got["result"]["S"]] == ["SX"]
    bad = {"S": [{"subscription_id": "SX", "channel_config": {"sms": "sometimes"}}]}
    assert _control(emulator, "POST", "preferences", {"sections": bad}).status == 400


def test_otp_endpoint(api: Api, emulator: Emulator) -> None:
    assert _control(emulator, "POST", "otp", {"code": "9999", "request_id": "R1"}).status == 200
    assert _control(emulator, "GET", "otp", query={"request_id": "R1"}).json == {"otp": "9999"}
    assert api.post("verify/validate", query={"otp": "9999", "request_id": "R1"}).status == 200


def test_request_log_never_holds_the_key(api: Api, emulator: Emulator) -> None:
    api.post("profiles", {"distinct_id": "U1"})
    [entry] = _control(emulator, "GET", "requests").json["requests"]
    assert entry["operation"] == "create_profile"
    assert entry["status"] == 201
    assert entry["body"] == {"distinct_id": "U1"}
    assert entry["reply"]["status"] == "ok"
    assert "test-api-key" not in str(entry)
    assert _control(emulator, "DELETE", "requests").status == 200
    assert emulator.request_log == []


def test_unknown_control_endpoint_and_method(emulator: Emulator) -> None:
    assert _control(emulator, "GET", "nope").status == 404
    assert _control(emulator, "DELETE", "state").status == 405


@responses.activate
def test_delivery_report_is_posted_to_the_webhook(api: Api, emulator: Emulator) -> None:
    hook = "http://hooks.example/fyno"
    responses.add(responses.GET, hook, body="token-echo")
    responses.add(responses.POST, hook, json={"received": True})
    sent = api.post(
        "event",
        {
            "event": "e",
            "to": {"sms": "+15551234567"},
            "callback": {"custom_id": "42", "custom2": "z"},
        },
    ).json
    assert _control(emulator, "POST", "webhook", {"url": hook}).json["url"] == hook
    reply = _control(
        emulator, "POST", "delivery-report", {"custom_id": "42", "status": "delivered"}
    )
    assert reply.status == 200
    [result] = reply.json["reports"]
    assert result["status_code"] == 200
    assert result["body"] == {"received": True}
    report = result["report"]
    assert report["request_id"] == sent["request_id"]
    assert report["custom_id"] == "42"
    assert report["custom2"] == "z"
    assert report["channel"] == "sms"
    assert report["msg_id"] == sent["response"]["sms"]["msg_id"]
    assert report["status"] == "delivered"
    missing = _control(emulator, "POST", "delivery-report", {"request_id": "nope"})
    assert missing.status == 400


def test_delivery_report_without_webhook_is_400(api: Api, emulator: Emulator) -> None:
    api.post("event", {"event": "e", "to": {"sms": "+15551234567"}})
    reply = _control(emulator, "POST", "delivery-report", {"request_id": "x"})
    assert reply.status == 400
    assert "webhook" in reply.json["_message"]
