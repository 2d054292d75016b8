"""CI must really run the suite on PostgreSQL, not fall back to SQLite."""

import os

import pytest
from django.db import connection

from tests.conftest import require_service


@pytest.mark.django_db
def test_database_is_postgresql_when_services_are_required() -> None:
    wanted = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
    require_service("PostgreSQL", wanted, "DATABASE_URL does not point at PostgreSQL")
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        (version,) = cursor.fetchone()
    assert connection.vendor == "postgresql"
    assert version.startswith("PostgreSQL")
