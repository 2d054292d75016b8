"""Backfill throughput and memory of ``manage.py fyno_sync``: PostgreSQL, the emulator
in its own process over HTTP, the command in its own process.

    python benchmarks/backfill.py [--sizes 10000,50000] [--concurrency 8,32]
                                  [--latency 0.02] [--chunk-size N] [--quick] [--keep-db]

For each number of users N and each concurrency C, the script empties the
mirror rows and the emulator, sets the emulator's latency L on every request,
then runs ``fyno_sync --concurrency C`` in a fresh process over N users never
synced (one create request each). It prints users/s against the ideal C/L
(target: at least 90 %) and the command process's peak RSS (target: at most
30 MB more for the largest N than for the smallest), and checks that every
user's profile reached the emulator.

Three more figures say which bound applies when C/L is out of reach: the
bare client (C threads sending the same create requests with one pooled
``FynoClient``, no Django, no database) at the same latency, the most any
caller achieves against this emulator on this machine; and, with no latency,
the emulator alone (creates from two client processes) and ``fyno_sync``
itself. The command's CPU time per user is shown too.

Needs PostgreSQL: DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/fyno_bench_backfill, created at the start
and dropped at the end (``--keep-db`` keeps it). ``--quick``: small N (under
about 30 s), a smoke run. Only 127.0.0.1 is contacted; everything it starts,
it stops.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
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

DATABASE_URL = os.environ.get(
    "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/fyno_bench_backfill"
)
os.environ.update(
    DATABASE_URL=DATABASE_URL,
    DJANGO_SETTINGS_MODULE="benchmarks.settings",
    FYNO_WSID=WSID,
    FYNO_API_KEY=API_KEY,
    FYNO_TASK_MODE="off",  # users are written without syncing; the command syncs them
)
VERSION = "test"  # benchmarks/settings.py


@dataclass
class Run:
    users: int
    concurrency: int
    latency: float
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    summary: str
    profiles: int

    @property
    def rate(self) -> float:
        return self.users / self.seconds

    @property
    def cpu_ms_per_user(self) -> float:
        return self.cpu_seconds * 1000 / self.users

    @property
    def ideal(self) -> float | None:
        return self.concurrency / self.latency if self.latency else None


# -- the database ---------------------------------------------------------------------------


def _admin_url() -> tuple[str, str]:
    base, _, name = DATABASE_URL.rpartition("/")
    return f"{base}/postgres", name


def create_database() -> None:
    import psycopg

    admin_url, name = _admin_url()
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')


def drop_database() -> None:
    import psycopg

    admin_url, name = _admin_url()
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_users(count: int) -> None:
    """Exactly ``count`` users, none synced (no mirror rows)."""
    from django.contrib.auth import get_user_model

    from django_fyno.models import FynoProfile

    user_model = get_user_model()
    FynoProfile.objects.all().delete()
    have = user_model.objects.count()
    if have > count:
        user_model.objects.all().delete()
        have = 0
    new = [
        user_model(username=f"user{n}", email=f"user{n}@example.com", first_name=f"User {n}")
        for n in range(have, count)
    ]
    user_model.objects.bulk_create(new, batch_size=5000)  # no signals: nothing syncs


# -- the emulator ---------------------------------------------------------------------------


def control(endpoint: str, method: str, path: str, body: Any = None) -> Any:
    root = endpoint.rsplit("/", 1)[0]
    reply = requests.request(method, f"{root}/_emulator/{path}", json=body, timeout=120)
    reply.raise_for_status()
    return reply.json()


def reset_emulator(endpoint: str, latency: float) -> None:
    control(endpoint, "POST", "reset")
    if latency:
        control(endpoint, "POST", "faults", {"faults": {"*": {"latency": latency}}})


def warm_up(endpoint: str) -> None:
    """One request of each kind: a fresh emulator takes about a second to answer its first."""
    from django_fyno.client import FynoClient, FynoConfig

    config = FynoConfig(wsid=WSID, api_key=API_KEY, version=VERSION, endpoint=endpoint)
    with FynoClient(config=config) as client:
        client.create_profile("warm-up", name="Warm", status=1, channel={"email": "w@x.io"})
        client.update_profile("warm-up", name="Up")
    reset_emulator(endpoint, 0.0)


def profile_count(endpoint: str) -> int:
    state = control(endpoint, "GET", "state")
    return len(state["versions"][VERSION]["profiles"])


def _create_profiles(api: str, prefix: str, seconds: float, barrier: Any, out: Any) -> None:
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {API_KEY}"
        barrier.wait()
        started = time.perf_counter()
        count = 0
        while time.perf_counter() - started < seconds:
            body = {"distinct_id": f"{prefix}-{count}", "name": "Bench", "status": 1}
            session.post(f"{api}/profiles", json=body).raise_for_status()
            count += 1
        out.put((count, time.perf_counter() - started))


def bare_client(endpoint: str, concurrency: int, latency: float, count: int) -> float:
    """Creates per second of ``concurrency`` threads sharing one pooled client: the ceiling."""
    from concurrent.futures import ThreadPoolExecutor

    from django_fyno.client import FynoClient, FynoConfig

    reset_emulator(endpoint, latency)
    config = FynoConfig(
        wsid=WSID, api_key=API_KEY, version=VERSION, endpoint=endpoint, pool_size=concurrency
    )

    def create(n: int) -> None:
        client.create_profile(f"bare{n}", name="Bench", status=1, channel={"email": "b@x.io"})

    with FynoClient(config=config) as client, ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(create, range(-concurrency, 0)))  # open the connections first
        started = time.perf_counter()
        list(pool.map(create, range(count)))
        return count / (time.perf_counter() - started)


def emulator_capacity(endpoint: str, clients: int, seconds: float) -> float:
    """Creates per second the emulator answers, no latency, from ``clients`` processes."""
    reset_emulator(endpoint, 0.0)
    context = multiprocessing.get_context("spawn")
    barrier, out = context.Barrier(clients), context.Queue()
    api = f"{endpoint}/{WSID}/{VERSION}"
    workers = [
        context.Process(target=_create_profiles, args=(api, f"cap{n}", seconds, barrier, out))
        for n in range(clients)
    ]
    for worker in workers:
        worker.start()
    results = [out.get(timeout=seconds + 60) for _ in workers]
    for worker in workers:
        worker.join()
    return float(sum(count for count, _ in results) / max(elapsed for _, elapsed in results))


# -- the command, in its own process ----------------------------------------------------------


def peak_rss_kb() -> int:
    """This process's peak RSS (``VmHWM``, Linux).

    Not ``getrusage``'s ``ru_maxrss``: that one keeps the RSS the process had
    before ``exec``, i.e. the parent's at the fork, which grows with the users
    this script creates.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux: the next best


