"""Serve an emulator in-process through the ``responses`` library (no socket).

Every request ``requests`` sends to the endpoint's host is turned into a WSGI
call of the emulator; its answer becomes the ``requests`` response. The
emulator answers the Fyno API only under the endpoint's path (``/v1``), as
Fyno does, and the control API under ``/_emulator/``.

>>> with EmulatorMock(Emulator()) as mocked:          # doctest: +SKIP
...     requests.get("https://api.fyno.io/v1/FYTEST/live/profiles/U1", ...)

``responses`` is a test dependency; it is imported only when a mock starts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .app import DropConnection
from .environ import MAX_BODY, build_environ, error_body, too_large_message

if TYPE_CHECKING:
    import requests
    import responses

__all__ = ["DEFAULT_ENDPOINT", "EmulatorMock", "wsgi_call"]

DEFAULT_ENDPOINT = "https://api.fyno.io/v1"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]
Reply = tuple[int, dict[str, str], bytes]


class _TooLarge(Exception):
    pass


def _body_bytes(body: Any, limit: int = MAX_BODY) -> bytes:
    """The request body, read no further than ``limit`` bytes (_TooLarge beyond)."""
    if body is None:
        return b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    if isinstance(body, bytes | bytearray):
        if len(body) > limit:
            raise _TooLarge
        return bytes(body)
    if hasattr(body, "read"):  # a file-like body
        return _body_bytes(body.read(limit + 1), limit)
    # An iterable of chunks (requests sends it chunked): stop at the limit,
    # as the HTTP server does, rather than hold all a generator yields.
    parts: list[bytes] = []
    total = 0
    for chunk in body:
        data = _body_bytes(chunk, limit - total)
        total += len(data)
        parts.append(data)
    return b"".join(parts)


def wsgi_call(app: WSGIApp, request: requests.PreparedRequest, prefix: str) -> Reply:
    """Run ``app`` on a prepared request; ``prefix`` (e.g. ``/v1``) becomes SCRIPT_NAME.

    A body over ``MAX_BODY`` bytes is a 413, the app is not called. Raises
    :class:`DropConnection` when the app asks for the connection to be dropped.
    """
    url = urlsplit(request.url or "")
    scheme = url.scheme or "https"
    try:
        body = _body_bytes(request.body)
    except _TooLarge:  # answered as the HTTP server does, without calling the app
        return 413, {"Content-Type": "application/json"}, error_body(too_large_message(MAX_BODY))
    environ = build_environ(
        method=request.method or "GET",
        raw_path=url.path,
        query=url.query,
        prefix=prefix,
        headers=request.headers.items(),
        body=body,
        server_name=url.hostname or "localhost",
        server_port=url.port or (443 if scheme == "https" else 80),
        scheme=scheme,
    )
    started: dict[str, Any] = {}

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started["status"], started["headers"] = status, headers
        return _no_write

    result = app(environ, start_response)
    try:
        content = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    status = int(str(started["status"]).split(" ", 1)[0])
    # requests computes these itself; a stale length would confuse it.
    headers = {
        name: value
        for name, value in started["headers"]
        if name.lower() not in ("content-length", "connection", "transfer-encoding")
    }
    return status, headers, content


def _no_write(data: bytes) -> None:
    raise NotImplementedError("the write() callable is not supported; return an iterable")


class EmulatorMock:
    """Route ``requests`` traffic for ``endpoint``'s host to ``emulator``, in-process.

    Pass ``mock`` to add the routes to a ``responses.RequestsMock`` you already
    run (then starting and stopping it is yours); otherwise the mock makes its
    own, started by :meth:`start` or ``with``. Requests to other hosts are not
    routed: ``responses`` refuses them as usual.
    """

    def __init__(
        self,
        emulator: WSGIApp,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        mock: responses.RequestsMock | None = None,
    ) -> None:
        url = urlsplit(endpoint.rstrip("/"))
        if not url.scheme or not url.netloc:
            raise ValueError(f"endpoint must be an absolute URL, not {endpoint!r}")
        self.emulator = emulator
        self.endpoint = endpoint.rstrip("/")
        self.url = f"{url.scheme}://{url.netloc}"
        self.prefix = url.path
        self._own = mock is None
        self._mock = mock
        self._registered = False
        self._started = False

    @property
    def mock(self) -> responses.RequestsMock:
        """The ``responses.RequestsMock`` holding the routes."""
        if self._mock is None:
            import responses  # a test dependency: imported only when used

            self._mock = responses.RequestsMock(assert_all_requests_are_fired=False)
        return self._mock

    def register(self) -> None:
        """Add one catch-all route per HTTP method for the endpoint's host."""
        if self._registered:
            return
        # The whole host, so that the control API (/_emulator/...) is routed too;
        # anchored so that api.fyno.io.example.com is not.
        pattern = re.compile(re.escape(self.url) + r"(?:[/?#].*)?\Z", re.IGNORECASE | re.DOTALL)
        for method in METHODS:
            self.mock.add_callback(method, pattern, callback=self._callback, content_type=None)
        self._registered = True

    def _callback(self, request: requests.PreparedRequest) -> Reply:
        try:
            return wsgi_call(self.emulator, request, self.prefix)
        except DropConnection:
            import requests

            raise requests.exceptions.ConnectionError(
                "Connection aborted: the emulator dropped the connection", request=request
            ) from None

    def start(self) -> EmulatorMock:
        self.register()
        if self._own and not self._started:
            self.mock.start()
            self._started = True
        return self

    def stop(self) -> None:
        if self._own and self._started:
            self._started = False
            self.mock.stop()
            self.mock.reset()
            self._registered = False

    def __enter__(self) -> EmulatorMock:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
