"""reconcile.compare_profiles and ``manage.py fyno_reconcile`` against the emulator.

What we would send, what Fyno last accepted and what Fyno has now, field by field;
every request in the row's own workspace. Runs with either user model
(``--ds=tests.settings_custom_user`` too).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.management import CommandError, call_command
from django.test import override_settings

from django_fyno import reconcile, sync
from django_fyno.adapter import ProfileAdapter
from django_fyno.clients import Workspace, client_for, get_client
from django_fyno.conf import fyno_settings
from django_fyno.models import FynoProfile
from django_fyno.receivers import skip_sync
from django_fyno.reconcile import ABSENT, Drift
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

KEYS = {"FYA": "key-of-tenant-a", "FYB": "key-of-tenant-b"}
TWO_WORKSPACES = {"workspaces": dict(KEYS)}


def fyno(**extra: Any) -> dict[str, Any]:
    """The test settings; the client does not retry by itself (a 503 is seen at once)."""
    return {**settings.FYNO, "RETRY": {"MAX_ATTEMPTS": 1}, **extra}


@pytest.fixture(autouse=True)
def _settings() -> Iterator[None]:
    caches[fyno_settings.OUTBOX_CACHE].clear()  # no pause inherited from another test
    with override_settings(FYNO=fyno()):
        yield
    caches[fyno_settings.OUTBOX_CACHE].clear()


def email_of(user: Any) -> str:
    return str(getattr(user, user.get_email_field_name()))


def new_user(name: str, *, synced: bool = True) -> Any:
    """A user (of either user model) with an email; synced to Fyno unless told not to."""
    user = make_user(name, save=False)
    setattr(user, user.get_email_field_name(), f"{name}@example.com")
    with skip_sync(user):
        user.save()
    if synced:
        assert sync.sync_profile(user.pk) in (sync.SyncOutcome.CREATED, sync.SyncOutcome.UPDATED)
    return user


def row_of(user: Any) -> FynoProfile:
    return FynoProfile.objects.select_related("user").get(user_id=user.pk)


def compare(*rows: FynoProfile, **options: Any) -> list[reconcile.Comparison]:
    return reconcile.compare_profiles(list(rows), **options)


def operations(handle: Any) -> list[str]:
    return [entry.operation for entry in handle.emulator.request_log]


def by_name(comparison: reconcile.Comparison) -> dict[str, reconcile.FieldComparison]:
    return {item.name: item for item in comparison.fields}


# -- compare_profiles ---------------------------------------------------------------------


def test_a_synced_profile_is_in_sync_field_by_field(fyno_emulator: Any) -> None:
    ada = new_user("ada")
    fyno_emulator.emulator.clear_request_log()

    [comparison] = compare(row_of(ada))

    assert comparison.drift is Drift.IN_SYNC
    assert comparison.differences == []
    assert comparison.pending is False
    fields = by_name(comparison)
    assert fields["channels.email"].ours == "ada@example.com"
    assert fields["channels.email"].theirs == "ada@example.com"
    assert fields["status"].theirs == 1
    assert fields["distinct_id"].theirs == str(ada.pk)
    # One GET, for this profile, and nothing written.
    assert [(e.operation, e.path) for e in fyno_emulator.emulator.request_log] == [
        ("get_profile", f"/FYTEST/test/profiles/{ada.pk}")
    ]


def test_a_field_edited_in_fyno_is_drift(fyno_emulator: Any) -> None:
    ada = new_user("ada")
    get_client().update_channels(str(ada.pk), {"email": "eve@example.com"})
    before = FynoProfile.objects.values().get(user_id=ada.pk)

    [comparison] = compare(row_of(ada))

    assert comparison.drift is Drift.DIFFERS
    [email] = comparison.drifted_fields
    assert (email.name, email.ours, email.accepted, email.theirs) == (
        "channels.email",
        "ada@example.com",
        "ada@example.com",
        "eve@example.com",
    )
    assert email.drift_kind == "differs"
    assert comparison.differences == [email]
    assert FynoProfile.objects.values().get(user_id=ada.pk) == before  # nothing written


def test_a_change_made_here_is_pending_not_drift(fyno_emulator: Any) -> None:
    ada = new_user("ada")
    setattr(ada, ada.get_email_field_name(), "ada@new.example.com")
    with skip_sync(ada):
        ada.save()

    [comparison] = compare(row_of(ada))

    assert comparison.drift is Drift.IN_SYNC
    assert comparison.pending is True
    [email] = comparison.differences
    assert (email.ours, email.theirs, email.drifted) == (
        "ada@new.example.com",
        "ada@example.com",
        False,
    )


def test_a_channel_fyno_lost_and_one_it_gained_are_missing_and_extra(fyno_emulator: Any) -> None:
    ada = new_user("ada")
    row = row_of(ada)
    # As if we had sent sms once: Fyno lost it, and gained a whatsapp we never sent.
    FynoProfile.objects.filter(pk=row.pk).update(
        payload={**row.payload, "channels": {"email": "ada@example.com", "sms": "+14155550100"}}
    )
    row.refresh_from_db()
    client = get_client()
    client.update_channels(str(ada.pk), {"whatsapp": "+14155550199"})

    [comparison] = compare(row)

    fields = by_name(comparison)
    assert fields["channels.sms"].drift_kind == "missing"
    assert fields["channels.sms"].ours is ABSENT  # the user has no phone now
    # Not ours (never sent): shown, not drift.
    assert fields["channels.whatsapp"].managed is False
    assert fields["channels.whatsapp"] in comparison.other_fields
    assert comparison.drift is Drift.DIFFERS
    assert [item.name for item in comparison.drifted_fields] == ["channels.sms"]


def test_fyno_properties_and_tokens_the_sync_does_not_own_are_listed_not_compared(
    fyno_emulator: Any,
) -> None:
    ada = new_user("ada")
    client = get_client()
    client.set_properties(str(ada.pk), {"logins": 3})
    client.update_channels(str(ada.pk), {"push": [{"token": "fcm_token:abc"}]})

    [comparison] = compare(row_of(ada))

    assert comparison.drift is Drift.IN_SYNC
    others = {item.name: item.theirs for item in comparison.other_fields}
    assert others["properties.logins"] == 3
    assert "channels.push" in others
    assert comparison.differences == []


def test_a_profile_deleted_in_fyno_is_missing(fyno_emulator: Any) -> None:
    ada = new_user("ada")
    get_client().delete_profiles([str(ada.pk)])

    [comparison] = compare(row_of(ada))

    assert comparison.drift is Drift.MISSING
    assert comparison.profile is None
    assert {item.drift_kind for item in comparison.managed_fields} == {"missing"}


def test_the_profile_of_a_deleted_user_still_in_fyno_is_extra(fyno_emulator: Any) -> None:
    ada = new_user("ada")
    ada_id, row_pk = str(ada.pk), row_of(ada).pk
    ada.delete()  # its deletion is queued after commit: the profile is still in Fyno

    [comparison] = compare(FynoProfile.objects.get(pk=row_pk))

    assert comparison.drift is Drift.EXTRA
    assert comparison.user is None
    assert comparison.distinct_id == ada_id


def test_a_user_never_synced_is_looked_up_under_its_future_id(fyno_emulator: Any) -> None:
    bob = new_user("bob", synced=False)
    FynoProfile.objects.filter(user_id=bob.pk).delete()  # no row at all
    [row] = reconcile.rows_for_users([bob])
    assert row.pk is None
    assert row.wsid == "FYTEST"

    [comparison] = compare(row)

    assert comparison.drift is Drift.NOT_SYNCED
    assert comparison.distinct_id == str(bob.pk)
    assert by_name(comparison)["channels.email"].ours == "bob@example.com"
    assert operations(fyno_emulator) == ["get_profile"]
    assert not FynoProfile.objects.filter(user_id=bob.pk).exists()  # nothing written


class NobodyAdapter(ProfileAdapter):
    def should_sync(self, user: Any) -> bool:
        return False


def test_an_excluded_user_never_sent_is_not_asked_about(fyno_emulator: Any) -> None:
    bob = new_user("bob", synced=False)
    [row] = reconcile.rows_for_users([bob])

    [comparison] = compare(row, adapter=NobodyAdapter())

    assert comparison.drift is Drift.EXCLUDED
    assert operations(fyno_emulator) == []


def test_an_excluded_user_sent_before_should_have_status_0(fyno_emulator: Any) -> None:
    ada = new_user("ada")

    [comparison] = compare(row_of(ada), adapter=NobodyAdapter())

    status = by_name(comparison)["status"]
    assert (status.ours, status.theirs, status.differs) == (0, 1, True)
    assert comparison.pending is True


def test_a_503_is_a_failed_comparison_not_an_exception(fyno_emulator: Any) -> None:
    ada = new_user("ada")
    fyno_emulator.set_fault("get_profile", fail_next=1, fail_next_status=503)

    [comparison] = compare(row_of(ada))

    assert comparison.drift is Drift.FAILED
    assert "503" in str(comparison.error)
    assert "test-api-key" not in str(comparison.error)


def test_a_row_whose_workspace_cannot_be_resolved_fails_without_a_request(
    fyno_emulator: Any,
) -> None:
    ada = new_user("ada")
    FynoProfile.objects.filter(user_id=ada.pk).update(wsid="FYGONE")
    fyno_emulator.emulator.clear_request_log()

    [comparison] = compare(row_of(ada))

    assert comparison.drift is Drift.FAILED
    assert "FYGONE" in str(comparison.error)
    assert operations(fyno_emulator) == []


def test_comparisons_on_threads_come_back_in_order(fyno_emulator: Any) -> None:
    users = [new_user(f"u{n}") for n in range(6)]
    get_client().update_channels(str(users[2].pk), {"email": "eve@example.com"})
    rows = [row_of(user) for user in users]

    with ThreadPoolExecutor(max_workers=3) as pool:
        comparisons = compare(*rows, executor=pool, pool_size=3)

    assert [c.row.pk for c in comparisons] == [row.pk for row in rows]
    assert [c.drift for c in comparisons] == [Drift.IN_SYNC] * 2 + [Drift.DIFFERS] + [
        Drift.IN_SYNC
    ] * 3


def tenant_resolver(user: Any = None, *, workspace: Any = None) -> dict[str, str] | None:
    """Users whose email starts with "b" belong to workspace FYB, the others to FYA."""
    if workspace is not None:
        key = KEYS.get(workspace.wsid)
        return None if key is None else {"WSID": workspace.wsid, "API_KEY": key}
    wsid = "FYB" if user is not None and email_of(user).startswith("b") else "FYA"
    return {"WSID": wsid, "API_KEY": KEYS[wsid]}


@pytest.mark.parametrize("fyno_emulator_options", [TWO_WORKSPACES])
def test_each_row_is_compared_in_its_own_workspace(fyno_emulator: Any) -> None:
    with override_settings(
        FYNO=fyno(WSID="", API_KEY="", CLIENT_RESOLVER="tests.test_reconcile.tenant_resolver")
    ):
        ada, bob = new_user("ada"), new_user("bob")
        a, b = fyno_emulator.workspace("FYA"), fyno_emulator.workspace("FYB")
        client_for(Workspace.of(row_of(bob))).update_channels(
            str(bob.pk), {"email": "eve@example.com"}
        )
        b.emulator.clear_request_log()
        a.emulator.clear_request_log()
        comparisons = compare(row_of(ada), row_of(bob))

    assert [c.workspace.wsid for c in comparisons if c.workspace] == ["FYA", "FYB"]
    assert [c.drift for c in comparisons] == [Drift.IN_SYNC, Drift.DIFFERS]
    assert comparisons[1].drifted_fields[0].theirs == "eve@example.com"
    assert [e.path for e in a.emulator.request_log] == [f"/FYA/test/profiles/{ada.pk}"]
    assert [e.path for e in b.emulator.request_log] == [f"/FYB/test/profiles/{bob.pk}"]


# -- the fixes ------------------------------------------------------------------------------


def test_fix_resends_the_drifted_and_deletes_the_extra(fyno_emulator: Any) -> None:
    ada, bob, cy, dan = new_user("ada"), new_user("bob"), new_user("cy"), new_user("dan")
    client = get_client()
    client.update_channels(str(ada.pk), {"email": "eve@example.com"})
    client.delete_profiles([str(bob.pk)])
    dan_id, dan_row = str(dan.pk), row_of(dan).pk
    dan.delete()
    rows = [row_of(ada), row_of(bob), row_of(cy), FynoProfile.objects.get(pk=dan_row)]

    results = reconcile.fix(compare(*rows))

    assert sorted((r.label, r.ok, r.outcome) for r in results) == sorted(
        [(str(ada.pk), True, "updated"), (str(bob.pk), True, "created"), (dan_id, True, "deleted")]
    )
    profiles = fyno_emulator.emulator.profiles("test")
    assert profiles[str(ada.pk)]["channel"]["email"] == "ada@example.com"
    assert profiles[str(bob.pk)]["channel"]["email"] == "bob@example.com"
    assert dan_id not in profiles
    assert not FynoProfile.objects.filter(pk=dan_row).exists()
    assert {c.drift for c in compare(row_of(ada), row_of(bob), row_of(cy))} == {Drift.IN_SYNC}


def test_delete_from_fyno_removes_profile_and_row_and_a_503_changes_nothing(
    fyno_emulator: Any,
) -> None:
    ada, bob = new_user("ada"), new_user("bob")
    fyno_emulator.set_fault("delete_profiles", fail_next=1, fail_next_status=503)
    before = list(FynoProfile.objects.order_by("pk").values())

    [failed_a, failed_b] = reconcile.delete_from_fyno([row_of(ada), row_of(bob)])

    assert (failed_a.ok, failed_b.ok) == (False, False)
    assert "503" in failed_a.error
    assert list(FynoProfile.objects.order_by("pk").values()) == before
    assert set(fyno_emulator.emulator.profiles("test")) == {str(ada.pk), str(bob.pk)}

    [deleted] = reconcile.delete_from_fyno([row_of(ada)])

    assert (deleted.ok, deleted.outcome) == (True, "deleted")
    assert set(fyno_emulator.emulator.profiles("test")) == {str(bob.pk)}
    assert list(FynoProfile.objects.values_list("user_id", flat=True)) == [bob.pk]


def test_resync_reports_fynos_error_and_keeps_what_fyno_accepted(fyno_emulator: Any) -> None:
    ada = new_user("ada")
    get_client().update_channels(str(ada.pk), {"email": "eve@example.com"})
    before = row_of(ada)
    fyno_emulator.set_fault("update_channels", fail_next=1, fail_next_status=503)

    [result] = reconcile.resync([before], force=True)

    assert (result.ok, result.outcome) == (False, "failed")
    assert "503" in result.error
    after = row_of(ada)
    assert (after.payload_hash, after.payload, after.state) == (
        before.payload_hash,
        before.payload,
        before.state,
    )


# -- the command ---------------------------------------------------------------------------


class TTY(StringIO):
    def isatty(self) -> bool:
        return True


def run(*args: str, stderr: StringIO | None = None) -> tuple[str, str]:
    out, err = StringIO(), stderr if stderr is not None else StringIO()
    call_command("fyno_reconcile", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def run_failing(*args: str) -> tuple[str, str, CommandError]:
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("fyno_reconcile", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue(), failure.value


def test_command_in_sync_exits_0_with_a_summary(fyno_emulator: Any) -> None:
    new_user("ada")
    new_user("bob")
    out, _ = run("--no-progress")
    assert "Compared 2 profile(s): 2 in sync, 0 failed." in out


def test_command_reports_drift_and_exits_1(fyno_emulator: Any) -> None:
    ada, bob, cy = new_user("ada"), new_user("bob"), new_user("cy")
    client = get_client()
    client.update_channels(str(ada.pk), {"email": "eve@example.com"})
    client.delete_profiles([str(bob.pk)])
    cy_id = str(cy.pk)
    cy.delete()
    new_user("dan", synced=False)

    out, _, error = run_failing("--no-progress")

    assert error.returncode == 1
    assert f"{ada.pk} (workspace FYTEST (test)): fields differ" in out
    assert "    channels.email: Fyno has 'eve@example.com', it accepted 'ada@example.com'" in out
    assert f"{bob.pk} (workspace FYTEST (test)): missing in Fyno" in out
    assert f"{cy_id} (workspace FYTEST (test)): extra in Fyno" in out
    assert (
        "Compared 4 profile(s): 0 in sync, 1 differ, 1 missing in Fyno, 1 extra in Fyno, "
        "1 never synced, 0 failed." in out
    )
    # Nothing was changed: the drift is still there.
    assert get_client().get_profile(str(ada.pk)).channel["email"] == "eve@example.com"


def test_command_fix_puts_it_right_and_exits_0(fyno_emulator: Any) -> None:
    ada, bob, cy = new_user("ada"), new_user("bob"), new_user("cy")
    client = get_client()
    client.update_channels(str(ada.pk), {"email": "eve@example.com"})
    client.delete_profiles([str(bob.pk)])
    cy_id = str(cy.pk)
    cy.delete()

    out, _ = run("--fix", "--no-progress", "--concurrency", "2")

    assert "Fixed 3, not fixed 0." in out
    profiles = fyno_emulator.emulator.profiles("test")
    assert profiles[str(ada.pk)]["channel"]["email"] == "ada@example.com"
    assert str(bob.pk) in profiles
    assert cy_id not in profiles
    assert not FynoProfile.objects.filter(distinct_id=cy_id).exists()
    out, _ = run("--no-progress")
    assert "2 in sync" in out


def test_command_ids_limits_the_users_and_leaves_deleted_ones_out(fyno_emulator: Any) -> None:
    ada, bob, cy = new_user("ada"), new_user("bob"), new_user("cy")
    get_client().update_channels(str(bob.pk), {"email": "eve@example.com"})
    cy.delete()  # its profile is still in Fyno: not one of the users asked about
    fyno_emulator.emulator.clear_request_log()

    out, _ = run("--ids", str(ada.pk), "--no-progress")

    assert "Compared 1 profile(s): 1 in sync, 0 failed." in out
    assert [e.path for e in fyno_emulator.emulator.request_log] == [
        f"/FYTEST/test/profiles/{ada.pk}"
    ]


def test_command_a_503_exits_2_and_names_the_profile(fyno_emulator: Any) -> None:
    ada = new_user("ada")
    fyno_emulator.set_fault("get_profile", fail_next=1, fail_next_status=503)

    _, err, error = run_failing("--no-progress")

    assert error.returncode == 2
    assert f"{ada.pk} (workspace FYTEST (test)): could not compare: Fyno answered 503" in err
    assert "test-api-key" not in err


def test_command_a_failed_fix_exits_2(fyno_emulator: Any) -> None:
    ada = new_user("ada")
    get_client().update_channels(str(ada.pk), {"email": "eve@example.com"})
    fyno_emulator.set_fault("update_channels", fail_next=1, fail_next_status=503)

    _, err, error = run_failing("--fix", "--no-progress")

    assert error.returncode == 2
    assert f"{ada.pk} (workspace FYTEST (test)): not fixed: Fyno answered 503" in err


def test_command_shows_progress_on_a_terminal_only(fyno_emulator: Any) -> None:
    new_user("ada")
    new_user("bob")
    _, err = run(stderr=TTY())
    assert "2/2" in err
    _, err = run("--no-progress", stderr=TTY())
    assert "2/2" not in err


@pytest.mark.django_db(transaction=True)
def test_command_concurrency_over_http(fyno_live_emulator: Any) -> None:
    with override_settings(FYNO=fyno(ENDPOINT=fyno_live_emulator.endpoint)):
        users = [new_user(f"u{n}") for n in range(8)]
        get_client().update_channels(str(users[5].pk), {"email": "eve@example.com"})
        fyno_live_emulator.emulator.set_fault("get_profile", latency=0.05)  # overlap

        out, _, error = run_failing("--concurrency", "4", "--chunk-size", "3", "--no-progress")

    assert error.returncode == 1
    assert "Compared 8 profile(s): 7 in sync, 1 differ, 0 failed." in out
    assert f"{users[5].pk} (workspace FYTEST (test)): fields differ" in out


@pytest.mark.parametrize("option", ["--concurrency", "--chunk-size"])
def test_command_counts_below_one_are_refused(option: str) -> None:
    with pytest.raises(CommandError, match=f"{option} must be at least 1"):
        run(option, "0")


def test_command_refuses_bad_ids() -> None:
    # Neither test user model (an integer key, a UUID key) takes this for a key.
    with pytest.raises(CommandError, match="--ids"):
        run("--ids", "not-a-key")


@pytest.mark.parametrize("fyno_emulator_options", [TWO_WORKSPACES])
def test_a_user_who_moved_workspace_is_compared_where_the_profile_is(fyno_emulator: Any) -> None:
    with override_settings(
        FYNO=fyno(WSID="", API_KEY="", CLIENT_RESOLVER="tests.test_reconcile.tenant_resolver")
    ):
        ada = new_user("ada")
        setattr(ada, ada.get_email_field_name(), "b.ada@example.com")  # now a user of FYB
        with skip_sync(ada):
            ada.save()
        a, b = fyno_emulator.workspace("FYA"), fyno_emulator.workspace("FYB")
        a.emulator.clear_request_log()

        [comparison] = compare(row_of(ada))

    assert [e.path for e in a.emulator.request_log] == [f"/FYA/test/profiles/{ada.pk}"]
    assert b.emulator.request_log == []
    moved = comparison.fields[0]
    assert (moved.name, moved.ours, moved.theirs) == ("workspace", "FYB (test)", "FYA (test)")
    assert (moved.differs, moved.drifted, comparison.pending) == (True, False, True)
    assert comparison.drift is Drift.IN_SYNC  # Fyno has what it accepted: the move is ours
