"""End-to-end outbox throughput: real Celery worker processes, Redis or RabbitMQ, PostgreSQL,
and the emulator over HTTP with 20 ms of latency per request.

    python benchmarks/outbox_throughput.py [--brokers redis,rabbitmq] [--workers 1,2,4]
        [--bulk-events 8000] [--single-events 400] [--property-ops 8000] [--concurrency 4]

Needs PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/fyno_bench,
created if missing), Redis (REDIS_BROKER_URL, default redis://127.0.0.1:6379/7) and
RabbitMQ (RABBITMQ_BROKER_URL, default amqp://guest:guest@127.0.0.1:5672//). The
tasks go to a queue of their own (BENCH_QUEUE, default ``fyno-bench``), purged
before each run. For each broker, scenario and number of worker processes
(``celery worker --pool=solo``), it writes the rows with ``notify()`` or
``properties()`` while delivery is off, starts the workers, then times from the
moment it asks every worker to drain until every row is ``sent``. Scenarios:

- ``bulk``: events of one name, ``OUTBOX_BULK_SIZE`` 100, one request at a time;
- ``bulk cN``: the same with ``OUTBOX_CONCURRENCY`` N (N requests in flight per
  worker, the next claim taken while they are);
- ``single``: ``OUTBOX_BULK_SIZE`` 1 (no bulk), one request at a time;
- ``single cN``: the same with N requests in flight per worker;
- ``properties``: ``$add`` of distinct users through ``/profiles/properties/batch``.

Drainers share the work through ``SELECT ... FOR UPDATE SKIP LOCKED``; the script
checks that the emulator received each event (by ``custom_id``) and applied each
``$add`` exactly once. ``limit`` is the latency limit of one worker sending one
request at a time, ``OUTBOX_BULK_SIZE / latency``; ``%`` is the rate against it
(above 100 % with several workers or requests in flight). The emulator serves
without checking its own replies (``benchmarks/emulator_server.py``) unless
``--check-replies``.
Only 127.0.0.1 is contacted; everything it starts, it stops.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.emulator import API_KEY, WSID, start_server_process  # noqa: E402

DATABASE_URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/fyno_bench")
BROKERS = {
    "redis": os.environ.get("REDIS_BROKER_URL", "redis://127.0.0.1:6379/7"),
    "rabbitmq": os.environ.get("RABBITMQ_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"),
}
LATENCY = 0.02
QUEUE = os.environ.get("BENCH_QUEUE", "fyno-bench")
# Rows still on their way (the states a drain moves on).
UNDELIVERED = ("pending", "sending", "unknown")

os.environ.update(
    DATABASE_URL=DATABASE_URL,
    DJANGO_SETTINGS_MODULE="benchmarks.settings",
    FYNO_WSID=WSID,
    FYNO_API_KEY=API_KEY,
    FYNO_TASK_MODE="off",  # this process only writes rows; workers deliver
    FYNO_CELERY_QUEUE=QUEUE,
)


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # "event" or "property"
    bulk_size: int
    concurrency: int
    rows: int


@dataclass
class Result:
    seconds: float
    requests: int
    duplicates: int

    def rate(self, rows: int) -> float:
        return rows / self.seconds


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
    return requests.request(method, f"{root}/_emulator/{path}", timeout=60).json()


def start_workers(count: int, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    workers = []
    for n in range(count):
        command = [sys.executable, "-m", "celery", "-A", "benchmarks.celery_app", "worker"]
        command += ["--pool=solo", "-Q", QUEUE, "-n", f"bench{n}@%h", "-l", "WARNING"]
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        workers.append(subprocess.Popen(command, env=env, cwd=ROOT))
    return workers


def wait_for_workers(app: Any, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(app.control.ping(timeout=1.0)) >= count:
            return
    raise RuntimeError(f"{count} worker(s) did not answer within {timeout:.0f}s")


def purge_queue(app: Any) -> None:
    """Empty the tasks' queue: drain requests a stopped worker had prefetched are
    requeued (acks_late), and would start the next measurement early."""
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        channel.queue_declare(QUEUE, durable=True, auto_delete=False)
        channel.queue_purge(QUEUE)


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=30)


def write_rows(scenario: Scenario) -> None:
    from django.db import connection, transaction

    from django_fyno import notify, properties
    from django_fyno.models import FynoOutbox

    FynoOutbox.objects.all().delete()
    for start in range(0, scenario.rows, 100):  # written as 100-row transactions
        with transaction.atomic():
            for n in range(start, min(start + 100, scenario.rows)):
                if scenario.kind == "event":
                    notify("bench", to={"email": f"user{n}@example.com"}, data={"n": n})
                else:
                    properties(f"user{n}").add("count", 1)
    with connection.cursor() as cursor:
        # As in a table that has lived a while: the planner knows its size.
        cursor.execute(f"VACUUM ANALYZE {FynoOutbox._meta.db_table}")


def duplicates(scenario: Scenario, endpoint: str) -> int:
    """Events received (by custom_id) or ``$add`` applied more than once."""
    state = control(endpoint, "GET", "state")
    if scenario.kind == "event":
        received = [
            event["callback"]["custom_id"]
            for version in state["versions"].values()
            for event in version["events"]
        ]
        return len(received) - len(set(received))
    counts = [
        profile["properties"].get("count", 0)
        for version in state["versions"].values()
        for profile in version["profiles"].values()
    ]
    return sum(count - 1 for count in counts if count > 1)


def run(scenario: Scenario, broker: str, workers: int, endpoint: str) -> Result:
    """Deliver ``scenario.rows`` rows with ``workers`` worker processes on ``broker``."""
    from celery import Celery

    from django_fyno.clients import default_workspace
    from django_fyno.models import FynoOutbox
    from django_fyno.outbox import DRAIN_JOB

    app = Celery("outbox-throughput", broker=BROKERS[broker])  # this process's sender
    control(endpoint, "POST", "reset")
    purge_queue(app)
    write_rows(scenario)

    env = dict(os.environ, FYNO_ENDPOINT=endpoint, FYNO_TASK_MODE="celery")
    env["CELERY_BROKER_URL"] = BROKERS[broker]
    env["FYNO_OUTBOX_BULK_SIZE"] = str(scenario.bulk_size)
    env["FYNO_OUTBOX_CONCURRENCY"] = str(scenario.concurrency)
    processes = start_workers(workers, env)
    try:
        wait_for_workers(app, workers)
        started = time.perf_counter()
        for _ in range(workers):  # one drain request per worker (prefetch 1: one each)
            app.send_task(DRAIN_JOB, args=(default_workspace().key,), queue=QUEUE)
        # An index probe (state leads the drain index), not a scan of the sent rows:
        # the poll must not take the CPU the workers and PostgreSQL are measured on.
        undelivered = FynoOutbox.objects.filter(state__in=UNDELIVERED)
        while undelivered.exists():
            if time.perf_counter() - started > 600:
                raise RuntimeError("delivery did not finish within 10 minutes")
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        given_up = FynoOutbox.objects.exclude(state="sent").count()
        if given_up:
            raise RuntimeError(f"{given_up} row(s) ended neither sent nor pending")
    finally:
        stop(processes)
        app.close()
    log = control(endpoint, "GET", "requests")["requests"]
    operations = ("send_event", "send_bulk", "batch_properties", "increment_properties")
    sent = [entry for entry in log if entry.get("operation") in operations]
    return Result(elapsed, len(sent), duplicates(scenario, endpoint))


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    wide = args.concurrency
    return [
        Scenario("bulk", "event", 100, 1, args.bulk_events),
        Scenario(f"bulk c{wide}", "event", 100, wide, args.bulk_events),
        Scenario("single", "event", 1, 1, args.single_events),
        Scenario(f"single c{wide}", "event", 1, wide, args.single_events * 2),
        Scenario("properties", "property", 100, 1, args.property_ops),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--brokers", default="redis,rabbitmq", help="redis,rabbitmq")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts (1,2,4)")
    parser.add_argument("--bulk-events", type=int, default=8000, help="events, bulk on")
    parser.add_argument("--single-events", type=int, default=400, help="events, bulk off")
    parser.add_argument("--property-ops", type=int, default=8000, help="$add of distinct users")
    parser.add_argument("--concurrency", type=int, default=4, help="OUTBOX_CONCURRENCY (4)")
    parser.add_argument("--only", default="", help="comma-separated scenario names to run")
    parser.add_argument(
        "--check-replies", action="store_true", help="let the emulator check its own replies"
    )
    args = parser.parse_args(argv)
    brokers = [name.strip() for name in args.brokers.split(",") if name.strip()]
    worker_counts = [int(n) for n in args.workers.split(",")]
    chosen = [s for s in scenarios(args) if not args.only or s.name in args.only.split(",")]

    ensure_database()
    server, endpoint = start_server_process(
        "--latency", str(LATENCY), check_replies=args.check_replies
    )
    # Rows record the endpoint they are written for: the settings must name it first.
    os.environ["FYNO_ENDPOINT"] = endpoint
    results: dict[tuple[str, Scenario, int], Result] = {}
    try:
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        # Not measured: the first run would also pay for cold caches (database, emulator).
        run(Scenario("warm-up", "event", 100, 1, 500), brokers[0], 1, endpoint)
        for broker in brokers:
            for scenario in chosen:
                for workers in worker_counts:
                    results[(broker, scenario, workers)] = run(scenario, broker, workers, endpoint)
    finally:
        server.terminate()
        server.wait(timeout=10)
    report(results, brokers, chosen, worker_counts, args.check_replies)
    return 0


def report(
    results: dict[tuple[str, Scenario, int], Result],
    brokers: list[str],
    chosen: list[Scenario],
    worker_counts: list[int],
    check_replies: bool,
) -> None:
    checked = "checked" if check_replies else "unchecked"
    print(
        f"emulator latency {LATENCY * 1000:.0f} ms per request (replies {checked}); "
        f"PostgreSQL; {os.cpu_count()} cores; Python {platform.python_version()}"
    )
    header = (
        f"{'broker':<8} {'scenario':<11} {'workers':>7} {'rows':>6} {'requests':>8} "
        f"{'seconds':>8} {'rows/s':>8} {'limit':>6} {'%':>5} {'dups':>5}"
    )
    print(header)
    print("-" * len(header))
    for (broker, scenario, workers), result in results.items():
        rate = result.rate(scenario.rows)
        limit = scenario.bulk_size / LATENCY
        print(
            f"{broker:<8} {scenario.name:<11} {workers:>7} {scenario.rows:>6} "
            f"{result.requests:>8} {result.seconds:>8.2f} {rate:>8.0f} {limit:>6.0f} "
            f"{100 * rate / limit:>5.0f} {result.duplicates:>5}"
        )
    print()
    base = worker_counts[0]
    for broker in brokers:
        for scenario in chosen:
            one = results[(broker, scenario, base)].rate(scenario.rows)
            ups = ", ".join(
                f"{workers}: {results[(broker, scenario, workers)].rate(scenario.rows) / one:.2f}x"
                for workers in worker_counts[1:]
            )
            print(f"speed-up vs {base} worker, {broker:<8} {scenario.name:<11} {ups}")


if __name__ == "__main__":
    sys.exit(main())
