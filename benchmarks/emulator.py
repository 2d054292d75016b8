"""Throughput of the emulator over HTTP (threaded server, keep-alive sessions).

    python benchmarks/emulator.py [--seconds 2] [--requests 5000] [--threads 1,4] [--trivial]

Starts a LiveEmulator on 127.0.0.1 (ephemeral port), runs each scenario with
1 and 4 client threads, each with its own ``requests.Session``, for
``--seconds`` or ``--requests`` (whichever comes first), prints a table, and
stops. ``--trivial`` serves a constant-answer WSGI app instead, to measure the
server alone.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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
    parser.add_argument("--threads", default="1,4", help="client thread counts (1,4)")
    parser.add_argument("--trivial", action="store_true", help="serve a constant WSGI app")
    args = parser.parse_args(argv)
    thread_counts = [int(n) for n in args.threads.split(",")]

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
            for threads in thread_counts:
                count, seconds, errors = run(call, api, threads, args.seconds, args.requests)
                results.append(Result(name, threads, count, seconds, errors))
                # The log grows with every request; keep memory flat between runs.
                emulator.request_log.clear()

    what = "trivial WSGI app" if args.trivial else "Emulator"
    print(f"{what} over HTTP, keep-alive sessions")
    header = f"{'scenario':<20} {'threads':>7} {'requests':>9} {'seconds':>8} {'req/s':>8}"
    print(header)
    print("-" * len(header))
    for result in results:
        note = f"  ({result.errors} answered >= 400)" if result.errors else ""
        print(
            f"{result.scenario:<20} {result.threads:>7} {result.requests:>9} "
            f"{result.seconds:>8.2f} {result.rate:>8.0f}{note}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
