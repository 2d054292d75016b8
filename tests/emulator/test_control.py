"""The control API under /_emulator/ and its Python mirror."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses

from django_fyno.emulator.app import Emulator
from django_fyno.emulator.live import LiveEmulator
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
    hook = "http://127.0.0.1:9/fyno"  # loopback: the sender calls no other host by default
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


# --- no web page can drive it, and its webhook sender stays on this machine ---


@pytest.fixture
def live() -> Iterator[LiveEmulator]:
    with LiveEmulator(Emulator(seed=9)) as served:
        yield served


def _closed_port() -> int:
    """A loopback port nobody listens on (connecting to it is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_requests_from_another_origin_are_refused(live: LiveEmulator) -> None:
    live.emulator.register_webhook("http://127.0.0.1:9/hook")
    reset = f"{live.url}/_emulator/reset"
    for origin in (
        "https://evil.example",
        "null",
        "http://127.0.0.1:3000",  # another local app, in the developer's browser
        f"http://evil.example:{live.server.port}",  # DNS rebinding: the port is ours
    ):
        reply = requests.post(reset, headers={"Origin": origin}, timeout=5)
        assert reply.status_code == 403, origin
        assert "cross-origin" in reply.json()["_message"]
    moved = requests.post(
        f"{live.url}/_emulator/webhook",
        json={"url": "http://127.0.0.1:8000/stolen"},
        headers={"Origin": "https://evil.example"},
        timeout=5,
    )
    assert moved.status_code == 403
    assert live.emulator.webhook_url == "http://127.0.0.1:9/hook"  # nothing was reset or moved
    # The emulator's own origin, and no Origin at all (curl, requests), are served.
    for origin in (f"http://127.0.0.1:{live.server.port}", f"http://localhost:{live.server.port}"):
        health = requests.get(f"{live.url}/_emulator/health", headers={"Origin": origin}, timeout=5)
        assert health.status_code == 200, origin
    assert requests.post(reset, timeout=5).status_code == 200
    assert live.emulator.webhook_url is None


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None]
)
def test_a_control_body_must_say_it_is_json(live: LiveEmulator, content_type: str | None) -> None:
    # What a page of another origin can send without a CORS preflight.
    body = b'{"faults": {"*": {"error_rate": 1}}}'
    headers = {"Content-Type": content_type} if content_type else {}
    reply = requests.post(f"{live.url}/_emulator/faults", data=body, headers=headers, timeout=5)
    assert reply.status_code == 415
    assert "Content-Type: application/json" in reply.json()["_message"]
    assert live.emulator.faults_config()["faults"] == {}
    with_charset = {"Content-Type": "application/json; charset=utf-8"}
    reply = requests.post(
        f"{live.url}/_emulator/faults", data=body, headers=with_charset, timeout=5
    )
    assert reply.status_code == 200
    assert live.emulator.faults_config()["faults"]["*"]["error_rate"] == 1


@responses.activate
def test_the_webhook_sender_calls_only_loopback_urls_unless_allowed(emulator: Emulator) -> None:
    responses.add(responses.GET, "https://hooks.example.com/fyno", body="")
    for url in (
        "https://hooks.example.com/fyno",
        "http://10.0.0.5/fyno",
        "http://localhost.evil.example/fyno",
        "http://0.0.0.0:8000/fyno",
    ):
        reply = _control(emulator, "POST", "webhook", {"url": url, "verify": True})
        assert reply.status == 400, url
        assert "--allow-remote-webhooks" in reply.json["_message"]
    assert len(responses.calls) == 0  # refused before any call
    assert emulator.webhook_url is None
    for url in ("http://localhost:8000/h", "http://127.0.0.2/h", "http://[::1]:8000/h"):
        assert _control(emulator, "POST", "webhook", {"url": url}).status == 200, url


@responses.activate
def test_remote_webhooks_can_be_allowed(api: Api) -> None:
    hook = "https://hooks.example.com/fyno"

    def echo(request: Any) -> tuple[int, dict[str, str], str]:
        return 200, {}, str(request.params["fyno_token"])

    responses.add_callback(responses.GET, hook, callback=echo)
    responses.add(responses.POST, hook, json={"received": True})
    emulator = Emulator(allow_remote_webhooks=True)
    reply = _control(emulator, "POST", "webhook", {"url": hook, "verify": True})
    assert reply.json == {"url": hook, "verified": True}
    Api(emulator).post(
        "event", {"event": "e", "to": {"sms": "+15551234567"}, "callback": {"custom_id": "7"}}
    )
    reply = _control(emulator, "POST", "delivery-report", {"custom_id": "7"})
    assert reply.status == 200
    assert [call.request.method for call in responses.calls] == ["GET", "POST"]


def test_verifying_an_unreachable_webhook_is_a_400_with_the_reason(live: LiveEmulator) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/fyno"
    reply = requests.post(
        f"{live.url}/_emulator/webhook", json={"url": url, "verify": True}, timeout=10
    )
    assert reply.status_code == 400
    assert reply.json() == {
        "_message": f"cannot verify {url}: Connection refused",
        "status": "error",
    }
    assert live.emulator.webhook_url is None


def test_a_report_to_an_unreachable_webhook_is_a_400_with_the_reason(live: LiveEmulator) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/fyno"
    live.emulator.register_webhook(url)
    sent = requests.post(
        f"{live.endpoint}/FYTEST/live/event",
        json={"event": "e", "to": {"sms": "+15551234567"}, "callback": {"custom_id": "7"}},
        headers={"Authorization": "Bearer test-api-key"},
        timeout=5,
    )
    assert sent.status_code == 202
    reply = requests.post(
        f"{live.url}/_emulator/delivery-report", json={"custom_id": "7"}, timeout=10
    )
    assert reply.status_code == 400
    assert reply.json()["_message"] == f"cannot deliver a report to {url}: Connection refused"
