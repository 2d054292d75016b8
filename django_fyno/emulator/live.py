"""Run an emulator over real HTTP on a background thread.

>>> with LiveEmulator(wsid="FYTEST", api_key="k") as live:   # doctest: +SKIP
...     requests.get(f"{live.endpoint}/FYTEST/live/profiles/U1",
...                  headers={"Authorization": "Bearer k"})
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from .app import Emulator, LoggedRequest, Workspace
from .server import EmulatorServer, make_server

__all__ = ["LiveEmulator"]


class LiveEmulator:
    """An :class:`Emulator` served on ``host`` (127.0.0.1) at an ephemeral port.

    Either pass an ``emulator`` or let one be built from ``wsid`` (default
    ``FYTEST``) and ``api_key`` (default ``test-api-key``), or from
    ``workspaces`` (``{wsid: api_key}``, see :class:`Emulator`), with
    ``events``, ``strict_replies`` and ``allow_remote_webhooks``. Use as a
    context manager, or call
    :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        emulator: Emulator | None = None,
        *,
        wsid: str | None = None,
        api_key: str | None = None,
        workspaces: Mapping[str, str | Mapping[str, Any]] | None = None,
        events: Iterable[str] | None = None,
        strict_replies: bool = True,
        allow_remote_webhooks: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        prefix: str = "/v1",
        verbose: bool = False,
    ) -> None:
        if emulator is None:
            emulator = Emulator(
                wsid,
                api_key or None,
                workspaces=workspaces,
                events=events,
                strict_replies=strict_replies,
                allow_remote_webhooks=allow_remote_webhooks,
            )
            api_key = None
        self.emulator = emulator
        # The default workspace's key, unless told otherwise with an emulator given.
        self.api_key = api_key if api_key is not None else emulator.api_key
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
        """The default workspace's request log."""
        return self.emulator.request_log

    def workspace(self, wsid: str | None = None) -> Workspace:
        """One workspace of the emulator (None: the default one)."""
        return self.emulator.workspace(wsid)

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
