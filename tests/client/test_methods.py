"""One happy-path test per operation: the exact request sent and the typed result."""

from __future__ import annotations

from typing import Any

import pytest
import responses

from django_fyno import __version__
from django_fyno.client import (
    Acknowledgement,
    BatchPropertyUpdate,
    BulkEventResult,
    ChannelResult,
    EventResult,
    FynoClient,
    Preferences,
    Profile,
    PropertyUpdate,
    Suppression,
)

from .conftest import BASE, ENDPOINT, SECRET, WSID, ack, sent_json

EVENT_REPLY = {
    "event": "welcome",
    "received_time": "2025-02-17T07:49:13.352Z",
    "request_id": "REQ-1",
    "response": {
        "sms": {"destination": "+919879000000", "msg_id": "MSG-1", "status": "ok"},
        "email": {"destination": "ada@example.com", "msg_id": "MSG-2", "status": "ok"},
    },
}
PROFILE_REPLY = {
    "distinct_id": "U1",
    "name": "John Doe",
    "status": 1,
    "timezone": "Asia/Kolkata",
    "timezone_offset": "+05:30",
    "country_code": "IN",
    "created_at": "2023-04-21T06:34:01.386Z",
    "updated_at": "2023-04-21T08:42:30.235Z",
    "channel": {"sms": "+91 9879X XXXXX", "push": [{"token": "T1", "status": 1}]},
    "id_list": ["6442XXXXXXXXXXXXXXXXc684"],
    "profile_id": "6442XXXXXXXXXXXXXXXXc685",
    "version": "live",
    "properties": {"plan": "pro"},
    "channel_raw": {},
}
PREFERENCES_REPLY = {
    "meta": {
        "all": {
            "preference": {"sms": "opted-out"},
            "updated_at": {"sms": "2024-01-01T00:00:00Z"},
        }
    },
    "result": {
        "Section1": [
            {
                "subscription_id": "SXXXXXXXXX",
                "name": "Offers",
                "description": "Weekly offers",
                "channel_config": {"email": "on", "sms": "required"},
                "preference": {"email": "opted-out", "sms": "opted-in"},
                "is_global_opted_out": {"sms": True},
                "updated_at": {"email": "2024-01-02T00:00:00Z"},
                "notification_events": [{"event_id": "E1", "event_name": "offer"}],
            }
        ]
    },
}


def _only_call(mock: responses.RequestsMock) -> Any:
    assert len(mock.calls) == 1
    return mock.calls[0].request


def test_send_event_by_distinct_id_and_to(client: FynoClient, mocked: responses.RequestsMock):
    mocked.post(f"{BASE}/event", json=EVENT_REPLY, status=202)
    result = client.send_event(
        "welcome",
        distinct_id="U1",
        to={"sms": "+919879000000"},
        data={"name": "Ada"},
        callback={"custom_id": "outbox-7"},
    )
    request = _only_call(mocked)
    assert request.method == "POST"
    assert request.headers["Authorization"] == f"Bearer {SECRET}"
    assert request.headers["User-Agent"] == f"django-fyno/{__version__}"
    assert request.headers["Content-Type"] == "application/json"
    assert sent_json(mocked) == {
        "event": "welcome",
        "distinct_id": "U1",
        "to": {"sms": "+919879000000"},
        "data": {"name": "Ada"},
        "callback": {"custom_id": "outbox-7"},
    }
    assert isinstance(result, EventResult)
    assert result.request_id == "REQ-1"
    assert result.event == "welcome"
    assert result.received_time == "2025-02-17T07:49:13.352Z"
    assert result.channels["sms"] == ChannelResult("+919879000000", "MSG-1", "ok")
    assert result.raw == EVENT_REPLY


