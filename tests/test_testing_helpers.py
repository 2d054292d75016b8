"""The helpers users put in their own tests: the fyno_outbox fixture and assert_notified."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from django_fyno import notify, properties
from django_fyno.testing import FynoOutboxView, assert_notified
from tests.conftest import make_user

User = get_user_model()


@pytest.fixture(autouse=True)
def _no_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    # What is checked here is the outbox, not delivery.
    monkeypatch.setattr("django_fyno.outbox.schedule_delivery", lambda *args, **kwargs: None)


def test_the_plugin_imports_without_django_models() -> None:
    code = (
        "import sys, django_fyno.testing; "
        "assert 'django_fyno.models' not in sys.modules; "
        "assert 'django.db.models' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)  # noqa: S603 - our own code


def test_fyno_outbox_sees_the_rows_of_the_test(fyno_outbox: FynoOutboxView) -> None:
    assert len(fyno_outbox) == 0
    welcome = notify("welcome", "42", {"name": "Ada"})
    digests = notify("digest", ["7", "8"])
    (logins,) = properties("42").add("logins", 1).rows
    assert len(fyno_outbox) == 4
    assert list(fyno_outbox) == [welcome, *digests, logins]
    assert fyno_outbox.events() == [welcome, *digests]
    assert fyno_outbox.events("digest") == digests
    assert fyno_outbox.property_updates() == [logins]
    assert fyno_outbox.property_updates("$set") == []
    assert "'welcome' to '42' data={'name': 'Ada'} (pending)" in repr(fyno_outbox)


def test_clear_hides_earlier_rows(fyno_outbox: FynoOutboxView) -> None:
    notify("welcome", "42")
    fyno_outbox.clear()
    assert len(fyno_outbox) == 0
    assert fyno_outbox.all() == []
    later = notify("reset", "42")
    assert fyno_outbox.all() == [later]
    assert fyno_outbox.events() == [later]


@pytest.mark.django_db
def test_assert_notified_passes_and_returns_the_rows() -> None:
    user = make_user("ada")
    row = notify("welcome", user, {"name": "Ada", "plan": "pro"})
    notify("receipt", {"email": "buyer@example.com", "sms": "+447700900123"})
    assert assert_notified(user, "welcome") == [row]
    assert assert_notified(str(user.pk), "welcome", data={"name": "Ada"}, count=1) == [row]
    assert_notified({"email": "buyer@example.com"}, "receipt")
    assert_notified(user, "reset", count=0)


@pytest.mark.django_db
def test_assert_notified_counts_exactly() -> None:
    notify("digest", ["7", "8"])
    notify("digest", "7")
    assert len(assert_notified("7", "digest", count=2)) == 2
    with pytest.raises(AssertionError, match="Expected exactly 1 'digest' event"):
        assert_notified("7", "digest", count=1)


@pytest.mark.django_db
def test_assert_notified_failure_lists_what_was_notified() -> None:
    notify("welcome", "41", {"name": "Bob"})
    notify("reset", "42")
    with pytest.raises(AssertionError) as caught:
        assert_notified("42", "welcome", data={"name": "Ada"})
    message = str(caught.value)
    assert message.startswith(
        "Expected at least one 'welcome' event(s) to distinct id '42' "
        "with data containing {'name': 'Ada'}; found 0."
    )
    assert "The outbox holds 2 event(s):" in message
    assert "  - 'welcome' to '41' data={'name': 'Bob'} (pending)" in message
    assert "  - 'reset' to '42' data={} (pending)" in message


@pytest.mark.django_db
def test_assert_notified_says_when_nothing_was_notified() -> None:
    properties("42").set(plan="pro")  # property operations are not events
    with pytest.raises(AssertionError, match="The outbox holds no events"):
        assert_notified("42", "welcome")


@pytest.mark.django_db
def test_data_must_match_the_stored_values() -> None:
    notify("welcome", "42", {"items": (1, 2), "name": "Ada"})
    assert_notified("42", "welcome", data={"items": [1, 2]})
    with pytest.raises(AssertionError, match="found 0"):
        assert_notified("42", "welcome", data={"name": "Bob"})
    with pytest.raises(AssertionError, match="found 0"):
        assert_notified("42", "welcome", data={"missing": None})


@pytest.mark.django_db
def test_an_invalid_recipient_is_an_error_not_a_pass() -> None:
    from django_fyno.exceptions import FynoValidationError

    with pytest.raises(FynoValidationError):
        assert_notified(make_user("ghost", save=False), "welcome", count=0)


@pytest.mark.django_db(transaction=True)
def test_assert_notified_sees_committed_rows(fyno_outbox: FynoOutboxView, settings: Any) -> None:
    # With a real worker the rows are committed and may already be sent: still seen.
    settings.FYNO = {**settings.FYNO, "TASK_MODE": "off"}
    row = notify("welcome", "42")
    row.state = "sent"
    row.save(update_fields=["state"])
    assert assert_notified("42", "welcome") == [row]
    assert fyno_outbox.events("welcome") == [row]
