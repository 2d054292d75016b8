"""Hostile input to notify() and properties(): refused as FynoValidationError, before any
query, with the caller's transaction intact, on SQLite and on PostgreSQL alike.

PostgreSQL refuses NUL characters and lone surrogates (raising a DataError that
aborts the caller's transaction) where SQLite stores them; Python's ``float()``
overflows on ``10**400`` and its recursion limit on data nested 5,000 deep.
None of that may reach the caller: each case is a FynoValidationError whose
``field`` says where, whose text never echoes the value, and after which the
caller's own write in the same ``atomic()`` block commits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from django_fyno import notify, properties, sync
from django_fyno.adapter import ProfileAdapter
from django_fyno.client.validation import MAX_DEPTH
from django_fyno.exceptions import FynoValidationError
from django_fyno.models import FynoOutbox, FynoProfile
from tests.conftest import make_user

User = get_user_model()

NUL = "\x00"
SURROGATE = "\ud800"
HUGE = 10**400


def nested(depth: int, leaf: Any = 1) -> dict[str, Any]:
    """``{"a": {"a": … leaf}}``: ``depth`` mappings, built without recursion."""
    value: Any = leaf
    for _ in range(depth):
        value = {"a": value}
    result: dict[str, Any] = value
    return result


def nested_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.fixture
def scheduled(monkeypatch: pytest.MonkeyPatch, settings: Any) -> list[str]:
    """Delivery requests; nothing here talks to Fyno (profile syncs stay pending too)."""
    settings.FYNO = {**settings.FYNO, "TASK_MODE": "off"}
    calls: list[str] = []
    monkeypatch.setattr(
        "django_fyno.outbox.schedule_delivery",
        lambda workspaces, using="default": calls.append(using),
    )
    return calls


Call = Callable[[], Any]

NOTIFY_CASES: dict[str, tuple[Call, str]] = {
    # NUL characters
    "NUL in a data value": (lambda: notify("welcome", "42", {"note": f"a{NUL}b"}), "data.note"),
    "NUL in a data key": (lambda: notify("welcome", "42", {f"k{NUL}": 1}), "data.'k\\x00'"),
    "NUL deep in data": (
        lambda: notify("welcome", "42", {"items": [{"x": 1}, {"x": NUL}]}),
        "data.items[1].x",
    ),
    "NUL in the distinct id": (lambda: notify("welcome", f"4{NUL}2"), "to"),
    "NUL in a fan-out distinct id": (lambda: notify("welcome", ["7", f"8{NUL}"]), "to[1]"),
    "NUL in an email destination": (
        lambda: notify("welcome", {"email": f"a{NUL}@example.com"}),
        "to.email",
    ),
    "NUL in a slack destination": (
        lambda: notify("welcome", "42", destinations={"slack": f"U{NUL}1"}),
        "destinations.slack",
    ),
    "NUL in the event name": (lambda: notify(f"wel{NUL}come", "42"), "event"),
    "NUL in callback.custom1": (
        lambda: notify("welcome", "42", callback={"custom1": f"x{NUL}"}),
        "callback.custom1",
    ),
    "NUL in callback.allowlist_url": (
        lambda: notify("welcome", "42", callback={"allowlist_url": ["ok", NUL]}),
        "callback.allowlist_url[1]",
    ),
    "NUL in the dedupe key": (lambda: notify("welcome", "42", dedupe_key=f"k{NUL}"), "dedupe_key"),
    # Lone surrogates (no UTF-8 encoding exists for them)
    "surrogate in a data value": (
        lambda: notify("welcome", "42", {"note": f"a{SURROGATE}"}),
        "data.note",
    ),
    "surrogate in a data key": (
        lambda: notify("welcome", "42", {SURROGATE: 1}),
        "data.'\\ud800'",
    ),
    "surrogate in a list in data": (
        lambda: notify("welcome", "42", {"tags": ["ok", "\udfff"]}),
        "data.tags[1]",
    ),
    "surrogate in the event name": (lambda: notify(f"e{SURROGATE}", "42"), "event"),
    "surrogate in the distinct id": (lambda: notify("welcome", SURROGATE), "to"),
    "surrogate in the dedupe key": (
        lambda: notify("welcome", "42", dedupe_key=SURROGATE),
        "dedupe_key",
    ),
    "surrogate in callback.custom2": (
        lambda: notify("welcome", "42", callback={"custom2": SURROGATE}),
        "callback.custom2",
    ),
    # Numbers JSON (and Fyno) cannot hold exactly, or that overflow a float
    "10**400 in data": (lambda: notify("welcome", "42", {"n": HUGE}), "data.n"),
    "-10**400 in a list in data": (lambda: notify("welcome", "42", {"n": [1, -HUGE]}), "data.n[1]"),
    "an int of 5,000 digits in data": (
        lambda: notify("welcome", "42", {"n": 10**5000}),
        "data.n",
    ),
    "2**53 in data": (lambda: notify("welcome", "42", {"n": 2**53}), "data.n"),
    "infinity deep in data": (
        lambda: notify("welcome", "42", {"a": [{"b": float("inf")}]}),
        "data.a[0].b",
    ),
    # Nesting
    "data nested 5,000 deep": (lambda: notify("welcome", "42", nested(5000)), "data"),
    "lists nested 5,000 deep": (lambda: notify("welcome", "42", {"l": nested_list(5000)}), "data"),
    "data nested one level too deep": (
        lambda: notify("welcome", "42", nested(MAX_DEPTH + 1)),
        "data",
    ),
    # Values json cannot write, deep down
    "a set deep in data": (lambda: notify("welcome", "42", {"a": {"b": {1, 2}}}), "data.a.b"),
    # Huge or binary values never come back in the message
    "a huge unknown channel": (
        lambda: notify("welcome", {"x" * 100_000: "a@example.com"}),
        "to.'" + "x" * 32 + "'…",
    ),
    "a huge unknown callback key": (
        lambda: notify("welcome", "42", callback={"y" * 100_000: "1"}),
        "callback",
    ),
    "many recipients, one with NUL": (
        lambda: notify("digest", [str(n) for n in range(50)] + [NUL], dedupe_key="d"),
        "to[50]",
    ),
}

PROPERTY_CASES: dict[str, tuple[Call, str]] = {
    "add 10**400": (lambda: properties("42").add("n", HUGE), "$add.n"),
    "add -10**400": (lambda: properties("42").add(n=-HUGE), "$add.n"),
    "add 2**53": (lambda: properties("42").add("n", 2**53), "$add.n"),
    "add an int of 5,000 digits": (lambda: properties("42").add("n", 10**5000), "$add.n"),
    "set 10**400": (lambda: properties("42").set("n", HUGE), "$set.n"),
    "set a list holding 10**400": (lambda: properties("42").set("n", [1, HUGE]), "$set.n[1]"),
    "set_once 10**400": (lambda: properties("42").set_once("n", HUGE), "$once.n"),
    "append 10**400": (lambda: properties("42").append("n", HUGE), "$append.n"),
    "remove 10**400": (lambda: properties("42").remove("n", HUGE), "$remove.n"),
    "set a NUL string": (lambda: properties("42").set("bio", f"a{NUL}b"), "$set.bio"),
    "set a surrogate string": (lambda: properties("42").set("bio", SURROGATE), "$set.bio"),
    "set a list with NUL": (lambda: properties("42").set("tags", ["a", NUL]), "$set.tags[1]"),
    "append a NUL string": (lambda: properties("42").append("tags", NUL), "$append.tags"),
    "remove a surrogate string": (
        lambda: properties("42").remove("tags", SURROGATE),
        "$remove.tags",
    ),
    "a property name with NUL": (lambda: properties("42").set(f"p{NUL}", 1), "$set.'p\\x00'"),
    "a property name with a surrogate": (
        lambda: properties("42").add(SURROGATE, 1),
        "$add.'\\ud800'",
    ),
    "unset a name with NUL": (lambda: properties("42").unset("ok", NUL), "$unset[1]"),
    "a distinct id with NUL": (lambda: properties(f"4{NUL}2").add("n", 1), "distinct_id"),
    "a distinct id with a surrogate": (lambda: properties(SURROGATE), "distinct_id"),
}


def assert_refused_safely(error: FynoValidationError, field: str) -> None:
    assert error.field == field
    text = str(error)
    # The message names the field and the problem, never the (huge or binary) value.
    assert len(text) < 250, text[:300]
    assert text.isprintable(), ascii(text[:300])


def _refused_in_the_callers_transaction(call: Call, django_assert_num_queries: Any) -> Any:
    with transaction.atomic():
        make_user("before")  # the caller's own write, in the same transaction
        with django_assert_num_queries(0), pytest.raises(FynoValidationError) as caught:
            call()
        make_user("after")  # the transaction is still usable
    return caught.value


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("call", "field"), NOTIFY_CASES.values(), ids=list(NOTIFY_CASES.keys()))
def test_notify_refuses_hostile_input_before_any_query(
    call: Call, field: str, scheduled: list[str], django_assert_num_queries: Any
) -> None:
    error = _refused_in_the_callers_transaction(call, django_assert_num_queries)
    assert_refused_safely(error, field)
    # The caller's transaction committed, with its own writes and nothing of notify's.
    assert sorted(User.objects.values_list(User.USERNAME_FIELD, flat=True)) == [
        "after@example.com",
        "before@example.com",
    ]
    assert FynoOutbox.objects.count() == 0
    assert scheduled == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("call", "field"), PROPERTY_CASES.values(), ids=list(PROPERTY_CASES.keys())
)
def test_properties_refuse_hostile_input_before_any_query(
    call: Call, field: str, scheduled: list[str], django_assert_num_queries: Any
) -> None:
    error = _refused_in_the_callers_transaction(call, django_assert_num_queries)
    assert_refused_safely(error, field)
    assert User.objects.count() == 2
    assert FynoOutbox.objects.count() == 0
    assert scheduled == []


@pytest.mark.django_db(transaction=True)
def test_a_user_whose_adapter_id_holds_nul_is_refused_in_the_callers_transaction(
    scheduled: list[str], django_assert_num_queries: Any, settings: Any
) -> None:
    settings.FYNO = {**settings.FYNO, "PROFILE_ADAPTER": "tests.test_hostile_input.NulIdAdapter"}
    user = make_user("ada")
    error = _refused_in_the_callers_transaction(
        lambda: notify("welcome", user), django_assert_num_queries
    )
    assert_refused_safely(error, "to")
    assert User.objects.count() == 3
    assert FynoOutbox.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_the_bounds_are_exact_and_what_passes_is_stored_as_given(scheduled: list[str]) -> None:
    limit = 2**53 - 1
    data = {"max": limit, "min": -limit, "text": "é😀\t\n", "deep": nested(MAX_DEPTH - 1)}
    with transaction.atomic():
        row = notify("welcome", "42", data)
        updates = properties("42").add("n", limit).set("bio", "😀" * 255)
        for beyond in (
            lambda: notify("welcome", "42", {**data, "max": limit + 1}),
            lambda: notify("welcome", "42", {**data, "deep": nested(MAX_DEPTH)}),
            lambda: updates.add("n", -limit - 1),
        ):
            with pytest.raises(FynoValidationError):
                beyond()
    row.refresh_from_db()
    assert row.payload == data
    assert [r.payload for r in FynoOutbox.objects.order_by("pk")] == [
        data,
        {"n": limit},
        {"bio": "😀" * 255},
    ]


class NulIdAdapter(ProfileAdapter):
    """An adapter whose get_distinct_id() returns a NUL character."""

    def get_distinct_id(self, user: Any) -> str:
        return f"{user.pk}{NUL}"


class HostileProfileAdapter(ProfileAdapter):
    """Raw values a project's user data may hold; each must be dropped, not crash the sync."""

    def get_name(self, user: Any) -> str:
        return f"Ada{NUL}"

    def get_channels(self, user: Any) -> dict[str, str]:
        return {"email": "ada@example.com", "slack": f"U{NUL}1"}

    def get_properties(self, user: Any) -> dict[str, Any]:
        return {"plan": "pro", "big": HUGE, "bio": f"a{NUL}", "tags": ["x", SURROGATE]}


@pytest.mark.django_db
def test_a_profile_with_hostile_values_syncs_without_them(
    fyno_emulator: Any, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.FYNO = {
        **settings.FYNO,
        "PROFILE_ADAPTER": "tests.test_hostile_input.HostileProfileAdapter",
        "TASK_MODE": "off",
    }
    user = make_user("ada")
    caplog.set_level(logging.WARNING, logger="django_fyno.adapter")
    assert sync.sync_profile(user.pk) is sync.SyncOutcome.CREATED
    row = FynoProfile.objects.get(user=user)
    assert row.state == FynoProfile.State.SYNCED
    assert row.channels == {"email": "ada@example.com"}
    profile = fyno_emulator.emulator.profile("test", str(user.pk))
    assert profile["channel"] == {"email": "ada@example.com"}
    assert profile["name"] == ""
    assert profile["properties"] == {"plan": "pro"}
    # One warning per dropped field, naming it, never showing its value.
    records = [r for r in caplog.records if r.name == "django_fyno.adapter"]
    assert sorted(r.fyno_field for r in records) == [  # type: ignore[attr-defined]
        "channel 'slack'",
        "name",
        "property 'big'",
        "property 'bio'",
        "property 'tags'",
    ]
    for record in records:
        message = record.getMessage()
        assert message.isprintable(), ascii(message)
        assert len(message) < 200, message
