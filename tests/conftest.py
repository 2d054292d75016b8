"""Shared fixtures for django-fyno's own tests.

The emulator fixtures (``fyno_emulator``, ``fyno_live_emulator``…) come from
the package's pytest plugin, :mod:`django_fyno.testing`, as users get them.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.fixtures_celery"]


def require_service(name: str, available: bool, why: str) -> None:
    """Skip a test whose service is missing, or fail it when CI requires services."""
    if available:
        return
    if os.environ.get("FYNO_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{name} is required (FYNO_REQUIRE_SERVICES=1) but {why}")
    pytest.skip(f"{name} not available: {why}")
