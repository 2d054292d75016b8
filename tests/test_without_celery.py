"""Celery is an optional extra: inline mode works without it; E005 says when it is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What a project without Celery uses: the receivers, sync, notify and the outbox, inline.
INLINE_PART = [
    "tests/test_receivers.py",
    "tests/test_sync_profile.py",
    "tests/test_notify.py",
    "tests/test_outbox_delivery.py",
    "tests/test_conf.py",
]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    # SQLite, services optional: the point is Celery's absence, not the services.
    env.pop("DATABASE_URL", None)
    env.pop("FYNO_REQUIRE_SERVICES", None)
    return subprocess.run(  # noqa: S603 - our own interpreter and test suite
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_the_inline_part_of_the_suite_passes_without_celery() -> None:
    result = _run(
        "-m", "pytest", "-q", "-p", "tests.no_celery", "-p", "no:cacheprovider", *INLINE_PART
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 100, summary
    # The Celery-only tests were skipped, not run.
    assert "skipped" in summary


def test_e005_says_celery_is_missing_and_inline_mode_needs_it_not() -> None:
    code = """
import sys
import tests.no_celery
import django
from django.conf import settings
from django.core import checks
from django.test.utils import override_settings
django.setup()
assert sys.modules.get("celery") is None
def ids():
    return sorted(m.id for m in checks.run_checks(databases=[]) if m.id.startswith("fyno."))
with override_settings(FYNO={**settings.FYNO, "TASK_MODE": "celery"}):
    found = [m for m in checks.run_checks(databases=[]) if m.id == "fyno.E005"]
    assert len(found) == 1 and "not installed" in found[0].msg, found
    assert "django-fyno[celery]" in found[0].hint, found[0].hint
with override_settings(FYNO={**settings.FYNO, "TASK_MODE": "inline"}):
    assert ids() == [], ids()
print("ok")
"""
    result = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"
