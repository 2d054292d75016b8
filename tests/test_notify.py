"""notify(): what it stores, what it costs in the caller's request, and what it refuses."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings

import django_fyno
from django_fyno import dispatch, notify, outbox, properties, sync, verify_otp
from django_fyno.adapter import ProfileAdapter, get_adapter
from django_fyno.clients import default_workspace, get_client
from django_fyno.exceptions import FynoTransientError, FynoValidationError
from django_fyno.models import FynoOutbox
from django_fyno.notifications import INSERT_BATCH_SIZE
from tests.conftest import here, make_user, require_service

User = get_user_model()


def fyno(**extra: Any) -> dict[str, Any]:
    return {**settings.FYNO, **extra}


@pytest.fixture
def scheduled(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The databases notify() asked the outbox to deliver from, one entry per call."""
    calls: list[str] = []
    monkeypatch.setattr(
        "django_fyno.outbox.schedule_delivery",
        lambda workspaces, using="default": calls.append(using),
    )
    return calls


@pytest.fixture
def ada(db: None) -> Any:
    return make_user("ada")


# -- the public API -------------------------------------------------------------------


def test_importing_the_package_imports_no_django_model() -> None:
    code = (
        "import sys, django_fyno; "
        "assert 'django.db.models' not in sys.modules, 'django.db.models'; "
        "assert 'django_fyno.models' not in sys.modules, 'django_fyno.models'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)  # noqa: S603 - our own code


def test_the_package_exports_the_functions_lazily() -> None:
    from django_fyno import notifications

    assert django_fyno.notify is notifications.notify
    assert django_fyno.properties is notifications.properties
    assert django_fyno.verify_otp is notifications.verify_otp
    assert {"notify", "properties", "verify_otp"} <= set(dir(django_fyno))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = django_fyno.nope  # type: ignore[attr-defined]


# -- one recipient --------------------------------------------------------------------


@pytest.mark.django_db
def test_notify_a_user_stores_one_pending_row(ada: Any, scheduled: list[str]) -> None:
    row = notify("welcome", ada, {"name": "Ada", "items": (1, 2)})
    assert FynoOutbox.objects.get() == row
    row.refresh_from_db()
    assert row.kind == "event"
    assert row.event == "welcome"
    assert row.distinct_id == str(ada.pk)
    assert row.to == {}
    assert row.payload == {"name": "Ada", "items": [1, 2]}
    assert row.callback == {}
    assert row.dedupe_key is None
    assert row.state == FynoOutbox.State.PENDING
    assert scheduled == ["default"]


@pytest.mark.django_db
def test_notify_explicit_destinations(scheduled: list[str]) -> None:
    row = notify("receipt", {"email": "buyer@example.com", "sms": "+447700900123"})
    row.refresh_from_db()
    assert row.distinct_id == ""
    assert row.to == {"email": "buyer@example.com", "sms": "+447700900123"}


@pytest.mark.django_db
def test_notify_a_user_and_destinations(ada: Any, scheduled: list[str]) -> None:
    row = notify("welcome", ada, destinations={"email": "other@example.com"})
    row.refresh_from_db()
    assert (row.distinct_id, row.to) == (str(ada.pk), {"email": "other@example.com"})


@pytest.mark.django_db
def test_callback_fields_are_stored(scheduled: list[str]) -> None:
    callback = {"custom1": "order-7", "allowlist_url": ["reports", "backup"]}
    row = notify("shipped", "42", callback=callback)
    row.refresh_from_db()
    assert row.callback == callback


@pytest.mark.django_db
def test_notify_costs_one_query_and_no_http(
    ada: Any,
    fyno_emulator: Any,
    django_assert_num_queries: Any,
) -> None:
    # The user is already loaded, as request.user is: resolving its id costs nothing.
    with django_assert_num_queries(1) as captured:
        notify("welcome", ada, {"name": "Ada"})
    assert captured.captured_queries[0]["sql"].startswith("INSERT")
    with django_assert_num_queries(1):
        notify("welcome", "42")
    assert fyno_emulator.requests == []
    # Delivery waits for the commit: one drain of the workspace, for both calls.
    pending = dispatch._current("default")
    assert pending is not None
    assert list(pending.work[outbox.DRAIN_JOB]) == [default_workspace().key]


@pytest.mark.django_db
def test_nothing_is_stored_or_sent_when_the_transaction_rolls_back(
    ada: Any, fyno_emulator: Any, django_capture_on_commit_callbacks: Any
) -> None:
    def view() -> None:
        with transaction.atomic():
            notify("welcome", ada)
            notify("digest", ["1", "2"])
            raise RuntimeError("the view failed")

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
    ):
        view()
    assert FynoOutbox.objects.count() == 0
    assert callbacks == []
    assert fyno_emulator.requests == []


