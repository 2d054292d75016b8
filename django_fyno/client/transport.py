"""HTTP plumbing: urllib3 ``Retry`` with full jitter and a deadline, and the adapter
that gives each request its own retry rules over one connection pool.

urllib3 runs the retry loop (counters, ``status_forcelist``, ``Retry-After``);
this module only changes how long to wait and when to give up.
"""

from __future__ import annotations

import email.utils
import logging
import re
import threading
from collections.abc import Collection, Mapping
from types import TracebackType
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from .config import RetryPolicy

__all__ = [
    "RETRY_ATTRIBUTE",
    "BearerAuth",
    "FynoAdapter",
    "FynoRetry",
    "build_retry",
    "parse_retry_after",
]

logger = logging.getLogger("django_fyno.client")

# The client sets this attribute on each PreparedRequest to the Retry it needs.
RETRY_ATTRIBUTE = "fyno_retry"
# Statuses retried for idempotent calls; non-idempotent calls retry only 429,
# the one answer that says the request was refused, not processed.
IDEMPOTENT_RETRY_STATUSES = frozenset({429} | set(range(500, 600)))
NON_IDEMPOTENT_RETRY_STATUSES = frozenset({429})
_SECONDS = re.compile(r"^\s*\d+(\.\d+)?\s*$")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or HTTP date).

    ``now`` is the wall-clock time (epoch seconds). Unparseable values give None.
    """
    if value is None:
        return None
    if _SECONDS.match(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now)


class FynoRetry(Retry):
    """urllib3 ``Retry`` with full-jitter backoff, injectable sleep and clocks, a deadline.

    The wait happens in :meth:`increment`, not :meth:`sleep`: only there can a
    wait that would overrun the deadline veto the retry (by raising
    ``MaxRetryError``, which urllib3 turns into "return the last answer" or
    "raise the last error"). The ``responses`` mock also calls only
    ``increment``, so tests see the same waits as production.
    """

    def __init__(
        self,
        *args: Any,
        policy: RetryPolicy | None = None,
        started_at: float | None = None,
        label: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.policy = policy or RetryPolicy()
        self.started_at = started_at
        self.label = label

    def new(self, **kw: Any) -> FynoRetry:
        kw.setdefault("policy", self.policy)
        kw.setdefault("started_at", self.started_at)
        kw.setdefault("label", self.label)
        return super().new(**kw)

    def start(self, label: str) -> FynoRetry:
        """A fresh copy for one call: its deadline counts from now."""
        return self.new(started_at=self.policy.clock(), label=label)

    def get_backoff_time(self) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**(failures - 1))]."""
        failures = len(self.history)
        if failures == 0:
            return 0.0
        ceiling = min(self.policy.backoff_max, self.policy.backoff_base * 2.0 ** (failures - 1))
        return self.policy.random() * ceiling

    def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
        seconds = parse_retry_after(response.headers.get("Retry-After"), self.policy.wall_clock())
        return None if seconds is None else min(seconds, float(self.retry_after_max))

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        # Only the listed statuses: urllib3 would also retry a 503 that carries
        # Retry-After, which for a non-idempotent call may repeat its effect.
        return self._is_method_retryable(method) and status_code in self.status_forcelist

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        """No-op: the wait already happened in :meth:`increment`."""

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> FynoRetry:
        following = super().increment(method, url, response, error, _pool, _stacktrace)
        retry_after = self.get_retry_after(response) if response is not None else None
        wait = following.get_backoff_time()
        if retry_after is not None and self.respect_retry_after_header:
            wait = max(wait, retry_after)
        cause = f"status {response.status}" if response is not None else type(error).__name__
        attempt = len(following.history)
        if self._past_deadline(wait):
            logger.warning(
                "Fyno %s: not retrying after %s (attempt %d): the deadline of %.1fs would pass",
                self.label,
                cause,
                attempt,
                self.policy.deadline,
            )
            reason = error or ResponseError(f"deadline reached after {cause}")
            raise MaxRetryError(_pool, url or "", reason)  # type: ignore[arg-type]
        logger.warning(
            "Fyno %s: %s on attempt %d, retrying in %.2fs",
            self.label,
            cause,
            attempt,
            wait,
        )
        if wait > 0:
            self.policy.sleep(wait)
        return following

    def _past_deadline(self, wait: float) -> bool:
        if self.started_at is None:
            return False
        return self.policy.clock() + wait - self.started_at > self.policy.deadline


def build_retry(policy: RetryPolicy, *, idempotent: bool) -> FynoRetry:
    """The Retry template for idempotent or non-idempotent operations."""
    retries = policy.max_attempts - 1
    statuses: Collection[int]
    if idempotent:
        statuses = IDEMPOTENT_RETRY_STATUSES
        counters: dict[str, Any] = {}
    else:
        statuses = NON_IDEMPOTENT_RETRY_STATUSES
        # A read error (timeout, dropped connection) comes after the request
        # was sent; other errors (TLS, proxy) are not provably harmless either.
        # Connect errors (refused, connect timeout) are retried: nothing was sent.
        counters = {"read": False, "other": 0}
    return FynoRetry(
        total=retries,
        redirect=0,
        raise_on_redirect=False,
        status_forcelist=statuses,
        allowed_methods=None,  # POST is idempotent for some Fyno operations
        raise_on_status=False,  # hand the last answer back, so it maps to our errors
        policy=policy,
        **counters,
    )


class FynoAdapter(HTTPAdapter):
    """One pool for all calls; each request brings its own Retry.

    ``HTTPAdapter.send`` reads ``self.max_retries``; it is a property that
    answers the Retry of the request being sent by this thread.
    """

    def __init__(self, *, pool_maxsize: int) -> None:
        self._sending = threading.local()
        self._fallback_retry: Retry = Retry(0, read=False)
        super().__init__(pool_connections=1, pool_maxsize=pool_maxsize)

    @property
    def max_retries(self) -> Retry:
        chosen = getattr(self._sending, "retry", None)
        return chosen if isinstance(chosen, Retry) else self._fallback_retry

    @max_retries.setter
    def max_retries(self, value: Retry) -> None:
        self._fallback_retry = value

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        self._sending.retry = getattr(request, RETRY_ATTRIBUTE, None)
        try:
            return super().send(
                request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
            )
        finally:
            self._sending.retry = None


class BearerAuth(AuthBase):
    """Adds ``Authorization: Bearer <key>``; its repr never shows the key.

    An auth object (rather than a session header) also stops requests from
    replacing the header with credentials from a ``.netrc`` file.
    """

    def __init__(self, api_key: str) -> None:
        self._header = f"Bearer {api_key}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._header
        return request

    def __repr__(self) -> str:
        return "BearerAuth(<hidden>)"
