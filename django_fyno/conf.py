"""The one place django-fyno reads settings.

Configure the app with one dict in your settings::

    FYNO = {
        "WSID": "FYXXXXXXXX",
        "API_KEY": env("FYNO_API_KEY"),
        "VERSION": "live",
    }

Credentials, version and endpoint fall back to the environment variables
Fyno's own SDKs use (``FYNO_WSID``, ``FYNO_API_KEY``, ``FYNO_VERSION``,
``FYNO_ENDPOINT``). Every value is read when it is used, never at import time,
so ``override_settings(FYNO={...})`` just works.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings

__all__ = ["DEFAULTS", "ENV_NAMES", "TASK_MODES", "fyno_settings"]

# Every setting, its default, and what it means. Docs list them in this order.
DEFAULTS: dict[str, Any] = {
    # Workspace id, shown on Fyno's API Keys page.
    "WSID": "",
    # API key. Never logged, never shown in the admin or in an exception.
    "API_KEY": "",
    # "live" or "test": profiles and events are separate in each.
    "VERSION": "live",
    # Base URL of the Fyno API (point it at the emulator in development).
    "ENDPOINT": "https://api.fyno.io/v1",
    # Seconds to wait to connect, and for an answer once connected.
    "CONNECT_TIMEOUT": 5.0,
    "READ_TIMEOUT": 30.0,
    # Client retry policy for transient failures (429, 5xx, connection errors).
    "RETRY": {"MAX_ATTEMPTS": 4, "BACKOFF_BASE": 0.5, "BACKOFF_MAX": 30.0, "DEADLINE": 60.0},
    # Dotted path of a callable (user=None) -> dict with WSID/API_KEY/VERSION/ENDPOINT,
    # for projects with one Fyno workspace per tenant. None: the settings above.
    "CLIENT_RESOLVER": None,
    # Master switch: False turns every side effect off (no sync, no sends).
    "ENABLED": True,
    # Mirror users to Fyno profiles automatically when they are saved.
    "AUTO_SYNC": True,
    # How work leaves the request: "celery", "on_commit" (in-process after
    # commit) or "off" (nothing is sent; rows stay pending).
    "TASK_MODE": "celery",
    # Celery queue for django-fyno's tasks.
    "CELERY_QUEUE": "fyno",
    # Dotted path of the ProfileAdapter subclass mapping users to profiles.
    "PROFILE_ADAPTER": "django_fyno.adapter.ProfileAdapter",
    # User attribute holding an E.164 phone number for sms/whatsapp/voice.
    "PHONE_ATTRIBUTE": None,
    # How many profiles one batch deletes, and how many rows a sync batch reads.
    "DELETE_BATCH_SIZE": 100,
    "SYNC_BATCH_SIZE": 500,
    # Seconds a mirror row may stay dirty before the sweeper task re-enqueues its
    # sync (covers a broker that was down when the transaction committed).
    "SWEEP_AFTER": 300,
    # How many times a sync or delete task is retried after a transient failure
    # (429, 5xx, timeouts), with exponential backoff and jitter.
    "SYNC_MAX_RETRIES": 8,
    # Shared secret authenticating Fyno's calls to the delivery-report webhook, in
    # the URL path or the X-Fyno-Webhook-Secret header. A list accepts any of its
    # secrets (rotation). Empty: the webhook refuses every request (fyno.W002).
    "WEBHOOK_SECRET": "",
    # -- the outbox (events and property operations; see docs/outbox.md) --
    # Rows one /event/bulk or /profiles/properties/batch request carries, and
    # how many rows one drain claims at a time.
    "OUTBOX_BULK_SIZE": 100,
    # Seconds a drainer owns the rows it claimed; after that the sweeper takes them back.
    "OUTBOX_LEASE_SECONDS": 300,
    # Attempts before a row is "dead" (429 answers are not counted).
    "OUTBOX_MAX_ATTEMPTS": 10,
    # Backoff between attempts of a row: full jitter, uniform in
    # [0, min(MAX, BASE * 2**(attempts - 1))] seconds.
    "OUTBOX_BACKOFF_BASE": 2.0,
    "OUTBOX_BACKOFF_MAX": 3600.0,
    # A send whose outcome is ambiguous (5xx, read timeout): "retry" sends it
    # again (at-least-once) or "hold" leaves it "unknown" (at-most-once).
    "UNKNOWN_POLICY": "retry",
    # Consecutive 5xx/connection failures that pause every drainer, and for
    # how many seconds, before one probe request is let through.
    "OUTBOX_CIRCUIT_THRESHOLD": 5,
    "OUTBOX_CIRCUIT_COOLDOWN": 30.0,
    # Django cache alias holding the shared pause; must be shared between
    # processes (Redis, Memcached…) for the pause to hold them all.
    "OUTBOX_CACHE": "default",
}

ENV_NAMES: dict[str, str] = {
    "WSID": "FYNO_WSID",
    "API_KEY": "FYNO_API_KEY",
    "VERSION": "FYNO_VERSION",
    "ENDPOINT": "FYNO_ENDPOINT",
}

TASK_MODES = ("celery", "on_commit", "off")


class FynoSettings:
    """Attribute access to the ``FYNO`` settings dict, with defaults and env fallbacks.

    ``fyno_settings.WSID`` reads ``settings.FYNO["WSID"]``, else ``$FYNO_WSID``,
    else the default, every time it is accessed.
    """

    @property
    def user_settings(self) -> dict[str, Any]:
        value = getattr(settings, "FYNO", None) or {}
        if not isinstance(value, dict):
            return {}
        return value

    def unknown_keys(self) -> list[str]:
        """Keys of ``settings.FYNO`` that are not settings (likely typos)."""
        return sorted(set(self.user_settings) - set(DEFAULTS))

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(f"django-fyno has no setting {name!r}")
        user = self.user_settings
        default = DEFAULTS[name]
        if name in user:
            value = user[name]
            # A partial dict (e.g. RETRY={"MAX_ATTEMPTS": 2}) keeps the other defaults.
            if isinstance(default, dict) and isinstance(value, dict):
                return {**default, **value}
            return value
        env_name = ENV_NAMES.get(name)
        if env_name and os.environ.get(env_name):
            return os.environ[env_name]
        return dict(default) if isinstance(default, dict) else default

    def __repr__(self) -> str:
        return "<FynoSettings>"


fyno_settings = FynoSettings()
