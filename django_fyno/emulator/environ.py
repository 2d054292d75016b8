"""The WSGI environ of one request, for the HTTP server and the ``responses`` adapter."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from io import BytesIO
from typing import Any
from urllib.parse import unquote_to_bytes

__all__ = ["build_environ"]


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
    """A PEP 3333 environ; the mount point ``prefix`` (e.g. ``/v1``) goes to SCRIPT_NAME."""
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
    }
    for name, value in headers:
        key = "HTTP_" + name.upper().replace("-", "_")
        if key == "HTTP_CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif key != "HTTP_CONTENT_LENGTH":
            # Repeated headers are joined, as CGI does.
            environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ
