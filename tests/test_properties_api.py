"""properties(): one outbox row per operation, validated before anything is stored."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from django_fyno import properties
from django_fyno.clients import default_workspace
from django_fyno.exceptions import FynoValidationError
from django_fyno.models import FynoOutbox
from django_fyno.notifications import PropertyUpdates
from tests.conftest import make_user

User = get_user_model()


@pytest.fixture
def scheduled(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(
        "django_fyno.outbox.schedule_delivery",
        lambda workspaces, using="default": calls.append(using),
    )
    return calls


def stored() -> list[tuple[str, str, str, Any]]:
    return [
        (row.kind, row.event, row.distinct_id, row.payload)
        for row in FynoOutbox.objects.order_by("pk")
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("call", "operation", "payload"),
    [
        (lambda p: p.set("plan", "pro"), "$set", {"plan": "pro"}),
        (lambda p: p.set(plan="pro", seats=3), "$set", {"plan": "pro", "seats": 3}),
        (lambda p: p.set("tags", ("a", "b")), "$set", {"tags": ["a", "b"]}),
        (
            lambda p: p.set("plan-type", "pro", beta=True),
            "$set",
            {"plan-type": "pro", "beta": True},
        ),
        (lambda p: p.set_once("signup", "2025-01-31"), "$once", {"signup": "2025-01-31"}),
        (lambda p: p.set_once(source="ads"), "$once", {"source": "ads"}),
        (lambda p: p.add("logins", 1), "$add", {"logins": 1}),
        (lambda p: p.add(credits=-2.5), "$add", {"credits": -2.5}),
        (lambda p: p.append("badges", "early"), "$append", {"badges": "early"}),
        (lambda p: p.append(scores=10), "$append", {"scores": 10}),
        (lambda p: p.remove("badges", "early"), "$remove", {"badges": "early"}),
        (lambda p: p.unset("plan", "seats", "plan"), "$unset", {"names": ["plan", "seats"]}),
    ],
)
def test_each_operation_writes_one_row(
    call: Any, operation: str, payload: dict[str, Any], scheduled: list[str]
) -> None:
    updates = properties("42")
    assert call(updates) is updates
    assert stored() == [("property", operation, "42", payload)]
    assert updates.rows == list(FynoOutbox.objects.all())
    assert updates.rows[0].state == FynoOutbox.State.PENDING
    assert scheduled == ["default"]


@pytest.mark.django_db
def test_calls_chain_and_a_user_is_resolved_through_the_adapter(
    django_assert_num_queries: Any, scheduled: list[str]
) -> None:
    user = make_user("ada")
    # One INSERT per operation, nothing else.
    with django_assert_num_queries(3):
        properties(user).add("logins", 1).append("devices", "ios").unset("trial")
    did = str(user.pk)
    assert stored() == [
        ("property", "$add", did, {"logins": 1}),
        ("property", "$append", did, {"devices": "ios"}),
        ("property", "$unset", did, {"names": ["trial"]}),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda p: p.set("bio", "x" * 256), "$set.bio"),
        (lambda p: p.set("tags", ["ok", "x" * 256]), "$set.tags[1]"),
        (lambda p: p.set("plan", None), "$set.plan"),
        (lambda p: p.set("meta", {"a": 1}), "$set.meta"),
        (lambda p: p.set("ratio", float("inf")), "$set.ratio"),
        (lambda p: p.set(), "$set"),
        (lambda p: p.set("plan"), "$set.plan"),
        (lambda p: p.set("plan", "a", plan="b"), "$set.plan"),
        (lambda p: p.set("", "a"), "$set."),
        (lambda p: p.set_once("bio", "x" * 256), "$once.bio"),
        (lambda p: p.add("logins", "1"), "$add.logins"),
        (lambda p: p.add("logins", True), "$add.logins"),
        (lambda p: p.add(), "$add"),
        (lambda p: p.append("badges", ["a", "b"]), "$append.badges"),
        (lambda p: p.append("badges", True), "$append.badges"),
        (lambda p: p.append("badges", "x" * 256), "$append.badges"),
        (lambda p: p.remove("badges", ["a"]), "$remove.badges"),
        (lambda p: p.unset(), "$unset"),
        (lambda p: p.unset(""), "$unset[0]"),
    ],
)
def test_invalid_values_raise_and_store_nothing(
    call: Any, field: str, scheduled: list[str]
) -> None:
    with pytest.raises(FynoValidationError) as caught:
        call(properties("42"))
    assert caught.value.field == field
    assert FynoOutbox.objects.count() == 0
    assert scheduled == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda p: p.set(["plan"], "pro"), "$set.<list>"),
        (lambda p: p.add({"n": 1}, 1), "$add.<dict>"),
        (lambda p: p.set("x" * 100_000), "$set.'" + "x" * 32 + "'…"),
        (lambda p: p.append("t\x00", "a", **{"t\x00": "b"}), "$append.'t\\x00'"),
    ],
    ids=["a list as the name", "a dict as the name", "a huge name", "a NUL name twice"],
)
def test_a_name_that_is_no_property_name_is_refused_without_showing_it(
    call: Any, field: str, scheduled: list[str]
) -> None:
    with pytest.raises(FynoValidationError) as caught:
        call(properties("42"))
    assert caught.value.field == field
    assert len(str(caught.value)) < 200
    assert str(caught.value).isprintable()
    assert FynoOutbox.objects.count() == 0


@pytest.mark.django_db
def test_a_failed_call_keeps_the_rows_already_written(scheduled: list[str]) -> None:
    updates = properties("42").add("logins", 1)
    with pytest.raises(FynoValidationError):
        updates.add("logins", "one")
    assert [row.event for row in updates.rows] == ["$add"]
    assert FynoOutbox.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("recipient", ["", "  ", None, 42])
def test_unknown_profiles_are_refused(recipient: Any) -> None:
    with pytest.raises(FynoValidationError) as caught:
        properties(recipient)
    assert caught.value.field == "distinct_id"


@pytest.mark.django_db
def test_an_unsaved_user_is_refused() -> None:
    with pytest.raises(FynoValidationError, match="unsaved user"):
        properties(make_user("ghost", save=False))


def test_repr_names_the_profile() -> None:
    updates = PropertyUpdates("42", "default", default_workspace())
    assert repr(updates) == "<PropertyUpdates for '42'>"