# -- many recipients ------------------------------------------------------------------


@pytest.mark.django_db
def test_notify_a_queryset_costs_its_select_and_one_insert(
    django_assert_num_queries: Any, scheduled: list[str]
) -> None:
    users = [make_user(f"user{n}") for n in range(5)]
    # 2 queries: the queryset's SELECT, then one INSERT for the five rows.
    with django_assert_num_queries(2) as captured:
        rows = notify("digest", User.objects.order_by("pk"), {"week": 7})
    assert [q["sql"].split()[0] for q in captured.captured_queries] == ["SELECT", "INSERT"]
    in_order = sorted(users, key=lambda user: user.pk)
    assert [row.distinct_id for row in rows] == [str(user.pk) for user in in_order]
    assert all(row.pk is not None for row in rows)
    assert FynoOutbox.objects.filter(event="digest", payload={"week": 7}).count() == 5
    assert scheduled == ["default"]


@pytest.mark.django_db
def test_notify_a_list_costs_one_insert(
    ada: Any, django_assert_num_queries: Any, scheduled: list[str]
) -> None:
    with django_assert_num_queries(1):
        rows = notify("digest", [ada, "7", "8", "7"])
    # A recipient listed twice is notified once.
    assert [row.distinct_id for row in rows] == [str(ada.pk), "7", "8"]
    assert FynoOutbox.objects.count() == 3


@pytest.mark.django_db
def test_a_list_of_one_still_returns_a_list(scheduled: list[str]) -> None:
    rows = notify("digest", ["7"])
    assert isinstance(rows, list)
    assert [row.distinct_id for row in rows] == ["7"]


@pytest.mark.django_db
def test_many_recipients_are_inserted_in_batches(
    django_assert_max_num_queries: Any, scheduled: list[str]
) -> None:
    ids = [str(n) for n in range(INSERT_BATCH_SIZE + 1)]
    with django_assert_max_num_queries(100) as captured:
        rows = notify("digest", ids)
    statements = [q["sql"].split()[0] for q in captured.captured_queries]
    assert set(statements) == {"INSERT"}
    if connection.vendor == "postgresql":
        # INSERT_BATCH_SIZE rows per statement (SQLite's variable limit makes smaller batches).
        assert len(statements) == 2
    assert len(rows) == FynoOutbox.objects.count() == INSERT_BATCH_SIZE + 1


# -- validation: nothing is stored ----------------------------------------------------


def _unsaved_user() -> Any:
    return make_user("ghost", save=False)


class NotJSON:
    pass


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        (("welcome", ""), {}, "to"),
        (("welcome", "   "), {}, "to"),
        (("welcome", "x" * 256), {}, "to"),
        (("welcome", "42"), {"destinations": {"sms": "07700 900123"}}, "destinations.sms"),
        (("welcome", {"sms": "07700900123"}), {}, "to.sms"),
        (("welcome", {"fax": "+447700900123"}), {}, "to.fax"),
        (("welcome", {}), {}, "to"),
        (("welcome", {"email": ""}), {}, "to.email"),
        (("welcome", {"email": "a@example.com"}), {"destinations": {"sms": "+1"}}, "destinations"),
        (("welcome", ["7", "8"]), {"destinations": {"email": "a@example.com"}}, "destinations"),
        (("welcome", []), {}, "to"),
        (("welcome", ["7", ""]), {}, "to[1]"),
        (("welcome", ["7", 8]), {}, "to[1]"),
        (("welcome", 42), {}, "to"),
        (("welcome", None), {}, "to"),
        (("welcome", b"42"), {}, "to"),
        (("", "42"), {}, "event"),
        (("e" * 256, "42"), {}, "event"),
        ((None, "42"), {}, "event"),
        (("welcome", "42", ["not", "a", "mapping"]), {}, "data"),
        (("welcome", "42", {"when": datetime(2025, 1, 1)}), {}, "data.when"),
        (("welcome", "42", {"ratio": math.nan}), {}, "data.ratio"),
        (("welcome", "42", {"obj": NotJSON()}), {}, "data.obj"),
        (("welcome", "42"), {"callback": {"custom_id": "mine"}}, "callback.custom_id"),
        (("welcome", "42"), {"callback": {"enable": False}}, "callback"),
        (("welcome", "42"), {"callback": ["custom1"]}, "callback"),
        (("welcome", "42"), {"callback": {"custom1": ""}}, "callback.custom1"),
        (("welcome", "42"), {"callback": {"allowlist_url": []}}, "callback.allowlist_url"),
        (
            ("welcome", "42"),
            {"callback": {"allowlist_url": ["a", ""]}},
            "callback.allowlist_url[1]",
        ),
        (("welcome", "42"), {"callback": {"allowlist_url": 7}}, "callback.allowlist_url"),
        (("welcome", "42"), {"dedupe_key": ""}, "dedupe_key"),
        (("welcome", "42"), {"dedupe_key": "k" * 256}, "dedupe_key"),
    ],
)
def test_invalid_input_raises_and_stores_nothing(
    args: tuple[Any, ...], kwargs: dict[str, Any], field: str, scheduled: list[str]
) -> None:
    with pytest.raises(FynoValidationError) as caught:
        notify(*args, **kwargs)
    assert caught.value.field == field
    assert FynoOutbox.objects.count() == 0
    assert scheduled == []


