"""The one seam through which django-fyno reaches Fyno: :func:`get_client`.

Every Fyno call the app makes goes through ``get_client(user)``. By default it
returns a client for the workspace configured in ``settings.FYNO``; a project
with one Fyno workspace per tenant names a resolver in
``FYNO["CLIENT_RESOLVER"]``::

    def fyno_workspace(user):
        tenant = user.tenant if user is not None else default_tenant()
        return {"WSID": tenant.fyno_wsid, "API_KEY": tenant.fyno_api_key}

    FYNO = {..., "CLIENT_RESOLVER": "myproject.fyno.fyno_workspace"}

Clients hold a pooled HTTP session, so they are built once per distinct
configuration and shared by all threads. :func:`reset_clients` closes them;
it runs whenever ``settings.FYNO`` changes (``override_settings`` in tests).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from django_fyno.client import FynoClient, FynoConfig, RetryPolicy
from django_fyno.client.exceptions import FynoConfigurationError
from django_fyno.conf import fyno_settings

__all__ = ["get_client", "get_config", "reset_clients"]

# Keys a CLIENT_RESOLVER's dict may hold; the first two are required.
RESOLVER_KEYS = ("WSID", "API_KEY", "VERSION", "ENDPOINT")

_CacheKey = tuple[Any, ...]
_clients: dict[_CacheKey, FynoClient] = {}
_lock = threading.Lock()


def _retry_policy() -> RetryPolicy:
    retry = fyno_settings.RETRY
    try:
        return RetryPolicy(
            max_attempts=int(retry["MAX_ATTEMPTS"]),
            backoff_base=float(retry["BACKOFF_BASE"]),
            backoff_max=float(retry["BACKOFF_MAX"]),
            deadline=float(retry["DEADLINE"]),
        )
    except (TypeError, ValueError) as exc:
        raise FynoConfigurationError(f"FYNO['RETRY'] is invalid: {exc}") from exc


def _resolver() -> Callable[[Any], Any] | None:
    """The configured CLIENT_RESOLVER callable, imported now (settings may have changed)."""
    path = fyno_settings.CLIENT_RESOLVER
    if path is None or path == "":
        return None
    if callable(path):
        return path  # type: ignore[no-any-return]
    if not isinstance(path, str):
        raise FynoConfigurationError(
            "FYNO['CLIENT_RESOLVER'] must be a dotted path or a callable, "
            f"not {type(path).__name__}"
        )
    try:
        found = import_string(path)
    except ImportError as exc:
        raise FynoConfigurationError(
            f"FYNO['CLIENT_RESOLVER'] {path!r} cannot be imported: {exc}"
        ) from exc
    if not callable(found):
        raise FynoConfigurationError(f"FYNO['CLIENT_RESOLVER'] {path!r} is not callable")
    return found  # type: ignore[no-any-return]


def _workspace(user: Any) -> dict[str, Any]:
    """WSID, API_KEY, VERSION and ENDPOINT for ``user``: from the resolver, else settings."""
    workspace = {
        "VERSION": fyno_settings.VERSION,
        "ENDPOINT": fyno_settings.ENDPOINT,
    }
    resolver = _resolver()
    if resolver is None:
        workspace["WSID"] = fyno_settings.WSID
        workspace["API_KEY"] = fyno_settings.API_KEY
        return workspace
    name = getattr(resolver, "__qualname__", repr(resolver))
    # Messages below name keys and types, never values: the dict holds an API key.
    resolved = resolver(user)
    if not isinstance(resolved, Mapping):
        raise FynoConfigurationError(
            f"FYNO['CLIENT_RESOLVER'] {name} must return a dict with WSID and API_KEY, "
            f"not {type(resolved).__name__}"
        )
    unknown = sorted(str(key) for key in resolved if key not in RESOLVER_KEYS)
    if unknown:
        raise FynoConfigurationError(
            f"FYNO['CLIENT_RESOLVER'] {name} returned unknown keys {unknown}; "
            f"expected {', '.join(RESOLVER_KEYS)}"
        )
    for key in RESOLVER_KEYS:
        required = key in ("WSID", "API_KEY")
        if key not in resolved or resolved[key] is None:
            if required:
                raise FynoConfigurationError(f"FYNO['CLIENT_RESOLVER'] {name} returned no {key}")
            continue
        if not isinstance(resolved[key], str) or not resolved[key]:
            raise FynoConfigurationError(
                f"FYNO['CLIENT_RESOLVER'] {name} returned an invalid {key}: "
                "it must be a non-empty string"
            )
        workspace[key] = resolved[key]
    return workspace


def get_config(user: Any = None) -> FynoConfig:
    """The :class:`FynoConfig` ``get_client(user)`` uses (built fresh, not cached).

    Raises :class:`FynoConfigurationError` when the settings or the resolver's
    answer are unusable.
    """
    workspace = _workspace(user)
    try:
        return FynoConfig(
            wsid=workspace["WSID"],
            api_key=workspace["API_KEY"],
            version=workspace["VERSION"],
            endpoint=workspace["ENDPOINT"],
            connect_timeout=float(fyno_settings.CONNECT_TIMEOUT),
            read_timeout=float(fyno_settings.READ_TIMEOUT),
            retry=_retry_policy(),
        )
    except (TypeError, ValueError) as exc:
        # FynoConfigurationError is a ValueError; its messages never hold the key.
        if isinstance(exc, FynoConfigurationError):
            raise
        raise FynoConfigurationError(f"Fyno settings are invalid: {exc}") from exc


def _cache_key(config: FynoConfig) -> _CacheKey:
    # A digest, not the key: the cache must not be one more place a key can leak from.
    key_digest = hashlib.sha256(config.api_key.encode()).hexdigest()
    return (
        config.wsid,
        key_digest,
        config.version,
        config.endpoint,
        config.connect_timeout,
        config.read_timeout,
        config.retry,
        config.pool_size,
    )


def get_client(user: Any = None) -> FynoClient:
    """The client for ``user`` (None: the project's workspace), reused across calls.

    With ``FYNO["CLIENT_RESOLVER"]`` set, the resolver is called with ``user``
    on every call (it is cheap; the client behind it is cached). One client is
    built per distinct configuration and shared by all threads.
    """
    config = get_config(user)
    key = _cache_key(config)
    client = _clients.get(key)
    if client is not None:
        return client
    with _lock:
        # Another thread may have built it while this one waited.
        client = _clients.get(key)
        if client is None:
            client = FynoClient(config=config)
            _clients[key] = client
    return client


def reset_clients() -> None:
    """Close and forget every cached client; the next :func:`get_client` builds anew."""
    with _lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()


@receiver(setting_changed, dispatch_uid="django_fyno.clients.reset_on_fyno_change")
def _reset_on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    # override_settings(FYNO=...) must not hand tests a client built for other settings.
    if setting == "FYNO":
        reset_clients()
