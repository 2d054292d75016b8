"""The client honours proxy settings from the environment, read once when it is built."""

from __future__ import annotations

import socket

import pytest

from django_fyno.client import FynoClient, FynoConfig, RetryPolicy
from django_fyno.client.exceptions import FynoConnectionError


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _client(endpoint: str) -> FynoClient:
    config = FynoConfig(
        wsid="FYTEST",
        api_key="k",
        endpoint=endpoint,
        retry=RetryPolicy(max_attempts=1),
        connect_timeout=2,
    )
    return FynoClient(config=config)


def test_a_proxy_from_the_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = _client("https://api.fyno.example/v1")
    assert client._proxies.get("https") == proxy
    # The proxy refuses: the request went to it, not to the (unresolvable) Fyno host.
    with pytest.raises(FynoConnectionError):
        client.get_profile("u1")


def test_no_proxy_and_later_environment_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "api.fyno.example")
    client = _client("https://api.fyno.example/v1")
    assert "https" not in client._proxies
    # Read once, when the client was built: a later change needs a new client.
    monkeypatch.delenv("NO_PROXY")
    assert "https" not in client._proxies
    assert _client("https://api.fyno.example/v1")._proxies["https"] == "http://127.0.0.1:9"