@pytest.mark.django_db
def test_unsaved_user_is_refused(scheduled: list[str]) -> None:
    with pytest.raises(FynoValidationError, match="unsaved user"):
        notify("welcome", _unsaved_user())
    with pytest.raises(FynoValidationError, match="unsaved user") as caught:
        notify("welcome", [_unsaved_user()])
    assert caught.value.field == "to[0]"
    assert FynoOutbox.objects.count() == 0


@pytest.mark.django_db
def test_a_user_with_a_primary_key_but_never_saved_is_refused(scheduled: list[str]) -> None:
    # Like a model whose UUID primary key has a default: the pk is set before any save.
    user = make_user("ghost", save=False, pk=User().pk or 999_999)
    assert user.pk is not None
    with pytest.raises(FynoValidationError, match="unsaved user"):
        notify("welcome", user)
    assert FynoOutbox.objects.count() == 0


@pytest.mark.django_db
def test_a_model_that_is_not_the_user_model_is_refused(scheduled: list[str]) -> None:
    row = notify("welcome", "42")
    with pytest.raises(FynoValidationError, match=f"must be a {User.__name__}"):
        notify("welcome", row)
    assert FynoOutbox.objects.count() == 1


@pytest.mark.django_db
def test_an_empty_queryset_is_refused(scheduled: list[str]) -> None:
    with pytest.raises(FynoValidationError, match="no recipient"):
        notify("digest", User.objects.none())
    assert FynoOutbox.objects.count() == 0


# -- dedupe ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_second_notify_with_the_same_key_returns_the_first_row(
    ada: Any, scheduled: list[str]
) -> None:
    first = notify("receipt", ada, {"order": 7}, dedupe_key="receipt:7")
    second = notify("receipt", ada, {"order": 7}, dedupe_key="receipt:7")
    assert second.pk == first.pk
    assert second.dedupe_key == "receipt:7"
    # The caller's transaction is still usable after the duplicate.
    assert FynoOutbox.objects.count() == 1
    assert scheduled == ["default"]


@pytest.mark.django_db
def test_dedupe_costs_one_insert_in_a_savepoint(
    django_assert_num_queries: Any, scheduled: list[str]
) -> None:
    with django_assert_num_queries(3) as captured:
        notify("receipt", "42", dedupe_key="receipt:7")
    statements = [q["sql"].split()[0] for q in captured.captured_queries]
    assert statements == ["SAVEPOINT", "INSERT", "RELEASE"]
    with django_assert_num_queries(5) as captured:
        notify("receipt", "42", dedupe_key="receipt:7")
    assert captured.captured_queries[-1]["sql"].startswith("SELECT")


@pytest.mark.django_db
def test_dedupe_with_many_recipients_uses_one_key_per_recipient(
    django_assert_num_queries: Any, scheduled: list[str]
) -> None:
    # One INSERT (conflicts skipped), one SELECT of the rows by key.
    with django_assert_num_queries(2):
        first = notify("digest", ["7", "8"], dedupe_key="digest:w1")
    # Each row keeps the key as given; its scope (event, key, recipient) is what is unique.
    assert [row.dedupe_key for row in first] == ["digest:w1", "digest:w1"]
    again = notify("digest", ["8", "9", "7"], dedupe_key="digest:w1")
    assert [row.distinct_id for row in again] == ["8", "9", "7"]
    assert again[0].pk == first[1].pk
    assert again[2].pk == first[0].pk
    assert FynoOutbox.objects.count() == 3


