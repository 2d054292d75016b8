"""Call the emulator's WSGI app in-process, the way a test client would."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode
from wsgiref.util import setup_testing_defaults

from django_fyno.emulator.app import Emulator

WSID = "FYTEST"
API_KEY = "test-api-key"


@dataclass
class Reply:
    status: int
    json: Any
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def message(self) -> Any:
        return self.json.get("_message") if isinstance(self.json, dict) else None


def call(
    app: Emulator,
    method: str,
    path: str,
    body: Any = None,
    *,
    query: dict[str, str] | None = None,
    auth: str | None = API_KEY,
    raw: bytes | None = None,
) -> Reply:
    """One request; ``path`` is relative to the API base (``/FYTEST/live/...``)."""
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": urlencode(query or {}),
        "CONTENT_LENGTH": str(len(data)),
        "CONTENT_TYPE": "application/json",
        "wsgi.input": io.BytesIO(data),
    }
    if auth is not None:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {auth}"
    setup_testing_defaults(environ)
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"] = int(status.split()[0])
        seen["headers"] = dict(headers)

    chunks = app(environ, start_response)
    payload = b"".join(chunks)
    return Reply(seen["status"], json.loads(payload) if payload else None, seen["headers"])


class Api:
    """Shorthand: ``api.post("profiles", {...})`` on ``/FYTEST/<version>/...``."""

    def __init__(self, app: Emulator, version: str = "live") -> None:
        self.app = app
        self.version = version

    def _path(self, path: str) -> str:
        if path.startswith("/"):
            return path
        if path.startswith("suppressions"):
            return f"/{WSID}/{path}"
        return f"/{WSID}/{self.version}/{path}"

    def get(self, path: str, **kw: Any) -> Reply:
        return call(self.app, "GET", self._path(path), **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return call(self.app, "POST", self._path(path), body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return call(self.app, "PUT", self._path(path), body, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return call(self.app, "PATCH", self._path(path), body, **kw)

    def delete(self, path: str, **kw: Any) -> Reply:
        return call(self.app, "DELETE", self._path(path), **kw)
