"""The one place django-fyno reads settings, and turns them into typed, validated values.

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

``fyno_settings.NAME`` returns the setting already checked and typed (an
``int``, a ``float``, a :class:`TaskMode`…) or raises
:class:`~django_fyno.exceptions.FynoConfigurationError` naming the setting;
the system checks report the same problems at start-up.
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar, overload

from django.conf import settings

from django_fyno.client.exceptions import FynoConfigurationError

__all__ = [
    "DEFAULTS",
    "ENV_NAMES",
    "SECRET_SETTINGS",
    "TaskMode",
    "UnknownPolicy",
    "Version",
    "fyno_settings",
]


class _Choice(str, enum.Enum):
    """A setting with a fixed set of string values; compares equal to its value."""

    def __str__(self) -> str:
        return str(self.value)


class TaskMode(_Choice):
    """How work leaves the request (``FYNO["TASK_MODE"]``)."""

    #: Celery tasks, published after commit.
    CELERY = "celery"
    #: In this process, right after the transaction commits (no broker, no Celery).
    INLINE = "inline"
    #: Nothing is sent; rows wait for a sweep, ``fyno_sync`` or ``fyno_outbox --drain``.
    OFF = "off"


class UnknownPolicy(_Choice):
    """What to do with a send whose outcome is ambiguous (``FYNO["UNKNOWN_POLICY"]``)."""

    #: Send it again: at-least-once.
    RETRY = "retry"
    #: Leave it ``unknown`` for staff or a delivery report: at-most-once.
    HOLD = "hold"


class Version(_Choice):
    """Fyno's two environments; profiles and events are separate in each."""

    LIVE = "live"
    TEST = "test"


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
    # Dotted path of a callable resolver(user=None, *, workspace=None) -> dict with
    # WSID/API_KEY/VERSION/ENDPOINT, for projects with one Fyno workspace per
    # tenant (see docs/settings.md). None: the settings above.
    "CLIENT_RESOLVER": None,
    # Master switch: False turns every side effect off (no sync, no sends).
    "ENABLED": True,
    # Mirror users to Fyno profiles automatically when they are saved.
    "AUTO_SYNC": True,
    # How work leaves the request: "celery", "inline" (in-process after
    # commit) or "off" (nothing is sent; rows stay pending).
    "TASK_MODE": "celery",
    # Seconds a hand-off to the broker may take after a commit; past it the request
    # goes on, one warning is logged and the work is left for the sweeper.
    "ENQUEUE_TIMEOUT": 2.0,
    # Celery queue for django-fyno's tasks. None: Celery's default queue (the
    # routing of your project, e.g. CELERY_TASK_ROUTES, applies).
    "CELERY_QUEUE": None,
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
    # Seconds all traffic to a workspace pauses after Fyno refuses its
    # credentials (401), before one request probes them again.
    "AUTH_FAILURE_PAUSE": 300.0,
    # Shared secret authenticating Fyno's calls to the delivery-report webhook, in
    # the URL path or the X-Fyno-Webhook-Secret header. A list accepts any of its
    # secrets (rotation). Empty: the webhook refuses every request (fyno.W002).
    "WEBHOOK_SECRET": "",
    # -- the outbox (events and property operations; see docs/outbox.md) --
    # Rows one /event/bulk or /profiles/properties/batch request carries, and
    # how many rows one drain claims at a time.
    "OUTBOX_BULK_SIZE": 100,
    # Requests one drain keeps in flight at once (threads that only do HTTP);
    # a drain then claims OUTBOX_BULK_SIZE rows per request. 1: one at a time.
    "OUTBOX_CONCURRENCY": 1,
    # Seconds a drainer owns the rows it claimed; after that the sweeper takes them back.
    "OUTBOX_LEASE_SECONDS": 300,
    # Attempts before a row is "dead" (429 answers are not counted).
    "OUTBOX_MAX_ATTEMPTS": 10,
    # The most times one row is sent under UNKNOWN_POLICY "retry": a row whose
    # send was ambiguous (5xx, read timeout, expired lease) is sent again only
    # while it has spent fewer attempts than this; otherwise it is "dead".
    "OUTBOX_MAX_SENDS": 10,
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
    # -- the end-user pages (see docs/preferences.md) --
    # Seconds a signed preference or unsubscribe link stays valid (30 days).
    "PREFERENCE_LINK_MAX_AGE": 30 * 24 * 3600,
    # The site's base URL (https://example.com) for links built without a request:
    # in notify()'s event data, in emails sent from a task.
    "SITE_URL": "",
    # The template the preference pages extend; its "content" block holds them.
    "PREFERENCE_BASE_TEMPLATE": "django_fyno/base.html",
    # notify() adds unsubscribe_url and preferences_url to each recipient's event data.
    "ADD_LINKS_TO_EVENTS": False,
}

