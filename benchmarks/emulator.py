"""Throughput of the emulator over HTTP (threaded server, keep-alive sessions).

    python benchmarks/emulator.py [--seconds 2] [--requests 20000] [--clients 1,2,4]
                                  [--in-process] [--trivial]

By default the emulator runs as users and later benchmarks run it, in its own
process (``python -m django_fyno.emulator --port 0``), and is driven by client
*processes*, each with its own keep-alive ``requests.Session``, so that the
clients' interpreter lock does not cap the figure. ``--in-process`` serves a
LiveEmulator on a thread of this process and drives it with client threads
instead; ``--trivial`` (with it) serves a constant-answer WSGI app, to
measure the server alone. Each scenario runs for ``--seconds`` or
``--requests`` (whichever comes first); the script prints a table and stops.
Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from django_fyno.emulator.app import Emulator
from django_fyno.emulator.live import LiveEmulator

WSID = "FYBENCH"
API_KEY = "bench-key"


@dataclass
class Result:
    scenario: str
    threads: int
    requests: int
    seconds: float
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


Call = Callable[[requests.Session, str, int], requests.Response]


def get_profile(session: requests.Session, api: str, n: int) -> requests.Response:
    return session.get(f"{api}/profiles/BENCH1")


def send_event(session: requests.Session, api: str, n: int) -> requests.Response:
    body = {"event": "bench", "to": {"email": "bench@example.com"}, "data": {"n": n}}
    return session.post(f"{api}/event", json=body)


def set_properties(session: requests.Session, api: str, n: int) -> requests.Response:
    body = {"distinct_id": "BENCH1", "$set": {"plan": "pro", "n": n}}
    return session.post(f"{api}/profiles/properties/set", json=body)


SCENARIOS: dict[str, Call] = {
    "GET profile": get_profile,
    "POST event": send_event,
    "POST property set": set_properties,
}


def trivial_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """A constant answer: the server's own cost, without the emulator's."""
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b'{"status": "ok"}']


def _session() -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {API_KEY}"
    return session


def _client_process(
    name: str, api: str, seconds: float, limit: int, barrier: Any, out: Any
) -> None:
    call = SCENARIOS[name]
    with _session() as session:
        call(session, api, -1)  # open the connection before timing starts
        barrier.wait()
        started = time.perf_counter()
        count = errors = 0
        while count < limit and time.perf_counter() - started < seconds:
            if call(session, api, count).status_code >= 400:
                errors += 1
            count += 1
        out.put((count, time.perf_counter() - started, errors))


def run_processes(
    name: str, api: str, clients: int, seconds: float, limit: int
) -> tuple[int, float, int]:
    """Run scenario ``name`` from ``clients`` processes; returns (requests, seconds, errors)."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(clients)
    out = context.Queue()
    args = (name, api, seconds, max(1, limit // clients), barrier, out)
    workers = [context.Process(target=_client_process, args=args) for _ in range(clients)]
    for worker in workers:
        worker.start()
    results = [out.get(timeout=seconds + 60) for _ in workers]
    for worker in workers:
        worker.join()
    return (
        sum(count for count, _, _ in results),
        max(elapsed for _, elapsed, _ in results),
        sum(errors for _, _, errors in results),
    )


def start_server_process(
    *options: str, check_replies: bool = True
) -> tuple[subprocess.Popen[str], str]:
    """``python -m django_fyno.emulator`` on a free port; returns it and its endpoint.

    ``options`` are more command-line flags, e.g. ``"--latency", "0.02"``.
    ``check_replies=False`` serves it with ``benchmarks/emulator_server.py``:
    the same emulator, without checking its own replies against the contract.
    """
    command = [sys.executable, "-m", "django_fyno.emulator", "--port", "0"]
    if not check_replies:
        command = [sys.executable, str(Path(__file__).with_name("emulator_server.py"))]
        command += ["--port", "0"]
    command += ["--wsid", WSID, "--api-key", API_KEY, *options]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    for line in server.stdout:
        if line.startswith("FYNO_ENDPOINT="):
            return server, line.split("=", 1)[1].strip()
    server.kill()
    raise RuntimeError("the emulator did not print its endpoint")


def run(call: Call, api: str, threads: int, seconds: float, limit: int) -> tuple[int, float, int]:
    """Run ``call`` from ``threads`` threads; returns (requests, seconds, errors)."""
    per_thread = max(1, limit // threads)
    done = [0] * threads
    errors = [0] * threads
    barrier = threading.Barrier(threads + 1)

    def worker(index: int) -> None:
        with _session() as session:
            call(session, api, -1)  # open the connection before timing starts
            barrier.wait()
            deadline = time.perf_counter() + seconds
            count = 0
            while count < per_thread and time.perf_counter() < deadline:
                reply = call(session, api, count)
                if reply.status_code >= 400:
                    errors[index] += 1
                count += 1
            done[index] = count

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for thread in workers:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in workers:
        thread.join()
    return sum(done), time.perf_counter() - started, sum(errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=2.0, help="per scenario (2)")
    parser.add_argument("--requests", type=int, default=20000, help="cap per scenario (20000)")
    parser.add_argument("--clients", default="1,2,4", help="client counts (1,2,4)")
    parser.add_argument(
        "--in-process", action="store_true", help="server on a thread, client threads"
    )
    parser.add_argument(
        "--trivial", action="store_true", help="with --in-process: a constant WSGI app"
    )
    args = parser.parse_args(argv)
    client_counts = [int(n) for n in args.clients.split(",")]
    if not args.in_process:
        return main_server_process(client_counts, args.seconds, args.requests)

    emulator = Emulator(WSID, API_KEY)
    app: Any = trivial_app if args.trivial else emulator
    results: list[Result] = []
    with LiveEmulator(emulator, api_key=API_KEY) as live:
        if args.trivial:
            live.server.app = app
        api = f"{live.endpoint}/{WSID}/live"
        with _session() as session:
            # The profile the GET and property scenarios use.
            session.post(f"{api}/profiles", json={"distinct_id": "BENCH1", "name": "Bench"})
        for name, call in SCENARIOS.items():
            for threads in client_counts:
                count, seconds, errors = run(call, api, threads, args.seconds, args.requests)
                results.append(Result(name, threads, count, seconds, errors))
                # The log grows with every request; keep memory flat between runs.
                emulator.request_log.clear()

    what = "trivial WSGI app" if args.trivial else "Emulator"
    print_table(f"{what} on a thread of this process, client threads", "threads", results)
    return 0


def main_server_process(client_counts: list[int], seconds: float, limit: int) -> int:
    server, endpoint = start_server_process()
    results: list[Result] = []
    try:
        api = f"{endpoint}/{WSID}/live"
        with _session() as session:
            session.post(f"{api}/profiles", json={"distinct_id": "BENCH1", "name": "Bench"})
        for name in SCENARIOS:
            for clients in client_counts:
                count, elapsed, errors = run_processes(name, api, clients, seconds, limit)
                results.append(Result(name, clients, count, elapsed, errors))
                with _session() as session:  # keep the server's memory flat between runs
                    session.delete(f"{endpoint.rsplit('/', 1)[0]}/_emulator/requests")
    finally:
        server.terminate()
        server.wait(timeout=10)
    print_table("Emulator in its own process (python -m django_fyno.emulator)", "clients", results)
    return 0


def print_table(title: str, unit: str, results: list[Result]) -> None:
    print(title + ", keep-alive sessions")
    header = f"{'scenario':<20} {unit:>7} {'requests':>9} {'seconds':>8} {'req/s':>8}"
    print(header)
    print("-" * len(header))
    for result in results:
        note = f"  ({result.errors} answered >= 400)" if result.errors else ""
        print(
            f"{result.scenario:<20} {result.threads:>7} {result.requests:>9} "
            f"{result.seconds:>8.2f} {result.rate:>8.0f}{note}"
        )


if __name__ == "__main__":
    sys.exit(main())
