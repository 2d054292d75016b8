"""The hot tables carry only the indexes django-fyno queries (migration 0007).

Every index is one more write per dirty mark, claim and outcome; PostgreSQL's
extra ``varchar_pattern_ops`` indexes (for ``LIKE 'prefix%'``) served nothing.
"""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from django_fyno.models import FynoOutbox, FynoProfile
from tests.conftest import require_service

pytestmark = pytest.mark.django_db

# Columns of each index, in order (the primary key and the user's one-to-one
# unique index included).
EXPECTED = {
    FynoProfile: {
        ("id",),
        ("user_id",),
        ("distinct_id",),
        ("state",),
        ("wsid",),
        ("dirty_since",),
    },
    FynoOutbox: {
        ("id",),
        ("dedupe_hash",),
        ("distinct_id",),
        ("request_id",),
        ("wsid",),
        ("state", "wsid", "next_attempt_at", "id"),
        ("state", "lease_expires_at"),
    },
}


def _indexes(model: type) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s",
            [model._meta.db_table],
        )
        return dict(cursor.fetchall())


def _columns(model: type) -> set[tuple[str, ...]]:
    constraints = connection.introspection.get_constraints(
        connection.cursor(), model._meta.db_table
    )
    return {
        tuple(found["columns"])
        for found in constraints.values()
        if found["index"] or found["unique"] or found["primary_key"]
    }


def _on_postgresql() -> None:
    require_service(
        "PostgreSQL", connection.vendor == "postgresql", f"the database is {connection.vendor}"
    )


@pytest.mark.parametrize("model", [FynoProfile, FynoOutbox])
def test_no_pattern_ops_index_on_postgresql(model: type) -> None:
    _on_postgresql()
    pattern = {name: sql for name, sql in _indexes(model).items() if "pattern_ops" in sql}
    assert pattern == {}


@pytest.mark.parametrize("model", [FynoProfile, FynoOutbox])
def test_each_hot_table_has_exactly_the_indexes_its_queries_use(model: type) -> None:
    assert _columns(model) == EXPECTED[model]


def test_distinct_ids_stay_unique_and_nulls_never_clash() -> None:
    FynoProfile.objects.create(distinct_id=None)
    FynoProfile.objects.create(distinct_id=None)
    FynoProfile.objects.create(distinct_id="u-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        FynoProfile.objects.create(distinct_id="u-1")
    assert FynoProfile.objects.filter(distinct_id="u-1").count() == 1


def test_dedupe_hashes_stay_unique() -> None:
    digest = FynoOutbox.dedupe_hash_for("welcome", "k")
    FynoOutbox.objects.create(kind="event", event="welcome", dedupe_hash=digest)
    with pytest.raises(IntegrityError), transaction.atomic():
        FynoOutbox.objects.create(kind="event", event="welcome", dedupe_hash=digest)
    assert FynoOutbox.objects.filter(dedupe_hash=digest).count() == 1
