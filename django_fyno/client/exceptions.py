"""The one exception hierarchy of django-fyno, rooted at :class:`FynoError`.

Pure Python (no Django import) so the client can raise it; the Django layer
re-exports it from :mod:`django_fyno.exceptions`.

Fyno reports "not found" and "already exists" as HTTP 400 with a ``_message``;
:func:`error_for_response` is the one place that tells them apart.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ALREADY_EXISTS_MARKER",
    "NOT_FOUND_MESSAGES",
    "FynoAPIError",
    "FynoAlreadyExistsError",
    "FynoAuthError",
    "FynoBadRequestError",
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
    "error_for_response",
]

# Fyno's "not found" answers: all HTTP 400, told apart only by their text.
NOT_FOUND_MESSAGES: frozenset[str] = frozenset(
    {
        "incorrect/non existing distinct_id provided",
        "Unable to update the record since the record does not exist",
        "Cannot delete non existing user",
        "merge from id does not exist",
        "Unable to delete channel since the channel does not exist",
        "Unable to delete non existing data!",
    }
)
# "Distinct ID 'U1' already exists in the 'live' version of your workspace"
ALREADY_EXISTS_MARKER = "already exists in the"


class FynoError(Exception):
    """Root of every error django-fyno raises."""


class FynoConfigurationError(FynoError, ValueError):
    """The client (or the app) is configured wrongly: missing WSID, bad version…"""


class FynoValidationError(FynoError, ValueError):
    """Input rejected locally, before any HTTP request was made."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class FynoTransientError(FynoError):
    """A failure worth retrying later: 429, 5xx, timeouts, connection errors."""


class FynoAPIError(FynoError):
    """Fyno answered with an error status.

    ``message`` is Fyno's ``_message`` (or a short excerpt of the body when
    there is none); ``request_id`` is set when Fyno returned one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        method: str = "",
        path: str = "",
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        self.message = message
        self.status = status
        self.method = method
        self.path = path
        self.request_id = request_id
        self.body = body
        super().__init__(message)

    def __str__(self) -> str:
        where = f" ({self.method} {self.path})" if self.method else ""
        rid = f" [request_id={self.request_id}]" if self.request_id else ""
        return f"Fyno answered {self.status}{where}: {self.message}{rid}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, message={self.message!r})"


class FynoBadRequestError(FynoAPIError):
    """400 that is neither "not found" nor "already exists": Fyno rejected the input."""


class FynoNotFoundError(FynoBadRequestError):
    """The profile, channel or record does not exist (Fyno says so with a 400)."""


class FynoAlreadyExistsError(FynoBadRequestError):
    """A profile with this distinct id already exists in this version (a 400)."""


class FynoAuthError(FynoAPIError):
    """401: wrong API key or workspace id."""


class FynoRateLimitedError(FynoAPIError, FynoTransientError):
    """429. ``retry_after`` is the number of seconds Fyno asked us to wait, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class FynoServerError(FynoAPIError, FynoTransientError):
    """5xx. For a non-idempotent call the request may or may not have been processed."""


class FynoTransportError(FynoTransientError):
    """No HTTP answer at all.

    ``may_have_reached_fyno`` is False only when the request provably never
    left (connection refused, connect timeout): a caller that cannot retry
    blindly (events) uses it to tell a safe retry from an ambiguous one.
    """

    def __init__(
        self, message: str, *, method: str = "", path: str = "", may_have_reached_fyno: bool
    ) -> None:
        self.message = message
        self.method = method
        self.path = path
        self.may_have_reached_fyno = may_have_reached_fyno
        super().__init__(f"{message} ({method} {path})" if method else message)


class FynoConnectionError(FynoTransportError):
    """Could not connect, or the connection dropped."""


class FynoTimeoutError(FynoTransportError):
    """Connect or read timeout."""


def error_for_response(
    status: int,
    body: Any,
    *,
    method: str = "",
    path: str = "",
    retry_after: float | None = None,
) -> FynoAPIError:
    """Build the right :class:`FynoAPIError` subclass for an error answer."""
    message = ""
    request_id = None
    if isinstance(body, dict):
        message = str(body.get("_message") or body.get("message") or "")
        request_id = body.get("request_id")
    if not message:
        message = (body if isinstance(body, str) else repr(body))[:200] or f"HTTP {status}"
    common: dict[str, Any] = {
        "status": status,
        "method": method,
        "path": path,
        "request_id": request_id,
        "body": body,
    }
    if status == 401:
        return FynoAuthError(message, **common)
    if status == 429:
        return FynoRateLimitedError(message, retry_after=retry_after, **common)
    if status >= 500:
        return FynoServerError(message, **common)
    if status == 400:
        if message in NOT_FOUND_MESSAGES:
            return FynoNotFoundError(message, **common)
        if ALREADY_EXISTS_MARKER in message:
            return FynoAlreadyExistsError(message, **common)
        return FynoBadRequestError(message, **common)
    return FynoAPIError(message, **common)
