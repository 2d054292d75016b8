"""Profiles and channels: create, fetch, update, merge, delete, auth."""

from __future__ import annotations

import pytest

from django_fyno.emulator.app import Emulator
from tests.emulator.wsgi import Api, call


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(seed=7)


@pytest.fixture
def api(emulator: Emulator) -> Api:
    return Api(emulator)


def _create(api: Api, distinct_id: str = "U1", **fields: object) -> None:
    reply = api.post("profiles", {"distinct_id": distinct_id, **fields})
    assert reply.status == 201, reply.json


def test_wrong_key_or_wsid_is_401(api: Api, emulator: Emulator) -> None:
    bad_key = api.get("profiles/U1", auth="nope")
    assert bad_key.status == 401
    assert bad_key.json == {"_message": "Invalid API details", "status": "error"}
    assert api.get("profiles/U1", auth=None).status == 401
    assert call(emulator, "GET", "/OTHERWS/live/profiles/U1").status == 401


def test_unknown_route_is_404_json_and_bad_json_is_400(api: Api) -> None:
    missing = api.get("nothing/here")
    assert missing.status == 404
    assert missing.json["status"] == "error"
    broken = api.post("profiles", raw=b"{not json")
    assert broken.status == 400
    assert "not valid JSON" in broken.message


def test_invalid_body_is_400_naming_the_field(api: Api) -> None:
    reply = api.post("profiles", {"name": "no id"})
    assert reply.status == 400
    assert "distinct_id" in reply.message
    bad_tz = api.post("profiles", {"distinct_id": "U1", "timezone": "Mars/Base"})
    assert bad_tz.status == 400
    assert "timezone" in bad_tz.message


def test_create_and_fetch_every_field(api: Api) -> None:
    _create(
        api,
        name="Asha",
        timezone="Asia/Kolkata",
        channel={"sms": "+919812345678", "email": "a@x.io", "push": [{"token": "T1"}]},
    )
    got = api.get("profiles/U1")
    assert got.status == 200
    profile = got.json
    assert profile["distinct_id"] == "U1"
    assert profile["name"] == "Asha"
    assert profile["status"] == 1
    assert profile["timezone_offset"] == "+05:30"
    assert profile["country_code"] == "IN"
    assert profile["version"] == "live"
    assert profile["channel"]["push"] == [{"token": "T1", "status": 1}]
    assert profile["channel_raw"]["push"] == [{"token": "T1"}]
    assert profile["properties"] == {}
    assert profile["id_list"] == []
    assert profile["created_at"].endswith("Z")


@pytest.mark.parametrize(
    ("number", "country"),
    [("+14155550100", "US"), ("+447700900123", "GB"), ("+971501234567", "AE"), ("0123", "")],
)
def test_country_code_comes_from_the_sms_number(api: Api, number: str, country: str) -> None:
    _create(api, channel={"sms": number})
    assert api.get("profiles/U1").json["country_code"] == country


def test_duplicate_is_400_naming_the_version(api: Api) -> None:
    _create(api)
    again = api.post("profiles", {"distinct_id": "U1"})
    assert again.status == 400
    assert (
        again.message == "Distinct ID 'U1' already exists in the 'live' version of your workspace"
    )


def test_live_and_test_versions_are_separate(emulator: Emulator) -> None:
    _create(Api(emulator, "live"))
    assert Api(emulator, "test").get("profiles/U1").status == 400
    _create(Api(emulator, "test"))
    assert emulator.profile("test", "U1")["version"] == "test"  # type: ignore[index]


def test_missing_profile_messages(api: Api) -> None:
    assert api.get("profiles/NOPE").message == "incorrect/non existing distinct_id provided"
    assert (
        api.put("profiles/NOPE", {"name": "x"}).message
        == "Unable to update the record since the record does not exist"
    )
    assert api.patch("profiles/NOPE/merge/OTHER").message == "merge from id does not exist"
    assert (
        api.post("profiles/delete", {"distinct_id": ["NOPE"]}).message
        == "Cannot delete non existing user"
    )
    assert (
        api.patch("profiles/NOPE/channel", {"channel": {"sms": "+15550000000"}}).message
        == "incorrect/non existing distinct_id provided"
    )


