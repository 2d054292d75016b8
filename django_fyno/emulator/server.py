"""A small threaded HTTP/1.1 server for WSGI apps, made to serve the emulator.

Standard library only. What it adds over :mod:`wsgiref.simple_server`:

- HTTP/1.1 keep-alive, so a ``requests.Session`` reuses its connection (the
  stdlib WSGI server answers HTTP/1.0 and closes after every request);
- one thread per connection (daemon threads, so a stuck client never keeps
  the process alive);
- a mount point: with ``prefix="/v1"`` a request for ``/v1/FY1/live/event``
  reaches the app with ``SCRIPT_NAME="/v1"`` and ``PATH_INFO="/FY1/live/event"``;
  paths outside the prefix (``/_emulator/...``) reach it unchanged, and the
  environ names the prefix (``MOUNT_KEY``) so that the emulator answers its
  API only under it;
- :class:`~django_fyno.emulator.app.DropConnection` raised by the app closes
  the connection without a byte of answer, as a network fault would;
- a bound on what a client can make it hold: a body over ``MAX_BODY`` bytes
  (by ``Content-Length``, by chunks, or announced with ``Expect:
  100-continue``) is a 413 and a malformed one a 400, answered with a JSON
  ``_message`` before the body is read; what the client still sends is read
  and thrown away for a bounded while, so that it sees the answer;
- ``SO_REUSEADDR``, so that it can listen again at once on the port it used;
- silence: no line per request unless ``verbose`` (and never a header, so the
  API key stays out of logs).
"""

from __future__ import annotations

import contextlib
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from .app import DropConnection
from .environ import MAX_BODY, build_environ, error_body, too_large_message

__all__ = ["MAX_BODY", "EmulatorServer", "make_server"]

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType]

# Bounds a client can make the server allocate. MAX_BODY, the bound on a
# body, comes from .environ: the app and the responses adapter share it.
MAX_REQUEST_LINE = 65536
# A chunk-size line: hex digits (at most 16: 64 bits), then ";extensions".
MAX_CHUNK_LINE = 1024
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS = re.compile(r"[0-9]{1,20}")
# Trailer lines after the last chunk, all together.
MAX_TRAILERS = 65536
# After answering before the body was read, what the client still sends is
# read and thrown away, up to these bounds, before the connection is closed:
# closing a socket with unread data resets it, and the client would see a
# reset instead of the answer.
LINGER_BYTES = 64 * 1024 * 1024
LINGER_SECONDS = 2.0
LINGER_IDLE = 0.5
# An idle keep-alive connection is closed after this many seconds, so that
# abandoned client sessions do not pin a thread each forever.
IDLE_TIMEOUT = 60.0


