"""The one seam through which django-fyno reaches Fyno: :func:`get_client`.

(Interface first; the tenant resolver and its tests land next.)
"""

from __future__ import annotations

from typing import Any

from django_fyno.client import FynoClient, FynoConfig, RetryPolicy
from django_fyno.conf import fyno_settings

__all__ = ["get_client"]

_clients: dict[tuple[Any, ...], FynoClient] = {}


def get_client(user: Any = None) -> FynoClient:
    """The client for ``user`` (None: the project's workspace), reused across calls."""
    retry = fyno_settings.RETRY
    key = (
        fyno_settings.WSID,
        fyno_settings.API_KEY,
        fyno_settings.VERSION,
        fyno_settings.ENDPOINT,
        float(fyno_settings.CONNECT_TIMEOUT),
        float(fyno_settings.READ_TIMEOUT),
        tuple(sorted(retry.items())),
    )
    client = _clients.get(key)
    if client is None:
        client = FynoClient(
            config=FynoConfig(
                wsid=key[0],
                api_key=key[1],
                version=key[2],
                endpoint=key[3],
                connect_timeout=key[4],
                read_timeout=key[5],
                retry=RetryPolicy(
                    max_attempts=int(retry["MAX_ATTEMPTS"]),
                    backoff_base=float(retry["BACKOFF_BASE"]),
                    backoff_max=float(retry["BACKOFF_MAX"]),
                    deadline=float(retry["DEADLINE"]),
                ),
            )
        )
        _clients[key] = client
    return client