def test_send_bulk(client: FynoClient, mocked: responses.RequestsMock):
    reply = {
        "event": "welcome",
        "received_time": 1672991866453,
        "request_id": "REQ-2",
        "response": [
            {"seq": 1, "email": {"destination": "a@example.com", "msg_id": "M1", "status": "ok"}},
            {"seq": 2, "sms": {"destination": "+919879000000", "msg_id": "M2", "status": "ok"}},
        ],
    }
    mocked.post(f"{BASE}/event/bulk", json=reply, status=202)
    result = client.send_bulk(
        "welcome",
        [{"distinct_id": "U1", "data": {"n": 1}}, {"to": {"sms": "+919879000000"}}],
    )
    assert sent_json(mocked) == {
        "event": "welcome",
        "batch": [{"distinct_id": "U1", "data": {"n": 1}}, {"to": {"sms": "+919879000000"}}],
    }
    assert isinstance(result, BulkEventResult)
    assert result.request_id == "REQ-2"
    assert result.received_time == 1672991866453
    assert [item.seq for item in result.items] == [1, 2]
    assert result.items[1].channels["sms"].msg_id == "M2"


def test_create_profile(client: FynoClient, mocked: responses.RequestsMock):
    mocked.post(f"{BASE}/profiles", json=ack("Profile created successfully"), status=201)
    result = client.create_profile(
        "U1",
        name="Ada",
        status=1,
        timezone="Asia/Kolkata",
        channel={"email": "ada@example.com", "push": [{"token": "T1", "status": 1}]},
    )
    assert sent_json(mocked) == {
        "distinct_id": "U1",
        "name": "Ada",
        "status": 1,
        "timezone": "Asia/Kolkata",
        "channel": {"email": "ada@example.com", "push": [{"token": "T1", "status": 1}]},
    }
    assert result == Acknowledgement("Profile created successfully", "ok", raw={})


def test_get_profile_quotes_the_distinct_id(client: FynoClient, mocked: responses.RequestsMock):
    mocked.get(f"{BASE}/profiles/a%2Fb%20c%3Fd", json=PROFILE_REPLY)
    profile = client.get_profile("a/b c?d")
    request = _only_call(mocked)
    assert request.url == f"{BASE}/profiles/a%2Fb%20c%3Fd"
    assert request.body is None
    assert isinstance(profile, Profile)
    assert profile.distinct_id == "U1"
    assert profile.status == 1
    assert profile.timezone_offset == "+05:30"
    assert profile.country_code == "IN"
    assert profile.id_list == ("6442XXXXXXXXXXXXXXXXc684",)
    assert profile.version == "live"
    assert profile.properties == {"plan": "pro"}
    assert profile.channel["push"] == [{"token": "T1", "status": 1}]
    assert profile.raw == PROFILE_REPLY


def test_update_profile(client: FynoClient, mocked: responses.RequestsMock):
    mocked.put(f"{BASE}/profiles/U1", json=ack("1 Record(s) updated successfully"))
    result = client.update_profile("U1", new_distinct_id="U2", name="Ada", status=0)
    assert _only_call(mocked).method == "PUT"
    assert sent_json(mocked) == {"distinct_id": "U2", "name": "Ada", "status": 0}
    assert result.message == "1 Record(s) updated successfully"


def test_merge_profiles(client: FynoClient, mocked: responses.RequestsMock):
    mocked.patch(
        f"{BASE}/profiles/old%20id/merge/new",
        json=ack("1 Record(s) updated and 1 Records(s) deleted"),
    )
    result = client.merge_profiles("old id", "new")
    assert _only_call(mocked).body is None
    assert result.message == "1 Record(s) updated and 1 Records(s) deleted"


def test_delete_profiles(client: FynoClient, mocked: responses.RequestsMock):
    mocked.post(f"{BASE}/profiles/delete", json=ack("2 User(s) deleted successfully"))
    result = client.delete_profiles(["U1", "U2"])
    assert sent_json(mocked) == {"distinct_id": ["U1", "U2"]}
    assert result.status == "ok"


def test_update_channels(client: FynoClient, mocked: responses.RequestsMock):
    mocked.patch(f"{BASE}/profiles/U1/channel", json=ack("Channel has been modified successfully"))
    client.update_channels("U1", {"whatsapp": "+919879000000", "inapp": [{"token": "I1"}]})
    assert _only_call(mocked).method == "PATCH"
    assert sent_json(mocked) == {
        "channel": {"whatsapp": "+919879000000", "inapp": [{"token": "I1"}]}
    }


