"""The WSGI environ of one request, for the HTTP server and the ``responses`` adapter.

Both serve the emulator at a mount point (``/v1`` by default) and both tell
the app where it is: :data:`MOUNT_KEY` in the environ holds it, so that the
app answers the Fyno API only under that mount, as Fyno answers it only
under ``/v1``. They also share the bound on a request body, :data:`MAX_BODY`,
and the JSON error they answer when a body breaks it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from io import BytesIO
from typing import Any
from urllib.parse import unquote_to_bytes

__all__ = ["MAX_BODY", "MOUNT_KEY", "build_environ", "error_body", "too_large_message"]

# The largest request body accepted; the Fyno API takes small JSON bodies.
MAX_BODY = 16 * 1024 * 1024
# The environ key holding the mount point the server serves the API under
# ("/v1", or "" for the root). A server-specific key, as PEP 3333 allows.
MOUNT_KEY = "fyno_emulator.mount"


def too_large_message(limit: int) -> str:
    """The ``_message`` of the 413 answered for a body over ``limit`` bytes."""
    return f"Request body is larger than the emulator's limit of {limit} bytes"


def error_body(message: str) -> bytes:
    """A Fyno-style JSON error: ``{"_message": message, "status": "error"}``."""
    return json.dumps({"_message": message, "status": "error"}).encode()


def build_environ(
    *,
    method: str,
    raw_path: str,
    query: str,
    prefix: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    server_name: str,
    server_port: int,
    scheme: str = "http",
    protocol: str = "HTTP/1.1",
    remote_addr: str = "127.0.0.1",
) -> dict[str, Any]:
    """A PEP 3333 environ; the mount point ``prefix`` (e.g. ``/v1``) goes to SCRIPT_NAME.

    A path outside the mount keeps an empty SCRIPT_NAME; the mount itself is
    under :data:`MOUNT_KEY` either way.
    """
    # PEP 3333: PATH_INFO is the percent-decoded path, bytes as latin-1.
    path = unquote_to_bytes(raw_path or "/").decode("latin-1")
    script_name = ""
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        script_name, path = prefix, path[len(prefix) :]
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method.upper(),
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_TYPE": "",
        "CONTENT_LENGTH": str(len(body)) if body else "",
        "SERVER_NAME": server_name,
        "SERVER_PORT": str(server_port),
        "SERVER_PROTOCOL": protocol,
        "REMOTE_ADDR": remote_addr,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        MOUNT_KEY: prefix,
    }
    for name, value in headers:
        key = "HTTP_" + name.upper().replace("-", "_")
        if key == "HTTP_CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif key != "HTTP_CONTENT_LENGTH":
            # Repeated headers are joined, as CGI does.
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ
