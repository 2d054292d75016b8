"""A refused API key (401) pauses the workspace, in sync and outbox alike: one clear error,
no retries burned per row, and the traffic resumes once the key works again."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.test import override_settings

from django_fyno import notify, outbox, sync
from django_fyno.clients import default_workspace
from django_fyno.models import FynoOutbox, FynoProfile
from django_fyno.pause import SharedPause
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

PAUSE = 0.3


def fyno(**extra: Any) -> dict[str, Any]:
    return {
        **settings.FYNO,
        "TASK_MODE": "off",  # the tests call sync and drain themselves
        "RETRY": {"MAX_ATTEMPTS": 1},
        "AUTH_FAILURE_PAUSE": PAUSE,
        **extra,
    }


@pytest.fixture(autouse=True)
def _clean_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_401_during_sync_pauses_the_workspace_and_resumes_with_the_right_key(
    fyno_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ada, bob = make_user("ada"), make_user("bob")
    with override_settings(FYNO=fyno(API_KEY="wrong-key")):
        assert sync.sync_profile(ada.pk) is sync.SyncOutcome.PAUSED
        assert sync.sync_profile(bob.pk) is sync.SyncOutcome.PAUSED  # no request at all
        assert [entry.status for entry in fyno_emulator.emulator.request_log] == [401]
        assert len(errors(caplog)) == 1
        assert "refused the credentials of workspace FYTEST (test)" in errors(caplog)[0]
        assert "wrong-key" not in caplog.text
        rows = FynoProfile.objects.filter(user__in=[ada, bob])
        # Still dirty (the sweeper or the rescheduled task retries), no attempt spent.
        assert all(row.dirty_since is not None and row.attempts == 0 for row in rows)
        assert all("401" in row.last_error or "paused" in row.last_error for row in rows)
        assert {row.state for row in rows} == {"pending"}

    time.sleep(PAUSE + 0.1)
    with override_settings(FYNO=fyno()):  # the key was fixed
        assert sync.sync_profile(ada.pk) is sync.SyncOutcome.CREATED  # the probe
        assert SharedPause(default_workspace()).gate().open is True
        assert sync.sync_profile(bob.pk) is sync.SyncOutcome.CREATED


def test_an_operator_sync_goes_through_the_pause_and_lifts_it(fyno_emulator: Any) -> None:
    ada = make_user("ada")
    with override_settings(FYNO=fyno(API_KEY="wrong-key", AUTH_FAILURE_PAUSE=3600)):
        assert sync.sync_profile(ada.pk) is sync.SyncOutcome.PAUSED
    with override_settings(FYNO=fyno(AUTH_FAILURE_PAUSE=3600)):
        assert SharedPause(default_workspace()).gate().open is False
        outcome = sync.sync_profile(ada.pk, respect_pause=False)
        assert outcome is sync.SyncOutcome.CREATED
        assert SharedPause(default_workspace()).gate().open is True


def test_a_401_during_delivery_pauses_the_workspace_without_spending_attempts(
    fyno_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with override_settings(FYNO=fyno(API_KEY="wrong-key")):
        notify("welcome", ["u1", "u2"])
        notify("digest", ["u3"])
        first = outbox.drain()
        assert first.paused is False
        assert first.released == 3
        again = outbox.drain()  # every drainer now finds the workspace paused
        assert again.paused is True
        assert again.claimed == 0
        assert [entry.status for entry in fyno_emulator.emulator.request_log] == [401]
        assert len(errors(caplog)) == 1
        rows = FynoOutbox.objects.all()
        assert {(row.state, row.attempts) for row in rows} == {("pending", 0)}
        assert all("401" in row.last_error for row in rows)

    time.sleep(PAUSE + 0.1)
    with override_settings(FYNO=fyno()):
        report = outbox.drain()
    assert report.sent == 3
    assert set(FynoOutbox.objects.values_list("state", flat=True)) == {"sent"}