def test_put_replaces_channels_and_wipes_push_tokens(api: Api, emulator: Emulator) -> None:
    _create(api, name="A", channel={"email": "a@x.io", "push": [{"token": "T1"}]})
    reply = api.put("profiles/U1", {"channel": {"sms": "+15551234567"}})
    assert reply.json == {"_message": "1 Record(s) updated successfully", "status": "ok"}
    profile = emulator.profile("live", "U1")
    assert profile is not None
    assert profile["channel"] == {"sms": "+15551234567"}
    assert profile["name"] == "A"  # keys left out are unchanged


def test_put_without_channel_keeps_channels_and_renames(api: Api, emulator: Emulator) -> None:
    _create(api, channel={"email": "a@x.io"})
    assert api.put("profiles/U1", {"distinct_id": "U2", "status": 0}).status == 200
    assert emulator.profile("live", "U1") is None
    renamed = emulator.profile("live", "U2")
    assert renamed is not None
    assert renamed["channel"] == {"email": "a@x.io"}
    assert renamed["status"] == 0


def test_patch_adds_tokens_and_updates_single_channels(api: Api, emulator: Emulator) -> None:
    _create(api, channel={"email": "old@x.io", "push": [{"token": "T1"}]})
    reply = api.patch(
        "profiles/U1/channel",
        {"channel": {"email": "new@x.io", "push": [{"token": "T2"}, {"token": "T1", "status": 0}]}},
    )
    assert reply.json == {"_message": "Channel has been modified successfully", "status": "ok"}
    channel = emulator.profile("live", "U1")["channel"]  # type: ignore[index]
    assert channel["email"] == "new@x.io"
    assert channel["push"] == [{"token": "T1", "status": 0}, {"token": "T2", "status": 1}]


def test_channel_delete_by_name_and_by_token(api: Api, emulator: Emulator) -> None:
    _create(
        api,
        channel={
            "email": "a@x.io",
            "sms": "+15551234567",
            "push": [{"token": "T1"}, {"token": "T2"}],
        },
    )
    assert api.post("profiles/U1/channel/delete", {"channel": ["email"]}).status == 200
    assert api.post("profiles/U1/channel/delete", {"push": ["T1"]}).status == 200
    channel = emulator.profile("live", "U1")["channel"]  # type: ignore[index]
    assert channel == {"sms": "+15551234567", "push": [{"token": "T2", "status": 1}]}
    nothing = api.post("profiles/U1/channel/delete", {"channel": ["email"]})
    assert nothing.status == 400
    assert nothing.message == "Unable to delete channel since the channel does not exist"
    assert api.post("profiles/U1/channel/delete", {"inapp": ["X"]}).status == 400
    both = api.post("profiles/U1/channel/delete", {"channel": ["sms"], "push": ["T2"]})
    assert both.status == 400


def test_merge_combines_into_target_and_deletes_source(api: Api, emulator: Emulator) -> None:
    _create(api, "SRC", channel={"email": "s@x.io", "push": [{"token": "A"}, {"token": "B"}]})
    _create(api, "DST", channel={"email": "d@x.io", "push": [{"token": "B"}, {"token": "C"}]})
    api.post("profiles/properties/set", {"distinct_id": "SRC", "$set": {"plan": "pro", "x": 1}})
    api.post("profiles/properties/set", {"distinct_id": "DST", "$set": {"x": 2}})
    reply = api.patch("profiles/SRC/merge/DST")
    assert reply.json == {
        "_message": "1 Record(s) updated and 1 Records(s) deleted",
        "status": "ok",
    }
    assert emulator.profile("live", "SRC") is None
    target = emulator.profile("live", "DST")
    assert target is not None
    assert target["channel"]["email"] == "d@x.io"
    assert sorted(t["token"] for t in target["channel"]["push"]) == ["A", "B", "C"]
    assert target["properties"] == {"x": 2, "plan": "pro"}
    assert target["id_list"] == ["SRC"]


def test_merge_into_missing_target_renames(api: Api, emulator: Emulator) -> None:
    _create(api, "OLD", name="Kept")
    assert api.patch("profiles/OLD/merge/NEW").status == 200
    assert emulator.profile("live", "OLD") is None
    new = emulator.profile("live", "NEW")
    assert new is not None
    assert new["name"] == "Kept"
    assert new["id_list"] == ["OLD"]


def test_delete_counts_existing_users(api: Api, emulator: Emulator) -> None:
    _create(api, "U1")
    _create(api, "U2")
    reply = api.post("profiles/delete", {"distinct_id": ["U1", "U2", "GHOST"]})
    assert reply.json == {"_message": "2 User(s) deleted successfully", "status": "ok"}
    assert emulator.profiles("live") == {}
