"""The backfill's one-statement INSERT writes what ``bulk_create()`` writes.

On PostgreSQL the chunk's new rows go as one JSON document through
``json_to_recordset``; elsewhere through ``bulk_create()``. Either way each
row reads back the same, hostile values included, and gets its pk.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction

from django_fyno.backfill import _insert_all
from django_fyno.exceptions import FynoError, error_text
from django_fyno.models import FynoProfile
from django_fyno.receivers import skip_sync
from tests.conftest import make_user, require_service, run_pytest_with_custom_user

pytestmark = pytest.mark.django_db
User = get_user_model()

HOSTILE: list[dict[str, Any]] = [
    {},
    {
        "distinct_id": "ünï-cödé 🎉 '\"\\ %s %% ;--",
        "payload": {
            "name": 'O\'Brien "the" \\ 100% 🎉',
            "nested": {"list": [1, 2.5, -0.0, 10**30, None, True, "x" * 1000], "deep": {"a": {}}},
            "status": 1,
        },
        "channels": {"email": "o'brien@example.com", "sms": "+15550100"},
        "payload_hash": "f" * 64,
        "state": FynoProfile.State.SYNCED,
        "synced_at": datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=timezone.utc),
        "dirty_since": datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc),
        "attempts": 2**31 - 1,
        "last_error": "line one\nline two\t'quoted' \"double\" \\ %(name)s",
        "wsid": "FY%s",
        "version": "test",
        "endpoint": "https://api.fyno.io/v1?x=%s",
    },
    {"state": FynoProfile.State.FAILED, "attempts": 1, "last_error": "x" * 2000},
]
COMPARED = [
    "distinct_id",
    "state",
    "payload_hash",
    "channels",
    "payload",
    "dirty_since",
    "synced_at",
    "attempts",
    "last_error",
    "wsid",
    "version",
    "endpoint",
]


def _users(prefix: str, count: int) -> list[Any]:
    with skip_sync():
        return [User.objects.create(username=f"{prefix}{n}") for n in range(count)]


def _rows(users: list[Any], tag: str) -> list[FynoProfile]:
    rows = []
    for user, values in zip(users, HOSTILE * len(users), strict=False):
        values = dict(values)
        if values.get("distinct_id"):
            values["distinct_id"] = f"{tag}-{user.username}-{values['distinct_id']}"
        rows.append(FynoProfile(user_id=user.pk, **values))
    return rows


def test_rows_read_back_as_bulk_create_writes_them(django_assert_num_queries: Any) -> None:
    count = len(HOSTILE) * 2
    ours, theirs = _rows(_users("a", count), "a"), _rows(_users("b", count), "b")
    with django_assert_num_queries(1):
        _insert_all(ours)
    FynoProfile.objects.bulk_create(theirs)
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine.pk is not None
        assert not mine._state.adding
        stored = FynoProfile.objects.get(pk=mine.pk)
        assert stored.user_id == mine.user_id
        expected = FynoProfile.objects.get(pk=reference.pk)
        for name in COMPARED:
            got, want = getattr(stored, name), getattr(expected, name)
            if name == "distinct_id" and want is not None:
                want = want.replace(f"b-{expected.user.username}", f"a-{stored.user.username}")
            assert got == want, name
        assert stored.created_at is not None
        assert stored.updated_at is not None
        assert (mine.created_at, mine.updated_at) == (stored.created_at, stored.updated_at)


def test_a_clash_raises_integrity_error_and_writes_nothing() -> None:
    users = _users("c", 3)
    FynoProfile.objects.create(user=users[0], distinct_id="taken")
    rows = [FynoProfile(user_id=user.pk, distinct_id=f"d{user.pk}") for user in users[1:]]
    rows.append(FynoProfile(user_id=users[0].pk + 10**6, distinct_id="taken"))
    with pytest.raises(IntegrityError), transaction.atomic():
        _insert_all(rows)
    assert FynoProfile.objects.count() == 1


def test_postgresql_sends_one_parameter(django_assert_num_queries: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the JSON document is PostgreSQL's path")
    sent: list[Any] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        sent.append(params)
        return execute(sql, params, many, context)

    rows = _rows(_users("d", 5), "d")
    with connection.execute_wrapper(record):
        _insert_all(rows)
    assert [len(params) for params in sent] == [1]


def test_an_error_text_with_nul_and_a_lone_surrogate_can_be_stored() -> None:
    text = error_text(FynoError("bad\x00input \ud800 from Fyno"), "HTTP 400: ")
    assert text == "HTTP 400: bad\ufffdinput ? from Fyno"
    users = _users("e", 2)
    rows = [FynoProfile(user_id=user.pk, last_error=text) for user in users]
    _insert_all(rows)
    assert {row.last_error for row in FynoProfile.objects.all()} == {text}


def test_uuid_user_keys_travel_as_text_on_postgresql() -> None:
    """Run the next test under tests.settings_custom_user (UUID keys), in its own database."""
    require_service(
        "PostgreSQL", connection.vendor == "postgresql", f"the database is {connection.vendor}"
    )
    result = run_pytest_with_custom_user(
        "tests/test_backfill_insert.py", "-k", "uuid_user_keys_are_inserted", own_database=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_uuid_user_keys_are_inserted() -> None:
    """Runs in a subprocess under tests.settings_custom_user (see the test above)."""
    if settings.AUTH_USER_MODEL != "testapp.EmailUser":
        pytest.skip("needs --ds=tests.settings_custom_user")
    with skip_sync():
        users = [make_user(f"u{n}") for n in range(3)]
    rows = [FynoProfile(user_id=user.pk, payload={"n": n}) for n, user in enumerate(users)]
    _insert_all(rows)
    stored = {row.user_id: (row.pk, row.payload) for row in FynoProfile.objects.all()}
    assert stored == {row.user_id: (row.pk, row.payload) for row in rows}
