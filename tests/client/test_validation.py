"""Bad input fails locally, names its field, and sends nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
import responses

from django_fyno.client import FynoClient, FynoValidationError
from django_fyno.client.validation import MAX_DEPTH

Call = Callable[[FynoClient], Any]


def nested(depth: int) -> dict[str, Any]:
    """``depth`` mappings, each in the next, built without recursion."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def twice_cyclic() -> dict[str, Any]:
    """A mapping holding itself twice: a naive walk would visit 2**depth values."""
    data: dict[str, Any] = {}
    data["a"] = data["b"] = data
    return data


CASES: list[tuple[str, Call, str]] = [
    ("blank distinct_id", lambda c: c.get_profile("  "), "distinct_id"),
    ("empty distinct_id on event", lambda c: c.send_event("e", distinct_id=""), "distinct_id"),
    ("neither id nor to", lambda c: c.send_event("e"), "distinct_id"),
    ("empty event name", lambda c: c.send_event(" ", distinct_id="U1"), "event"),
    ("blank id in delete list", lambda c: c.delete_profiles(["U1", ""]), "distinct_ids[1]"),
    ("empty delete list", lambda c: c.delete_profiles([]), "distinct_ids"),
    ("blank merge target", lambda c: c.merge_profiles("U1", ""), "target_distinct_id"),
    ("blank rename", lambda c: c.update_profile("U1", new_distinct_id=""), "new_distinct_id"),
    ("bad timezone", lambda c: c.create_profile("U1", timezone="Mars/Olympus"), "timezone"),
    ("status 2", lambda c: c.create_profile("U1", status=2), "status"),
    ("status True", lambda c: c.update_profile("U1", status=True), "status"),
    (
        "sms not E.164 in to",
        lambda c: c.send_event("e", to={"sms": "9879000000"}),
        "to.sms",
    ),
    (
        "whatsapp not E.164 in channel",
        lambda c: c.create_profile("U1", channel={"whatsapp": "+0123"}),
        "channel.whatsapp",
    ),
    (
        "voice not E.164 in PATCH",
        lambda c: c.update_channels("U1", {"voice": "+91 98790 00000"}),
        "channel.voice",
    ),
    ("unknown channel in to", lambda c: c.send_event("e", to={"fax": "1"}), "to.fax"),
    (
        "unknown channel in profile",
        lambda c: c.create_profile("U1", channel={"pager": "x"}),
        "channel.pager",
    ),
    (
        "push token without token",
        lambda c: c.update_channels("U1", {"push": [{}]}),
        "channel.push[0].token",
    ),
    (
        "unknown channel to delete",
        lambda c: c.delete_channels("U1", channels=["sms", "fax"]),
        "channels[1]",
    ),
    (
        "both delete forms",
        lambda c: c.delete_channels("U1", channels=["sms"], push_tokens=["T"]),
        "channels",
    ),
    ("nothing to delete", lambda c: c.delete_channels("U1"), "channels"),
    (
        "long property string",
        lambda c: c.set_properties("U1", {"bio": "x" * 256}),
        "properties.bio",
    ),
    (
        "long string in a list",
        lambda c: c.set_properties_once("U1", {"tags": ["ok", "y" * 256]}),
        "properties.tags[1]",
    ),
    ("empty $set", lambda c: c.set_properties("U1", {}), "properties"),
    ("blank id on $set", lambda c: c.set_properties("", {"a": 1}), "distinct_id"),
    ("$add string", lambda c: c.increment_properties("U1", {"n": "1"}), "increments.n"),
    ("$add bool", lambda c: c.increment_properties("U1", {"n": True}), "increments.n"),
    ("$append list", lambda c: c.append_to_lists("U1", {"tags": ["a", "b"]}), "values.tags"),
    ("$append dict", lambda c: c.append_to_lists("U1", {"tags": {"a": 1}}), "values.tags"),
    ("$remove bool", lambda c: c.remove_from_lists("U1", {"tags": False}), "values.tags"),
    ("empty $unset", lambda c: c.unset_properties("U1", []), "names"),
    ("empty batch", lambda c: c.batch_properties([]), "batch"),
    (
        "blank id in batch",
        lambda c: c.batch_properties([{"distinct_id": " ", "action": {"$unset": ["a"]}}]),
        "batch[0].distinct_id",
    ),
    (
        "empty $unset in batch",
        lambda c: c.batch_properties([{"distinct_id": "U1", "action": {"$unset": []}}]),
        "batch[0].action.$unset",
    ),
    ("empty bulk batch", lambda c: c.send_bulk("e", []), "batch"),
    (
        "blank id in bulk",
        lambda c: c.send_bulk("e", [{"distinct_id": "U1"}, {"distinct_id": ""}]),
        "batch[1].distinct_id",
    ),
    (
        "bad preference value",
        lambda c: c.set_preferences("U1", {"all": {"email": "maybe"}}),
        "preferences.all.email",
    ),
    (
        "unknown preference channel",
        lambda c: c.set_preferences("U1", {"all": {"fax": "opted-out"}}),
        "preferences.all.fax",
    ),
    (
        "bad subscription status",
        lambda c: c.set_subscription("S1", distinct_id="U1", channel="sms", status="off"),
        "status",
    ),
    ("blank id for preferences", lambda c: c.get_preferences(""), "distinct_id"),
    ("otp missing", lambda c: c.verify_otp("", request_id="R"), "otp"),
    ("otp without target", lambda c: c.verify_otp("1234"), "request_id"),
    (
        "otp with both targets",
        lambda c: c.verify_otp("1234", request_id="R", destination="+919879000000"),
        "request_id",
    ),
    ("suppression without id", lambda c: c.add_suppression("sms"), "distinct_id"),
    ("delete suppression with nothing", lambda c: c.delete_suppression(), "id"),
    (
        "delete suppression with two keys",
        lambda c: c.delete_suppression(id="R", distinct_id="U1"),
        "id",
    ),
    # Values neither JSON nor a database holds as given, anywhere in the input.
    ("NUL in an event name", lambda c: c.send_event("e\x00", distinct_id="U1"), "event"),
    ("NUL in a distinct id", lambda c: c.get_profile("U\x001"), "distinct_id"),
    (
        "surrogate in a distinct id",
        lambda c: c.delete_profiles(["U1", "\udc00"]),
        "distinct_ids[1]",
    ),
    (
        "NUL in data",
        lambda c: c.send_event("e", distinct_id="U1", data={"a": [{"b": "\x00"}]}),
        "data.a[0].b",
    ),
    (
        "surrogate in a data key",
        lambda c: c.send_event("e", distinct_id="U1", data={"\ud800": 1}),
        "data.'\\ud800'",
    ),
    (
        "10**400 in data",
        lambda c: c.send_event("e", to={"email": "a@b.c"}, data={"n": 10**400}),
        "data.n",
    ),
    ("2**53 in data", lambda c: c.send_event("e", distinct_id="U1", data={"n": 2**53}), "data.n"),
    (
        "a date in data",
        lambda c: c.send_event("e", distinct_id="U1", data={"when": date(2025, 1, 1)}),
        "data.when",
    ),
    (
        "data nested 5,000 deep",
        lambda c: c.send_event("e", distinct_id="U1", data=nested(5000)),
        "data",
    ),
    (
        "data that contains itself twice",
        lambda c: c.send_event("e", distinct_id="U1", data=twice_cyclic()),
        "data",
    ),
    (
        "deep data in a bulk item",
        lambda c: c.send_bulk("e", [{"distinct_id": "U1", "data": nested(MAX_DEPTH + 1)}]),
        "batch[0].data",
    ),
    (
        "NUL in a callback field",
        lambda c: c.send_event(
            "e", distinct_id="U1", callback={"custom_id": "1", "custom1": "\x00"}
        ),
        "callback.custom1",
    ),
    ("NUL in a destination", lambda c: c.send_event("e", to={"slack": "U\x00"}), "to.slack"),
    (
        "huge unknown channel",
        lambda c: c.send_event("e", to={"x" * 100_000: "1"}),
        "to.'" + "x" * 32 + "'…",
    ),
    ("$add 10**400", lambda c: c.increment_properties("U1", {"n": 10**400}), "increments.n"),
    ("$add -(2**53)", lambda c: c.increment_properties("U1", {"n": -(2**53)}), "increments.n"),
    ("$set NUL", lambda c: c.set_properties("U1", {"bio": "\x00"}), "properties.bio"),
    (
        "$set 10**400 in a list",
        lambda c: c.set_properties("U1", {"n": [1, 10**400]}),
        "properties.n[1]",
    ),
    ("$append 10**400", lambda c: c.append_to_lists("U1", {"n": 10**400}), "values.n"),
    ("$remove surrogate", lambda c: c.remove_from_lists("U1", {"t": "\ud800"}), "values.t"),
    (
        "property name with NUL",
        lambda c: c.set_properties("U1", {"a\x00": 1}),
        "properties.'a\\x00'",
    ),
    ("$unset name with NUL", lambda c: c.unset_properties("U1", ["a\x00"]), "names[0]"),
    (
        "batch $add 10**400",
        lambda c: c.batch_properties([{"distinct_id": "U1", "action": {"$add": {"n": 10**400}}}]),
        "batch[0].action.$add.n",
    ),
]


@pytest.mark.parametrize(("call", "field"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_before_any_request(
    client: FynoClient, mocked: responses.RequestsMock, call: Call, field: str
):
    with pytest.raises(FynoValidationError) as caught:
        call(client)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    # The message never echoes a huge or binary value.
    assert len(str(caught.value)) < 300
    assert str(caught.value).isprintable()
    assert len(mocked.calls) == 0
