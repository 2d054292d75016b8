"""System checks for django-fyno's settings (``manage.py check``).

Each check has a stable id, so a project can silence one with
``SILENCED_SYSTEM_CHECKS``:

- ``fyno.E001`` ``FYNO`` is not a dict, or has keys that are not settings (typos).
- ``fyno.E002`` credentials (WSID, API key) are missing while django-fyno is enabled.
- ``fyno.E003`` ``VERSION`` is neither ``live`` nor ``test``.
- ``fyno.E004`` ``TASK_MODE`` is not one of ``celery``, ``on_commit``, ``off``.
- ``fyno.E005`` ``TASK_MODE`` is ``celery`` but Celery is not installed, or not
  configured (the current Celery app has no broker and does not run tasks eagerly).
- ``fyno.E006`` ``PROFILE_ADAPTER`` does not import, or is not a ``ProfileAdapter`` subclass.
- ``fyno.E007`` ``UNKNOWN_POLICY`` is neither ``retry`` nor ``hold``.
- ``fyno.W001`` ``VERSION`` is ``live`` while ``DEBUG`` is on.
- ``fyno.W002`` the webhook URLs (``django_fyno.urls``) are in the URLconf but
  ``WEBHOOK_SECRET`` is empty, so the webhook refuses every request.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from django_fyno.adapter import load_adapter_class
from django_fyno.conf import DEFAULTS, TASK_MODES, fyno_settings
from django_fyno.exceptions import FynoConfigurationError


def _celery_is_configured() -> bool:
    from celery import current_app  # type: ignore[import-untyped]

    conf = current_app.conf
    return bool(conf.broker_url or conf.task_always_eager)


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    raw = getattr(settings, "FYNO", None)
    if raw is not None and not isinstance(raw, dict):
        return [Error("settings.FYNO must be a dict.", id="fyno.E001")]
    for key in fyno_settings.unknown_keys():
        messages.append(
            Error(
                f"settings.FYNO has an unknown key {key!r}.",
                hint=f"Known keys: {', '.join(DEFAULTS)}.",
                id="fyno.E001",
            )
        )
    if fyno_settings.ENABLED:
        missing = [name for name in ("WSID", "API_KEY") if not getattr(fyno_settings, name)]
        if missing:
            messages.append(
                Error(
                    f"Fyno credentials are missing: {', '.join(missing)}.",
                    hint='Set FYNO = {"WSID": ..., "API_KEY": ...} or the FYNO_WSID and '
                    "FYNO_API_KEY environment variables, or set FYNO['ENABLED'] = False.",
                    id="fyno.E002",
                )
            )
    if fyno_settings.VERSION not in ("live", "test"):
        messages.append(
            Error(
                f"FYNO['VERSION'] is {fyno_settings.VERSION!r}; it must be 'live' or 'test'.",
                id="fyno.E003",
            )
        )
    if fyno_settings.TASK_MODE not in TASK_MODES:
        messages.append(
            Error(
                f"FYNO['TASK_MODE'] is {fyno_settings.TASK_MODE!r}; "
                f"it must be one of {', '.join(TASK_MODES)}.",
                id="fyno.E004",
            )
        )
    elif fyno_settings.TASK_MODE == "celery" and importlib.util.find_spec("celery") is None:
        messages.append(
            Error(
                "FYNO['TASK_MODE'] is 'celery' but Celery is not installed.",
                hint="Install celery, or set FYNO['TASK_MODE'] = 'on_commit'.",
                id="fyno.E005",
            )
        )
    elif fyno_settings.TASK_MODE == "celery" and not _celery_is_configured():
        messages.append(
            Error(
                "FYNO['TASK_MODE'] is 'celery' but Celery is not configured: the current "
                "Celery app has no broker and does not run tasks eagerly.",
                hint="Load your Celery app in your project's __init__.py and set "
                "CELERY_BROKER_URL (or task_always_eager), or set FYNO['TASK_MODE'] = "
                "'on_commit' to run the sync in-process after commit.",
                id="fyno.E005",
            )
        )
    if fyno_settings.UNKNOWN_POLICY not in ("retry", "hold"):
        messages.append(
            Error(
                f"FYNO['UNKNOWN_POLICY'] is {fyno_settings.UNKNOWN_POLICY!r}; "
                "it must be 'retry' (at-least-once) or 'hold' (at-most-once).",
                id="fyno.E007",
            )
        )
    if fyno_settings.VERSION == "live" and settings.DEBUG:
        messages.append(
            Warning(
                "FYNO['VERSION'] is 'live' while DEBUG is on: development traffic "
                "reaches your real users.",
                hint="Use 'test' in development, or silence fyno.W001.",
                id="fyno.W001",
            )
        )
    return messages


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
