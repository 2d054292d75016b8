"""manage.py fyno_sync against the emulator: what it sends, counts, prints and exits with."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.core.management import CommandError, call_command
from django.test import override_settings

from django_fyno.adapter import ProfileAdapter, get_adapter
from django_fyno.clients import default_workspace, get_client
from django_fyno.conf import fyno_settings
from django_fyno.models import FynoProfile
from django_fyno.pause import SharedPause
from django_fyno.receivers import skip_sync

User = get_user_model()
WRONG_KEY = "wrong-key-never-printed"


def fyno(**extra: Any) -> dict[str, Any]:
    return {**settings.FYNO, "RETRY": {"MAX_ATTEMPTS": 1}, **extra}


@pytest.fixture(autouse=True)
def _no_pause_left_behind() -> Iterator[None]:
    # A 401 pauses the workspace in the cache: no other test may inherit it.
    caches[fyno_settings.OUTBOX_CACHE].clear()
    yield
    caches[fyno_settings.OUTBOX_CACHE].clear()


def operations(emulator: Any) -> list[str]:
    return [entry.operation for entry in emulator.emulator.request_log]


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("fyno_sync", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def run_failing(*args: str) -> tuple[str, str, str]:
    """Run a command expected to fail: (stdout, stderr, the CommandError's message)."""
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("fyno_sync", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue(), str(failure.value)


def make_users(count: int, start: int = 0) -> list[Any]:
    users = []
    with skip_sync():  # existing users, never synced
        for n in range(start, start + count):
            users.append(User.objects.create(username=f"u{n}", email=f"u{n}@example.com"))
    return users


def resave(user: Any, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(user, name, value)
    with skip_sync(user):
        user.save()


class SkipStaffAdapter(ProfileAdapter):
    def should_sync(self, user: Any) -> bool:
        return not user.is_staff


@pytest.mark.django_db
def test_dry_run_counts_and_shows_a_payload_but_sends_nothing(fyno_emulator: Any) -> None:
    make_users(3)
    out, _ = run("--dry-run", "--chunk-size", "2")
    assert operations(fyno_emulator) == []
    assert "created: 3, updated: 0, unchanged: 0, failed: 0" in out
    assert '"email": "u0@example.com"' in out
    assert FynoProfile.objects.count() == 0


@pytest.mark.django_db
@override_settings(FYNO=fyno(PROFILE_ADAPTER="tests.test_fyno_sync_command.SkipStaffAdapter"))
def test_dry_run_counts_what_the_run_then_does(fyno_emulator: Any) -> None:
    users = make_users(6)
    run("--ids", f"{users[0].pk},{users[1].pk},{users[2].pk}")  # three synced
    resave(users[1], first_name="Ada")  # changed since
    resave(users[3], is_staff=True)  # never synced, and excluded
    resave(users[2], is_staff=True)  # synced, now excluded: status 0 to send
    fyno_emulator.emulator.clear_request_log()

    dry, _ = run("--dry-run")
    assert operations(fyno_emulator) == []
    real, _ = run("--no-progress")
    expected = "created: 2, updated: 1, unchanged: 1, failed: 0, excluded: 2"
    assert f"Dry run, nothing sent. Would have {expected}" in dry
    assert expected in real
    assert fyno_emulator.emulator.profile("test", str(users[2].pk))["status"] == 0
    assert fyno_emulator.emulator.profile("test", str(users[3].pk)) is None


@pytest.mark.django_db
def test_backfill_then_resume_skips_synced_users(fyno_emulator: Any) -> None:
    users = make_users(5)
    out, _ = run("--chunk-size", "2", "--no-progress")
    assert "created: 5, updated: 0, unchanged: 0, failed: 0" in out
    assert operations(fyno_emulator) == ["create_profile"] * 5
    assert len(fyno_emulator.emulator.profiles("test")) == 5

    fyno_emulator.emulator.clear_request_log()
    resave(users[0], first_name="Ada")
    out, _ = run("--no-progress")
    assert "created: 0, updated: 1, unchanged: 4, failed: 0" in out
    assert operations(fyno_emulator) == ["update_profile"]


@pytest.mark.django_db
def test_force_resends(fyno_emulator: Any) -> None:
    make_users(2)
    run()
    out, _ = run("--force", "--dry-run")
    assert "created: 0, updated: 2, unchanged: 0" in out
    fyno_emulator.emulator.clear_request_log()
    out, _ = run("--force")
    assert "created: 0, updated: 2, unchanged: 0, failed: 0" in out
    # The full state of each: the profile (PUT, no channel), then its channels (PATCH).
    assert operations(fyno_emulator) == ["update_profile", "update_channels"] * 2


@pytest.mark.django_db
def test_force_puts_back_a_profile_edited_in_fyno(fyno_emulator: Any) -> None:
    (user,) = make_users(1)
    resave(user, first_name="Ada", last_name="Lovelace")
    run("--ids", str(user.pk))
    client = get_client()
    client.update_profile(str(user.pk), name="Edited", status=0)
    client.update_channels(str(user.pk), {"email": "edited@example.com"})

    out, _ = run("--ids", str(user.pk))  # our hash still matches: nothing sent
    assert "unchanged: 1" in out
    assert fyno_emulator.emulator.profile("test", str(user.pk))["name"] == "Edited"

    fyno_emulator.emulator.clear_request_log()
    out, _ = run("--force", "--ids", str(user.pk))
    assert "created: 0, updated: 1, unchanged: 0, failed: 0" in out
    built = get_adapter().build_payload(user)
    profile = fyno_emulator.emulator.profile("test", str(user.pk))
    assert (profile["name"], profile["status"]) == (built.name, built.status) == ("Ada Lovelace", 1)
    assert profile["channel_raw"] == built.channels == {"email": "u0@example.com"}
    log = fyno_emulator.emulator.request_log
    assert [entry.operation for entry in log] == ["update_profile", "update_channels"]
    assert "channel" not in log[0].body  # a PUT with channel would wipe SDK tokens


@pytest.mark.django_db
@override_settings(FYNO=fyno(API_KEY=WRONG_KEY))
def test_force_with_a_refused_key_fails_clearly(fyno_emulator: Any) -> None:
    (user,) = make_users(1)
    out, err, message = run_failing("--force", "--ids", str(user.pk))

    assert "failed: 1" in out
    assert message == "1 user(s) failed to sync"
    assert [(e.operation, e.status) for e in fyno_emulator.emulator.request_log] == [
        ("create_profile", 401)
    ]
    assert f"workspace {default_workspace()} (401 Invalid API details)" in err
    assert "FYNO['API_KEY']" in err
    assert WRONG_KEY not in out + err
    row = FynoProfile.objects.get(user=user)  # not failed for good: synced once the key works
    assert row.state == FynoProfile.State.PENDING
    assert "401" in row.last_error
    assert SharedPause(default_workspace()).gate().open is False


@pytest.mark.django_db
def test_a_run_with_a_fixed_key_lifts_the_pause(fyno_emulator: Any) -> None:
    (user,) = make_users(1)
    with override_settings(FYNO=fyno(API_KEY=WRONG_KEY)):
        run_failing("--ids", str(user.pk))
    assert SharedPause(default_workspace()).gate().open is False

    out, _ = run("--ids", str(user.pk))  # an operator's run sends through the pause
    assert "created: 1, updated: 0, unchanged: 0, failed: 0" in out
    assert SharedPause(default_workspace()).gate().open is True
    assert FynoProfile.objects.get(user=user).state == FynoProfile.State.SYNCED


@pytest.mark.django_db
@override_settings(FYNO=fyno(API_KEY=WRONG_KEY))
def test_after_a_401_nothing_more_is_sent_to_the_workspace(fyno_emulator: Any) -> None:
    make_users(8)
    out, err, _ = run_failing("--chunk-size", "1", "--concurrency", "2")
    assert "failed: 8" in out
    # The chunks in flight when the 401 came back; none after them.
    refused = [e for e in fyno_emulator.emulator.request_log if e.status == 401]
    assert 1 <= len(refused) <= 2
    assert len(fyno_emulator.emulator.request_log) == len(refused)
    assert "not sent: Fyno refused the credentials of workspace" in err


@pytest.mark.django_db
@override_settings(FYNO=fyno())
def test_many_failures_are_named_ten_then_summed_up_by_cause(fyno_emulator: Any) -> None:
    make_users(14)
    fyno_emulator.emulator.set_fault("create_profile", fail_next=12, fail_next_status=400)
    out, err, _ = run_failing("--chunk-size", "5")
    assert "created: 2, updated: 0, unchanged: 0, failed: 12" in out
    assert len([line for line in err.splitlines() if line.startswith("user ")]) == 10
    assert "Failures by cause:\n  12 user(s): Fyno answered 400" in err

    fyno_emulator.emulator.set_fault("create_profile", fail_next=12, fail_next_status=400)
    out, err, _ = run_failing("--failed", "--verbosity", "2")  # the 12 again, all named
    assert "created: 0, updated: 0, unchanged: 0, failed: 12" in out
    assert len([line for line in err.splitlines() if line.startswith("user ")]) == 12
    assert "Failures by cause" not in err


@pytest.mark.django_db
def test_verbosity_0_prints_nothing_on_success(fyno_emulator: Any) -> None:
    make_users(2)
    out, err = run("--verbosity", "0")
    assert (out, err) == ("", "")
    assert len(fyno_emulator.emulator.profiles("test")) == 2


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
    out, err, message = run_failing()
    assert "1 user" in message
    assert "created: 2, updated: 0, unchanged: 0, failed: 1" in out
    assert "Fyno answered 400" in err
    assert FynoProfile.objects.filter(state=FynoProfile.State.FAILED).count() == 1

    # The failed one only, on the next run.
    out_again, _ = run("--failed")
    assert "created: 1, updated: 0, unchanged: 0, failed: 0" in out_again


@pytest.mark.django_db
@override_settings(FYNO=fyno())
def test_transient_failures_count_as_failed(fyno_emulator: Any) -> None:
    make_users(2)
    fyno_emulator.emulator.set_fault("create_profile", fail_next=1, fail_next_status=503)
    out, err, _ = run_failing()
    assert "created: 1, updated: 0, unchanged: 0, failed: 1" in out
    assert "Fyno answered 503" in err
    row = FynoProfile.objects.get(attempts=1)
    assert row.state == FynoProfile.State.PENDING  # retried by the next run
    out, _ = run()
    assert "created: 1, updated: 0, unchanged: 1, failed: 0" in out


@pytest.mark.django_db
@override_settings(FYNO=fyno(TASK_MODE="off"))
def test_dirty_syncs_rows_left_dirty(fyno_emulator: Any) -> None:
    ada = User.objects.create(username="ada", email="ada@example.com")
    make_users(2)
    out, _ = run("--dirty")
    assert "created: 1, updated: 0, unchanged: 0, failed: 0" in out
    assert set(fyno_emulator.emulator.profiles("test")) == {str(ada.pk)}
    assert FynoProfile.objects.get(user=ada).dirty_since is None
    out, _ = run("--dirty")
    assert "created: 0, updated: 0, unchanged: 0, failed: 0" in out


@pytest.mark.django_db
def test_concurrent_run_syncs_everyone(fyno_emulator: Any) -> None:
    make_users(12)
    out, _ = run("--concurrency", "4", "--chunk-size", "5")
    assert "created: 12, updated: 0, unchanged: 0, failed: 0" in out
    assert len(fyno_emulator.emulator.profiles("test")) == 12
    assert set(FynoProfile.objects.values_list("state", flat=True)) == {"synced"}


@pytest.mark.django_db
@pytest.mark.parametrize("option", ["--concurrency", "--chunk-size"])
def test_counts_below_one_are_refused(option: str) -> None:
    with pytest.raises(CommandError, match=f"{option} must be at least 1"):
        run(option, "0")


@pytest.mark.django_db(transaction=True)
def test_concurrency_32_over_http_needs_no_more_connections_than_the_pool(
    fyno_live_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fyno_live_emulator.emulator.set_fault(None, latency=0.05)  # requests overlap
    users = make_users(96)
    with (
        override_settings(FYNO=fyno(ENDPOINT=fyno_live_emulator.endpoint)),
        caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"),
    ):
        out, _ = run("--concurrency", "32", "--chunk-size", "48")
    assert "created: 96, updated: 0, unchanged: 0, failed: 0" in out
    assert set(fyno_live_emulator.emulator.profiles("test")) == {str(u.pk) for u in users}
    assert not [r for r in caplog.records if "Connection pool is full" in r.getMessage()]
