"""Shared fixtures for django-fyno's own tests.

The emulator fixtures (``fyno_emulator``, ``fyno_live_emulator``…) come from
the package's pytest plugin, :mod:`django_fyno.testing`, as users get them.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

pytest_plugins = ["tests.fixtures_celery"]


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