@pytest.mark.django_db
def test_a_key_used_by_another_event_never_swallows_a_fan_out_recipient(
    scheduled: list[str],
) -> None:
    invoice = notify("invoice", "1", dedupe_key="digest:2")
    digest = notify("digest", ["1", "2"], dedupe_key="digest")
    assert [(row.event, row.distinct_id) for row in digest] == [("digest", "1"), ("digest", "2")]
    assert invoice.pk not in {row.pk for row in digest}
    assert sorted(FynoOutbox.objects.values_list("event", "distinct_id")) == [
        ("digest", "1"),
        ("digest", "2"),
        ("invoice", "1"),
    ]


@pytest.mark.django_db
def test_one_key_for_two_events_stores_one_row_for_each(scheduled: list[str]) -> None:
    invoice = notify("invoice", "42", dedupe_key="order:7")
    receipt = notify("receipt", "42", dedupe_key="order:7")
    assert (invoice.event, receipt.event) == ("invoice", "receipt")
    assert receipt.pk != invoice.pk
    # Within its event the key still deduplicates, whatever the other arguments.
    assert notify("receipt", "43", {"again": True}, dedupe_key="order:7").pk == receipt.pk
    assert FynoOutbox.objects.count() == 2


@pytest.mark.django_db
def test_a_colon_in_a_key_or_an_id_cannot_make_two_scopes_one(scheduled: list[str]) -> None:
    single = notify("digest", "x", dedupe_key="w1:7")
    [fanned] = notify("digest", ["7"], dedupe_key="w1")
    [first] = notify("digest", ["b:c"], dedupe_key="a")
    [second] = notify("digest", ["c"], dedupe_key="a:b")
    assert len({single.pk, fanned.pk, first.pk, second.pk}) == 4
    assert sorted(FynoOutbox.objects.values_list("dedupe_key", "distinct_id")) == [
        ("a", "b:c"),
        ("a:b", "c"),
        ("w1", "7"),
        ("w1:7", "x"),
    ]


@pytest.mark.django_db
def test_a_long_key_and_long_ids_deduplicate_a_fan_out(scheduled: list[str]) -> None:
    ids, key = ["7", "8" * 255], "k" * 255
    first = notify("digest", ids, dedupe_key=key)
    again = notify("digest", ids, dedupe_key=key)
    assert [row.pk for row in again] == [row.pk for row in first]
    assert list(FynoOutbox.objects.values_list("dedupe_key", flat=True)) == [key, key]


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_stored_keys_deduplicating(scheduled: list[str]) -> None:
    """0005 hashes the keys stored before it: a retried notify still finds its row."""
    before, after = [("django_fyno", "0004_workspaces")], [("django_fyno", "0005_dedupe_scope")]
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(before)
        old_apps = executor.loader.project_state(before).apps
        old_outbox = old_apps.get_model("django_fyno", "FynoOutbox")
        keyed = old_outbox.objects.create(
            kind="event", event="receipt", distinct_id="42", dedupe_key="receipt:7", **here()
        )
        fanned = old_outbox.objects.create(
            kind="event", event="digest", distinct_id="8", dedupe_key="w1:8", **here()
        )
        unkeyed = old_outbox.objects.create(kind="event", event="welcome", distinct_id="43")
        # A delivery report pointing at a row: the data migration updates rows it references.
        old_apps.get_model("django_fyno", "FynoDeliveryReport").objects.create(
            outbox_id=keyed.pk, fingerprint="f" * 64
        )
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        hashes = dict(FynoOutbox.objects.values_list("pk", "dedupe_hash"))
        assert hashes == {
            keyed.pk: FynoOutbox.dedupe_hash_for("receipt", "receipt:7"),
            fanned.pk: FynoOutbox.dedupe_hash_for("digest", "w1:8"),
            unkeyed.pk: None,
        }
        assert notify("receipt", "42", dedupe_key="receipt:7").pk == keyed.pk
        assert FynoOutbox.objects.count() == 3
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_concurrent_notify_with_one_key_stores_one_row(fyno_emulator: Any) -> None:
    require_service(
        "PostgreSQL",
        connection.vendor == "postgresql",
        "the race needs two connections to one database (set DATABASE_URL)",
    )
    first_inserted = threading.Event()
    release_first = threading.Event()
    results: dict[str, int] = {}
    errors: list[BaseException] = []

    def call(name: str) -> None:
        try:
            with transaction.atomic():
                row = notify("receipt", "42", dedupe_key="receipt:7")
                if name == "first":
                    first_inserted.set()
                    assert release_first.wait(10)
            results[name] = row.pk
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            connection.close()

    with override_settings(FYNO=fyno(TASK_MODE="off")):
        first = threading.Thread(target=call, args=("first",))
        second = threading.Thread(target=call, args=("second",))
        first.start()
        assert first_inserted.wait(10)
        second.start()
        # The second INSERT now waits on the unique index for the first transaction.
        _wait_for_a_blocked_backend()
        release_first.set()
        first.join(10)
        second.join(10)
    assert errors == []
    assert results["first"] == results["second"]
    assert FynoOutbox.objects.count() == 1


