"""sync.sync_profile against the in-process emulator: what is sent, and what is recorded."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import override_settings

from django_fyno import sync
from django_fyno.adapter import ProfileAdapter
from django_fyno.client import FynoTransientError
from django_fyno.clients import get_client
from django_fyno.models import FynoProfile
from django_fyno.receivers import skip_sync
from django_fyno.signals import (
    SyncVetoed,
    pre_profile_sync,
    profile_sync_failed,
    profile_synced,
)
from django_fyno.sync import SyncOutcome

pytestmark = pytest.mark.django_db

User = get_user_model()


def fyno(**extra: Any) -> dict[str, Any]:
    """The test FYNO settings plus ``extra``; the client does not retry by itself."""
    return {**settings.FYNO, "RETRY": {"MAX_ATTEMPTS": 1}, **extra}


def operations(emulator: Any) -> list[str]:
    return [entry.operation for entry in emulator.emulator.request_log]


def make_user(**fields: Any) -> Any:
    """A user that the receivers leave alone: only sync_profile talks to Fyno here."""
    user = User(username=fields.pop("username", "ada"), **fields)
    with skip_sync(user):
        user.save()
    return user


def resave(user: Any, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(user, name, value)
    with skip_sync(user):
        user.save()


class UsernameAdapter(ProfileAdapter):
    """Keyed on the username, so renaming a user changes its distinct id."""

    def get_distinct_id(self, user: Any) -> str:
        return f"user-{user.username}"


class PropertiesAdapter(ProfileAdapter):
    def get_properties(self, user: Any) -> dict[str, Any]:
        props: dict[str, Any] = {"plan": user.last_name or "free"}
        if user.first_name:
            props["nickname"] = user.first_name
        return props


class BlankIdAdapter(ProfileAdapter):
    def get_distinct_id(self, user: Any) -> str:
        return "   "


def test_first_sync_creates_the_profile_with_its_channels(fyno_emulator: Any) -> None:
    user = make_user(email="ada@example.com", first_name="Ada", last_name="Lovelace")
    assert sync.sync_profile(user.pk) is SyncOutcome.CREATED

    assert operations(fyno_emulator) == ["create_profile"]
    body = fyno_emulator.emulator.request_log[0].body
    assert body["channel"] == {"email": "ada@example.com"}
    profile = fyno_emulator.emulator.profile("test", str(user.pk))
    assert profile["name"] == "Ada Lovelace"
    assert profile["channel"]["email"] == "ada@example.com"
    row = FynoProfile.objects.get(user=user)
    assert row.state == FynoProfile.State.SYNCED
    assert row.distinct_id == str(user.pk)
    assert row.payload_hash
    assert row.synced_at is not None
    assert row.channels == {"email": "ada@example.com"}
    assert row.dirty_since is None
    assert row.attempts == 0
    assert row.last_error == ""


def test_unchanged_payload_sends_nothing(fyno_emulator: Any) -> None:
    user = make_user(email="ada@example.com")
    sync.sync_profile(user.pk)
    fyno_emulator.emulator.clear_request_log()
    resave(user)
    assert sync.sync_profile(user.pk) is SyncOutcome.UNCHANGED
    assert operations(fyno_emulator) == []


def test_force_resends_the_full_state_over_edits_made_in_fyno(fyno_emulator: Any) -> None:
    user = make_user(email="ada@example.com", first_name="Ada")
    sync.sync_profile(user.pk)
    expected = fyno_emulator.emulator.profile("test", str(user.pk))
    # Someone edits the profile in Fyno directly; our hash still matches.
    client = get_client()
    client.update_profile(str(user.pk), name="Edited", status=0)
    client.update_channels(str(user.pk), {"email": "edited@example.com"})
    fyno_emulator.emulator.clear_request_log()
    assert sync.sync_profile(user.pk) is SyncOutcome.UNCHANGED
    assert operations(fyno_emulator) == []

    assert sync.sync_profile(user.pk, force=True) is SyncOutcome.UPDATED
    # The profile PUT without channel, then every synced channel with PATCH.
    assert operations(fyno_emulator) == ["update_profile", "update_channels"]
    assert "channel" not in fyno_emulator.emulator.request_log[0].body
    restored = fyno_emulator.emulator.profile("test", str(user.pk))
    assert (restored["name"], restored["status"]) == ("Ada", 1)
    assert restored["channel"]["email"] == expected["channel"]["email"] == "ada@example.com"


def test_name_change_is_a_put_without_channel(fyno_emulator: Any) -> None:
    user = make_user(email="ada@example.com", first_name="Ada")
    sync.sync_profile(user.pk)
    fyno_emulator.emulator.clear_request_log()
    resave(user, first_name="Augusta", is_active=False)

    assert sync.sync_profile(user.pk) is SyncOutcome.UPDATED
    assert operations(fyno_emulator) == ["update_profile"]
    body = fyno_emulator.emulator.request_log[0].body
    assert body == {"name": "Augusta", "status": 0}
    assert "channel" not in body


def test_changed_email_is_a_channel_patch(fyno_emulator: Any) -> None:
    user = make_user(email="ada@example.com")
    sync.sync_profile(user.pk)
    fyno_emulator.emulator.clear_request_log()
    resave(user, email="countess@example.com")

    sync.sync_profile(user.pk)
    assert operations(fyno_emulator) == ["update_channels"]
    assert fyno_emulator.emulator.request_log[0].body == {
        "channel": {"email": "countess@example.com"}
    }
    profile = fyno_emulator.emulator.profile("test", str(user.pk))
    assert profile["channel"]["email"] == "countess@example.com"


def test_cleared_email_deletes_the_channel(fyno_emulator: Any) -> None:
    user = make_user(email="ada@example.com", first_name="Ada")
    sync.sync_profile(user.pk)
    fyno_emulator.emulator.clear_request_log()
    resave(user, email="")

    sync.sync_profile(user.pk)
    assert operations(fyno_emulator) == ["delete_channels"]
    assert fyno_emulator.emulator.request_log[0].body == {"channel": ["email"]}
    profile = fyno_emulator.emulator.profile("test", str(user.pk))
    assert "email" not in profile["channel"]
    assert FynoProfile.objects.get(user=user).channels == {}


def test_push_tokens_registered_by_an_sdk_survive_a_sync(fyno_emulator: Any) -> None:
    user = make_user(email="ada@example.com", first_name="Ada")
    sync.sync_profile(user.pk)
    get_client().update_channels(str(user.pk), {"push": [{"token": "fcm_token:sdk"}]})
    resave(user, first_name="Augusta", email="")
    resave(user, email="countess@example.com")

    sync.sync_profile(user.pk)
    profile = fyno_emulator.emulator.profile("test", str(user.pk))
    assert [token["token"] for token in profile["channel"]["push"]] == ["fcm_token:sdk"]
    assert profile["channel"]["email"] == "countess@example.com"
    sent = [entry.body for entry in fyno_emulator.emulator.request_log]
    assert not any("push" in str(body.get("channel", "")) for body in sent[2:])


class PushAdapter(ProfileAdapter):
    def get_channels(self, user: Any) -> dict[str, str]:
        return {"email": user.email, "push": "fcm_token:from-adapter"}


@override_settings(FYNO=fyno(PROFILE_ADAPTER="tests.test_sync_profile.PushAdapter"))
def test_token_channels_from_an_adapter_are_never_sent(fyno_emulator: Any) -> None:
    user = make_user(email="ada@example.com")
    sync.sync_profile(user.pk)
    assert fyno_emulator.emulator.request_log[0].body["channel"] == {"email": "ada@example.com"}


def test_profile_created_elsewhere_first_is_updated(fyno_emulator: Any) -> None:
    user = make_user(email="ada@example.com", first_name="Ada")
    get_client().create_profile(str(user.pk), channel={"push": [{"token": "fcm_token:sdk"}]})
    fyno_emulator.emulator.clear_request_log()

    assert sync.sync_profile(user.pk) is SyncOutcome.UPDATED
    assert operations(fyno_emulator) == ["create_profile", "update_profile", "update_channels"]
    profile = fyno_emulator.emulator.profile("test", str(user.pk))
    assert profile["name"] == "Ada"
    assert profile["channel"]["email"] == "ada@example.com"
    assert profile["channel"]["push"][0]["token"] == "fcm_token:sdk"


def test_profile_deleted_in_fyno_is_created_again(fyno_emulator: Any) -> None:
    user = make_user(email="ada@example.com")
    sync.sync_profile(user.pk)
    get_client().delete_profiles([str(user.pk)])
    fyno_emulator.emulator.clear_request_log()
    resave(user, email="countess@example.com")

    assert sync.sync_profile(user.pk) is SyncOutcome.CREATED
    assert operations(fyno_emulator) == ["update_channels", "create_profile"]
    profile = fyno_emulator.emulator.profile("test", str(user.pk))
    assert profile["channel"]["email"] == "countess@example.com"


@override_settings(FYNO=fyno(PROFILE_ADAPTER="tests.test_sync_profile.UsernameAdapter"))
def test_distinct_id_change_merges_then_syncs(fyno_emulator: Any) -> None:
    user = make_user(username="ada", email="ada@example.com")
    sync.sync_profile(user.pk)
    fyno_emulator.emulator.clear_request_log()
    resave(user, username="augusta", email="countess@example.com")

    assert sync.sync_profile(user.pk) is SyncOutcome.UPDATED
    log = fyno_emulator.emulator.request_log
    assert log[0].operation == "merge_profiles"
    assert log[0].path.endswith("/profiles/user-ada/merge/user-augusta")
    assert fyno_emulator.emulator.profile("test", "user-ada") is None
    profile = fyno_emulator.emulator.profile("test", "user-augusta")
    assert profile["channel"]["email"] == "countess@example.com"
    assert FynoProfile.objects.get(user=user).distinct_id == "user-augusta"


@override_settings(FYNO=fyno(PROFILE_ADAPTER="tests.test_sync_profile.UsernameAdapter"))
def test_distinct_id_of_a_deleted_user_pending_deletion_is_taken_over(
    fyno_emulator: Any,
) -> None:
    old = make_user(username="ada", email="old@example.com", first_name="Old")
    sync.sync_profile(old.pk)
    old.delete()  # its profile is queued for deletion, not yet deleted
    assert FynoProfile.objects.get().state == FynoProfile.State.DELETING
    new = make_user(username="ada2", email="")
    resave(new, username="ada")  # same distinct id as the deleted user

    sync.sync_profile(new.pk)
    # The queued deletion is cancelled; the old user's channels are removed.
    assert not FynoProfile.objects.filter(state=FynoProfile.State.DELETING).exists()
    profile = fyno_emulator.emulator.profile("test", "user-ada")
    assert "email" not in profile["channel"]
    assert FynoProfile.objects.get(user=new).distinct_id == "user-ada"


@override_settings(FYNO=fyno(PROFILE_ADAPTER="tests.test_sync_profile.PropertiesAdapter"))
def test_properties_are_set_and_unset_when_they_change(fyno_emulator: Any) -> None:
    user = make_user(email="ada@example.com", first_name="Ada")
    sync.sync_profile(user.pk)
    assert operations(fyno_emulator) == ["create_profile", "set_properties"]
    assert fyno_emulator.emulator.request_log[1].body["$set"] == {"plan": "free", "nickname": "Ada"}
    fyno_emulator.emulator.clear_request_log()

    resave(user, first_name="", last_name="pro")
    sync.sync_profile(user.pk)
    log = fyno_emulator.emulator.request_log
    assert [entry.operation for entry in log] == [
        "update_profile",
        "set_properties",
        "unset_properties",
    ]
    assert log[1].body["$set"] == {"plan": "pro"}
    assert log[2].body["$unset"] == ["nickname"]


@override_settings(FYNO=fyno(PROFILE_ADAPTER="tests.test_sync_profile.BlankIdAdapter"))
def test_validation_error_marks_the_row_failed_without_retry(fyno_emulator: Any) -> None:
    user = make_user(email="ada@example.com")
    failures: list[dict[str, Any]] = []

    def on_failure(**kwargs: Any) -> None:
        failures.append(kwargs)

    profile_sync_failed.connect(on_failure)
    try:
        assert sync.sync_profile(user.pk) is SyncOutcome.FAILED  # does not raise: no retry
    finally:
        profile_sync_failed.disconnect(on_failure)
    assert operations(fyno_emulator) == []
    row = FynoProfile.objects.get(user=user)
    assert row.state == FynoProfile.State.FAILED
    assert "distinct_id" in row.last_error
    assert "test-api-key" not in row.last_error
    assert row.payload_hash == ""


def test_fyno_400_marks_the_row_failed_and_signals(
    fyno_emulator: Any, django_capture_on_commit_callbacks: Any
) -> None:
    user = make_user(email="ada@example.com")
    fyno_emulator.emulator.set_fault("create_profile", fail_next=1, fail_next_status=400)
    failures: list[dict[str, Any]] = []

    def on_failure(**kwargs: Any) -> None:
        failures.append(kwargs)

    profile_sync_failed.connect(on_failure)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            assert sync.sync_profile(user.pk) is SyncOutcome.FAILED
    finally:
        profile_sync_failed.disconnect(on_failure)
    row = FynoProfile.objects.get(user=user)
    assert (row.state, row.attempts) == (FynoProfile.State.FAILED, 1)
    assert "400" in row.last_error
    assert len(failures) == 1
    assert failures[0]["user"] == user
    assert failures[0]["profile"].pk == row.pk
    assert failures[0]["error"].status == 400


@override_settings(FYNO=fyno())
def test_transient_error_is_raised_counted_then_recovers(fyno_emulator: Any) -> None:
    user = make_user(email="ada@example.com", first_name="Ada")
    sync.sync_profile(user.pk)
    resave(user, first_name="Augusta")
    fyno_emulator.emulator.set_fault("update_profile", fail_next=2, fail_next_status=503)

    for attempt in (1, 2):
        with pytest.raises(FynoTransientError):
            sync.sync_profile(user.pk)
        row = FynoProfile.objects.get(user=user)
        assert row.attempts == attempt
        assert row.state == FynoProfile.State.SYNCED  # last good state kept, still dirty
        assert "503" in row.last_error

    assert sync.sync_profile(user.pk) is SyncOutcome.UPDATED
    row = FynoProfile.objects.get(user=user)
    assert (row.attempts, row.last_error) == (0, "")
    assert fyno_emulator.emulator.profile("test", str(user.pk))["name"] == "Augusta"


def test_task_retries_only_the_users_with_a_transient_error(
    fyno_emulator: Any, monkeypatch: pytest.MonkeyPatch, celery_tasks: Any
) -> None:
    sync_profiles_task = celery_tasks.sync_profiles_task
    assert isinstance(sync_profiles_task, celery_tasks.FynoTask)
    assert sync_profiles_task.acks_late is True
    assert sync_profiles_task.ignore_result is True
    assert sync_profiles_task.max_retries == 8
    with override_settings(FYNO=fyno(SYNC_MAX_RETRIES=2)):
        assert sync_profiles_task.max_retries == 2
    ada = make_user(email="ada@example.com")
    bob = make_user(username="bob", email="bob@example.com")
    fyno_emulator.emulator.set_fault("create_profile", fail_next=1, fail_next_status=503)
    retried: list[dict[str, Any]] = []

    def retry(**kwargs: Any) -> Exception:
        retried.append(kwargs)
        return RuntimeError("retry raised")

    monkeypatch.setattr(sync_profiles_task, "retry", retry)
    with override_settings(FYNO=fyno()), pytest.raises(RuntimeError, match="retry raised"):
        sync_profiles_task.run([ada.pk, bob.pk])
    # Ada met the 503 and is retried alone, with a backoff; Bob was synced.
    assert [call["args"] for call in retried] == [[[ada.pk]]]
    assert isinstance(retried[0]["exc"], FynoTransientError)
    assert 0 <= retried[0]["countdown"] <= 600
    assert fyno_emulator.emulator.profile("test", str(bob.pk)) is not None


def test_dirty_mark_bumped_during_a_sync_is_kept(fyno_emulator: Any) -> None:
    user = make_user(email="ada@example.com")
    sync.mark_dirty([user])

    def newer_save(**kwargs: Any) -> None:
        sync.mark_dirty([user])  # a save committed while we were talking to Fyno

    pre_profile_sync.connect(newer_save)
    try:
        sync.sync_profile(user.pk)
    finally:
        pre_profile_sync.disconnect(newer_save)
    assert FynoProfile.objects.get(user=user).dirty_since is not None

    fyno_emulator.emulator.clear_request_log()
    assert sync.sync_profile(user.pk) is SyncOutcome.UNCHANGED
    assert FynoProfile.objects.get(user=user).dirty_since is None


def test_signals_carry_their_documented_arguments(
    fyno_emulator: Any, django_capture_on_commit_callbacks: Any
) -> None:
    user = make_user(email="ada@example.com")
    seen: list[tuple[str, dict[str, Any]]] = []

    def before(sender: Any, **kwargs: Any) -> None:
        seen.append(("pre", {"sender": sender, **kwargs}))

    def after(sender: Any, **kwargs: Any) -> None:
        seen.append(("post", {"sender": sender, **kwargs}))

    pre_profile_sync.connect(before)
    profile_synced.connect(after)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            sync.sync_profile(user.pk)
            assert [name for name, _ in seen] == ["pre"]  # post: after commit only
    finally:
        pre_profile_sync.disconnect(before)
        profile_synced.disconnect(after)
    (_, pre), (_, post) = seen
    assert pre["sender"] is FynoProfile
    assert post["sender"] is FynoProfile
    assert pre["user"] == user
    assert post["user"] == user
    assert pre["payload"].distinct_id == str(user.pk)
    assert isinstance(pre["profile"], FynoProfile)
    assert post["created"] is True
    assert post["profile"].state == FynoProfile.State.SYNCED
    assert post["payload"].channels == {"email": "ada@example.com"}


def test_pre_sync_receiver_can_veto(fyno_emulator: Any) -> None:
    user = make_user(email="ada@example.com")

    def veto(**kwargs: Any) -> None:
        raise SyncVetoed("not this one")

    pre_profile_sync.connect(veto)
    try:
        assert sync.sync_profile(user.pk) is SyncOutcome.VETOED
    finally:
        pre_profile_sync.disconnect(veto)
    assert operations(fyno_emulator) == []
    assert FynoProfile.objects.get(user=user).payload_hash == ""
    assert sync.sync_profile(user.pk) is SyncOutcome.CREATED


class NobodyAdapter(ProfileAdapter):
    def should_sync(self, user: Any) -> bool:
        return False


@override_settings(FYNO=fyno(PROFILE_ADAPTER="tests.test_sync_profile.NobodyAdapter"))
def test_should_sync_false_never_creates_a_profile(fyno_emulator: Any) -> None:
    user = make_user(email="ada@example.com")
    assert sync.sync_profile(user.pk) is SyncOutcome.EXCLUDED
    assert operations(fyno_emulator) == []
    assert FynoProfile.objects.get(user=user).state == FynoProfile.State.EXCLUDED


class ActiveCustomersAdapter(ProfileAdapter):
    def should_sync(self, user: Any) -> bool:
        return user.last_name != "Excluded"


@override_settings(FYNO=fyno(PROFILE_ADAPTER="tests.test_sync_profile.ActiveCustomersAdapter"))
def test_a_user_who_stops_qualifying_gets_status_0_then_1_again(fyno_emulator: Any) -> None:
    user = make_user(email="ada@example.com", first_name="Ada")
    assert sync.sync_profile(user.pk) is SyncOutcome.CREATED
    fyno_emulator.emulator.clear_request_log()

    resave(user, last_name="Excluded")
    assert sync.sync_profile(user.pk) is SyncOutcome.EXCLUDED
    assert operations(fyno_emulator) == ["update_profile"]
    assert fyno_emulator.emulator.request_log[0].body == {"status": 0}
    assert fyno_emulator.emulator.profile("test", str(user.pk))["status"] == 0
    row = FynoProfile.objects.get(user=user)
    assert (row.state, row.payload["status"]) == (FynoProfile.State.EXCLUDED, 0)
    # Still excluded: nothing more to send.
    fyno_emulator.emulator.clear_request_log()
    assert sync.sync_profile(user.pk) is SyncOutcome.EXCLUDED
    assert operations(fyno_emulator) == []

    resave(user, last_name="Lovelace")
    assert sync.sync_profile(user.pk) is SyncOutcome.UPDATED
    profile = fyno_emulator.emulator.profile("test", str(user.pk))
    assert (profile["status"], profile["name"]) == (1, "Ada Lovelace")
    assert FynoProfile.objects.get(user=user).state == FynoProfile.State.SYNCED


def test_missing_user_and_disabled_sync_send_nothing(fyno_emulator: Any) -> None:
    assert sync.sync_profile(987654) is SyncOutcome.MISSING
    user = make_user(email="ada@example.com")
    with override_settings(FYNO=fyno(ENABLED=False)):
        assert sync.sync_profile(user.pk) is SyncOutcome.SKIPPED
    assert operations(fyno_emulator) == []


def test_the_dirty_mark_sends_only_what_varies_and_writes_every_default() -> None:
    user = make_user(email="ada@example.com")
    sent: list[tuple[str, Any]] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        sent.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        sync.mark_dirty([user])
    ((sql, params),) = sent
    assert "INSERT" in sql
    # The user, three times "now", and the workspace: the defaults are literals.
    assert len(params) == 7
    assert user.pk in params
    row = FynoProfile.objects.get(user=user)
    fresh = FynoProfile()
    for name in ("distinct_id", "state", "payload_hash", "channels", "payload", "synced_at"):
        assert getattr(row, name) == getattr(fresh, name), name
    assert (row.attempts, row.last_error) == (0, "")
    assert row.dirty_since is not None
    assert row.created_at == row.updated_at == row.dirty_since
    assert (row.wsid, row.version) == (settings.FYNO["WSID"], settings.FYNO.get("VERSION", "live"))
