"""The suppression domain (django_fyno/suppressions.py): Fyno first, then the mirror.

One in-process emulator serves two workspaces, FYA (the project's default) and FYB;
a CLIENT_RESOLVER puts users whose username starts with "b" in FYB.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from django_fyno import suppressions
from django_fyno.clients import Workspace, client_for
from django_fyno.exceptions import (
    FynoBadRequestError,
    FynoServerError,
    FynoValidationError,
)
from django_fyno.models import FynoProfile, FynoSuppression
from django_fyno.testing import FynoEmulatorHandle

User = get_user_model()

KEYS = {"FYA": "suppr-key-of-tenant-a", "FYB": "suppr-key-of-tenant-b"}
ENDPOINT = "https://api.fyno.io/v1"
FYA = Workspace("FYA", "test", ENDPOINT)
FYB = Workspace("FYB", "test", ENDPOINT)


def resolver(user: Any = None, *, workspace: Any = None) -> dict[str, str] | None:
    if workspace is not None:
        key = KEYS.get(workspace.wsid)
        return None if key is None else {"WSID": workspace.wsid, "API_KEY": key}
    wsid = "FYB" if user is not None and user.username.startswith("b") else "FYA"
    return {"WSID": wsid, "API_KEY": KEYS[wsid]}


@pytest.fixture
def fyno_emulator_options() -> dict[str, Any]:
    return {"workspaces": dict(KEYS)}


@pytest.fixture
def fyno(fyno_emulator: FynoEmulatorHandle, settings: Any, db: None) -> FynoEmulatorHandle:
    settings.FYNO = {
        **settings.FYNO,
        "WSID": "",
        "API_KEY": "",
        "ENDPOINT": fyno_emulator.endpoint,
        "CLIENT_RESOLVER": "tests.test_suppressions.resolver",
        # One attempt: a fault of fail_next=1 is what the call sees.
        "RETRY": {"MAX_ATTEMPTS": 1},
    }
    return fyno_emulator


def in_fyno(fyno: FynoEmulatorHandle, wsid: str) -> set[tuple[str, str, str, str]]:
    """(channel, distinct_id, destination, description) of each entry in the emulator."""
    return {
        (item["channel"], item["distinct_id"], item["destination"], item["description"])
        for item in fyno.workspace(wsid).emulator.suppressions
    }


def ids_in_fyno(fyno: FynoEmulatorHandle, wsid: str) -> set[str]:
    return {item["_id"] for item in fyno.workspace(wsid).emulator.suppressions}


def mirror(wsid: str) -> set[tuple[str, str, str, str]]:
    return {
        (row.channel, row.distinct_id, row.destination, row.reason)
        for row in FynoSuppression.objects.filter(wsid=wsid)
    }


def operations(fyno: FynoEmulatorHandle, wsid: str) -> list[str]:
    return [str(entry.operation) for entry in fyno.workspace(wsid).requests]


def seed(workspace: Workspace, channel: str, **entry: str) -> None:
    """An entry added in Fyno by someone else (not mirrored here)."""
    client_for(workspace).add_suppression(channel, **entry)


# -- refresh ---------------------------------------------------------------------------


def test_refresh_replaces_the_mirror_of_that_workspace_only(fyno: FynoEmulatorHandle) -> None:
    seed(FYA, "email", destination="a@example.com", description="bounced")
    seed(FYB, "sms", destination="+919879000001", description="DND")
    seed(FYB, "email", distinct_id="42", description="complaint")
    # Stale rows in both workspaces: FYA's must survive FYB's refresh untouched.
    FynoSuppression.objects.create(**FYA.fields(), channel="sms", destination="+10000000001")
    FynoSuppression.objects.create(**FYB.fields(), fyno_id="gone", channel="sms", destination="x")
    # Added here before Fyno's id was known: refresh fills the id, keeps who added it.
    mine = FynoSuppression.objects.create(
        **FYB.fields(), channel="email", distinct_id="42", added_by="ada"
    )

    outcome = suppressions.refresh(FYB)

    assert (outcome.entries, outcome.added, outcome.updated, outcome.removed) == (2, 1, 1, 1)
    assert mirror("FYB") == {
        ("sms", "", "+919879000001", "DND"),
        ("email", "42", "", "complaint"),
    }
    assert set(FynoSuppression.objects.filter(wsid="FYB").values_list("fyno_id", flat=True)) == (
        ids_in_fyno(fyno, "FYB")
    )
    assert mirror("FYA") == {("sms", "", "+10000000001", "")}
    mine.refresh_from_db()
    assert mine.added_by == "ada"
    assert mine.fyno_id in ids_in_fyno(fyno, "FYB")
    assert mine.refreshed_at is not None
    assert mine.raw["_id"] == mine.fyno_id
    assert "list_suppressions" not in operations(fyno, "FYA")


def test_refresh_keeps_the_mirror_when_fyno_fails(fyno: FynoEmulatorHandle) -> None:
    seed(FYA, "email", destination="a@example.com")
    FynoSuppression.objects.create(**FYA.fields(), channel="sms", destination="+10000000001")
    fyno.workspace("FYA").set_fault("list_suppressions", fail_next=1, fail_next_status=503)

    with pytest.raises(FynoServerError):
        suppressions.refresh(FYA)

    assert mirror("FYA") == {("sms", "", "+10000000001", "")}


def test_refresh_stores_what_the_database_can_hold(fyno: FynoEmulatorHandle) -> None:
    long_destination = "C" + "x" * 299  # a Slack id longer than the column
    seed(FYA, "slack", destination=long_destination)

    suppressions.refresh(FYA)

    row = FynoSuppression.objects.get(wsid="FYA")
    assert row.destination == long_destination[:255]
    assert row.raw["destination"] == long_destination  # Fyno's record, exactly


def test_known_workspaces_are_the_default_then_those_recorded(fyno: FynoEmulatorHandle) -> None:
    assert suppressions.known_workspaces() == [FYA]
    User.objects.create(username="bob")  # a FYB profile mirror
    FynoSuppression.objects.create(wsid="FYC", version="live", endpoint=ENDPOINT, channel="sms")
    # Suppressions have no version: FYA's live and test share one list.
    FynoProfile.objects.create(wsid="FYA", version="live", endpoint=ENDPOINT)

    assert suppressions.known_workspaces() == [FYA, Workspace("FYC", "live", ENDPOINT), FYB]


def test_known_workspaces_without_a_default(fyno: FynoEmulatorHandle, settings: Any) -> None:
    settings.FYNO = {**settings.FYNO, "CLIENT_RESOLVER": None, "WSID": ""}
    FynoSuppression.objects.create(**FYB.fields(), channel="sms")

    assert suppressions.known_workspaces() == [FYB]


# -- add --------------------------------------------------------------------------------


def test_add_by_user_goes_to_the_users_workspace_with_their_distinct_id(
    fyno: FynoEmulatorHandle,
) -> None:
    bob = User.objects.create(username="bob")

    row = suppressions.add_suppression("email", user=bob, reason="asked", added_by="staff")

    assert in_fyno(fyno, "FYB") == {("email", str(bob.pk), "", "asked")}
    assert in_fyno(fyno, "FYA") == set()
    row.refresh_from_db()
    assert (row.wsid, row.channel, row.distinct_id, row.destination, row.reason) == (
        "FYB",
        "email",
        str(bob.pk),
        "",
        "asked",
    )
    assert row.added_by == "staff"
    assert row.fyno_id in ids_in_fyno(fyno, "FYB")  # re-read after the add
    assert row.fyno_created_at


def test_add_by_destination_goes_to_the_default_workspace_or_the_one_chosen(
    fyno: FynoEmulatorHandle,
) -> None:
    suppressions.add_suppression("sms", destination="+919879000001", added_by="staff")
    suppressions.add_suppression(
        "email", destination="b@example.com", workspace=FYB, added_by="staff"
    )

    assert in_fyno(fyno, "FYA") == {("sms", "", "+919879000001", "")}
    assert in_fyno(fyno, "FYB") == {("email", "", "b@example.com", "")}
    assert mirror("FYA") == {("sms", "", "+919879000001", "")}
    assert mirror("FYB") == {("email", "", "b@example.com", "")}


def test_adding_the_same_entry_again_keeps_one_row(fyno: FynoEmulatorHandle) -> None:
    first = suppressions.add_suppression("sms", destination="+919879000001", added_by="ada")
    again = suppressions.add_suppression(
        "sms", destination="+919879000001", reason="DND", added_by="bea"
    )

    assert again.pk == first.pk
    assert FynoSuppression.objects.get().added_by == "bea"
    assert in_fyno(fyno, "FYA") == {("sms", "", "+919879000001", "DND")}


def test_a_refused_add_saves_nothing(fyno: FynoEmulatorHandle) -> None:
    with pytest.raises(FynoBadRequestError) as refused:
        suppressions.add_suppression("sms", destination="not-a-number", added_by="staff")

    assert refused.value.message == "Invalid destination for channel sms"
    assert in_fyno(fyno, "FYA") == set()
    assert not FynoSuppression.objects.exists()


def test_an_add_fyno_could_not_take_saves_nothing(fyno: FynoEmulatorHandle) -> None:
    fyno.workspace("FYA").set_fault("add_suppression", fail_next=1, fail_next_status=503)

    with pytest.raises(FynoServerError):
        suppressions.add_suppression("sms", destination="+919879000001")

    assert in_fyno(fyno, "FYA") == set()
    assert not FynoSuppression.objects.exists()


def test_an_add_whose_list_cannot_be_read_is_stored_as_sent_then_refreshed(
    fyno: FynoEmulatorHandle,
) -> None:
    fyno.workspace("FYA").set_fault("list_suppressions", fail_next=1, fail_next_status=503)

    row = suppressions.add_suppression("sms", destination="+919879000001", added_by="ada")

    assert row.fyno_id == ""
    assert in_fyno(fyno, "FYA") == {("sms", "", "+919879000001", "")}
    suppressions.refresh(FYA)
    row.refresh_from_db()
    assert row.fyno_id in ids_in_fyno(fyno, "FYA")
    assert row.added_by == "ada"
    assert FynoSuppression.objects.count() == 1


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"channel": "fax", "destination": "+919879000001"}, "channel"),
        ({"channel": "sms"}, "user"),
        ({"channel": "sms", "destination": "+919879000001", "user": "bob"}, "user"),
        ({"channel": "sms", "user": "bob", "workspace": FYA}, "workspace"),
        ({"channel": "slack", "destination": "C" * 256}, "destination"),
    ],
)
def test_plan_add_refuses_before_any_request(
    fyno: FynoEmulatorHandle, arguments: dict[str, Any], field: str
) -> None:
    if arguments.get("user") == "bob":
        arguments = {**arguments, "user": User.objects.create(username="bob")}

    with pytest.raises(FynoValidationError) as refused:
        suppressions.plan_add(**arguments)

    assert refused.value.field == field
    assert fyno.requests == []
    assert fyno.workspace("FYB").requests == []


# -- remove -------------------------------------------------------------------------------


def test_remove_deletes_in_fyno_then_in_the_mirror(fyno: FynoEmulatorHandle) -> None:
    row = suppressions.add_suppression("sms", destination="+919879000001")
    other = suppressions.add_suppression("email", destination="a@example.com")

    outcome = suppressions.remove_suppression(row)

    assert [removed.pk for removed in outcome.removed] == [row.pk]
    assert not outcome.already_gone
    assert in_fyno(fyno, "FYA") == {("email", "", "a@example.com", "")}
    assert list(FynoSuppression.objects.values_list("pk", flat=True)) == [other.pk]
    delete = [e for e in fyno.workspace("FYA").requests if e.operation == "delete_suppression"]
    assert [entry.query for entry in delete] == [{"_id": row.fyno_id}]


def test_remove_keeps_the_row_when_fyno_fails(fyno: FynoEmulatorHandle) -> None:
    row = suppressions.add_suppression("sms", destination="+919879000001")
    fyno.workspace("FYA").set_fault("delete_suppression", fail_next=1, fail_next_status=503)

    with pytest.raises(FynoServerError):
        suppressions.remove_suppression(row)

    assert FynoSuppression.objects.filter(pk=row.pk).exists()
    assert in_fyno(fyno, "FYA") == {("sms", "", "+919879000001", "")}


def test_remove_without_a_fyno_id_looks_it_up_and_deletes_only_that_entry(
    fyno: FynoEmulatorHandle,
) -> None:
    # Both channels of one destination: deleting "by destination" would take both.
    seed(FYA, "sms", destination="+919879000001")
    seed(FYA, "whatsapp", destination="+919879000001")
    sms = FynoSuppression.objects.create(**FYA.fields(), channel="sms", destination="+919879000001")
    whatsapp = FynoSuppression.objects.create(
        **FYA.fields(), channel="whatsapp", destination="+919879000001"
    )

    outcome = suppressions.remove_suppression(sms)

    assert [removed.pk for removed in outcome.removed] == [sms.pk]
    assert in_fyno(fyno, "FYA") == {("whatsapp", "", "+919879000001", "")}
    assert list(FynoSuppression.objects.values_list("pk", flat=True)) == [whatsapp.pk]


def test_remove_of_an_entry_fyno_no_longer_has_only_clears_the_mirror(
    fyno: FynoEmulatorHandle,
) -> None:
    gone = FynoSuppression.objects.create(
        **FYA.fields(), fyno_id="0123456789abcdef01234567", channel="sms", destination="+1555"
    )
    unknown = FynoSuppression.objects.create(**FYA.fields(), channel="sms", destination="+1666")

    assert suppressions.remove_suppression(gone).already_gone
    assert suppressions.remove_suppression(unknown).already_gone
    assert not FynoSuppression.objects.exists()


def test_remove_goes_to_the_rows_workspace(fyno: FynoEmulatorHandle) -> None:
    row = suppressions.add_suppression("sms", destination="+919879000001", workspace=FYB)
    suppressions.add_suppression("sms", destination="+919879000001")  # the same, in FYA

    suppressions.remove_suppression(row)

    assert in_fyno(fyno, "FYB") == set()
    assert in_fyno(fyno, "FYA") == {("sms", "", "+919879000001", "")}
    assert mirror("FYA") == {("sms", "", "+919879000001", "")}
