"""Every reply the emulator gives, success or error, conforms to the contract."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from django_fyno.emulator import contract
from django_fyno.emulator.app import Emulator
from tests.emulator.wsgi import Api

Scenario = Callable[[Api], None]


def _profiles(api: Api) -> None:
    channel = {"sms": "+919812345678", "email": "a@x.io", "push": [{"token": "T1"}]}
    api.post("profiles", {"distinct_id": "U1", "name": "A", "timezone": "UTC", "channel": channel})
    api.post("profiles", {"distinct_id": "U1"})  # duplicate
    api.post("profiles", {"name": "no id"})  # invalid
    api.get("profiles/U1")
    api.get("profiles/NOPE")
    api.put("profiles/U1", {"name": "B", "channel": {"email": "b@x.io"}})
    api.put("profiles/NOPE", {"name": "B"})
    api.patch("profiles/U1/channel", {"channel": {"push": [{"token": "T2"}]}})
    api.patch("profiles/NOPE/channel", {"channel": {"sms": "+15551234567"}})
    api.post("profiles/U1/channel/delete", {"push": ["T2"]})
    api.post("profiles/U1/channel/delete", {"channel": ["whatsapp"]})
    api.post("profiles", {"distinct_id": "U2"})
    api.patch("profiles/U2/merge/U1")
    api.patch("profiles/U2/merge/U1")  # source gone
    api.post("profiles/delete", {"distinct_id": ["U1"]})
    api.post("profiles/delete", {"distinct_id": ["U1"]})
    api.get("profiles/U1", auth="wrong")


def _properties(api: Api) -> None:
    for path, key, value in [
        ("set", "$set", {"a": "x", "d": "2020-10-01", "l": [1]}),
        ("set-once", "$once", {"b": True}),
        ("numerical-add", "$add", {"n": 1}),
        ("list-append", "$append", {"l": 2}),
        ("list-remove", "$remove", {"l": 1}),
        ("unset", "$unset", ["a"]),
        ("unset", "$unset", []),
    ]:
        api.post(f"profiles/properties/{path}", {"distinct_id": "U1", key: value})
        api.post(f"profiles/properties/{path}", {"distinct_id": "U1", key: {"o": {"x": 1}}})
    api.post(
        "profiles/properties/batch",
        {"batch": [{"distinct_id": "U1", "action": {"$set": {"z": 1}}}]},
    )
    api.post("profiles/properties/batch", {"batch": [{"action": {}}]})


def _events(api: Api) -> None:
    api.post(
        "profiles", {"distinct_id": "U1", "channel": {"email": "a@x.io", "inapp": [{"token": "I"}]}}
    )
    sent = api.post("event", {"event": "otp", "distinct_id": "U1", "to": {"sms": "+15551234567"}})
    api.post("event", {"event": "x"})  # invalid
    api.post("event", {"event": "blocked", "to": {"email": "a@x.io"}})
    api.post(
        "event/bulk",
        {"event": "x", "batch": [{"distinct_id": "U1"}, {"to": {"voice": "+15551234567"}}]},
    )
    api.post("event/bulk", {"event": "blocked", "batch": [{"distinct_id": "U1"}]})
    request_id = sent.json["request_id"]
    api.post("verify/validate", query={"otp": "000000", "request_id": request_id})
    code = api.app.otp_for(request_id=request_id)
    api.post("verify/validate", query={"otp": code or "", "request_id": request_id})


def _preferences(api: Api) -> None:
    api.get("subscriptions/preference", query={"distinct_id": "U1", "event_list": "true"})
    api.get("subscriptions/preference")
    api.put(
        "subscriptions/preference",
        {"user_preference": {"SGENERAL02": {"sms": "opted-out"}, "all": {"push": "opted-out"}}},
        query={"distinct_id": "U1"},
    )
    api.put(
        "subscriptions/preference", {"user_preference": {"SNOPE": {}}}, query={"distinct_id": "U1"}
    )
    api.put("subscriptions/preference", {"user_preference": {}})
    api.get("subscriptions/preference", query={"distinct_id": "U1"})
    api.post(
        "subscriptions/list/SGENERAL01/user",
        {"channel": "sms", "distinct_id": "U1", "status": "opted-out"},
    )
    api.post(
        "subscriptions/list/all/user", {"channel": "sms", "distinct_id": "U1", "status": "opted-in"}
    )
    api.post(
        "subscriptions/list/SNOPE/user",
        {"channel": "sms", "distinct_id": "U1", "status": "opted-in"},
    )


def _suppressions(api: Api) -> None:
    api.post(
        "suppressions", {"channel": "sms", "destination": "+15551234567", "description": "DND"}
    )
    api.post("suppressions", {"channel": "email", "distinct_id": "U1"})
    api.post("suppressions", {"channel": "sms", "destination": "bad"})
    api.get("suppressions")
    api.delete("suppressions", query={"distinct_id": "U1"})
    api.delete("suppressions", query={"distinct_id": "U1"})
    api.get("suppressions", auth="wrong")


SCENARIOS = {
    "profiles": _profiles,
    "properties": _properties,
    "events": _events,
    "preferences": _preferences,
    "suppressions": _suppressions,
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_reply_validates(name: str) -> None:
    emulator = Emulator(strict_replies=False, events=["otp", "x"], seed=1)
    SCENARIOS[name](Api(emulator))
    assert emulator.request_log
    for entry in emulator.request_log:
        assert entry.operation is not None
        assert entry.status < 500, entry
        op = contract.operation(entry.operation)
        problems = contract.validate_reply(op, entry.status, entry.reply)
        assert problems == [], (entry.operation, entry.status, entry.reply)


def test_all_23_operations_and_both_outcomes_are_covered() -> None:
    emulator = Emulator(strict_replies=False, events=["otp", "x"], seed=1)
    for scenario in SCENARIOS.values():
        scenario(Api(emulator))
    seen = {(entry.operation, entry.status < 300) for entry in emulator.request_log}
    assert {name for name, _ in seen} == set(contract.OPERATIONS)
    # Every operation shows an error too (listing suppressions: its 401).
    assert {name for name, ok in seen if not ok} == set(contract.OPERATIONS)


def test_strict_mode_turns_a_bad_reply_into_500(monkeypatch: pytest.MonkeyPatch) -> None:
    from django_fyno.emulator import handlers

    monkeypatch.setitem(handlers.HANDLERS, "get_profile", lambda ctx: (200, {"distinct_id": 1}))
    reply = Api(Emulator()).get("profiles/U1")
    assert reply.status == 500
    assert "breaks the contract" in reply.message
