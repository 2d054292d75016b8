"""HTTP plumbing: the session (one connection pool), the retry loop, ``Retry-After``.

urllib3 never retries here: the adapter's ``max_retries`` is fixed at "no
retries" (requests' own default). Each call goes through
:func:`send_with_retries`, which asks the call's :class:`RetryRules` whether a
failure is worth another attempt, waits with :func:`~.backoff.full_jitter` (or
``Retry-After``), and stops at ``RetryPolicy.max_attempts`` or the deadline.
"""

from __future__ import annotations

import email.utils
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from requests.compat import json as complexjson  # type: ignore[attr-defined]
from requests.exceptions import InvalidJSONError
from requests.hooks import default_hooks
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, ProxyError
from urllib3.util.retry import Retry

from .backoff import full_jitter
from .config import RetryPolicy

__all__ = [
    "IDEMPOTENT",
    "NOT_IDEMPOTENT",
    "RETRY_AFTER_MAX",
    "BearerAuth",
    "RetryRules",
    "build_session",
    "never_sent",
    "parse_retry_after",
    "prepare_call",
    "proxies_for",
    "send_with_retries",
    "underlying_error",
]

logger = logging.getLogger("django_fyno.client")

# A longer Retry-After is taken as this (urllib3's own cap); the deadline
# usually refuses such a wait anyway.
RETRY_AFTER_MAX = 6 * 60 * 60.0
_SECONDS = re.compile(r"^\s*\d+(\.\d+)?\s*$")
# Failures without an answer that a retry may cure. Others (an invalid URL, a
# body that does not decode) would fail the same way again.
_RETRYABLE_ERRORS = (
    requests.ConnectionError,  # refused, reset, dropped, TLS, proxy
    requests.Timeout,  # connect and read timeouts
    requests.exceptions.ChunkedEncodingError,  # the answer was cut off
)


@dataclass(frozen=True)
class RetryRules:
    """Which failures one class of operations retries."""

    # Answers worth another attempt.
    statuses: frozenset[int]
    # Retry errors after which Fyno may have received (and acted on) the request:
    # read timeouts, dropped or reset connections. Errors that prove nothing was
    # sent (connection refused, DNS failure, connect timeout) are always retried.
    ambiguous_errors: bool


# Safe to send twice: 429, every 5xx and every connection or read error.
IDEMPOTENT = RetryRules(statuses=frozenset({429} | set(range(500, 600))), ambiguous_errors=True)
# Not safe to send twice: only 429 (refused, not processed) and errors that
# happened before anything was sent.
NOT_IDEMPOTENT = RetryRules(statuses=frozenset({429}), ambiguous_errors=False)


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


def underlying_error(exc: requests.RequestException) -> BaseException | None:
    """The urllib3 error under a requests one (``NewConnectionError``, …), if any."""
    cause: object = exc.args[0] if exc.args else None
    if isinstance(cause, MaxRetryError):
        cause = cause.reason
    if isinstance(cause, ProxyError):  # the proxy could not be reached: says why
        cause = cause.original_error
    return cause if isinstance(cause, BaseException) else None


def never_sent(exc: requests.RequestException) -> bool:
    """True when the request provably never left: refused, DNS failure, connect timeout.

    urllib3's ``NewConnectionError`` (refused, unreachable, unresolvable) is a
    ``ConnectTimeoutError``, so one test covers both.
    """
    return isinstance(exc, requests.ConnectTimeout) or isinstance(
        underlying_error(exc), ConnectTimeoutError
    )


def send_with_retries(
    send: Callable[[], requests.Response],
    *,
    rules: RetryRules,
    policy: RetryPolicy,
    label: str,
) -> requests.Response:
    """Call ``send`` until it gives an answer not worth retrying, or retrying must stop.

    Returns the last answer (which may be an error status: the caller maps it)
    or raises the last ``requests.RequestException``. At most
    ``policy.max_attempts`` calls of ``send``; no wait that would end more than
    ``policy.deadline`` seconds after the first attempt started.
    """
    started = policy.clock()
    failures = 0
    while True:
        try:
            response = send()
        except _RETRYABLE_ERRORS as exc:
            if not (rules.ambiguous_errors or never_sent(exc)):
                raise
            failures += 1
            cause = type(underlying_error(exc) or exc).__name__
            if not _wait_before_retry(policy, started, failures, cause, None, label):
                raise
            continue
        if response.status_code not in rules.statuses:
            return response
        failures += 1
        retry_after = parse_retry_after(response.headers.get("Retry-After"), policy.wall_clock())
        cause = f"status {response.status_code}"
        if not _wait_before_retry(policy, started, failures, cause, retry_after, label):
            return response
        response.close()


