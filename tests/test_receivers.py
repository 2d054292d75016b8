"""The receivers' cost in the caller's request, and what reaches Fyno after commit."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import override_settings

from django_fyno import dispatch, sync
from django_fyno.models import FynoProfile
from django_fyno.receivers import skip_sync

User = get_user_model()


def fyno(**extra: Any) -> dict[str, Any]:
    return {**settings.FYNO, **extra}


def sync_callbacks(callbacks: list[Any]) -> list[list[Any]]:
    """The user pks of each sync hand-off registered (other callbacks: signals)."""
    return [
        list(c.work[sync.SYNC_JOB])
        for c in callbacks
        if isinstance(c, dispatch._Deferred) and sync.SYNC_JOB in c.work
    ]


def operations(emulator: Any) -> list[str]:
    return [entry.operation for entry in emulator.emulator.request_log]


@pytest.fixture
def synced_user(fyno_emulator: Any, django_capture_on_commit_callbacks: Any) -> Any:
    with django_capture_on_commit_callbacks(execute=True):
        user = User.objects.create(username="ada", email="ada@example.com", first_name="Ada")
    assert operations(fyno_emulator) == ["create_profile"]
    fyno_emulator.emulator.clear_request_log()
    return user


@pytest.mark.django_db
def test_irrelevant_save_costs_no_query_and_no_task(
    synced_user: Any,
    fyno_emulator: Any,
    django_assert_num_queries: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # One query: the UPDATE of auth_user itself, nothing else.
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        django_assert_num_queries(1),
    ):
        synced_user.save(update_fields=["last_login"])
    assert callbacks == []
    assert operations(fyno_emulator) == []


@pytest.mark.django_db
def test_relevant_save_costs_one_query_then_one_sync(
    synced_user: Any,
    fyno_emulator: Any,
    django_assert_num_queries: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    synced_user.first_name = "Augusta"
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with django_assert_num_queries(2):  # UPDATE auth_user + our one upsert
            synced_user.save(update_fields=["first_name"])
        assert FynoProfile.objects.get(user=synced_user).dirty_since is not None
        assert operations(fyno_emulator) == []  # nothing before commit
    assert sync_callbacks(callbacks) == [[synced_user.pk]]
    assert operations(fyno_emulator) == ["update_profile"]
    assert fyno_emulator.emulator.profile("test", str(synced_user.pk))["name"] == "Augusta"
    assert FynoProfile.objects.get(user=synced_user).dirty_since is None


@pytest.mark.django_db
def test_ten_saves_in_one_transaction_are_one_sync(
    synced_user: Any,
    fyno_emulator: Any,
    django_assert_num_queries: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # SAVEPOINT, 10 UPDATEs of the user, 1 upsert, RELEASE: later saves cost
    # the caller no extra query.
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        django_assert_num_queries(13),
        transaction.atomic(),
    ):
        for number in range(10):
            synced_user.first_name = f"Ada {number}"
            synced_user.save()
    assert sync_callbacks(callbacks) == [[synced_user.pk]]
    assert operations(fyno_emulator) == ["update_profile"]
    assert fyno_emulator.emulator.profile("test", str(synced_user.pk))["name"] == "Ada 9"


@pytest.mark.django_db
def test_unchanged_resave_sends_nothing(
    synced_user: Any, fyno_emulator: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        synced_user.save()
    assert sync_callbacks(callbacks) == [[synced_user.pk]]
    assert operations(fyno_emulator) == []


@pytest.mark.django_db(transaction=True)
def test_commit_syncs_and_rollback_sends_nothing(fyno_emulator: Any) -> None:
    def create_then_fail() -> None:
        with transaction.atomic():
            User.objects.create(username="ghost", email="ghost@example.com")
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        create_then_fail()
    assert operations(fyno_emulator) == []
    assert FynoProfile.objects.count() == 0

    with transaction.atomic():
        user = User.objects.create(username="ada", email="ada@example.com")
        user.first_name = "Ada"
        user.save()
        assert operations(fyno_emulator) == []
    assert operations(fyno_emulator) == ["create_profile"]
    assert fyno_emulator.emulator.profile("test", str(user.pk))["name"] == "Ada"


@pytest.mark.django_db(transaction=True)
def test_savepoint_rollback_does_not_lose_a_later_save(fyno_emulator: Any) -> None:
    user = User.objects.create(username="ada", email="ada@example.com")
    fyno_emulator.emulator.clear_request_log()
    with transaction.atomic():
        try:
            with transaction.atomic():
                user.first_name = "Rolled back"
                user.save()
                raise RuntimeError
        except RuntimeError:
            pass
        user.first_name = "Kept"
        user.save()
    assert operations(fyno_emulator) == ["update_profile"]
    assert fyno_emulator.emulator.profile("test", str(user.pk))["name"] == "Kept"


@pytest.mark.django_db(transaction=True)
def test_deleting_50_users_in_one_transaction_is_one_request(fyno_emulator: Any) -> None:
    with transaction.atomic():
        users = [
            User.objects.create(username=f"u{n}", email=f"u{n}@example.com") for n in range(50)
        ]
    assert len(fyno_emulator.emulator.profiles("test")) == 50
    fyno_emulator.emulator.clear_request_log()

    with transaction.atomic():
        for user in users:
            user.delete()
        assert operations(fyno_emulator) == []
    assert operations(fyno_emulator) == ["delete_profiles"]
    assert len(fyno_emulator.emulator.request_log[0].body["distinct_id"]) == 50
    assert fyno_emulator.emulator.profiles("test") == {}
    assert FynoProfile.objects.count() == 0


@pytest.mark.django_db(transaction=True)
@override_settings(FYNO=fyno(DELETE_BATCH_SIZE=20))
def test_deletions_go_out_in_batches(fyno_emulator: Any) -> None:
    with transaction.atomic():
        for n in range(50):
            User.objects.create(username=f"u{n}", email=f"u{n}@example.com")
    fyno_emulator.emulator.clear_request_log()
    User.objects.all().delete()
    assert operations(fyno_emulator) == ["delete_profiles"] * 3
    assert fyno_emulator.emulator.profiles("test") == {}
    assert FynoProfile.objects.count() == 0


@pytest.mark.django_db
def test_delete_costs_one_query_and_one_callback(
    django_assert_num_queries: Any, django_capture_on_commit_callbacks: Any
) -> None:
    users = []
    for n in range(3):
        user = User(username=f"u{n}")
        with skip_sync(user):
            user.save()
        users.append(user)
        FynoProfile.objects.create(user=user, distinct_id=str(user.pk))
    with django_capture_on_commit_callbacks() as callbacks:
        for user in users:
            # Django's own: SELECT + SET NULL of the mirror row, and DELETEs of the
            # user's admin log entries, groups, permissions and row. Ours: one UPDATE.
            with django_assert_num_queries(6):
                user.delete()
    assert len(callbacks) == 1
    assert set(FynoProfile.objects.values_list("state", flat=True)) == {"deleting"}


@pytest.mark.django_db(transaction=True)
def test_deleting_a_profile_fyno_never_had_counts_as_deleted(fyno_emulator: Any) -> None:
    user = User.objects.create(username="ada", email="ada@example.com")
    fyno_emulator.emulator.reset()  # Fyno lost it
    user.delete()
    assert operations(fyno_emulator) == ["delete_profiles"]
    assert fyno_emulator.emulator.request_log[0].status == 400
    assert FynoProfile.objects.count() == 0


@pytest.mark.django_db
def test_raw_save_is_ignored(fyno_emulator: Any, django_assert_num_queries: Any) -> None:
    user = User(username="fixture", email="f@example.com")
    with django_assert_num_queries(1):  # the INSERT only
        user.save_base(raw=True)
    assert FynoProfile.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("switch", ["ENABLED", "AUTO_SYNC"])
def test_switches_turn_the_receivers_off(
    switch: str, fyno_emulator: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with (
        override_settings(FYNO=fyno(**{switch: False})),
        django_capture_on_commit_callbacks(execute=True) as callbacks,
    ):
        user = User.objects.create(username="ada", email="ada@example.com")
        user.delete()
    assert callbacks == []
    assert FynoProfile.objects.count() == 0
    assert operations(fyno_emulator) == []


@pytest.mark.django_db
def test_skip_sync_opts_one_instance_or_a_block_out(
    fyno_emulator: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        ada = User(username="ada", email="ada@example.com")
        with skip_sync(ada):
            ada.save()
        assert not hasattr(ada, "_fyno_skip_sync")  # restored after the block
        bob = User(username="bob")
        bob._fyno_skip_sync = True  # type: ignore[attr-defined]
        bob.save()
        with skip_sync():
            User.objects.create(username="cy")
    assert callbacks == []
    assert FynoProfile.objects.count() == 0
    assert operations(fyno_emulator) == []


@pytest.mark.django_db
@override_settings(FYNO=fyno(TASK_MODE="celery", CELERY_QUEUE="fyno-q"))
def test_celery_mode_enqueues_the_pk_on_the_queue(
    celery_tasks: Any, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        celery_tasks.sync_profiles_task, "apply_async", lambda **kw: calls.append(kw)
    )
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        user = User.objects.create(username="ada")
        user.first_name = "Ada"
        user.save()
        bob = User.objects.create(username="bob")
    assert dispatch.flush(5)  # published from the background thread, after the commit
    # One publish per transaction, carrying every user saved in it, each once.
    assert calls == [{"args": ([user.pk, bob.pk],), "queue": "fyno-q"}]


@pytest.mark.django_db
@override_settings(FYNO=fyno(TASK_MODE="celery"))
def test_celery_mode_uses_celerys_default_queue_unless_told(
    celery_tasks: Any, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        celery_tasks.sync_profiles_task, "apply_async", lambda **kw: calls.append(kw)
    )
    with django_capture_on_commit_callbacks(execute=True):
        user = User.objects.create(username="ada")
    assert dispatch.flush(5)
    assert calls == [{"args": ([user.pk],)}]


@pytest.mark.django_db
@override_settings(FYNO=fyno(TASK_MODE="celery"))
def test_a_broker_failure_never_reaches_the_caller(
    celery_tasks: Any, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    def broker_down(**kwargs: Any) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(celery_tasks.sync_profiles_task, "apply_async", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        user = User.objects.create(username="ada")
    assert FynoProfile.objects.get(user=user).dirty_since is not None  # the sweeper's job


@pytest.mark.django_db
@override_settings(FYNO=fyno(TASK_MODE="off"))
def test_off_mode_leaves_the_row_dirty(
    fyno_emulator: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        user = User.objects.create(username="ada", email="ada@example.com")
    assert operations(fyno_emulator) == []
    assert FynoProfile.objects.get(user=user).dirty_since is not None


@pytest.mark.django_db
def test_inline_mode_swallows_sync_errors(
    fyno_emulator: Any, django_capture_on_commit_callbacks: Any
) -> None:
    fyno_emulator.emulator.set_fault("create_profile", fail_next=10, fail_next_status=503)
    with (
        override_settings(FYNO=fyno(RETRY={"MAX_ATTEMPTS": 1})),
        django_capture_on_commit_callbacks(execute=True),
    ):
        user = User.objects.create(username="ada", email="ada@example.com")
    row = FynoProfile.objects.get(user=user)
    assert (row.attempts, row.dirty_since is not None) == (1, True)


@pytest.mark.django_db
@override_settings(FYNO=fyno(TASK_MODE="celery", SWEEP_AFTER=60))
def test_sweeper_re_enqueues_stale_rows_and_pending_deletions(
    celery_tasks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    synced: list[Any] = []
    deletes: list[Any] = []
    monkeypatch.setattr(
        celery_tasks.sync_profiles_task, "apply_async", lambda **kw: synced.append(kw)
    )
    monkeypatch.setattr(
        celery_tasks.delete_profiles_task, "apply_async", lambda **kw: deletes.append(kw)
    )
    stale = User.objects.create(username="stale")
    User.objects.create(username="fresh")
    FynoProfile.objects.filter(user=stale).update(
        dirty_since=timezone.now() - timedelta(seconds=120)
    )
    FynoProfile.objects.create(user=None, distinct_id="orphan")
    synced.clear()

    celery_tasks.sweep_task()
    assert synced == [{"args": ([stale.pk],)}]
    assert len(deletes) == 1
    assert FynoProfile.objects.get(distinct_id="orphan").state == FynoProfile.State.DELETING


@pytest.fixture
def published(celery_tasks: Any, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What the sync task would have published (keyword arguments of apply_async)."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        celery_tasks.sync_profiles_task, "apply_async", lambda **kw: calls.append(kw)
    )
    return calls


@pytest.mark.django_db(transaction=True)
@override_settings(FYNO=fyno(TASK_MODE="celery"))
def test_a_save_in_autocommit_on_postgresql_costs_no_statement_of_ours(
    celery_tasks: Any, monkeypatch: pytest.MonkeyPatch, django_assert_num_queries: Any
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the mark leaves the request on PostgreSQL only")
    seen_at_publish: list[Any] = []

    def publish(**kwargs: Any) -> None:
        # On the publishing thread: the mark must already be committed.
        (pk,) = kwargs["args"][0]
        seen_at_publish.append(FynoProfile.objects.get(user_id=pk).dirty_since)
        connection.close()  # this thread's own (publishing needs none)

    monkeypatch.setattr(celery_tasks.sync_profiles_task, "apply_async", publish)
    user = User.objects.create(username="ada", email="ada@example.com")
    assert dispatch.flush(5)
    FynoProfile.objects.filter(user=user).update(dirty_since=None)
    seen_at_publish.clear()
    user.first_name = "Ada"
    with django_assert_num_queries(1) as captured:  # the user's own UPDATE, nothing else
        user.save()
    assert captured.captured_queries[0]["sql"].startswith('UPDATE "auth_user"')
    assert dispatch.flush(5)
    row = FynoProfile.objects.get(user=user)
    assert row.dirty_since is not None  # until the task ran
    assert seen_at_publish == [row.dirty_since]  # one publish, after the mark


@pytest.mark.django_db(transaction=True)
@override_settings(FYNO=fyno(TASK_MODE="celery"))
def test_a_save_in_autocommit_on_sqlite_marks_in_the_request(
    published: list[dict[str, Any]], django_assert_num_queries: Any
) -> None:
    if connection.vendor != "sqlite":
        pytest.skip("SQLite keeps the mark in the request")
    user = User.objects.create(username="ada", email="ada@example.com")
    assert dispatch.flush(5)
    published.clear()
    user.first_name = "Ada"
    # The user's own UPDATE, then our one upsert: a second connection writing from
    # the background thread would fight this one for SQLite's lock.
    with django_assert_num_queries(2) as captured:
        user.save()
    sql = [query["sql"] for query in captured.captured_queries]
    assert sql[0].startswith('UPDATE "auth_user"')
    assert sql[1].startswith('INSERT INTO "django_fyno_fynoprofile"')
    assert dispatch.flush(5)
    assert published == [{"args": ([user.pk],)}]
    assert FynoProfile.objects.get(user=user).dirty_since is not None


@pytest.mark.django_db(transaction=True)
@override_settings(FYNO=fyno(TASK_MODE="celery"))
def test_a_failed_publish_in_autocommit_leaves_the_durable_marker(
    celery_tasks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broker_down(**kwargs: Any) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(celery_tasks.sync_profiles_task, "apply_async", broker_down)
    user = User.objects.create(username="ada", email="ada@example.com")
    assert dispatch.flush(5)  # on PostgreSQL the mark is written by the background thread
    row = FynoProfile.objects.get(user=user)
    assert row.dirty_since is not None
    assert (row.wsid, row.version) == ("FYTEST", "test")  # and its workspace


@pytest.mark.django_db(transaction=True)
@override_settings(FYNO=fyno(TASK_MODE="celery"))
def test_the_background_marks_all_users_of_a_round_but_one_deleted_meanwhile(
    published: list[dict[str, Any]],
) -> None:
    ada = User.objects.create(username="ada")
    bob = User.objects.create(username="bob")
    assert dispatch.flush(5)
    FynoProfile.objects.update(dirty_since=None)
    gone_pk = 10**9  # no such user: its row would break the foreign key
    marks = [("default", pk, "FYTEST", "test", "") for pk in (ada.pk, gone_pk, bob.pk)]
    sync._mark_handed_off(marks)
    dirty = set(FynoProfile.objects.filter(dirty_since__isnull=False).values_list("user_id"))
    assert dirty == {(ada.pk,), (bob.pk,)}
    assert not FynoProfile.objects.filter(user_id=gone_pk).exists()


@pytest.mark.django_db(transaction=True)
@override_settings(FYNO=fyno(TASK_MODE="celery"))
def test_saves_inside_atomic_cost_one_statement_per_user_and_one_publish(
    published: list[dict[str, Any]], django_assert_num_queries: Any
) -> None:
    ada = User.objects.create(username="ada")
    bob = User.objects.create(username="bob")
    assert dispatch.flush(5)
    published.clear()
    # BEGIN, 4 UPDATEs of the users, COMMIT: the caller's own. Ours: one upsert per
    # user, the first time it is saved in the transaction; no commit of our own.
    with django_assert_num_queries(8) as captured, transaction.atomic():
        for user in (ada, bob, ada, bob):
            user.first_name = "x"
            user.save()
    ours = [q["sql"] for q in captured.captured_queries if "django_fyno" in q["sql"]]
    assert len(ours) == 2
    assert all(sql.startswith('INSERT INTO "django_fyno_fynoprofile"') for sql in ours)
    assert dispatch.flush(5)
    assert published == [{"args": ([ada.pk, bob.pk],)}]
    assert FynoProfile.objects.filter(dirty_since__isnull=False).count() == 2
