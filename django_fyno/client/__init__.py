"""Pure-Python client for Fyno's REST API (no Django import anywhere in this package).

>>> with FynoClient(wsid="FY...", api_key="...") as fyno:  # doctest: +SKIP
...     fyno.send_event("welcome", distinct_id="42", data={"name": "Ada"})
"""

from __future__ import annotations

from .backoff import full_jitter
from .client import FynoClient
from .config import DEFAULT_ENDPOINT, FynoConfig, RetryPolicy
from .exceptions import (
    FynoAlreadyExistsError,
    FynoAPIError,
    FynoAuthError,
    FynoBadRequestError,
    FynoConfigurationError,
    FynoConnectionError,
    FynoError,
    FynoNotFoundError,
    FynoRateLimitedError,
    FynoServerError,
    FynoTimeoutError,
    FynoTransientError,
    FynoTransportError,
    FynoValidationError,
)
from .types import (
    Acknowledgement,
    BatchPropertyUpdate,
    BulkEventItem,
    BulkEventResult,
    ChannelResult,
    EventResult,
    GlobalPreference,
    NotificationEvent,
    Preferences,
    PreferenceUpdate,
    Profile,
    PropertyUpdate,
    Suppression,
    Topic,
)

__all__ = [
    "DEFAULT_ENDPOINT",
    "Acknowledgement",
    "BatchPropertyUpdate",
    "BulkEventItem",
    "BulkEventResult",
    "ChannelResult",
    "EventResult",
    "FynoAPIError",
    "FynoAlreadyExistsError",
    "FynoAuthError",
    "FynoBadRequestError",
    "FynoClient",
    "FynoConfig",
    "FynoConfigurationError",
    "FynoConnectionError",
    "FynoError",
    "FynoNotFoundError",
    "FynoRateLimitedError",
    "FynoServerError",
    "FynoTimeoutError",
    "FynoTransientError",
    "FynoTransportError",
    "FynoValidationError",
    "GlobalPreference",
    "NotificationEvent",
    "PreferenceUpdate",
    "Preferences",
    "Profile",
    "PropertyUpdate",
    "RetryPolicy",
    "Suppression",
    "Topic",
    "full_jitter",
]