def _wait_before_retry(
    policy: RetryPolicy,
    started: float,
    failures: int,
    cause: str,
    retry_after: float | None,
    label: str,
) -> bool:
    """Wait before the next attempt and say True, or say False: no attempt is left."""
    if failures >= policy.max_attempts:
        return False
    wait = full_jitter(failures, policy.backoff_base, policy.backoff_max, policy.random)
    if retry_after is not None:
        wait = max(wait, min(retry_after, RETRY_AFTER_MAX))
    if policy.clock() + wait - started > policy.deadline:
        logger.warning(
            "Fyno %s: not retrying after %s (attempt %d): the deadline of %.1fs would pass",
            label,
            cause,
            failures,
            policy.deadline,
        )
        return False
    logger.warning("Fyno %s: %s on attempt %d, retrying in %.2fs", label, cause, failures, wait)
    if wait > 0:
        policy.sleep(wait)
    return True


def build_session(api_key: str, *, pool_size: int, headers: dict[str, str]) -> requests.Session:
    """A session with one adapter for http and https, keeping ``pool_size`` connections.

    The adapter never retries (``Retry(0, read=False)``, requests' default):
    :func:`send_with_retries` does. Every call, idempotent or not, shares its pool.
    """
    session = requests.Session()
    session.auth = BearerAuth(api_key)
    session.headers.update(headers)
    # pool_connections: pools cached per host; the client talks to one host.
    adapter = HTTPAdapter(
        pool_connections=1, pool_maxsize=pool_size, max_retries=Retry(0, read=False)
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def prepare_call(
    session: requests.Session,
    method: str,
    url: str,
    *,
    params: Mapping[str, str] | None = None,
    body: Any = None,
) -> requests.PreparedRequest:
    """The request ``session.prepare_request(Request(method, url, params=params, json=body))``
    makes, for a session built by :func:`build_session`, made directly.

    ``prepare_request`` merges the session's headers, params, cookies, hooks
    and auth into every request, about a third of a call's CPU. Here the
    session's headers are copied and its auth applied; a session holding
    cookies (Fyno sets none, a load balancer may), params or hooks goes
    through ``prepare_request``. Same URL, headers (in the same order) and
    body, to the byte (tests/client/test_prepare.py).
    """
    if session.cookies or session.params or any(session.hooks.values()):
        # Cookies a load balancer set, or settings added to the session: requests merges them.
        return session.prepare_request(requests.Request(method, url, params=params, json=body))
    prepared = requests.PreparedRequest()
    prepared.method = method.upper()
    prepared.prepare_url(url, params)
    headers = cast("CaseInsensitiveDict[str]", CaseInsensitiveDict(session.headers))
    if body is None:
        prepared.body = None
        if prepared.method not in ("GET", "HEAD"):
            headers["Content-Length"] = "0"
    else:
        try:
            # requests' own JSON module (simplejson, where installed), as it encodes.
            encoded = complexjson.dumps(body, allow_nan=False)
        except ValueError as error:  # NaN or infinity: not JSON
            raise InvalidJSONError(error, request=prepared) from error
        prepared.body = encoded.encode("utf-8") if isinstance(encoded, str) else encoded
        headers["Content-Length"] = str(len(prepared.body))
        headers["Content-Type"] = "application/json"
    prepared.headers = headers
    prepared.hooks = default_hooks()
    auth = session.auth
    return auth(prepared) if callable(auth) else prepared


def proxies_for(session: requests.Session, url: str) -> dict[str, str]:
    """The proxies ``session`` would use for ``url`` (from its settings and the environment).

    Resolved once per client: the environment is read when the client is built,
    not on every request.
    """
    return requests.utils.resolve_proxies(
        requests.Request("GET", url), dict(session.proxies), session.trust_env
    )


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
