"""Shared fixtures for django-fyno's own tests.

The emulator fixtures (``fyno_emulator``, ``fyno_live_emulator``…) come from
the package's pytest plugin, :mod:`django_fyno.testing`, as users get them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pytest

pytest_plugins = ["tests.fixtures_celery"]


def make_user(name: str, *, save: bool = True, **extra: Any) -> Any:
    """A user of whatever AUTH_USER_MODEL is (the suite also runs with a custom one)."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    user = user_model(**{user_model.USERNAME_FIELD: f"{name}@example.com"}, **extra)
    if save:
        user.save()
    return user


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """Poll ``predicate`` until it returns something truthy (bounded); fail the test after.

    For end-to-end tests, whose work happens in a Celery worker or another thread.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def require_service(name: str, available: bool, why: str) -> None:
    """Skip a test whose service is missing, or fail it when CI requires services."""
    if available:
        return
    if os.environ.get("FYNO_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{name} is required (FYNO_REQUIRE_SERVICES=1) but {why}")
    pytest.skip(f"{name} not available: {why}")


@pytest.fixture(scope="session")
def webhook_live_server(request: pytest.FixtureRequest) -> Any:
    """pytest-django's ``live_server``, started with a STATIC_URL.

    Its static-files handler reads STATIC_URL when the (session-wide) server
    starts, and the test settings have none.
    """
    from django.test import override_settings

    with override_settings(STATIC_URL="/static/"):
        return request.getfixturevalue("live_server")