def child(concurrency: int, chunk_size: int | None) -> int:
    """Run fyno_sync here; print seconds, peak RSS and its summary line as JSON."""
    import io

    import django

    django.setup()
    from django.core.management import call_command

    out, err = io.StringIO(), io.StringIO()
    args = ["--concurrency", str(concurrency), "--no-progress"]
    if chunk_size:
        args += ["--chunk-size", str(chunk_size)]
    started = time.perf_counter()
    call_command("fyno_sync", *args, stdout=out, stderr=err)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    summary = out.getvalue().strip().splitlines()[-1]
    answer = {
        "seconds": seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,  # Django's start-up included
        "peak_rss_kb": peak_rss_kb(),
        "summary": summary,
    }
    print(json.dumps(answer))
    return 0


def run_command(
    endpoint: str, users: int, concurrency: int, latency: float, chunk_size: int | None
) -> Run:
    make_users(users)
    reset_emulator(endpoint, latency)
    command = [sys.executable, __file__, "--child", "--concurrency", str(concurrency)]
    if chunk_size:
        command += ["--chunk-size", str(chunk_size)]
    env = dict(os.environ, FYNO_ENDPOINT=endpoint)
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.stderr.write(done.stderr[-4000:])
        raise RuntimeError(f"fyno_sync exited with {done.returncode}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return Run(
        users,
        concurrency,
        latency,
        answer["seconds"],
        answer["cpu_seconds"],
        answer["peak_rss_kb"] / 1024,
        answer["summary"],
        profile_count(endpoint),
    )


