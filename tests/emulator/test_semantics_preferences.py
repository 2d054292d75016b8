"""Subscription preferences and the suppression list."""

from __future__ import annotations

from typing import Any

import pytest

from django_fyno.emulator.app import Emulator
from tests.emulator.wsgi import Api

SECTIONS: dict[str, list[dict[str, Any]]] = {
    "Alerts": [
        {
            "subscription_id": "SALERTS001",
            "name": "Alerts",
            "channel_config": {"email": "required", "sms": "on", "push": "off"},
            "notification_events": ["alert"],
        }
    ]
}


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(seed=5, preferences=SECTIONS)


@pytest.fixture
def api(emulator: Emulator) -> Api:
    return Api(emulator)


def _prefs(api: Api, **query: str) -> dict[str, Any]:
    reply = api.get("subscriptions/preference", query={"distinct_id": "U1", **query})
    assert reply.status == 200, reply.json
    return dict(reply.json)


def test_default_config_works_out_of_the_box() -> None:
    body = _prefs(Api(Emulator()), event_list="true")
    [(section, topics)] = body["result"].items()
    assert section == "General"
    assert len(topics) == 2
    assert topics[0]["notification_events"]
    assert body["meta"] == {"all": {"preference": {}, "updated_at": {}}}


def test_missing_distinct_id_messages(api: Api) -> None:
    assert (
        api.get("subscriptions/preference").message == "distinct_id is required to list preference!"
    )
    put = api.put("subscriptions/preference", {"user_preference": {}})
    assert put.message == "distinct_id is required!"


def test_event_list_is_only_filled_when_asked(api: Api) -> None:
    assert _prefs(api)["result"]["Alerts"][0]["notification_events"] == []
    events = _prefs(api, event_list="true")["result"]["Alerts"][0]["notification_events"]
    assert events == [{"event_id": "alert", "event_name": "alert"}]


def test_opt_out_is_applied_but_required_channels_stay_in(api: Api) -> None:
    reply = api.put(
        "subscriptions/preference",
        {"user_preference": {"SALERTS001": {"email": "opted-out", "sms": "opted-out"}}},
        query={"distinct_id": "U1"},
    )
    assert reply.status == 200
    assert reply.json == {"SALERTS001": {"email": "opted-in", "sms": "opted-out"}}
    topic = _prefs(api)["result"]["Alerts"][0]
    assert topic["preference"]["sms"] == "opted-out"
    assert topic["preference"]["email"] == "opted-in"
    assert "push" not in topic["preference"]  # off for this topic
    assert set(topic["updated_at"]) == {"email", "sms"}


def test_opted_out_channel_is_not_sent(api: Api) -> None:
    api.post(
        "profiles", {"distinct_id": "U1", "channel": {"email": "a@x.io", "sms": "+15551234567"}}
    )
    api.put(
        "subscriptions/preference",
        {"user_preference": {"SALERTS001": {"sms": "opted-out"}}},
        query={"distinct_id": "U1"},
    )
    assert set(api.post("event", {"event": "alert", "distinct_id": "U1"}).json["response"]) == {
        "email"
    }


def test_global_opt_out(api: Api) -> None:
    reply = api.put(
        "subscriptions/preference",
        {"user_preference": {"all": {"sms": "opted-out", "email": "opted-out"}}},
        query={"distinct_id": "U1"},
    )
    assert reply.json == {"all": {"sms": "opted-out", "email": "opted-out"}}
    body = _prefs(api)
    assert body["meta"]["all"]["preference"] == {"sms": "opted-out", "email": "opted-out"}
    assert body["result"]["Alerts"][0]["is_global_opted_out"] == {"email": True, "sms": True}
    api.post(
        "subscriptions/list/all/user", {"channel": "sms", "distinct_id": "U1", "status": "opted-in"}
    )
    assert _prefs(api)["meta"]["all"]["preference"] == {"email": "opted-out"}


def test_subscription_list_user_and_unknown_ids(api: Api) -> None:
    reply = api.post(
        "subscriptions/list/SALERTS001/user",
        {"channel": "sms", "distinct_id": "U1", "status": "opted-out"},
    )
    assert reply.json == {"SALERTS001": {"sms": "opted-out"}}
    unknown = api.post(
        "subscriptions/list/SNOPE/user",
        {"channel": "sms", "distinct_id": "U1", "status": "opted-out"},
    )
    assert unknown.status == 400
    assert "SNOPE" in unknown.message
    put = api.put(
        "subscriptions/preference",
        {"user_preference": {"SNOPE": {"sms": "opted-out"}}},
        query={"distinct_id": "U1"},
    )
    assert put.status == 400
    bad_value = api.put(
        "subscriptions/preference",
        {"user_preference": {"SALERTS001": {"sms": "maybe"}}},
        query={"distinct_id": "U1"},
    )
    assert bad_value.status == 400
    assert "sms" in bad_value.message


# --- suppressions -----------------------------------------------------------


def test_add_list_and_distinct_id_wins(api: Api, emulator: Emulator) -> None:
    added = api.post(
        "suppressions",
        {
            "channel": "sms",
            "distinct_id": "U1",
            "destination": "+15551234567",
            "description": "DND",
        },
    )
    assert added.json == {"status": "ok", "_message": "User has been added to the suppression!"}
    [record] = api.get("suppressions").json
    assert record["distinct_id"] == "U1"
    assert record["destination"] == ""
    assert record["description"] == "DND"
    assert len(record["_id"]) == 24
    int(record["_id"], 16)


def test_invalid_sms_destination(api: Api) -> None:
    reply = api.post("suppressions", {"channel": "sms", "destination": "call me"})
    assert reply.status == 400
    assert reply.message == "Invalid destination for channel sms"


def test_delete_precedence_uses_only_the_highest_parameter(api: Api, emulator: Emulator) -> None:
    api.post("suppressions", {"channel": "sms", "destination": "+15551234567"})
    api.post("suppressions", {"channel": "email", "distinct_id": "U1"})
    api.post("suppressions", {"channel": "sms", "distinct_id": "U1"})
    first_id = emulator.suppressions[0]["_id"]
    # _id wins over distinct_id: only the sms destination record goes.
    reply = api.delete("suppressions", query={"_id": first_id, "distinct_id": "U1"})
    assert reply.json == {"status": "ok", "_message": "1 record(s) has been deleted!"}
    assert len(emulator.suppressions) == 2
    # distinct_id wins over destination.
    reply = api.delete("suppressions", query={"distinct_id": "U1", "destination": "x"})
    assert reply.json["_message"] == "2 record(s) has been deleted!"
    gone = api.delete("suppressions", query={"destination": "+15551234567"})
    assert gone.status == 400
    assert gone.message == "Unable to delete non existing data!"