def _wait_for_a_blocked_backend() -> None:
    sql = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 10
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(sql)
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    pytest.fail("the second notify never waited for the first transaction")


# -- verify_otp -----------------------------------------------------------------------


def test_verify_otp_against_the_emulator(fyno_emulator: Any) -> None:
    sent = get_client().send_event("login_otp", to={"sms": "+447700900123"})
    code = fyno_emulator.emulator.otp_for(request_id=sent.request_id)
    assert code
    wrong = "0000" if code != "0000" else "1111"
    assert verify_otp(wrong, request_id=sent.request_id) is False
    assert verify_otp(code, request_id=sent.request_id) is True
    assert [entry.operation for entry in fyno_emulator.requests] == [
        "send_event",
        "verify_otp",
        "verify_otp",
    ]


def test_verify_otp_by_destination(fyno_emulator: Any) -> None:
    get_client().send_event("login_otp", to={"email": "ada@example.com"})
    code = fyno_emulator.emulator.otp_for(destination="ada@example.com")
    assert verify_otp(code, destination="ada@example.com") is True


def test_verify_otp_raises_on_transport_errors() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The port is closed now: the connection is refused.
    closed = fyno(ENDPOINT=f"http://127.0.0.1:{port}/v1", RETRY={"MAX_ATTEMPTS": 1})
    with override_settings(FYNO=closed), pytest.raises(FynoTransientError):
        verify_otp("1234", request_id="r-1")


def test_verify_otp_validates_locally(fyno_emulator: Any) -> None:
    with pytest.raises(FynoValidationError):
        verify_otp("1234")
    with pytest.raises(FynoValidationError):
        verify_otp("", request_id="r-1")
    assert fyno_emulator.requests == []


class PkAdapter(ProfileAdapter):
    def get_distinct_id(self, user: Any) -> Any:
        return user.pk  # an int, not a string: one rule accepts it everywhere


@pytest.mark.django_db
def test_one_distinct_id_rule_for_sync_notify_and_properties(fyno_emulator: Any) -> None:
    with override_settings(FYNO=fyno(PROFILE_ADAPTER="tests.test_notify.PkAdapter")):
        user = make_user("pk")  # synced in-process after commit
        sync.sync_profile(user.pk)
        assert fyno_emulator.emulator.profile("test", str(user.pk)) is not None
        row = notify("welcome", user)
        assert row.distinct_id == str(user.pk)
        updates = properties(user).add("logins", 1)
        assert updates.rows[0].distinct_id == str(user.pk)
        assert get_adapter().checked_distinct_id(user) == str(user.pk)


class BlankAdapter(ProfileAdapter):
    def get_distinct_id(self, user: Any) -> Any:
        return "  "


@pytest.mark.django_db
def test_a_blank_distinct_id_is_refused_alike_everywhere(fyno_emulator: Any) -> None:
    with override_settings(FYNO=fyno(PROFILE_ADAPTER="tests.test_notify.BlankAdapter")):
        user = make_user("blank")
        with pytest.raises(FynoValidationError) as raised:
            notify("welcome", user)
        assert raised.value.field == "to"
        assert "get_distinct_id() must return a non-empty string" in str(raised.value)
        with pytest.raises(FynoValidationError, match="non-empty string"):
            properties(user)
        assert sync.sync_profile(user.pk) is sync.SyncOutcome.FAILED
    assert FynoOutbox.objects.count() == 0
