"""A user deleted while its sync is in flight ends with no profile in Fyno."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, connections
from django.test import override_settings

from django_fyno import sync
from django_fyno.models import FynoProfile
from django_fyno.receivers import skip_sync
from django_fyno.testing import FynoEmulatorHandle
from tests.conftest import require_service, wait_until

User = get_user_model()

pytestmark = [pytest.mark.services]


def in_thread(target: Any) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(target())
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


@pytest.mark.parametrize("first_sync", ["create", "update"])
def test_a_delete_during_an_in_flight_sync_leaves_no_profile(
    fyno_live_emulator: FynoEmulatorHandle, transactional_db: None, first_sync: str
) -> None:
    require_service(
        "PostgreSQL",
        connection.vendor == "postgresql",
        "the sync runs in another thread and must see committed rows",
    )
    fyno = {**settings.FYNO, "ENDPOINT": fyno_live_emulator.endpoint, "TASK_MODE": "inline"}
    emulator = fyno_live_emulator.emulator
    with override_settings(FYNO=fyno):
        user = User(username="ada", email="ada@example.com")
        with skip_sync(user):
            user.save()
        if first_sync == "update":
            assert sync.sync_profile(user.pk) is sync.SyncOutcome.CREATED
            user.first_name = "Ada"
            with skip_sync(user):
                user.save()
        held = "create_profile" if first_sync == "create" else "update_profile"
        emulator.set_fault(held, latency=1.0)  # hold the sync's request at the emulator

        thread, outcome = in_thread(lambda: sync.sync_profile(user.pk))
        time.sleep(0.3)  # the sync's request is now in flight
        emulator.clear_faults(held)
        user.delete()  # the deletion goes out (or is skipped: never synced) meanwhile
        thread.join(10)

        assert outcome, "the sync did not finish"
        wait_until(lambda: not emulator.profiles("test"), "the profile to be deleted again")
        assert emulator.profiles("test") == {}
        assert FynoProfile.objects.count() == 0
