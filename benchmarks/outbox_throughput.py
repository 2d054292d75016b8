"""End-to-end outbox throughput: real Celery worker processes, Redis, PostgreSQL, and the
emulator over HTTP with 20 ms of latency per request.

    python benchmarks/outbox_throughput.py [--bulk-events 4000] [--single-events 400]

Needs PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/fyno_bench,
created if missing) and Redis (CELERY_BROKER_URL, default redis://127.0.0.1:6379/12).
For each combination of bulk on (OUTBOX_BULK_SIZE 100) / off (1) and 1 / 2 worker
processes (``celery worker --pool=solo``), it writes the events with ``notify()``
while delivery is off, starts the workers, then times from the moment it asks
every worker to drain until every row is ``sent``. Drainers share the work
through ``SELECT ... FOR UPDATE SKIP LOCKED``; the script checks that the
emulator received each event exactly once. Prints a table and the speed-ups.
Only 127.0.0.1 is contacted; everything it starts, it stops.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.emulator import API_KEY, WSID, start_server_process  # noqa: E402

DATABASE_URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/fyno_bench")
BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/12")
LATENCY = 0.02
# django-fyno's tasks go to Celery's default queue (FYNO["CELERY_QUEUE"] unset).
QUEUE = "celery"

os.environ.update(
    DATABASE_URL=DATABASE_URL,
    CELERY_BROKER_URL=BROKER_URL,
    DJANGO_SETTINGS_MODULE="benchmarks.settings",
    FYNO_WSID=WSID,
    FYNO_API_KEY=API_KEY,
    FYNO_TASK_MODE="off",  # this process only writes rows; workers deliver
)


def ensure_database() -> None:
    import psycopg

    base, _, name = DATABASE_URL.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{name}"')


def control(endpoint: str, method: str, path: str) -> Any:
    """Call the emulator's control API (under the root, beside the /v1 prefix)."""
    root = endpoint.rsplit("/", 1)[0]
    return requests.request(method, f"{root}/_emulator/{path}", timeout=30).json()


def start_workers(count: int, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    workers = []
    for n in range(count):
        command = [sys.executable, "-m", "celery", "-A", "benchmarks.celery_app", "worker"]
        command += ["--pool=solo", "-Q", QUEUE, "-n", f"bench{n}@%h", "-l", "WARNING"]
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        workers.append(subprocess.Popen(command, env=env, cwd=ROOT))
    return workers


def wait_for_workers(app: object, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = app.control.ping(timeout=1.0)  # type: ignore[attr-defined]
        if len(replies) >= count:
            return
    raise RuntimeError(f"{count} worker(s) did not answer within {timeout:.0f}s")


def purge_fyno_queue(app: Any) -> None:
    """Empty the tasks' queue: drain requests a stopped worker had prefetched are
    requeued (acks_late), and would start the next measurement early."""
    with app.connection_for_write() as connection:
        try:
            connection.default_channel.queue_purge(QUEUE)
        except Exception:  # the queue does not exist yet: nothing to purge
            connection.default_channel.queue_declare(QUEUE, durable=True)


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=30)


def run(bulk_size: int, workers: int, events: int, endpoint: str) -> tuple[float, int, int]:
    """Seconds to deliver ``events`` rows, requests sent, events received more than once."""
    from django.db import transaction

    from benchmarks.celery_app import app
    from django_fyno import notify
    from django_fyno.clients import default_workspace
    from django_fyno.models import FynoOutbox
    from django_fyno.tasks import deliver_outbox_task

    FynoOutbox.objects.all().delete()
    control(endpoint, "POST", "reset")
    purge_fyno_queue(app)
    for start in range(0, events, 100):  # written as 100-row transactions
        with transaction.atomic():
            for n in range(start, min(start + 100, events)):
                notify("bench", to={"email": f"user{n}@example.com"}, data={"n": n})

    env = dict(os.environ, FYNO_ENDPOINT=endpoint, FYNO_TASK_MODE="celery")
    env["FYNO_OUTBOX_BULK_SIZE"] = str(bulk_size)
    processes = start_workers(workers, env)
    try:
        wait_for_workers(app, workers)
        started = time.perf_counter()
        for _ in range(workers * 2):  # enough drain requests to occupy every worker
            deliver_outbox_task.apply_async(args=(default_workspace().key,))
        while FynoOutbox.objects.exclude(state="sent").exists():
            if time.perf_counter() - started > 600:
                raise RuntimeError("delivery did not finish within 10 minutes")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        stop(processes)
    state = control(endpoint, "GET", "state")
    received = [
        event["callback"]["custom_id"]
        for version in state["versions"].values()
        for event in version["events"]
    ]
    log = control(endpoint, "GET", "requests")["requests"]
    sends = [e for e in log if e.get("operation") in ("send_event", "send_bulk")]
    return elapsed, len(sends), len(received) - len(set(received))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--bulk-events", type=int, default=4000, help="events with bulk on")
    parser.add_argument("--single-events", type=int, default=400, help="events with bulk off")
    args = parser.parse_args(argv)
    ensure_database()
    server, endpoint = start_server_process("--latency", str(LATENCY))
    # Rows record the endpoint they are written for: the settings must name it first.
    os.environ["FYNO_ENDPOINT"] = endpoint

    results: dict[tuple[str, int], tuple[int, float, int, int]] = {}
    try:
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        for label, bulk_size, events in (
            ("on", 100, args.bulk_events),
            ("off", 1, args.single_events),
        ):
            for workers in (1, 2):
                elapsed, requests, duplicates = run(bulk_size, workers, events, endpoint)
                results[(label, workers)] = (events, elapsed, requests, duplicates)
    finally:
        server.terminate()
        server.wait(timeout=10)

    print(f"emulator latency {LATENCY * 1000:.0f} ms per request; PostgreSQL; Redis broker")
    header = (
        f"{'bulk':>4} {'workers':>7} {'events':>7} {'requests':>8} {'seconds':>8} "
        f"{'events/s':>9} {'dups':>5}"
    )
    print(header)
    print("-" * len(header))
    for (label, workers), (events, elapsed, requests, duplicates) in results.items():
        print(
            f"{label:>4} {workers:>7} {events:>7} {requests:>8} {elapsed:>8.2f} "
            f"{events / elapsed:>9.0f} {duplicates:>5}"
        )

    def rate(label: str, workers: int) -> float:
        events, elapsed, _, _ = results[(label, workers)]
        return events / elapsed

    print()
    print(f"speed-up, 2 workers vs 1, bulk on : {rate('on', 2) / rate('on', 1):.2f}x")
    print(f"speed-up, 2 workers vs 1, bulk off: {rate('off', 2) / rate('off', 1):.2f}x")
    print(f"speed-up, bulk on vs off, 1 worker: {rate('on', 1) / rate('off', 1):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
