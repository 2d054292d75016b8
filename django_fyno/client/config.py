"""Client configuration: :class:`FynoConfig` and its :class:`RetryPolicy`."""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .exceptions import FynoConfigurationError

__all__ = ["DEFAULT_ENDPOINT", "VERSIONS", "FynoConfig", "RetryPolicy"]

DEFAULT_ENDPOINT = "https://api.fyno.io/v1"
VERSIONS = ("live", "test")


def _require_non_negative(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise FynoConfigurationError(f"{name} must be a finite number")
    if value < 0:
        raise FynoConfigurationError(f"{name} must not be negative")


@dataclass(frozen=True)
class RetryPolicy:
    """How the client retries: attempts, exponential backoff with full jitter, a deadline.

    ``sleep``, ``clock`` (monotonic), ``wall_clock`` (for HTTP-date
    ``Retry-After`` headers) and ``random`` are injectable so tests can count
    and skip waits.
    """

    max_attempts: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    # Seconds from the first attempt after which no new attempt starts.
    deadline: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)
    wall_clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (
            not isinstance(self.max_attempts, int)
            or isinstance(self.max_attempts, bool)
            or self.max_attempts < 1
        ):
            raise FynoConfigurationError("max_attempts must be an integer of at least 1")
        for name in ("backoff_base", "backoff_max", "deadline"):
            _require_non_negative(name, getattr(self, name))


@dataclass(frozen=True)
class FynoConfig:
    """Where and how to reach Fyno. The API key never appears in ``repr``."""

    wsid: str
    api_key: str = field(repr=False)
    version: str = "live"
    endpoint: str = DEFAULT_ENDPOINT
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Connections kept open to Fyno; raise it for many threads sharing one client.
    pool_size: int = 10

    def __post_init__(self) -> None:
        if not isinstance(self.wsid, str) or not self.wsid.strip():
            raise FynoConfigurationError("wsid (FYNO_WSID) must not be empty")
        if not isinstance(self.api_key, str) or not self.api_key.strip():
            raise FynoConfigurationError("api_key (FYNO_API_KEY) must not be empty")
        # requests would reject such a header with a message that quotes it.
        if not self.api_key.isascii() or not self.api_key.isprintable() or " " in self.api_key:
            raise FynoConfigurationError(
                "api_key (FYNO_API_KEY) must be printable ASCII without spaces"
            )
        if self.version not in VERSIONS:
            raise FynoConfigurationError(
                f"version (FYNO_VERSION) must be 'live' or 'test', not {self.version!r}"
            )
        if not isinstance(self.endpoint, str) or not self.endpoint.startswith(
            ("http://", "https://")
        ):
            raise FynoConfigurationError(
                f"endpoint (FYNO_ENDPOINT) must be an http(s) URL, not {self.endpoint!r}"
            )
        object.__setattr__(self, "endpoint", self.endpoint.rstrip("/"))
        for name in ("connect_timeout", "read_timeout"):
            _require_non_negative(name, getattr(self, name))
            if getattr(self, name) == 0:
                raise FynoConfigurationError(f"{name} must be greater than 0")
        if not isinstance(self.retry, RetryPolicy):
            raise FynoConfigurationError("retry must be a RetryPolicy")
        if not isinstance(self.pool_size, int) or self.pool_size < 1:
            raise FynoConfigurationError("pool_size must be a positive integer")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> FynoConfig:
        """Read FYNO_WSID, FYNO_API_KEY, FYNO_VERSION and FYNO_ENDPOINT.

        Keyword ``overrides`` win over the environment (e.g. ``retry=...``).
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "wsid": env.get("FYNO_WSID", ""),
            "api_key": env.get("FYNO_API_KEY", ""),
            "version": env.get("FYNO_VERSION") or "live",
            "endpoint": env.get("FYNO_ENDPOINT") or DEFAULT_ENDPOINT,
        }
        values.update(overrides)
        try:
            return cls(**values)
        except FynoConfigurationError as error:
            # These frames hold the key (the environment, the values): a traceback
            # (Django's debug page, an error report) must not show them.
            del env, environ, values, overrides
            raise error.with_traceback(None) from None
