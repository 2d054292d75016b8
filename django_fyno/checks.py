"""System checks for django-fyno's settings (``manage.py check``).

Each check has a stable id, so a project can silence one with
``SILENCED_SYSTEM_CHECKS``:

- ``fyno.E001`` ``FYNO`` is not a dict, or has keys that are not settings (typos).
- ``fyno.E002`` credentials (WSID, API key) are missing while django-fyno is enabled.
- ``fyno.E003`` ``VERSION`` is neither ``live`` nor ``test``.
- ``fyno.E004`` ``TASK_MODE`` is not one of ``celery``, ``inline``, ``off``.
- ``fyno.E005`` ``TASK_MODE`` is ``celery`` but Celery is not installed, or not
  configured (the current Celery app has no broker and does not run tasks eagerly).
- ``fyno.E006`` ``PROFILE_ADAPTER`` does not import, or is not a ``ProfileAdapter`` subclass.
- ``fyno.E007`` ``UNKNOWN_POLICY`` is neither ``retry`` nor ``hold``.
- ``fyno.E008`` another setting has a value of the wrong type or range (the
  message names the setting; secrets are never repeated).
- ``fyno.W001`` ``VERSION`` is ``live`` while ``DEBUG`` is on.
- ``fyno.W002`` the webhook URLs (``django_fyno.urls``) are in the URLconf but
  ``WEBHOOK_SECRET`` is empty, so the webhook refuses every request.
- ``fyno.W004`` ``OUTBOX_LEASE_SECONDS`` is not longer than one send can take.
- ``fyno.W003`` ``CELERY_QUEUE`` is set: a worker must consume that queue
  (``-Q``), or django-fyno's tasks never run.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from django.core.checks import CheckMessage, Error, Tags, Warning, register

from django_fyno.adapter import load_adapter_class
from django_fyno.conf import DEFAULTS, TaskMode, Version, fyno_settings
from django_fyno.exceptions import FynoConfigurationError


def _celery_is_configured() -> bool:
    from celery import current_app  # type: ignore[import-untyped]

    conf = current_app.conf
    return bool(conf.broker_url or conf.task_always_eager)


# The setting whose invalid value each check id reports; every other one is E008.
_IDS_FOR_INVALID = {"VERSION": "fyno.E003", "TASK_MODE": "fyno.E004", "UNKNOWN_POLICY": "fyno.E007"}


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if not fyno_settings.is_a_dict():
        return [Error("settings.FYNO must be a dict.", id="fyno.E001")]
    for key in fyno_settings.unknown_keys():
        messages.append(
            Error(
                f"settings.FYNO has an unknown key {key!r}.",
                hint=f"Known keys: {', '.join(DEFAULTS)}.",
                id="fyno.E001",
            )
        )
    problems = fyno_settings.problems()
    for name, problem in problems.items():
        messages.append(
            Error(problem, hint="See docs/settings.md.", id=_IDS_FOR_INVALID.get(name, "fyno.E008"))
        )
    enabled = "ENABLED" in problems or fyno_settings.ENABLED
    if enabled:
        missing = [name for name in ("WSID", "API_KEY") if not fyno_settings.raw(name)]
        if missing:
            messages.append(
                Error(
                    f"Fyno credentials are missing: {', '.join(missing)}.",
                    hint='Set FYNO = {"WSID": ..., "API_KEY": ...} or the FYNO_WSID and '
                    "FYNO_API_KEY environment variables, or set FYNO['ENABLED'] = False.",
                    id="fyno.E002",
                )
            )
    if "TASK_MODE" not in problems and fyno_settings.TASK_MODE is TaskMode.CELERY:
        messages += _celery_messages()
    if "CELERY_QUEUE" not in problems and fyno_settings.CELERY_QUEUE:
        queue = fyno_settings.CELERY_QUEUE
        messages.append(
            Warning(
                f"django-fyno's tasks go to the Celery queue {queue!r} (FYNO['CELERY_QUEUE']): "
                f"a worker started without -Q {queue} never runs them.",
                hint=f"Start a worker that consumes it, e.g. `celery -A proj worker -Q "
                f"celery,{queue}`, or remove CELERY_QUEUE to use Celery's default queue.",
                id="fyno.W003",
            )
        )
    if not {"OUTBOX_LEASE_SECONDS", "RETRY", "CONNECT_TIMEOUT", "READ_TIMEOUT"} & set(problems):
        messages += _lease_messages()
    if (
        not {"ADD_LINKS_TO_EVENTS", "SITE_URL"} & set(problems)
        and fyno_settings.ADD_LINKS_TO_EVENTS
        and not fyno_settings.SITE_URL
    ):
        messages.append(
            Error(
                "FYNO['ADD_LINKS_TO_EVENTS'] is on but FYNO['SITE_URL'] is empty: notify() "
                "cannot make the links absolute.",
                hint="Set FYNO['SITE_URL'] to your site's base URL, e.g. 'https://example.com'.",
                id="fyno.E009",
            )
        )
    if (
        "VERSION" not in problems
        and fyno_settings.VERSION is Version.LIVE
        and fyno_settings.django_debug
    ):
        messages.append(
            Warning(
                "FYNO['VERSION'] is 'live' while DEBUG is on: development traffic "
                "reaches your real users.",
                hint="Use 'test' in development, or silence fyno.W001.",
                id="fyno.W001",
            )
        )
    return messages


def _lease_messages() -> list[CheckMessage]:
    """fyno.W004: one request may outlast a lease, and its rows be sent twice."""
    longest = (
        fyno_settings.RETRY["DEADLINE"] + fyno_settings.CONNECT_TIMEOUT + fyno_settings.READ_TIMEOUT
    )
    lease = fyno_settings.OUTBOX_LEASE_SECONDS
    if lease > longest:
        return []
    return [
        Warning(
            f"FYNO['OUTBOX_LEASE_SECONDS'] ({lease}s) is not longer than one send can take "
            f"(RETRY['DEADLINE'] + CONNECT_TIMEOUT + READ_TIMEOUT = {longest:g}s): the "
            "sweeper may take back rows whose request is still under way, and send them twice.",
            hint="Raise OUTBOX_LEASE_SECONDS, or lower the client's deadline and timeouts.",
            id="fyno.W004",
        )
    ]


def _celery_messages() -> list[CheckMessage]:
    """fyno.E005: TASK_MODE "celery" needs Celery installed and configured."""
    if importlib.util.find_spec("celery") is None:
        return [
            Error(
                "FYNO['TASK_MODE'] is 'celery' but Celery is not installed.",
                hint="Install django-fyno[celery], or set FYNO['TASK_MODE'] = 'inline'.",
                id="fyno.E005",
            )
        ]
    if not _celery_is_configured():
        return [
            Error(
                "FYNO['TASK_MODE'] is 'celery' but Celery is not configured: the current "
                "Celery app has no broker and does not run tasks eagerly.",
                hint="Load your Celery app in your project's __init__.py and set "
                "CELERY_BROKER_URL (or task_always_eager), or set FYNO['TASK_MODE'] = "
                "'inline' to run the work in-process after commit (see docs/celery.md).",
                id="fyno.E005",
            )
        ]
    return []


@register(Tags.compatibility)
def check_profile_adapter(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """fyno.E006: the adapter is resolved lazily, so a wrong path would otherwise
    surface only at the first sync, inside a worker."""
    try:
        load_adapter_class(fyno_settings.PROFILE_ADAPTER)
    except FynoConfigurationError as error:
        return [
            Error(
                str(error),
                hint="Name a subclass of django_fyno.adapter.ProfileAdapter, or leave "
                "PROFILE_ADAPTER out to use the default.",
                id="fyno.E006",
            )
        ]
    return []


def _webhook_is_routed() -> bool:
    from django.urls import NoReverseMatch, reverse

    try:
        reverse("django_fyno:webhook")
    except NoReverseMatch:
        return False
    except (AttributeError, ImportError):
        # No ROOT_URLCONF, or one that does not import: Django's own URL checks say so.
        return False
    return True


@register(Tags.security)
def check_webhook_secret(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """fyno.W002: without a secret the webhook fails closed, so Fyno's delivery
    reports would be refused (403) until one is set."""
    from django_fyno.webhooks import configured_secrets

    if configured_secrets() or not _webhook_is_routed():
        return []
    return [
        Warning(
            "The Fyno webhook URLs are installed but FYNO['WEBHOOK_SECRET'] is empty: "
            "the webhook refuses every request.",
            hint="Set FYNO['WEBHOOK_SECRET'] to a long random URL-safe string and register "
            "the webhook URL carrying it in Fyno, or silence fyno.W002.",
            id="fyno.W002",
        )
    ]
