"""Events (single and bulk), the event log, and OTP verification."""

from __future__ import annotations

import uuid

import pytest

from django_fyno.emulator.app import Emulator
from tests.emulator.wsgi import Api


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(seed=11)


@pytest.fixture
def api(emulator: Emulator) -> Api:
    return Api(emulator)


def _user(api: Api, distinct_id: str = "U1", **fields: object) -> None:
    channel = {"email": "u@x.io", "push": [{"token": "OFF", "status": 0}, {"token": "ON"}]}
    body = {"distinct_id": distinct_id, "channel": channel, **fields}
    assert api.post("profiles", body).status == 201


def test_single_event_merges_profile_and_to_with_to_winning(api: Api, emulator: Emulator) -> None:
    _user(api)
    reply = api.post(
        "event",
        {
            "event": "welcome",
            "distinct_id": "U1",
            "to": {"email": "override@x.io", "sms": "+15551234567"},
            "data": {"name": "A"},
            "callback": {"custom_id": "row-1", "custom1": "c1"},
        },
    )
    assert reply.status == 202
    body = reply.json
    assert body["event"] == "welcome"
    assert isinstance(body["received_time"], str)
    uuid.UUID(body["request_id"])
    response = body["response"]
    assert response["email"]["destination"] == "override@x.io"
    assert response["sms"]["destination"] == "+15551234567"
    assert response["push"]["destination"] == "ON"  # first active token
    assert {item["status"] for item in response.values()} == {"ok"}
    [logged] = emulator.events_log
    assert logged["request_id"] == body["request_id"]
    assert logged["distinct_id"] == "U1"
    assert logged["custom_id"] == "row-1"
    assert logged["data"] == {"name": "A"}
    assert logged["channels"] == ["email", "push", "sms"]


def test_unknown_user_without_to_is_accepted_with_empty_response(
    api: Api, emulator: Emulator
) -> None:
    reply = api.post("event", {"event": "welcome", "distinct_id": "GHOST"})
    assert reply.status == 202
    assert reply.json["response"] == {}
    assert emulator.events_log[0]["profile_found"] is False


def test_inactive_profile_is_logged_but_gets_nothing(api: Api, emulator: Emulator) -> None:
    _user(api, status=0)
    reply = api.post(
        "event", {"event": "welcome", "distinct_id": "U1", "to": {"sms": "+15551234567"}}
    )
    assert reply.json["response"] == {}
    assert len(emulator.events_log) == 1


def test_configured_event_list_refuses_other_names() -> None:
    api = Api(Emulator(events=["welcome"]))
    assert api.post("event", {"event": "welcome", "to": {"email": "a@x.io"}}).status == 202
    refused = api.post("event", {"event": "nope", "to": {"email": "a@x.io"}})
    assert refused.status == 400
    assert (
        refused.message
        == "The notification event name 'nope' is invalid or does not exists on prod"
    )
    bulk = api.post("event/bulk", {"event": "nope", "batch": [{"to": {"email": "a@x.io"}}]})
    assert bulk.status == 400


def test_any_event_name_without_a_list(api: Api) -> None:
    assert api.post("event", {"event": "anything", "to": {"email": "a@x.io"}}).status == 202


def test_bulk_numbers_items_from_zero_and_logs_each(api: Api, emulator: Emulator) -> None:
    _user(api)
    reply = api.post(
        "event/bulk",
        {
            "event": "digest",
            "batch": [
                {"distinct_id": "U1"},
                {"to": {"sms": "+15551234567"}, "callback": {"custom_id": "b"}},
                {"distinct_id": "GHOST"},
            ],
        },
    )
    assert reply.status == 202
    body = reply.json
    assert isinstance(body["received_time"], int)
    assert [item["seq"] for item in body["response"]] == [0, 1, 2]
    assert body["response"][0]["email"]["destination"] == "u@x.io"
    assert body["response"][1]["sms"]["destination"] == "+15551234567"
    assert body["response"][2] == {"seq": 2}
    log = emulator.events_log
    assert [entry["seq"] for entry in log] == [0, 1, 2]
    assert {entry["request_id"] for entry in log} == {body["request_id"]}


def test_suppressed_destination_is_not_sent(api: Api, emulator: Emulator) -> None:
    api.post("suppressions", {"channel": "email", "destination": "a@x.io"})
    reply = api.post("event", {"event": "e", "to": {"email": "a@x.io", "sms": "+15551234567"}})
    assert set(reply.json["response"]) == {"sms"}
    assert emulator.events_log[0]["skipped"] == {"email": "suppressed"}


def test_otp_event_code_validates_once_by_request_id(api: Api, emulator: Emulator) -> None:
    sent = api.post("event", {"event": "Login_OTP", "to": {"sms": "+15551234567"}}).json
    code = emulator.otp_for(request_id=sent["request_id"])
    assert code is not None
    assert 4 <= len(code) <= 6
    query = {"otp": code, "request_id": sent["request_id"]}
    ok = api.post("verify/validate", query=query)
    assert ok.json == {"_message": "OTP successfully validated.", "status": "ok"}
    again = api.post("verify/validate", query=query)
    assert again.status == 400
    assert again.message == "user entered the wrong OTP"


def test_otp_from_data_and_by_destination(api: Api) -> None:
    api.post("event", {"event": "code", "to": {"email": "a@x.io"}, "data": {"otp": "4321"}})
    wrong = api.post("verify/validate", query={"otp": "0000", "destination": "a@x.io"})
    assert wrong.message == "user entered the wrong OTP"
    right = api.post("verify/validate", query={"otp": "4321", "destination": "a@x.io"})
    assert right.status == 200


def test_configured_otp_codes(api: Api, emulator: Emulator) -> None:
    emulator.set_otp("111111")
    sent = api.post("event", {"event": "otp", "to": {"sms": "+15551234567"}}).json
    assert (
        api.post(
            "verify/validate", query={"otp": "111111", "request_id": sent["request_id"]}
        ).status
        == 200
    )
    emulator.set_otp("2468", destination="+15550000000")
    assert (
        api.post("verify/validate", query={"otp": "2468", "destination": "+15550000000"}).status
        == 200
    )
