"""Every client method against the emulator: in-process and over real HTTP.

The emulator fixtures check each request and reply against the vendored
contract when the test ends, so this file is also the contract test of the
client: a method that sends a non-conforming request fails here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from django_fyno.client import FynoClient, FynoNotFoundError, RetryPolicy
from django_fyno.client.operations import OPERATIONS
from django_fyno.testing import FynoEmulatorHandle


@pytest.fixture(params=["in_process", "over_http"])
def emulator(request: pytest.FixtureRequest) -> FynoEmulatorHandle:
    name = "fyno_emulator" if request.param == "in_process" else "fyno_live_emulator"
    handle: FynoEmulatorHandle = request.getfixturevalue(name)
    return handle


@pytest.fixture
def client(emulator: FynoEmulatorHandle) -> Iterator[FynoClient]:
    no_waiting = RetryPolicy(sleep=lambda seconds: None)
    with FynoClient(
        wsid=emulator.wsid,
        api_key=emulator.api_key,
        version="test",
        endpoint=emulator.endpoint,
        retry=no_waiting,
    ) as fyno:
        yield fyno


def test_every_operation_round_trips(client: FynoClient, emulator: FynoEmulatorHandle) -> None:
    # Profiles
    client.create_profile(
        "u1",
        name="Ada Lovelace",
        timezone="Europe/London",
        channel={"email": "ada@example.com", "push": [{"token": "fcm_token:sdk-added"}]},
    )
    client.create_profile("u2", channel={"sms": "+447700900123"})
    client.update_profile("u1", name="Ada King")
    client.update_channels("u1", {"sms": "+447700900001", "push": [{"token": "fcm_token:ours"}]})
    profile = client.get_profile("u1")
    assert profile.name == "Ada King"
    assert profile.channel["email"] == "ada@example.com"
    assert {t["token"] for t in profile.channel["push"]} == {
        "fcm_token:sdk-added",
        "fcm_token:ours",
    }
    client.delete_channels("u1", push_tokens=["fcm_token:ours"])
    client.delete_channels("u1", channels=["sms"])
    profile = client.get_profile("u1")
    assert "sms" not in profile.channel or not profile.channel["sms"]
    assert [t["token"] for t in profile.channel["push"]] == ["fcm_token:sdk-added"]

    # Properties
    client.set_properties("u1", {"plan": "pro", "seats": 3})
    client.set_properties_once("u1", {"plan": "free", "signed_up": "2024-01-31"})
    client.increment_properties("u1", {"logins": 2})
    client.append_to_lists("u1", {"tags": "beta"})
    client.remove_from_lists("u1", {"tags": "beta"})
    client.unset_properties("u1", ["seats"])
    client.batch_properties([{"distinct_id": "u2", "action": {"$set": {"plan": "team"}}}])

    # Events
    sent = client.send_event("welcome", distinct_id="u1", data={"name": "Ada"})
    assert sent.request_id
    assert "email" in sent.channels
    bulk = client.send_bulk(
        "digest", [{"distinct_id": "u1"}, {"to": {"email": "grace@example.com"}}]
    )
    assert [item.seq for item in bulk.items] == [0, 1]
    otp_event = client.send_event("login_otp", to={"sms": "+447700900123"})
    code = emulator.emulator.otp_for(request_id=otp_event.request_id)
    assert code
    assert (
        client.verify_otp(
            "000000" if code != "000000" else "111111", request_id=otp_event.request_id
        )
        is False
    )
    assert client.verify_otp(code, request_id=otp_event.request_id) is True

    # Preferences and subscriptions
    preferences = client.get_preferences("u1", event_list=True)
    topic = next(iter(preferences.sections.values()))[0]
    client.set_preferences("u1", {topic.subscription_id: {"email": "opted-out"}})
    client.set_subscription(
        topic.subscription_id, distinct_id="u1", channel="sms", status="opted-out"
    )
    again = client.get_preferences("u1")
    changed = next(
        t for s in again.sections.values() for t in s if t.subscription_id == topic.subscription_id
    )
    assert changed.preference["email"] == "opted-out"

    # Suppressions
    client.add_suppression("email", destination="spam@example.com", description="DND")
    client.add_suppression("sms", distinct_id="u2")
    records = client.list_suppressions()
    assert {r.channel for r in records} == {"email", "sms"}
    client.delete_suppression(destination="spam@example.com")
    assert [r.channel for r in client.list_suppressions()] == ["sms"]

    # Merge and delete
    client.merge_profiles("u2", "u1")
    with pytest.raises(FynoNotFoundError):
        client.get_profile("u2")
    client.delete_profiles(["u1"])
    with pytest.raises(FynoNotFoundError):
        client.get_profile("u1")

    called = {entry.operation for entry in emulator.emulator.request_log}
    assert called == set(OPERATIONS), f"not exercised: {set(OPERATIONS) - called}"