def test_delete_channels_by_name(client: FynoClient, mocked: responses.RequestsMock):
    mocked.post(f"{BASE}/profiles/U1/channel/delete", json=ack("Channel modified"))
    client.delete_channels("U1", channels=["sms", "email"])
    assert sent_json(mocked) == {"channel": ["sms", "email"]}


def test_delete_channels_by_token(client: FynoClient, mocked: responses.RequestsMock):
    mocked.post(f"{BASE}/profiles/U1/channel/delete", json=ack("Channel modified"))
    client.delete_channels("U1", push_tokens=["P1"])
    assert sent_json(mocked) == {"push": ["P1"]}


def test_get_preferences(client: FynoClient, mocked: responses.RequestsMock):
    mocked.get(f"{BASE}/subscriptions/preference", json=PREFERENCES_REPLY)
    prefs = client.get_preferences("U 1", event_list=True)
    request = _only_call(mocked)
    assert request.url == f"{BASE}/subscriptions/preference?distinct_id=U+1&event_list=true"
    assert isinstance(prefs, Preferences)
    assert prefs.global_preference.preference == {"sms": "opted-out"}
    (topic,) = prefs.sections["Section1"]
    assert topic.subscription_id == "SXXXXXXXXX"
    assert topic.channel_config["sms"] == "required"
    assert topic.preference["email"] == "opted-out"
    assert topic.is_global_opted_out == {"sms": True}
    assert topic.notification_events[0].event_name == "offer"
    assert prefs.topics() == (topic,)


def test_set_preferences(client: FynoClient, mocked: responses.RequestsMock):
    mocked.put(f"{BASE}/subscriptions/preference", json={"SXXXXXXXXX": {"email": "opted-out"}})
    result = client.set_preferences("U1", {"SXXXXXXXXX": {"email": "opted-out"}})
    assert _only_call(mocked).url == f"{BASE}/subscriptions/preference?distinct_id=U1"
    assert sent_json(mocked) == {"user_preference": {"SXXXXXXXXX": {"email": "opted-out"}}}
    assert result.preferences == {"SXXXXXXXXX": {"email": "opted-out"}}


def test_set_subscription(client: FynoClient, mocked: responses.RequestsMock):
    mocked.post(f"{BASE}/subscriptions/list/all/user", json={"SXXXXXXXXX": {"webpush": "opted-in"}})
    client.set_subscription("all", distinct_id="U1", channel="webpush", status="opted-in")
    assert sent_json(mocked) == {"channel": "webpush", "distinct_id": "U1", "status": "opted-in"}


def test_verify_otp_valid(client: FynoClient, mocked: responses.RequestsMock):
    mocked.post(f"{BASE}/verify/validate", json=ack("OTP successfully validated."))
    assert client.verify_otp("123456", request_id="REQ-1") is True
    request = _only_call(mocked)
    assert request.url == f"{BASE}/verify/validate?otp=123456&request_id=REQ-1"
    assert request.body is None


def test_verify_otp_wrong(client: FynoClient, mocked: responses.RequestsMock):
    mocked.post(
        f"{BASE}/verify/validate",
        json={"_message": "user entered the wrong OTP", "status": "error"},
        status=400,
    )
    assert client.verify_otp("000000", destination="+919879000000") is False
    assert _only_call(mocked).url.endswith("?otp=000000&destination=%2B919879000000")


