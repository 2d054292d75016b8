"""Bad input fails locally, names its field, and sends nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import responses

from django_fyno.client import FynoClient, FynoValidationError

Call = Callable[[FynoClient], Any]

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
]


@pytest.mark.parametrize(("call", "field"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_refused_before_any_request(
    client: FynoClient, mocked: responses.RequestsMock, call: Call, field: str
):
    with pytest.raises(FynoValidationError) as caught:
        call(client)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert len(mocked.calls) == 0
