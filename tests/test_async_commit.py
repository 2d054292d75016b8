"""The dirty mark of an autocommit save commits asynchronously, and only it.

In autocommit (Django's default) the mark is a transaction of its own, right
after the caller's UPDATE committed; on PostgreSQL it is sent as one query,
``SET LOCAL synchronous_commit TO OFF; INSERT …``, so the save does not wait
for a second flush to disk. Inside the caller's transaction nothing changes:
its commit, and its durability, are the caller's.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from django_fyno import sync
from django_fyno.models import FynoProfile
from django_fyno.receivers import skip_sync
from tests.conftest import require_service

pytestmark = pytest.mark.django_db(transaction=True)
User = get_user_model()
MARK = "SET LOCAL synchronous_commit TO OFF; INSERT"


@pytest.fixture
def user(settings: Any) -> Any:
    require_service(
        "PostgreSQL", connection.vendor == "postgresql", f"the database is {connection.vendor}"
    )
    settings.FYNO = {**settings.FYNO, "TASK_MODE": "off"}  # the mark only
    with skip_sync():
        created = User.objects.create(username="ada", email="ada@example.com")
    return created


def _synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return str(cursor.fetchone()[0])


def _save(user: Any, name: str) -> list[str]:
    user.first_name = name
    with CaptureQueriesContext(connection) as queries:
        user.save()
    return [query["sql"] for query in queries.captured_queries]


def test_an_autocommit_save_marks_the_row_in_one_asynchronously_committed_query(
    user: Any,
) -> None:
    statements = _save(user, "Augusta")
    assert len(statements) == 2
    assert statements[0].startswith("UPDATE")
    assert statements[1].startswith(MARK)
    row = FynoProfile.objects.get(user=user)
    assert row.dirty_since is not None
    assert row.state == FynoProfile.State.PENDING
    # SET LOCAL ended with the mark's own transaction: the session is untouched.
    assert _synchronous_commit() == "on"


def test_a_save_in_the_callers_transaction_leaves_its_commit_alone(user: Any) -> None:
    with transaction.atomic():
        statements = _save(user, "Augusta")
        assert _synchronous_commit() == "on"
    assert [sql.split(" ", 1)[0] for sql in statements] == ["UPDATE", "INSERT"]
    assert FynoProfile.objects.get(user=user).dirty_since is not None


def test_a_transaction_managed_by_hand_is_left_alone(user: Any) -> None:
    transaction.set_autocommit(False)
    try:
        statements = _save(user, "Augusta")
        assert _synchronous_commit() == "on"
        transaction.commit()
    finally:
        transaction.set_autocommit(True)
    assert not any(sql.startswith("SET") for sql in statements)
    assert FynoProfile.objects.get(user=user).dirty_since is not None


def test_server_side_binding_gets_the_plain_statement(user: Any, monkeypatch: Any) -> None:
    # With server-side binding one execute() cannot carry two statements.
    options = {**connection.settings_dict.get("OPTIONS", {}), "server_side_binding": True}
    monkeypatch.setitem(connection.settings_dict, "OPTIONS", options)
    assert not sync._commits_asynchronously(connection)
