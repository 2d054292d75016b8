"""Fixtures of the browser tests: Debian's Chromium for Playwright, where screenshots
go, and django-fyno pointed at the emulator over HTTP (``live_server`` calls it from
another thread).

The browser is ``FYNO_CHROMIUM``, else ``chromium`` on PATH, else ``/usr/bin/chromium``;
nothing is downloaded. Without it, or without Playwright, a browser test skips, and
fails under ``FYNO_REQUIRE_SERVICES=1``. Screenshots go to a temporary folder, or to
``FYNO_SCREENSHOTS`` (``docs/_static`` refreshes the committed ones).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.cache import caches

from django_fyno.clients import reset_clients
from django_fyno.conf import fyno_settings
from django_fyno.testing import FynoEmulatorHandle
from tests.conftest import require_service

CHROMIUM = os.environ.get("FYNO_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def chromium() -> str:
    """The path of the Chromium to launch."""
    require_service(
        "Playwright",
        importlib.util.find_spec("playwright") is not None,
        "it is not installed (pip install -e '.[dev]')",
    )
    require_service(
        "Chromium",
        os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK),
        f"{CHROMIUM} is missing (apt-get install chromium)",
    )
    return CHROMIUM


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("FYNO_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def fyno_live(
    settings: Any, fyno_live_emulator: FynoEmulatorHandle
) -> Iterator[FynoEmulatorHandle]:
    """The emulator over HTTP as the project's Fyno, with the staff face's URLconf."""
    settings.ROOT_URLCONF = "tests.admin_urls"
    settings.FYNO = {
        **django_settings.FYNO,
        "ENDPOINT": fyno_live_emulator.endpoint,
        "AUTO_SYNC": False,
        "RETRY": {"MAX_ATTEMPTS": 1},
    }
    reset_clients()
    caches[fyno_settings.OUTBOX_CACHE].clear()
    yield fyno_live_emulator
    reset_clients()
    caches[fyno_settings.OUTBOX_CACHE].clear()
