"""manage.py fyno_sync against the in-process emulator."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import override_settings

from django_fyno.models import FynoProfile
from django_fyno.receivers import skip_sync

User = get_user_model()


def fyno(**extra: Any) -> dict[str, Any]:
    return {**settings.FYNO, "RETRY": {"MAX_ATTEMPTS": 1}, **extra}


def operations(emulator: Any) -> list[str]:
    return [entry.operation for entry in emulator.emulator.request_log]


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("fyno_sync", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def make_users(count: int) -> list[Any]:
    users = []
    with skip_sync():  # existing users, never synced
        for n in range(count):
            users.append(User.objects.create(username=f"u{n}", email=f"u{n}@example.com"))
    return users


@pytest.mark.django_db
def test_dry_run_counts_and_shows_a_payload_but_sends_nothing(fyno_emulator: Any) -> None:
    make_users(3)
    out, _ = run("--dry-run", "--chunk-size", "2")
    assert operations(fyno_emulator) == []
    assert "created: 3, updated: 0, unchanged: 0, failed: 0" in out
    assert '"email": "u0@example.com"' in out
    assert FynoProfile.objects.count() == 0


@pytest.mark.django_db
def test_backfill_then_resume_skips_synced_users(fyno_emulator: Any) -> None:
    users = make_users(5)
    out, _ = run("--chunk-size", "2", "--no-progress")
    assert "created: 5, updated: 0, unchanged: 0, failed: 0" in out
    assert operations(fyno_emulator) == ["create_profile"] * 5
    assert len(fyno_emulator.emulator.profiles("test")) == 5

    fyno_emulator.emulator.clear_request_log()
    users[0].first_name = "Ada"
    with skip_sync(users[0]):
        users[0].save()
    out, _ = run("--no-progress")
    assert "created: 0, updated: 1, unchanged: 4, failed: 0" in out
    assert operations(fyno_emulator) == ["update_profile"]


@pytest.mark.django_db
def test_force_resends(fyno_emulator: Any) -> None:
    make_users(2)
    run()
    out, _ = run("--force", "--dry-run")
    assert "created: 0, updated: 2, unchanged: 0" in out
    out, _ = run("--force")
    assert "created: 0, updated: 2, unchanged: 0, failed: 0" in out


@pytest.mark.django_db
def test_ids_filter(fyno_emulator: Any) -> None:
    users = make_users(4)
    out, _ = run("--ids", f"{users[1].pk},{users[3].pk}")
    assert "created: 2" in out
    assert set(fyno_emulator.emulator.profiles("test")) == {str(users[1].pk), str(users[3].pk)}


@pytest.mark.django_db
@override_settings(FYNO=fyno())
def test_failures_give_a_summary_and_a_non_zero_exit(fyno_emulator: Any) -> None:
    make_users(3)
    fyno_emulator.emulator.set_fault("create_profile", fail_next=1, fail_next_status=400)
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="1 user"):
        call_command("fyno_sync", stdout=out, stderr=err)
    assert "created: 2, updated: 0, unchanged: 0, failed: 1" in out.getvalue()
    assert FynoProfile.objects.filter(state=FynoProfile.State.FAILED).count() == 1

    # The failed one only, on the next run.
    out_again, _ = run("--failed")
    assert "created: 1, updated: 0, unchanged: 0, failed: 0" in out_again


@pytest.mark.django_db
@override_settings(FYNO=fyno())
def test_transient_failures_count_as_failed(fyno_emulator: Any) -> None:
    make_users(2)
    fyno_emulator.emulator.set_fault("create_profile", fail_next=1, fail_next_status=503)
    with pytest.raises(CommandError):
        run()
    assert FynoProfile.objects.filter(attempts=1).count() == 1


@pytest.mark.django_db
@override_settings(FYNO=fyno(TASK_MODE="off"))
def test_dirty_syncs_rows_left_dirty(fyno_emulator: Any) -> None:
    ada = User.objects.create(username="ada", email="ada@example.com")
    make_users(2)
    out, _ = run("--dirty")
    assert "created: 1, updated: 0, unchanged: 0, failed: 0" in out
    assert set(fyno_emulator.emulator.profiles("test")) == {str(ada.pk)}


@pytest.mark.django_db(transaction=True)
def test_concurrent_run_syncs_everyone(fyno_emulator: Any) -> None:
    if connection_vendor() == "sqlite":
        pytest.skip("threads need a database shared across connections (PostgreSQL)")
    make_users(12)
    out, _ = run("--concurrency", "4", "--chunk-size", "5")
    assert "created: 12, updated: 0, unchanged: 0, failed: 0" in out
    assert len(fyno_emulator.emulator.profiles("test")) == 12


def connection_vendor() -> str:
    from django.db import connection

    return connection.vendor
