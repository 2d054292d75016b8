"""backfill.Backfill (the engine of fyno_sync): the database work batched per chunk.

What a chunk costs in SQL statements, and that the batched path keeps the
guarantees of the one-user path (sync.run_plan): a user deleted meanwhile
is not resurrected, a newer save stays dirty, signals and vetoes, claims and
merges of distinct ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_fyno import backfill, sync
from django_fyno.adapter import ProfileAdapter
from django_fyno.conf import fyno_settings
from django_fyno.models import FynoProfile
from django_fyno.receivers import skip_sync
from django_fyno.signals import SyncVetoed, pre_profile_sync, profile_sync_failed, profile_synced
from django_fyno.sync import SyncOutcome

User = get_user_model()

# The count, then per chunk: its users, their rows, the distinct ids held by
# other rows, and one write (INSERT for users who had no row, UPDATE for the
# others) between a SAVEPOINT and its RELEASE (the test runs in a
# transaction); then the empty last page. None of it depends on the number
# of users (on SQLite, Django splits an INSERT every 62 rows: 999 parameters).
MAX_STATEMENTS = 8


def fyno(**extra: Any) -> dict[str, Any]:
    return {**settings.FYNO, "RETRY": {"MAX_ATTEMPTS": 1}, **extra}


@pytest.fixture(autouse=True)
def _no_pause_left_behind() -> Iterator[None]:
    caches[fyno_settings.OUTBOX_CACHE].clear()
    yield
    caches[fyno_settings.OUTBOX_CACHE].clear()


def make_users(count: int, start: int = 0) -> list[Any]:
    with skip_sync():
        return [
            User.objects.create(username=f"u{n}", email=f"u{n}@example.com")
            for n in range(start, start + count)
        ]


def resave(user: Any, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(user, name, value)
    with skip_sync(user):
        user.save()


def backfill_command(*args: str) -> str:
    out = StringIO()
    call_command("fyno_sync", "--no-progress", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def outcomes(results: list[backfill.SyncResult]) -> dict[Any, SyncOutcome]:
    return {result.user.pk: result.outcome for result in results}


class UsernameAdapter(ProfileAdapter):
    """Keyed on the username, so renaming a user changes its distinct id."""

    def get_distinct_id(self, user: Any) -> str:
        return f"user-{user.username}"


class SameIdAdapter(ProfileAdapter):
    """A broken adapter: every user gets the same distinct id."""

    def get_distinct_id(self, user: Any) -> str:
        return "everyone"


class BlankIdAdapter(ProfileAdapter):
    def get_distinct_id(self, user: Any) -> str:
        return "   "


# -- what a chunk costs --------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("count", [3, 60, 400])
def test_a_chunk_of_new_users_costs_a_fixed_number_of_statements(
    count: int, fyno_emulator: Any, django_assert_max_num_queries: Any
) -> None:
    if count > 62 and connection.vendor == "sqlite":
        pytest.skip("Django splits SQLite INSERTs every 62 rows (999 parameters)")
    users = make_users(count)
    with django_assert_max_num_queries(MAX_STATEMENTS):
        out = backfill_command("--chunk-size", "500", "--concurrency", "4")
    assert f"created: {count}, updated: 0, unchanged: 0, failed: 0" in out
    assert set(fyno_emulator.emulator.profiles("test")) == {str(user.pk) for user in users}
    rows = FynoProfile.objects.filter(state=FynoProfile.State.SYNCED, dirty_since=None)
    assert sorted(rows.values_list("distinct_id", flat=True)) == sorted(
        str(user.pk) for user in users
    )


@pytest.mark.django_db
def test_the_statements_do_not_grow_with_the_chunk(fyno_emulator: Any) -> None:
    costs = []
    for start, count in ((0, 3), (3, 60)):
        make_users(count, start)
        with CaptureQueriesContext(connection) as queries:
            backfill_command("--chunk-size", "100")
        costs.append(len(queries))
    small, large = costs
    # The second run also reads the first run's rows, all unchanged: nothing more.
    assert large == small
    assert len(fyno_emulator.emulator.profiles("test")) == 63


@pytest.mark.django_db
def test_a_chunk_of_changed_users_costs_a_fixed_number_of_statements(
    fyno_emulator: Any, django_assert_max_num_queries: Any
) -> None:
    users = make_users(300)
    backfill_command()
    for user in users:
        resave(user, first_name="Renamed")
    sync.mark_dirty(users[:100])  # some saved meanwhile, with their sync pending
    fyno_emulator.emulator.clear_request_log()
    with django_assert_max_num_queries(MAX_STATEMENTS):
        out = backfill_command("--chunk-size", "500", "--concurrency", "4")
    assert "created: 0, updated: 300, unchanged: 0, failed: 0" in out
    profiles = fyno_emulator.emulator.profiles("test")
    assert {profile["name"] for profile in profiles.values()} == {"Renamed"}
    assert FynoProfile.objects.filter(payload__name="Renamed", dirty_since=None).count() == 300


@pytest.mark.django_db
def test_a_resync_with_nothing_changed_writes_nothing(fyno_emulator: Any) -> None:
    make_users(20)
    backfill_command()
    fyno_emulator.emulator.clear_request_log()
    with CaptureQueriesContext(connection) as queries:
        out = backfill_command("--chunk-size", "100")
    assert "created: 0, updated: 0, unchanged: 20, failed: 0" in out
    assert fyno_emulator.emulator.request_log == []
    written = [q["sql"] for q in queries if q["sql"].startswith(("UPDATE", "INSERT"))]
    assert written == []


# -- the guarantees of the one-user path --------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("synced_before", [False, True], ids=["new", "synced"])
def test_a_user_deleted_during_the_backfill_is_not_resurrected(
    synced_before: bool, fyno_emulator: Any
) -> None:
    ada, bob = make_users(2)
    if synced_before:
        backfill_command()
        resave(ada, first_name="Ada")
        resave(bob, first_name="Bob")
    fyno_emulator.emulator.clear_request_log()

    chunk = backfill.Backfill().start(list(User.objects.order_by("pk")))  # sent by finish()
    ada_id = str(ada.pk)
    User.objects.get(pk=ada.pk).delete()  # its profile is deleted (or just forgotten)
    results = outcomes(chunk.finish())
    assert results[ada.pk] is SyncOutcome.MISSING

    # Our requests reached Fyno after the deletion: the profile was deleted again.
    assert fyno_emulator.emulator.profile("test", ada_id) is None
    sent_for_ada = [e.operation for e in fyno_emulator.emulator.request_log if ada_id in str(e)]
    assert sent_for_ada[-1] == "delete_profiles"
    assert not FynoProfile.objects.filter(distinct_id=ada_id).exists()
    assert fyno_emulator.emulator.profile("test", str(bob.pk)) is not None
    assert results[bob.pk] is (SyncOutcome.UPDATED if synced_before else SyncOutcome.CREATED)
    assert FynoProfile.objects.get(user=bob).state == FynoProfile.State.SYNCED


@pytest.mark.django_db
def test_a_row_created_by_a_save_during_the_backfill_is_kept_dirty(fyno_emulator: Any) -> None:
    (ada,) = make_users(1)  # no row yet
    chunk = backfill.Backfill().start([ada])
    sync.mark_dirty([ada])  # a save creates the row while the request is out
    (result,) = chunk.finish()
    assert result.outcome is SyncOutcome.CREATED
    row = FynoProfile.objects.get(user=ada)  # ours was not inserted twice
    assert (row.state, row.distinct_id) == (FynoProfile.State.SYNCED, str(ada.pk))
    assert row.payload_hash
    assert row.dirty_since is not None  # its own sync is still to come
    assert fyno_emulator.emulator.profile("test", str(ada.pk)) is not None


@pytest.mark.django_db
@override_settings(FYNO=fyno(PROFILE_ADAPTER="tests.test_backfill.UsernameAdapter"))
def test_a_distinct_id_taken_during_the_backfill_fails_the_sync(fyno_emulator: Any) -> None:
    ada, bob = make_users(2)
    chunk = backfill.Backfill().start([ada])
    FynoProfile.objects.create(user=bob, distinct_id="user-u0")  # bob's row takes ada's id
    (result,) = chunk.finish()
    assert result.outcome is SyncOutcome.FAILED
    assert "already the profile of another user" in str(result.error)
    row = FynoProfile.objects.get(user=ada)
    assert (row.state, row.distinct_id) == (FynoProfile.State.FAILED, None)
    assert "already the profile of another user" in row.last_error


@pytest.mark.django_db
def test_a_save_during_the_backfill_stays_dirty(fyno_emulator: Any) -> None:
    ada, bob = make_users(2)
    sync.mark_dirty([ada, bob])
    chunk = backfill.Backfill().start([ada, bob])
    sync.mark_dirty([ada])  # a save committed while the requests were out
    chunk.finish()
    assert FynoProfile.objects.get(user=ada).dirty_since is not None  # its task still runs
    assert FynoProfile.objects.get(user=bob).dirty_since is None
    assert len(fyno_emulator.emulator.profiles("test")) == 2


@pytest.mark.django_db
@override_settings(FYNO=fyno())
def test_signals_are_sent_as_for_one_user(
    fyno_emulator: Any, django_capture_on_commit_callbacks: Any
) -> None:
    ada, bob = make_users(2)
    fyno_emulator.emulator.set_fault("create_profile", fail_next=1, fail_next_status=400)
    synced: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []

    def on_synced(**kwargs: Any) -> None:
        synced.append(kwargs)

    def on_failed(**kwargs: Any) -> None:
        failed.append(kwargs)

    profile_synced.connect(on_synced)
    profile_sync_failed.connect(on_failed)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            results = outcomes(backfill.Backfill().start([ada, bob]).finish())
    finally:
        profile_synced.disconnect(on_synced)
        profile_sync_failed.disconnect(on_failed)
    assert results == {ada.pk: SyncOutcome.FAILED, bob.pk: SyncOutcome.CREATED}
    (ok,) = synced
    assert (ok["user"], ok["created"], ok["payload"].distinct_id) == (bob, True, str(bob.pk))
    assert ok["profile"].state == FynoProfile.State.SYNCED
    assert ok["profile"].payload_hash == FynoProfile.objects.get(user=bob).payload_hash
    (bad,) = failed
    assert (bad["user"], bad["error"].status) == (ada, 400)
    row = FynoProfile.objects.get(user=ada)
    assert (row.state, row.attempts) == (FynoProfile.State.FAILED, 1)
    assert bad["profile"].attempts == 1


@pytest.mark.django_db
def test_a_receiver_can_veto_in_a_backfill(fyno_emulator: Any) -> None:
    ada, bob = make_users(2)

    def veto(user: Any, **kwargs: Any) -> None:
        if user == ada:
            raise SyncVetoed("not this one")

    pre_profile_sync.connect(veto)
    try:
        results = outcomes(backfill.Backfill().start([ada, bob]).finish())
    finally:
        pre_profile_sync.disconnect(veto)
    assert results == {ada.pk: SyncOutcome.VETOED, bob.pk: SyncOutcome.CREATED}
    assert set(fyno_emulator.emulator.profiles("test")) == {str(bob.pk)}
    assert FynoProfile.objects.get(user=ada).payload_hash == ""


@pytest.mark.django_db
@override_settings(FYNO=fyno(PROFILE_ADAPTER="tests.test_backfill.BlankIdAdapter"))
def test_a_plan_that_fails_locally_sends_nothing(fyno_emulator: Any) -> None:
    (ada,) = make_users(1)
    (result,) = backfill.Backfill().start([ada]).finish()
    assert result.outcome is SyncOutcome.FAILED
    assert result.error is not None
    assert "distinct_id" in str(result.error)
    assert fyno_emulator.emulator.request_log == []
    assert FynoProfile.objects.get(user=ada).state == FynoProfile.State.FAILED


@pytest.mark.django_db
@override_settings(FYNO=fyno(PROFILE_ADAPTER="tests.test_backfill.UsernameAdapter"))
def test_a_distinct_id_of_a_deleted_user_is_taken_over(fyno_emulator: Any) -> None:
    old = make_users(1)[0]
    resave(old, username="ada")
    backfill_command()
    old.delete()  # its profile is queued for deletion, not yet deleted
    new, other = make_users(2, start=5)
    resave(new, username="ada", email="")  # the same distinct id

    results = outcomes(backfill.Backfill().start([new, other]).finish())
    assert results == {new.pk: SyncOutcome.UPDATED, other.pk: SyncOutcome.CREATED}
    assert not FynoProfile.objects.filter(state=FynoProfile.State.DELETING).exists()
    profile = fyno_emulator.emulator.profile("test", "user-ada")
    assert "email" not in profile["channel"]  # the old user's channel was removed
    assert FynoProfile.objects.get(user=new).distinct_id == "user-ada"


@pytest.mark.django_db
@override_settings(FYNO=fyno(PROFILE_ADAPTER="tests.test_backfill.UsernameAdapter"))
def test_a_changed_distinct_id_is_merged(fyno_emulator: Any) -> None:
    ada, bob = make_users(2)
    backfill_command()
    resave(ada, username="augusta")
    fyno_emulator.emulator.clear_request_log()

    results = outcomes(backfill.Backfill().start([ada, bob]).finish())
    assert results == {ada.pk: SyncOutcome.UPDATED, bob.pk: SyncOutcome.UNCHANGED}
    assert fyno_emulator.emulator.request_log[0].operation == "merge_profiles"
    assert fyno_emulator.emulator.profile("test", "user-u0") is None
    assert fyno_emulator.emulator.profile("test", "user-augusta") is not None
    assert FynoProfile.objects.get(user=ada).distinct_id == "user-augusta"


@pytest.mark.django_db
@override_settings(FYNO=fyno(PROFILE_ADAPTER="tests.test_backfill.SameIdAdapter"))
def test_two_users_with_one_distinct_id_fail_without_breaking_the_chunk(
    fyno_emulator: Any,
) -> None:
    ada, bob, cid = make_users(3)
    results = backfill.Backfill().start([ada, bob, cid]).finish()
    counted = sorted(result.outcome.value for result in results)
    assert counted == ["created", "failed", "failed"]
    failures = [r for r in results if r.outcome is SyncOutcome.FAILED]
    assert all("already the profile of another user" in str(r.error) for r in failures)
    assert FynoProfile.objects.filter(distinct_id="everyone").count() == 1
    assert list(fyno_emulator.emulator.profiles("test")) == ["everyone"]


@pytest.mark.django_db
def test_chunks_overlap_on_an_executor(fyno_emulator: Any) -> None:
    users = make_users(30)
    with ThreadPoolExecutor(max_workers=4) as pool:
        engine = backfill.Backfill(executor=pool, pool_size=4)
        first = engine.start(users[:15])
        second = engine.start(users[15:])  # planned and sent before the first is recorded
        results = first.finish() + second.finish()
    assert [r.outcome for r in results] == [SyncOutcome.CREATED] * 30
    assert len(fyno_emulator.emulator.profiles("test")) == 30
    assert FynoProfile.objects.filter(state=FynoProfile.State.SYNCED).count() == 30
