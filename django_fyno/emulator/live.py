"""Run an emulator over real HTTP on a background thread.

>>> with LiveEmulator(wsid="FYTEST", api_key="k") as live:   # doctest: +SKIP
...     requests.get(f"{live.endpoint}/FYTEST/live/profiles/U1",
...                  headers={"Authorization": "Bearer k"})
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from types import TracebackType

from .app import Emulator, LoggedRequest
from .server import EmulatorServer, make_server

__all__ = ["LiveEmulator"]


class LiveEmulator:
    """An :class:`Emulator` served on ``host`` (127.0.0.1) at an ephemeral port.

    Either pass an ``emulator`` or let one be built from ``wsid``, ``api_key``
    (default ``test-api-key``), ``events`` and ``strict_replies``. Use as a context manager, or call
    :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        emulator: Emulator | None = None,
        *,
        wsid: str = "FYTEST",
        api_key: str | None = None,
        events: Iterable[str] | None = None,
        strict_replies: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        prefix: str = "/v1",
        verbose: bool = False,
    ) -> None:
        if emulator is None:
            api_key = api_key or "test-api-key"
            emulator = Emulator(wsid, api_key, events=events, strict_replies=strict_replies)
        elif api_key is None:
            api_key = emulator.api_key
        self.emulator = emulator
        self.api_key = api_key
        self._host, self._port, self._prefix, self._verbose = host, port, prefix, verbose
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        where = self.endpoint if self._server is not None else "stopped"
        return f"LiveEmulator({self.wsid!r}, {where})"

    @property
    def wsid(self) -> str:
        return self.emulator.wsid

    @property
    def server(self) -> EmulatorServer:
        if self._server is None:
            raise RuntimeError("the live emulator is not running; call start()")
        return self._server

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:54321`` (the control API is under ``/_emulator/``)."""
        return self.server.url

    @property
    def endpoint(self) -> str:
        """The Fyno endpoint to configure clients with, e.g. ``http://127.0.0.1:54321/v1``."""
        return self.server.endpoint

    @property
    def requests(self) -> list[LoggedRequest]:
        """The emulator's request log."""
        return self.emulator.request_log

    def reset(self) -> None:
        self.emulator.reset()

    def start(self) -> LiveEmulator:
        """Bind and serve on a daemon thread; returns once requests are accepted."""
        if self._server is not None:
            return self
        server = make_server(
            self.emulator, self._host, self._port, prefix=self._prefix, verbose=self._verbose
        )
        # A short poll keeps stop() fast; the loop is idle otherwise.
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fyno-emulator-{server.port}",
            daemon=True,
        )
        thread.start()
        # Wait for the loop to run, so that an immediate stop() cannot miss it.
        server.wait_serving()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving and close every connection (idempotent)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> LiveEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
