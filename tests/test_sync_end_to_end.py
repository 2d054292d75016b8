"""Profile sync end to end: a real Celery worker on Redis, the emulator over HTTP,
committed data on PostgreSQL (the worker runs in other threads).

Each step changes a user as application code would and waits (bounded) for
the emulator's state to show it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("celery", reason="Celery is an optional extra and is not installed")
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import override_settings

from django_fyno.models import FynoProfile
from django_fyno.testing import FynoEmulatorHandle
from tests.conftest import wait_until


@pytest.fixture
def fyno(
    celery_worker_on_redis: Any, fyno_live_emulator: FynoEmulatorHandle
) -> Iterator[FynoEmulatorHandle]:
    """The app pointed at the emulator over HTTP, work going through the worker."""
    over_http = {**settings.FYNO, "ENDPOINT": fyno_live_emulator.endpoint, "TASK_MODE": "celery"}
    with override_settings(FYNO=over_http):
        yield fyno_live_emulator


def test_create_update_deactivate_delete(fyno: FynoEmulatorHandle) -> None:
    emulator = fyno.emulator
    user = get_user_model().objects.create_user(
        "ada", email="ada@example.com", first_name="Ada", last_name="Lovelace"
    )
    distinct_id = str(user.pk)

    profile = wait_until(lambda: emulator.profile("test", distinct_id), "the profile")
    assert profile["name"] == "Ada Lovelace"
    assert profile["channel"]["email"] == "ada@example.com"
    wait_until(
        lambda: FynoProfile.objects.filter(user=user, state="synced").exists(), "a synced row"
    )

    user.email = "ada@lovelace.org"
    user.save()
    wait_until(
        lambda: emulator.profile("test", distinct_id)["channel"].get("email") == "ada@lovelace.org",
        "the new email",
    )

    user.is_active = False
    user.save(update_fields=["is_active"])
    wait_until(lambda: emulator.profile("test", distinct_id)["status"] == 0, "status 0")

    user.delete()
    wait_until(lambda: emulator.profile("test", distinct_id) is None, "the deletion")
    wait_until(lambda: not FynoProfile.objects.exists(), "the mirror row to go")

    sent = [entry.operation for entry in emulator.request_log]
    assert sent.count("create_profile") == 1
    assert sent.count("delete_profiles") == 1
    # Channels were changed by PATCH, never by a PUT carrying `channel`.
    puts = [e.body for e in emulator.request_log if e.operation == "update_profile"]
    assert all("channel" not in body for body in puts)


def test_many_users_saved_in_one_transaction_are_synced_once_each(
    fyno: FynoEmulatorHandle,
) -> None:
    from django.db import transaction

    user_model = get_user_model()
    with transaction.atomic():
        users = [
            user_model.objects.create_user(f"user{n}", email=f"user{n}@example.com")
            for n in range(20)
        ]
        for user in users:
            user.first_name = "Renamed"
            user.save()

    ids = {str(user.pk) for user in users}
    wait_until(
        lambda: ids <= set(fyno.emulator.profiles("test")),
        "all 20 profiles",
    )
    wait_until(lambda: FynoProfile.objects.filter(state="synced").count() == 20, "20 synced rows")
    creates = [e for e in fyno.emulator.request_log if e.operation == "create_profile"]
    assert sorted(e.body["distinct_id"] for e in creates) == sorted(ids)
    assert {fyno.emulator.profile("test", i)["name"] for i in ids} == {"Renamed"}