ENV_NAMES: dict[str, str] = {
    "WSID": "FYNO_WSID",
    "API_KEY": "FYNO_API_KEY",
    "VERSION": "FYNO_VERSION",
    "ENDPOINT": "FYNO_ENDPOINT",
}

#: Settings whose values are never repeated in an error message.
SECRET_SETTINGS = frozenset({"API_KEY", "WEBHOOK_SECRET"})

# Spellings accepted for backward compatibility: TASK_MODE "on_commit" is "inline".
_TASK_MODE_ALIASES = {"on_commit": TaskMode.INLINE}


_T = TypeVar("_T")
_C = TypeVar("_C", bound=_Choice)


class _Invalid(Exception):
    """Raised by a parser; the caller names the setting (and hides secret values)."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"must be a string, not {type(value).__name__}")
    return value


def _optional_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return _text(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"must be True or False, not {_shown(value)}")
    return value


def _int(minimum: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"must be an integer, not {_shown(value)}")
        if value < minimum:
            raise _Invalid(f"must be at least {minimum}, not {value}")
        return value

    return parse


def _float(*, positive: bool) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid(f"must be a number of seconds, not {_shown(value)}")
        number = float(value)
        if not math.isfinite(number):
            raise _Invalid(f"must be a finite number, not {_shown(value)}")
        if number < 0 or (positive and number == 0):
            raise _Invalid(f"must be {'greater than' if positive else 'at least'} 0, not {value}")
        return number

    return parse


def _choice(kind: type[_C], aliases: Mapping[str, _C] | None = None) -> Callable[[Any], _C]:
    def parse(value: Any) -> _C:
        if isinstance(value, kind):
            return value
        if isinstance(value, str):
            if aliases and value in aliases:
                return aliases[value]
            try:
                return kind(value)
            except ValueError:
                pass
        allowed = ", ".join(repr(member.value) for member in kind)
        raise _Invalid(f"must be one of {allowed}, not {_shown(value)}")

    return parse


def _endpoint(value: Any) -> str:
    text = _text(value)
    if not text.startswith(("http://", "https://")):
        raise _Invalid(f"must be an http(s) URL, not {_shown(text)}")
    return text.rstrip("/")


def _site_url(value: Any) -> str:
    text = _optional_text(value) or ""
    if text and not text.startswith(("http://", "https://")):
        raise _Invalid(f"must be an http(s) URL such as 'https://example.com', not {_shown(text)}")
    return text.rstrip("/")


def _retry(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _Invalid(f"must be a dict, not {type(value).__name__}")
    default = DEFAULTS["RETRY"]
    unknown = sorted(str(key) for key in value if key not in default)
    if unknown:
        raise _Invalid(f"has unknown keys {unknown}; expected {', '.join(default)}")
    merged = {**default, **value}
    try:
        return {
            "MAX_ATTEMPTS": _int(1)(merged["MAX_ATTEMPTS"]),
            "BACKOFF_BASE": _float(positive=False)(merged["BACKOFF_BASE"]),
            "BACKOFF_MAX": _float(positive=False)(merged["BACKOFF_MAX"]),
            "DEADLINE": _float(positive=False)(merged["DEADLINE"]),
        }
    except _Invalid as error:
        raise _Invalid(f"is invalid: {error}") from None


def _resolver(value: Any) -> Any:
    if value is None or value == "":
        return None
    if callable(value) or isinstance(value, str):
        return value
    raise _Invalid(f"must be a dotted path or a callable, not {type(value).__name__}")


def _any(value: Any) -> Any:
    return value


def _secrets(value: Any) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise _Invalid("must be a string or a list of strings")
    return tuple(secret for secret in values if secret)


class _Setting(Generic[_T]):
    """One setting of :class:`FynoSettings`: read, checked and typed on each access."""

    def __init__(self, parse: Callable[[Any], _T]) -> None:
        self.parse = parse
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type) -> _Setting[_T]: ...

    @overload
    def __get__(self, instance: FynoSettings, owner: type) -> _T: ...

    def __get__(self, instance: FynoSettings | None, owner: type) -> _Setting[_T] | _T:
        if instance is None:
            return self
        try:
            return self.parse(instance.raw(self.name))
        except _Invalid as error:
            # Parsers word their errors without secret values (see SECRET_SETTINGS).
            raise FynoConfigurationError(f"FYNO['{self.name}'] {error}") from None


class FynoSettings:
    """Attribute access to the ``FYNO`` settings dict: checked, typed, with env fallbacks.

    ``fyno_settings.WSID`` reads ``settings.FYNO["WSID"]``, else ``$FYNO_WSID``,
    else the default, every time it is accessed. An invalid value raises
    :class:`FynoConfigurationError` (whose message never holds a secret).
    """

    WSID = _Setting(_text)
    API_KEY = _Setting(_text)
    VERSION = _Setting(_choice(Version))
    ENDPOINT = _Setting(_endpoint)
    CONNECT_TIMEOUT = _Setting(_float(positive=True))
    READ_TIMEOUT = _Setting(_float(positive=True))
    RETRY = _Setting(_retry)
    CLIENT_RESOLVER = _Setting(_resolver)
    ENABLED = _Setting(_bool)
    AUTO_SYNC = _Setting(_bool)
    TASK_MODE = _Setting(_choice(TaskMode, _TASK_MODE_ALIASES))
    ENQUEUE_TIMEOUT = _Setting(_float(positive=True))
    CELERY_QUEUE = _Setting(_optional_text)
    # Checked (imported) by adapter.load_adapter_class, which E006 reports.
    PROFILE_ADAPTER = _Setting(_any)
    PHONE_ATTRIBUTE = _Setting(_optional_text)
    DELETE_BATCH_SIZE = _Setting(_int(1))
    SYNC_BATCH_SIZE = _Setting(_int(1))
    SWEEP_AFTER = _Setting(_float(positive=False))
    SYNC_MAX_RETRIES = _Setting(_int(0))
    AUTH_FAILURE_PAUSE = _Setting(_float(positive=True))
    WEBHOOK_SECRET = _Setting(_secrets)
    OUTBOX_BULK_SIZE = _Setting(_int(1))
    OUTBOX_CONCURRENCY = _Setting(_int(1))
    OUTBOX_LEASE_SECONDS = _Setting(_int(1))
    OUTBOX_MAX_ATTEMPTS = _Setting(_int(1))
    OUTBOX_MAX_SENDS = _Setting(_int(1))
    OUTBOX_BACKOFF_BASE = _Setting(_float(positive=False))
    OUTBOX_BACKOFF_MAX = _Setting(_float(positive=False))
    UNKNOWN_POLICY = _Setting(_choice(UnknownPolicy))
    OUTBOX_CIRCUIT_THRESHOLD = _Setting(_int(1))
    OUTBOX_CIRCUIT_COOLDOWN = _Setting(_float(positive=False))
    OUTBOX_CACHE = _Setting(_text)
    PREFERENCE_LINK_MAX_AGE = _Setting(_int(1))
    SITE_URL = _Setting(_site_url)
    PREFERENCE_BASE_TEMPLATE = _Setting(_text)
    ADD_LINKS_TO_EVENTS = _Setting(_bool)

    @property
    def user_settings(self) -> dict[str, Any]:
        value = getattr(settings, "FYNO", None) or {}
        if not isinstance(value, dict):
            return {}
        return value

    def is_a_dict(self) -> bool:
        """Whether ``settings.FYNO`` is absent or a dict (anything else is fyno.E001)."""
        value = getattr(settings, "FYNO", None)
        return value is None or isinstance(value, dict)

    @property
    def django_debug(self) -> bool:
        """Django's own ``DEBUG`` (fyno.W001 warns about live traffic while it is on)."""
        return bool(settings.DEBUG)

    def unknown_keys(self) -> list[str]:
        """Keys of ``settings.FYNO`` that are not settings (likely typos)."""
        return sorted(set(self.user_settings) - set(DEFAULTS))

    def raw(self, name: str) -> Any:
        """The value as configured (dict, environment or default), not yet checked."""
        if name not in DEFAULTS:
            raise AttributeError(f"django-fyno has no setting {name!r}")
        user = self.user_settings
        if name in user:
            return user[name]
        env_name = ENV_NAMES.get(name)
        if env_name and os.environ.get(env_name):
            return os.environ[env_name]
        default = DEFAULTS[name]
        return dict(default) if isinstance(default, dict) else default

    def problems(self) -> dict[str, str]:
        """Each setting whose value is invalid, with the reason (the system checks' source)."""
        found = {}
        for name in DEFAULTS:
            try:
                getattr(self, name)
            except FynoConfigurationError as error:
                found[name] = str(error)
        return found

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not settings: a typo in our own code.
        raise AttributeError(f"django-fyno has no setting {name!r}")

    def __repr__(self) -> str:
        return "<FynoSettings>"


fyno_settings = FynoSettings()
