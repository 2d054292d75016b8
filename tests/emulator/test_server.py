"""The threaded HTTP server and LiveEmulator: mount point, keep-alive, dropped connections."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import requests

from django_fyno.emulator.app import DropConnection, Emulator, WebhookError
from django_fyno.emulator.live import LiveEmulator
from django_fyno.emulator.server import MAX_BODY, EmulatorServer, make_server

MB = 1024 * 1024


def echo_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Answers what it received, or drops the connection on /drop."""
    if environ["PATH_INFO"] == "/drop":
        raise DropConnection
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("boom")
    seen = {
        "method": environ["REQUEST_METHOD"],
        "script_name": environ["SCRIPT_NAME"],
        "path": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"],
        "authorization": environ.get("HTTP_AUTHORIZATION"),
        "content_type": environ["CONTENT_TYPE"],
        "body": environ["wsgi.input"].read().decode(),
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]


def drop_while_iterating(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    yield b'{"partial": '
    raise DropConnection


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[tuple[EmulatorServer, threading.Thread]] = []

    def start(app: Any = echo_app, port: int = 0, **options: Any) -> EmulatorServer:
        server = make_server(app, "127.0.0.1", port, **options)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        servers.append((server, thread))
        return server

    yield start
    for server, thread in servers:
        server.shutdown()
        thread.join(5)
        assert not thread.is_alive()


def test_the_prefix_becomes_script_name_and_the_rest_path_info(serve: Any) -> None:
    server = serve()
    seen = requests.get(f"{server.endpoint}/FYTEST/live/profiles/U%201?a=1&b=x", timeout=5).json()
    assert seen["script_name"] == "/v1"
    assert seen["path"] == "/FYTEST/live/profiles/U 1"
    assert seen["query"] == "a=1&b=x"


def test_paths_outside_the_prefix_reach_the_app_unchanged(serve: Any) -> None:
    server = serve()
    seen = requests.post(f"{server.url}/_emulator/reset", timeout=5).json()
    assert (seen["script_name"], seen["path"]) == ("", "/_emulator/reset")
    # A path that merely starts with the prefix's letters is not under it.
    assert requests.get(f"{server.url}/v10/x", timeout=5).json()["path"] == "/v10/x"


def test_an_empty_prefix_mounts_the_app_at_the_root(serve: Any) -> None:
    server = serve(prefix="")
    assert server.endpoint == server.url
    seen = requests.get(f"{server.endpoint}/v1/FY/live/event", timeout=5).json()
    assert (seen["script_name"], seen["path"]) == ("", "/v1/FY/live/event")


def test_method_headers_and_bodies_are_passed_through(serve: Any) -> None:
    server = serve()
    seen = requests.patch(
        f"{server.endpoint}/FY/live/profiles/U1/channel",
        json={"channel": {"sms": "+15550100"}},
        headers={"Authorization": "Bearer secret"},
        timeout=5,
    ).json()
    assert seen["method"] == "PATCH"
    assert seen["authorization"] == "Bearer secret"
    assert seen["content_type"] == "application/json"
    assert json.loads(seen["body"]) == {"channel": {"sms": "+15550100"}}


def test_a_chunked_body_is_decoded(serve: Any) -> None:
    server = serve()
    chunks = iter([b'{"a": ', b"1}"])  # requests sends a generator chunked
    seen = requests.post(f"{server.endpoint}/FY/x", data=chunks, timeout=5).json()
    assert json.loads(seen["body"]) == {"a": 1}


def test_a_session_reuses_one_connection(serve: Any) -> None:
    server = serve()
    with requests.Session() as session:
        for _ in range(10):
            assert session.get(f"{server.endpoint}/FY/live/event", timeout=5).ok
            assert session.post(f"{server.endpoint}/FY/live/event", json={}, timeout=5).ok
    assert server.connections_accepted == 1


def test_connection_close_is_honoured(serve: Any) -> None:
    server = serve()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    connection.request("GET", "/v1/x", headers={"Connection": "close"})
    reply = connection.getresponse()
    assert reply.status == 200
    assert reply.getheader("Connection") == "close"
    assert reply.getheader("Content-Length") == str(len(reply.read()))
    connection.close()


def test_a_dropped_connection_is_a_connection_error_and_the_server_goes_on(serve: Any) -> None:
    server = serve()
    with requests.Session() as session:
        assert session.get(f"{server.endpoint}/ok", timeout=5).ok
        with pytest.raises(requests.exceptions.ConnectionError):
            session.get(f"{server.endpoint}/drop", timeout=5)
        assert session.get(f"{server.endpoint}/ok", timeout=5).ok


def test_dropping_while_the_body_is_produced_writes_nothing(serve: Any) -> None:
    server = serve(drop_while_iterating)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{server.endpoint}/x", timeout=5)


def test_an_app_error_is_a_500_and_the_connection_stays_usable(
    serve: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve()
    with requests.Session() as session:
        reply = session.get(f"{server.endpoint}/boom", timeout=5)
        assert reply.status_code == 500
        assert reply.json()["status"] == "error"
        assert session.get(f"{server.endpoint}/ok", timeout=5).ok
    assert "RuntimeError: boom" in capsys.readouterr().err
    assert server.connections_accepted == 1


def test_port_zero_picks_distinct_free_ports(serve: Any) -> None:
    first, second = serve(), serve()
    assert first.port != 0
    assert second.port != 0
    assert first.port != second.port
    assert first.endpoint == f"http://127.0.0.1:{first.port}/v1"
    assert first.url == f"http://127.0.0.1:{first.port}"


def test_the_server_is_quiet_unless_verbose(serve: Any, capfd: pytest.CaptureFixture[str]) -> None:
    quiet, verbose = serve(), serve(verbose=True)
    headers = {"Authorization": "Bearer top-secret"}
    requests.get(f"{quiet.endpoint}/FY/q", headers=headers, timeout=5)
    assert capfd.readouterr().err == ""
    requests.get(f"{verbose.endpoint}/FY/v", headers=headers, timeout=5)
    logged = capfd.readouterr().err
    assert "GET /v1/FY/v 200" in logged
    assert "top-secret" not in logged


def test_shutdown_closes_idle_keep_alive_connections(serve: Any) -> None:
    server = serve()
    session = requests.Session()
    assert session.get(f"{server.endpoint}/x", timeout=5).ok
    assert server.open_connections == 1
    server.shutdown()
    deadline = time.monotonic() + 5
    while server.open_connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.open_connections == 0
    with pytest.raises(requests.exceptions.ConnectionError):
        session.get(f"{server.endpoint}/x", timeout=5)
    session.close()


def test_shutdown_of_a_server_that_never_served_returns() -> None:
    server = make_server(echo_app, port=0)
    server.shutdown()
    server.shutdown()  # idempotent


def test_live_emulator_serves_an_emulator_and_stops() -> None:
    with LiveEmulator(wsid="FYLIVE", api_key="live-key") as live:
        assert live.wsid == "FYLIVE"
        assert live.api_key == "live-key"
        assert isinstance(live.emulator, Emulator)
        assert live.endpoint.startswith("http://127.0.0.1:")
        assert live.endpoint == live.url + "/v1"
        assert "FYLIVE" in repr(live)
        reply = requests.get(
            f"{live.endpoint}/FYLIVE/live/profiles/U1",
            headers={"Authorization": "Bearer live-key"},
            timeout=5,
        )
        assert reply.headers["Content-Type"].startswith("application/json")
        endpoint = live.endpoint
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{endpoint}/FYLIVE/live/profiles/U1", timeout=5)
    with pytest.raises(RuntimeError, match="not running"):
        _ = live.endpoint
    live.stop()  # idempotent


def test_live_emulator_can_serve_a_given_emulator() -> None:
    emulator = Emulator("FYGIVEN", "given-key")
    live = LiveEmulator(emulator).start()
    try:
        assert live.emulator is emulator
        assert live.api_key == "given-key"
        assert live.wsid == "FYGIVEN"
        assert live.start() is live  # starting twice is harmless
    finally:
        live.stop()


# --- what a client can make the server hold ----------------------------------


def exchange(server: EmulatorServer, head: bytes, parts: Iterable[bytes] = ()) -> bytes:
    """Send a raw request (its head, then ``parts``), half-close, and read all the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head)
        for part in parts:
            sock.sendall(part)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, body


CHUNKED = (
    b"POST /v1/FY/live/event HTTP/1.1\r\nHost: x\r\n"
    b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def test_a_negative_chunk_size_cannot_make_the_server_read_the_stream(serve: Any) -> None:
    # "-1" was read as "read to the end": a client streaming 300 MB made the
    # server hold 300 MB. Stream half as much again as the limit, and measure.
    server = serve()
    block = b"x" * MB
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        answer = exchange(server, CHUNKED + b"-1\r\n", [block] * (MAX_BODY // MB + 8))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MB, f"the server held {peak / MB:.1f} MB of a refused body"
    status, headers, body = parse(answer)
    assert status == 400
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {
        "_message": "Invalid chunk size in a chunked request body",
        "status": "error",
    }


@pytest.mark.parametrize("size", [b"FFFFFFFFFFFF", b"1000001", b"ffffffffffffffff"])
def test_a_chunk_size_over_the_limit_is_a_413_before_it_is_read(serve: Any, size: bytes) -> None:
    server = serve()
    status, headers, body = parse(exchange(server, CHUNKED + size + b"\r\n", [b"x" * MB] * 4))
    assert status == 413
    assert headers["Connection"] == "close"
    assert json.loads(body) == {
        "_message": f"Request body is larger than the emulator's limit of {MAX_BODY} bytes",
        "status": "error",
    }


def test_chunks_adding_up_over_the_limit_are_a_413(serve: Any) -> None:
    server = serve()
    block = b"x" * MB
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(MAX_BODY // MB + 2):
            sent += 1
            yield block

    reply = requests.post(f"{server.endpoint}/FY/live/event", data=chunks(), timeout=10)
    assert reply.status_code == 413
    assert "limit" in reply.json()["_message"]
    # The next request is served on a fresh connection.
    assert requests.get(f"{server.endpoint}/FY/ok", timeout=5).json()["path"] == "/FY/ok"


@pytest.mark.parametrize(
    ("length", "status"), [("1000000000000", 413), (str(MAX_BODY + 1), 413), ("-1", 400)]
)
def test_a_content_length_over_the_limit_is_refused_without_reading(
    serve: Any, length: str, status: int
) -> None:
    server = serve()
    head = f"POST /v1/FY/live/event HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n"
    got, headers, body = parse(exchange(server, head.encode()))
    assert got == status
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["status"] == "error"


def test_a_body_announced_too_large_gets_a_413_instead_of_100_continue(serve: Any) -> None:
    server = serve()
    head = (
        "POST /v1/FY/live/event HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        f"Content-Length: {MAX_BODY + 1}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode())
        first = sock.recv(65536)  # the client sends no body before it is told to
    assert first.startswith(b"HTTP/1.1 413 ")


def test_the_server_listens_again_on_its_port_at_once(serve: Any) -> None:
    server = serve()
    port = server.port
    # The server closes first (Connection: close), so its side of the
    # connection lingers in TIME_WAIT on its port.
    request = b"GET /v1/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        while sock.recv(65536):
            pass
    server.shutdown()
    again = serve(port=port)  # SO_REUSEADDR: no "Address already in use"
    assert again.port == port
    assert requests.get(f"{again.endpoint}/FY/again", timeout=5).json()["path"] == "/FY/again"


def test_live_emulator_passes_the_remote_webhook_switch_on() -> None:
    hook = "https://hooks.example.com/fyno"
    with LiveEmulator() as live, pytest.raises(WebhookError, match="not on this machine"):
        live.emulator.register_webhook(hook)
    with LiveEmulator(allow_remote_webhooks=True) as live:
        live.emulator.register_webhook(hook)
        assert live.emulator.webhook_url == hook
