"""Changing FYNO["ENDPOINT"] (a proxy, a regional host, the emulator's new port) is not
a move to another workspace: a workspace is its id and version. Profiles are updated
in place, never deleted and recreated (which would wipe their push tokens), and rows
recorded at the old address are sent to the new one instead of being stranded."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from django_fyno import notify, sync
from django_fyno.clients import get_client, reset_clients
from django_fyno.emulator.live import LiveEmulator
from django_fyno.models import FynoOutbox, FynoProfile
from django_fyno.outbox import drain
from django_fyno.receivers import skip_sync
from tests.conftest import make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def live() -> Iterator[LiveEmulator]:
    with LiveEmulator(wsid="FYTEST", api_key="test-api-key") as emulator:
        yield emulator


def at(endpoint: str) -> Any:
    reset_clients()
    return override_settings(
        FYNO={**settings.FYNO, "ENDPOINT": endpoint, "TASK_MODE": "off", "AUTO_SYNC": False}
    )


def test_a_new_endpoint_updates_profiles_in_place(live: LiveEmulator) -> None:
    live.reset()
    # One server, two addresses: what a moved endpoint looks like from here.
    old, new = live.endpoint, live.endpoint.replace("127.0.0.1", "localhost")
    ada = make_user("ada", save=False)
    ada.email = "ada@example.com"
    with skip_sync(ada):
        ada.save()
    with at(old):
        sync.sync_profile(ada.pk)
        get_client().update_channels(str(ada.pk), {"push": [{"token": "device-1"}]})
    assert FynoProfile.objects.get(user=ada).endpoint == old

    ada.email = "ada@new.example.com"
    with skip_sync(ada):
        ada.save()
    live.emulator.clear_request_log()
    with at(new):
        outcome = sync.sync_profile(ada.pk)

    assert outcome is sync.SyncOutcome.UPDATED
    operations = [entry.operation for entry in live.emulator.request_log]
    assert "delete_profiles" not in operations
    assert "create_profile" not in operations
    profile = live.emulator.profile("test", str(ada.pk))
    assert profile["channel"]["email"] == "ada@new.example.com"
    assert profile["channel"]["push"], "the push token survived"
    row = FynoProfile.objects.get(user=ada)
    assert (row.endpoint, row.state) == (new, "synced")


def test_rows_written_for_the_old_endpoint_go_to_the_new_one(live: LiveEmulator) -> None:
    live.reset()
    unreachable = "http://127.0.0.1:9/v1"  # nothing listens there
    with at(unreachable):
        row = notify("welcome", to={"email": "someone@example.com"}, data={})
    assert row.endpoint == unreachable

    with at(live.endpoint):
        report = drain()

    assert report.sent == 1
    assert FynoOutbox.objects.get(pk=row.pk).state == "sent"
    assert [entry.operation for entry in live.emulator.request_log] == ["send_event"]