@pytest.mark.parametrize(
    ("method", "suffix", "operator", "values"),
    [
        ("set_properties", "set", "$set", {"plan": "pro", "seats": 3, "tags": ["a", "b"]}),
        ("set_properties_once", "set-once", "$once", {"first_seen": "2021-12-01"}),
        ("increment_properties", "numerical-add", "$add", {"logins": 1, "credit": -2.5}),
        ("append_to_lists", "list-append", "$append", {"devices": "iPad"}),
        ("remove_from_lists", "list-remove", "$remove", {"devices": 245}),
        ("unset_properties", "unset", "$unset", ["old", "older"]),
    ],
)
def test_property_writes(
    client: FynoClient,
    mocked: responses.RequestsMock,
    method: str,
    suffix: str,
    operator: str,
    values: Any,
):
    mocked.post(f"{BASE}/profiles/properties/{suffix}", json={"request_id": "REQ-P"}, status=202)
    result = getattr(client, method)("U1", values)
    assert sent_json(mocked) == {"distinct_id": "U1", operator: values}
    assert result == PropertyUpdate("REQ-P", raw={})


def test_batch_properties(client: FynoClient, mocked: responses.RequestsMock):
    reply = {"request_id": "REQ-B", "batch": [{"$set": "ok", "$unset": "ok"}]}
    mocked.post(f"{BASE}/profiles/properties/batch", json=reply, status=202)
    batch = [{"distinct_id": "U1", "action": {"$set": {"plan": "pro"}, "$unset": ["old"]}}]
    result = client.batch_properties(batch)
    assert sent_json(mocked) == {"batch": batch}
    assert isinstance(result, BatchPropertyUpdate)
    assert result.request_id == "REQ-B"
    assert result.items == ({"$set": "ok", "$unset": "ok"},)


def test_list_suppressions_has_no_version_segment(
    client: FynoClient, mocked: responses.RequestsMock
):
    record = {
        "_id": "68763be4b8cee01156d9fa8a",
        "destination": "919XXXXXXXX",
        "distinct_id": "U1",
        "channel": "sms",
        "description": "DND",
        "created_at": "2025-07-15T16:20:16.302+05:30",
        "expiry_ts": "2025-07-15T16:25:16.302+05:30",
    }
    mocked.get(f"{ENDPOINT}/{WSID}/suppressions", json=[record])
    (found,) = client.list_suppressions()
    assert _only_call(mocked).url == f"{ENDPOINT}/{WSID}/suppressions"
    assert found == Suppression(
        id="68763be4b8cee01156d9fa8a",
        destination="919XXXXXXXX",
        distinct_id="U1",
        channel="sms",
        description="DND",
        created_at="2025-07-15T16:20:16.302+05:30",
        expiry_ts="2025-07-15T16:25:16.302+05:30",
        raw={},
    )
    assert found.raw == record


def test_add_suppression(client: FynoClient, mocked: responses.RequestsMock):
    mocked.post(
        f"{ENDPOINT}/{WSID}/suppressions", json=ack("User has been added to the suppression!")
    )
    client.add_suppression("sms", destination="919XXXXXXXX", description="DND")
    assert sent_json(mocked) == {
        "channel": "sms",
        "destination": "919XXXXXXXX",
        "description": "DND",
    }


@pytest.mark.parametrize(
    ("kwargs", "query"),
    [
        ({"id": "R1"}, "_id=R1"),
        ({"distinct_id": "U1"}, "distinct_id=U1"),
        ({"destination": "a@example.com"}, "destination=a%40example.com"),
    ],
)
def test_delete_suppression(
    client: FynoClient, mocked: responses.RequestsMock, kwargs: dict[str, str], query: str
):
    mocked.delete(f"{ENDPOINT}/{WSID}/suppressions", json=ack("1 record(s) has been deleted!"))
    result = client.delete_suppression(**kwargs)
    request = _only_call(mocked)
    assert request.method == "DELETE"
    assert request.url == f"{ENDPOINT}/{WSID}/suppressions?{query}"
    assert result.message == "1 record(s) has been deleted!"


def test_test_version_goes_in_the_path(policy, mocked: responses.RequestsMock):
    mocked.get(f"{ENDPOINT}/{WSID}/test/profiles/U1", json={**PROFILE_REPLY, "version": "test"})
    with FynoClient(
        wsid=WSID, api_key=SECRET, version="test", endpoint=ENDPOINT + "/", retry=policy
    ) as fyno:
        assert fyno.get_profile("U1").version == "test"
    assert len(mocked.calls) == 1
