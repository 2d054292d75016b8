"""User properties: creation, type rules, lists, batch."""

from __future__ import annotations

from typing import Any

import pytest

from django_fyno.emulator.app import Emulator
from tests.emulator.wsgi import Api


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(seed=3)


@pytest.fixture
def api(emulator: Emulator) -> Api:
    return Api(emulator)


def _props(emulator: Emulator, distinct_id: str = "U1") -> dict[str, Any]:
    profile = emulator.profile("live", distinct_id)
    assert profile is not None
    return dict(profile["properties"])


def _write(api: Api, path: str, key: str, value: Any, distinct_id: str = "U1") -> None:
    reply = api.post(f"profiles/properties/{path}", {"distinct_id": distinct_id, key: value})
    assert reply.status == 202, reply.json
    assert set(reply.json) == {"request_id"}


@pytest.mark.parametrize(
    ("path", "key", "value"),
    [
        ("set", "$set", {"a": 1}),
        ("set-once", "$once", {"a": 1}),
        ("numerical-add", "$add", {"a": 1}),
        ("list-append", "$append", {"a": 1}),
    ],
)
def test_writes_create_unknown_users(
    api: Api, emulator: Emulator, path: str, key: str, value: Any
) -> None:
    _write(api, path, key, value)
    assert emulator.profile("live", "U1") is not None


def test_remove_and_unset_ignore_unknown_users(api: Api, emulator: Emulator) -> None:
    _write(api, "list-remove", "$remove", {"a": 1})
    _write(api, "unset", "$unset", ["a"])
    assert emulator.profiles("live") == {}


def test_first_write_fixes_the_type_and_wrong_types_are_ignored(
    api: Api, emulator: Emulator
) -> None:
    _write(api, "set", "$set", {"n": 1, "s": "x", "b": True, "d": "2020-10-01", "l": [1, 1, 2]})
    _write(api, "set", "$set", {"n": "one", "s": 5, "b": 0, "d": "not a date", "l": "x"})
    assert _props(emulator) == {"n": 1, "s": "x", "b": True, "d": "2020-10-01", "l": [1, 2]}
    _write(api, "set", "$set", {"n": 2.5, "d": "2021-01-01T18:30:00.000+05:30", "s": "2020-01-01"})
    assert _props(emulator)["n"] == 2.5
    assert _props(emulator)["d"] == "2021-01-01T18:30:00.000+05:30"
    assert _props(emulator)["s"] == "2020-01-01"  # a date is a string too


def test_long_strings_are_dropped_silently(api: Api, emulator: Emulator) -> None:
    _write(api, "set", "$set", {"ok": "x" * 255, "long": "x" * 256})
    assert _props(emulator) == {"ok": "x" * 255}


def test_once_writes_only_unset_properties(api: Api, emulator: Emulator) -> None:
    _write(api, "set", "$set", {"a": 1})
    _write(api, "set-once", "$once", {"a": 2, "b": 3})
    assert _props(emulator) == {"a": 1, "b": 3}


def test_add_makes_numbers_and_ignores_other_types(api: Api, emulator: Emulator) -> None:
    _write(api, "set", "$set", {"name": "x"})
    _write(api, "numerical-add", "$add", {"count": 5, "name": 1})
    _write(api, "numerical-add", "$add", {"count": -2})
    assert _props(emulator) == {"name": "x", "count": 3}


def test_append_makes_unique_lists_and_remove_works_on_lists(api: Api, emulator: Emulator) -> None:
    _write(api, "list-append", "$append", {"tags": 245})
    _write(api, "list-append", "$append", {"tags": 245})
    _write(api, "list-append", "$append", {"tags": "b"})
    assert _props(emulator)["tags"] == [245, "b"]
    _write(api, "set", "$set", {"plain": "text"})
    _write(api, "list-append", "$append", {"plain": "more"})
    _write(api, "list-remove", "$remove", {"tags": 245, "plain": "text", "ghost": 1})
    assert _props(emulator) == {"tags": ["b"], "plain": "text"}


def test_unset_removes_any_type_and_empty_unset_is_400(api: Api, emulator: Emulator) -> None:
    _write(api, "set", "$set", {"a": 1, "b": "x", "c": [1]})
    _write(api, "unset", "$unset", ["a", "c", "ghost"])
    assert _props(emulator) == {"b": "x"}
    empty = api.post("profiles/properties/unset", {"distinct_id": "U1", "$unset": []})
    assert empty.status == 400
    assert empty.message == "$unset channel should have atleast one item in array"


def test_object_values_are_400_with_fyno_message(api: Api) -> None:
    reply = api.post("profiles/properties/set", {"distinct_id": "U1", "$set": {"o": {"x": 1}}})
    assert reply.status == 400
    assert reply.message == "$set has object/keys that is not allowed"
    add = api.post("profiles/properties/numerical-add", {"distinct_id": "U1", "$add": {"n": "1"}})
    assert add.message == "$add has object/keys that is not allowed"


def test_batch_applies_each_action_in_order(api: Api, emulator: Emulator) -> None:
    reply = api.post(
        "profiles/properties/batch",
        {
            "batch": [
                {"distinct_id": "U1", "action": {"$set": {"n": 1}, "$add": {"n": 2}}},
                {"distinct_id": "U2", "action": {"$append": {"l": "a"}, "$unset": ["zz"]}},
            ]
        },
    )
    assert reply.status == 202
    assert reply.json["batch"] == [{"$set": "ok", "$add": "ok"}, {"$append": "ok", "$unset": "ok"}]
    assert _props(emulator, "U1") == {"n": 3}
    assert _props(emulator, "U2") == {"l": ["a"]}
