"""The emulator's WSGI application (interface stub; the semantics land next).

Interface other parts rely on (keep it stable):

- ``Emulator(wsid=..., api_key=..., *, events=None, strict_replies=True)`` is a
  WSGI callable serving the Fyno API under any mount point (the path it sees
  starts with ``/{WSID}/...``), plus the control API under ``/_emulator/``.
- ``emulator.reset()`` forgets all state, faults and the request log.
- ``emulator.request_log`` is a list of :class:`LoggedRequest`.
- Raising :class:`DropConnection` from the app asks the server (or the
  ``responses`` adapter) to drop the connection without an answer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DropConnection", "Emulator", "LoggedRequest"]


class DropConnection(Exception):
    """Close the connection without writing a response (fault injection)."""


@dataclass
class LoggedRequest:
    method: str
    path: str  # as received, e.g. "/FY1/live/profiles/U1"
    query: dict[str, str]
    body: Any  # parsed JSON, or None
    status: int
    reply: Any  # parsed JSON reply, or None (dropped connection)
    operation: str | None  # a key of contract.OPERATIONS, None for unknown routes
    time: float  # time.time() when received
    duration: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)  # never holds Authorization


class Emulator:
    def __init__(
        self,
        wsid: str = "FYTEST",
        api_key: str = "test-api-key",
        *,
        events: Iterable[str] | None = None,
        strict_replies: bool = True,
    ) -> None:
        self.wsid = wsid
        self._api_key = api_key
        self.events = set(events) if events is not None else None
        self.strict_replies = strict_replies
        self.request_log: list[LoggedRequest] = []
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"Emulator(wsid={self.wsid!r})"

    def reset(self) -> None:
        with self._lock:
            self.request_log.clear()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("501 Not Implemented", [("Content-Type", "application/json")])
        return [b'{"_message": "not implemented yet", "status": "error"}']