class _BadBody(Exception):
    """The body cannot be read: answer ``status`` with ``message`` and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Handler(BaseHTTPRequestHandler):
    """Serves one connection: parse, run the WSGI app, answer; repeat while kept alive."""

    protocol_version = "HTTP/1.1"
    server_version = "FynoEmulator"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    # Type of the server attribute set by socketserver.
    server: EmulatorServer

    def setup(self) -> None:
        super().setup()
        # One write per answer already; NODELAY also stops Nagle from delaying
        # the small reply behind the client's delayed ACK.
        with contextlib.suppress(OSError):  # e.g. not a TCP socket
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass  # the peer went away while the last answer was flushed
        finally:
            self.server._track(self.connection, add=False)

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE + 1)
        except (TimeoutError, OSError):
            self.close_connection = True
            return
        if len(self.raw_requestline) > MAX_REQUEST_LINE:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if not self.parse_request():  # it has answered the error itself
            return
        try:
            self._serve()
        except (TimeoutError, ConnectionError):
            self.close_connection = True

    def handle_expect_100(self) -> bool:
        # A client that waits for "100 Continue" learns at once that its body
        # is too large, and never sends it.
        try:
            self._declared_length()
        except _BadBody as error:
            self._refuse(error)
            return False
        return super().handle_expect_100()

    def _declared_length(self) -> int | None:
        """The Content-Length, checked against the bound (None when chunked or absent)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return None
        length = self.headers.get("Content-Length")
        if length is None or not length.strip():
            return None
        if not _DIGITS.fullmatch(length.strip()):
            raise _BadBody(400, "Invalid Content-Length header")
        size = int(length)
        if size > self.server.max_body:
            raise _BadBody(413, too_large_message(self.server.max_body))
        return size

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        size = self._declared_length()
        return self.rfile.read(size) if size else b""

    def _read_chunked(self) -> bytes:
        limit = self.server.max_body
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(MAX_CHUNK_LINE + 1)
            if not line:
                raise ConnectionError("the client closed the connection within a chunked body")
            size_text = line.split(b";", 1)[0].strip()
            if not line.endswith(b"\n") or not _CHUNK_SIZE.fullmatch(size_text):
                raise _BadBody(400, "Invalid chunk size in a chunked request body")
            size = int(size_text, 16)
            if size == 0:
                self._skip_trailers()
                return b"".join(parts)
            # Checked before a byte of the chunk is read.
            total += size
            if total > limit:
                raise _BadBody(413, too_large_message(limit))
            data = self.rfile.read(size)
            if len(data) < size:
                raise ConnectionError("the client closed the connection within a chunk")
            parts.append(data)
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise _BadBody(400, "Invalid chunked request body: no line end after a chunk")

    def _skip_trailers(self) -> None:
        """Read the trailer lines up to the blank line that ends the message."""
        seen = 0
        while True:
            line = self.rfile.readline(MAX_REQUEST_LINE + 1)
            if line in (b"\r\n", b"\n", b""):
                return
            seen += len(line)
            if seen > MAX_TRAILERS:
                raise _BadBody(400, "Invalid chunked request body: trailers too large")

    def _refuse(self, error: _BadBody) -> None:
        """Answer ``error`` (the body is unread), then close after a bounded linger."""
        self.close_connection = True
        status = f"{error.status} {HTTPStatus(error.status).phrase}"
        with contextlib.suppress(OSError):
            self._write(status, [("Content-Type", "application/json")], error_body(error.message))
        self._linger()

    def _linger(self) -> None:
        """Throw away what the client still sends, within bounds, so it reads the answer."""
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)  # the answer is complete
            self.connection.settimeout(LINGER_IDLE)
            deadline = time.monotonic() + LINGER_SECONDS
            drained = 0
            while drained < LINGER_BYTES and time.monotonic() < deadline:
                data = self.rfile.read1(65536)
                if not data:
                    break
                drained += len(data)

    def _environ(self, body: bytes) -> dict[str, Any]:
        raw_path, _, query = self.path.partition("?")
        host, port = self.server.server_address[:2]
        return build_environ(
            method=self.command,
            raw_path=raw_path,
            query=query,
            prefix=self.server.prefix,
            headers=self.headers.items(),
            body=body,
            server_name=str(host),
            server_port=int(port),
            protocol=self.request_version,
            remote_addr=self.client_address[0],
        )

    def _serve(self) -> None:
        started = time.perf_counter()
        try:
            body = self._read_body()
        except _BadBody as error:
            self._log_request(str(error.status), started)
            self._refuse(error)
            return
        reply: dict[str, Any] = {}

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], None]:
            if exc_info is not None and reply:
                raise exc_info[1].with_traceback(exc_info[2])
            reply["status"], reply["headers"] = status, headers
            return _no_write

        try:
            result = self.server.app(self._environ(body), start_response)
            try:
                # Buffer the whole answer: the emulator's are small, and a
                # DropConnection raised while iterating must still write nothing.
                chunks = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except DropConnection:
            self._drop()
            self._log_request("dropped", started)
            return
        except Exception:
            traceback.print_exc(file=sys.stderr)
            reply = {
                "status": "500 Internal Server Error",
                "headers": [("Content-Type", "application/json")],
            }
            chunks = b'{"_message": "emulator error", "status": "error"}'
        # Logged before answering, so the line is out when the client has its reply.
        self._log_request(reply["status"].split(" ", 1)[0], started)
        self._write(reply["status"], reply["headers"], chunks)

    def _drop(self) -> None:
        # Nothing has been written for this request; shut the socket so the
        # client sees the connection end (RemoteDisconnected / reset).
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _write(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        names = {name.lower() for name, _ in headers}
        lines = [f"{self.protocol_version} {status}"]
        lines.extend(f"{name}: {value}" for name, value in headers)
        if "content-length" not in names:
            lines.append(f"Content-Length: {len(body)}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        # One write per answer: no partial packets, no Nagle stalls.
        self.wfile.write(head if self.command == "HEAD" else head + body)

    def _log_request(self, status: str, started: float) -> None:
        if self.server.verbose:
            elapsed = (time.perf_counter() - started) * 1000
            # The path only: headers (Authorization) are never logged.
            sys.stderr.write(f"{self.command} {self.path} {status} {elapsed:.1f}ms\n")

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


def _no_write(data: bytes) -> None:
    raise NotImplementedError("the write() callable is not supported; return an iterable")


class EmulatorServer(ThreadingHTTPServer):
    """A threaded keep-alive HTTP server for one WSGI app (see :func:`make_server`)."""

    daemon_threads = True
    # A body over this many bytes is a 413, refused before it is read (the
    # emulator app refuses more than MAX_BODY itself, whoever serves it).
    max_body = MAX_BODY
    # Benchmarks open many connections at once; the default backlog of 5 drops some.
    request_queue_size = 128

    def __init__(
        self,
        app: WSGIApp,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        prefix: str = "/v1",
        verbose: bool = False,
    ) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.app = app
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.verbose = verbose
        self.connections_accepted = 0
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._serving = threading.Event()
        self._closed = False
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (socket.getfqdn), which
        # can take seconds on a machine without DNS; we never need it.
        # SO_REUSEADDR (which TCPServer.server_bind would set): a restarted
        # emulator listens again on its port at once, even while connections
        # it closed are still in TIME_WAIT.
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        """The server's root URL, e.g. ``http://127.0.0.1:8765``."""
        host = str(self.server_address[0])
        if host in ("0.0.0.0", ""):  # noqa: S104 - a wildcard is reachable on loopback
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def endpoint(self) -> str:
        """The Fyno endpoint clients use, e.g. ``http://127.0.0.1:8765/v1``."""
        return self.url + self.prefix

    @property
    def open_connections(self) -> int:
        """How many client connections are open now."""
        with self._connections_lock:
            return len(self._connections)

    def _track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self.connections_accepted += 1
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def wait_serving(self, timeout: float = 5.0) -> bool:
        """Wait until :meth:`serve_forever` runs on some thread."""
        return self._serving.wait(timeout)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._serving.set()
        try:
            super().serve_forever(poll_interval)
        finally:
            self._serving.clear()

    def shutdown(self) -> None:
        """Stop serving, close the listening socket and every open connection.

        Safe to call more than once, and when :meth:`serve_forever` is not running
        (where :meth:`socketserver.BaseServer.shutdown` would wait forever).
        """
        if self._serving.is_set():
            super().shutdown()
        if self._closed:
            return
        self._closed = True
        self.server_close()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            # Wakes the handler thread blocked reading an idle keep-alive connection.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that disconnects mid-request is routine for a test server.
        if self.verbose:
            super().handle_error(request, client_address)


def make_server(
    app: WSGIApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    prefix: str = "/v1",
    verbose: bool = False,
) -> EmulatorServer:
    """Bind a threaded keep-alive HTTP server for ``app`` (port 0: any free port).

    Call ``serve_forever()`` (blocking) and ``shutdown()`` from another thread.
    ``.endpoint`` is the URL to configure clients with, ``.url`` the root.
    A request body over ``MAX_BODY`` bytes is a 413, never read.
    """
    return EmulatorServer(app, host, port, prefix=prefix, verbose=verbose)
