"""Shared fixtures for django-fyno's own tests.

The emulator fixtures (``fyno_emulator``, ``fyno_live_emulator``…) come from
the package's pytest plugin, :mod:`django_fyno.testing`, as users get them.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Celery is an optional extra: without it, the Celery fixtures are absent and the
# tests that need them skip (tests/test_without_celery.py runs that way).
pytest_plugins = ["tests.fixtures_browser"]
if importlib.util.find_spec("celery"):
    pytest_plugins.append("tests.fixtures_celery")


def make_user(name: str, *, save: bool = True, **extra: Any) -> Any:
    """A user of whatever AUTH_USER_MODEL is (the suite also runs with a custom one)."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    user = user_model(**{user_model.USERNAME_FIELD: f"{name}@example.com"}, **extra)
    if save:
        user.save()
    return user


def run_pytest_with_custom_user(
    *args: str, own_database: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run pytest on ``args`` in a subprocess under ``tests.settings_custom_user``
    (``testapp.EmailUser``: UUID key, email login, no names).

    By default the child uses in-memory SQLite: with this session's DATABASE_URL it
    would create, and drop, the very test database this session is using. With
    ``own_database`` it uses this session's database server, in a test database of
    its own (another ``FYNO_TEST_RUN_ID``).
    """
    env = dict(os.environ)
    if own_database:
        env["FYNO_TEST_RUN_ID"] = f"{env.get('FYNO_TEST_RUN_ID', '')}custom"
    else:
        env.pop("DATABASE_URL", None)
    return subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [
            sys.executable,
            "-m",
            "pytest",
            *args,
            "--ds=tests.settings_custom_user",
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def here() -> dict[str, str]:
    """The workspace fields of a row written now for the project's workspace (the
    settings in force), for tests that create outbox or profile rows directly."""
    from django_fyno.clients import default_workspace

    return default_workspace().fields()


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


@pytest.fixture(autouse=True)
def _background_publishes_stay_in_their_test() -> Iterator[None]:
    """Wait for a test's after-commit publishes before the next test patches Celery."""
    yield
    from django_fyno import dispatch

    assert dispatch.flush(10), "the background publisher did not finish within 10 s"


@pytest.fixture
def celery_tasks() -> Any:
    """:mod:`django_fyno.tasks`, for tests of the Celery side; skipped without Celery."""
    pytest.importorskip("celery", reason="Celery is an optional extra and is not installed")
    from django_fyno import tasks

    return tasks


@pytest.fixture
def webhook_live_server(live_server: Any) -> Any:
    """pytest-django's ``live_server``, asked for by name: its host is then appended to
    ALLOWED_HOSTS for the test (CommonMiddleware checks the host)."""
    return live_server