# -- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10000,50000", help="numbers of users")
    parser.add_argument("--concurrency", default="8,32", help="fyno_sync --concurrency values")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per request")
    parser.add_argument("--chunk-size", type=int, default=None, help="fyno_sync --chunk-size")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(int(args.concurrency), args.chunk_size)

    sizes = [int(n) for n in args.sizes.split(",")]
    concurrencies = [int(n) for n in args.concurrency.split(",")]
    capacity_users, capacity_seconds, bare_requests = 10000, 3.0, 5000
    if args.quick:
        sizes, capacity_users, capacity_seconds, bare_requests = [600, 2000], 1000, 1.0, 1000

    create_database()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    server, endpoint = start_server_process()
    try:
        warm_up(endpoint)
        runs = [
            run_command(endpoint, size, concurrency, args.latency, args.chunk_size)
            for size in sizes
            for concurrency in concurrencies
        ]
        ceilings = {c: bare_client(endpoint, c, args.latency, bare_requests) for c in concurrencies}
        alone = emulator_capacity(endpoint, 2, capacity_seconds)
        unbounded = [
            run_command(endpoint, capacity_users, concurrency, 0.0, args.chunk_size)
            for concurrency in concurrencies
        ]
        bare_unbounded = {c: bare_client(endpoint, c, 0.0, bare_requests) for c in concurrencies}
    finally:
        server.terminate()
        server.wait(timeout=10)
        from django.db import connections

        connections.close_all()
        if not args.keep_db:
            drop_database()

    print_table(runs, args.latency, ceilings)
    print()
    print("With no latency (the capacity of the emulator and of this machine):")
    print(f"  emulator alone, creates from 2 client processes: {alone:>7,.0f} req/s")
    for run in unbounded:
        print(
            f"  fyno_sync --concurrency {run.concurrency:<2}, {run.users} users: {run.rate:>7,.0f} "
            f"users/s, {run.cpu_ms_per_user:.2f} ms CPU/user ({run.summary})"
        )
    for concurrency, rate in bare_unbounded.items():
        print(f"  bare client, {concurrency:>2} threads: {rate:>7,.0f} req/s")
    return 0


def print_table(runs: list[Run], latency: float, ceilings: dict[int, float]) -> None:
    print(
        f"fyno_sync backfill: emulator (own process, HTTP) at {latency * 1000:.0f} ms per "
        "request; PostgreSQL; one create request per user"
    )
    header = (
        f"{'users':>7} {'C':>3} {'seconds':>8} {'users/s':>8} {'ideal C/L':>9} "
        f"{'of ideal':>8} {'bare client':>11} {'of bare':>7} {'CPU/user':>9} "
        f"{'peak RSS':>9} {'profiles':>8}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        ideal = run.ideal or 0.0
        share = f"{run.rate / ideal:.0%}" if ideal else "-"
        bare = ceilings.get(run.concurrency, 0.0)
        print(
            f"{run.users:>7} {run.concurrency:>3} {run.seconds:>8.2f} {run.rate:>8.0f} "
            f"{ideal:>9.0f} {share:>8} {bare:>11.0f} {run.rate / bare:>7.0%} "
            f"{run.cpu_ms_per_user:>7.2f}ms {run.peak_rss_mb:>7.1f}MB {run.profiles:>8}"
        )
    for run in runs:
        if run.profiles != run.users or "failed: 0" not in run.summary:
            print(f"  !! {run.users} users at C={run.concurrency}: {run.summary}")
    by_concurrency: dict[int, list[Run]] = {}
    for run in runs:
        by_concurrency.setdefault(run.concurrency, []).append(run)
    for concurrency, same in by_concurrency.items():
        if len(same) > 1:
            smallest, largest = min(same, key=lambda r: r.users), max(same, key=lambda r: r.users)
            growth = largest.peak_rss_mb - smallest.peak_rss_mb
            print(
                f"peak RSS growth at C={concurrency}, {smallest.users} -> {largest.users} "
                f"users: {growth:+.1f} MB (target <= 30 MB)"
            )
    print(
        "bare client: the same creates from C threads sharing one pooled FynoClient, "
        "no Django, no database (the ceiling against this emulator on this machine)"
    )


if __name__ == "__main__":
    sys.exit(main())
