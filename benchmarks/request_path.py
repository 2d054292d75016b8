"""What django-fyno adds to the request path: a user's save, alone and in a profile-edit view.

    python benchmarks/request_path.py [--saves 1000] [--requests 1000] [--naive 200]
                                      [--runs 3] [--rounds 1] [--skip-naive] [--quick]

Three configurations, each in its own process (their settings differ), on the
same PostgreSQL database (DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/fyno_bench_request, created and dropped):

- ``(a) plain``: INSTALLED_APPS without django_fyno, the floor;
- ``(b) fyno``: django_fyno installed, TASK_MODE "celery", publishing to a real
  Redis broker (CELERY_BROKER_URL, default redis://127.0.0.1:6379/9; no worker:
  the queue is emptied between runs, after its length was checked against the
  publishes counted);
- ``(c) naive``: no django_fyno, a ``post_save`` receiver making one HTTP PUT
  per save with ``requests`` to the emulator (its own process, 50 ms of
  latency per answer); its request log is checked for one PUT per save.

For each, it times (µs per save, best of 3 runs) ``user.save()`` after a
change of ``first_name`` (N ``--saves``), and N ``--requests`` POSTs through a
realistic profile-edit view driven by Django's test client (session auth and
user load from the database, a ModelForm of three fields, the save, a success
message, a redirect), in autocommit (Django's default) and with one
transaction per save (``atomic()`` around the save, ATOMIC_REQUESTS for the
view); plus ten saves of one user per ``atomic()``. The naive integration
waits 50 ms per save, so it runs ``--naive`` saves per run (default 200).

Printed per cell: the times, b-a and b/a and c/a, SQL statements per save
(BEGIN and COMMIT included), broker publishes per save and per transaction,
and the CPU time of the Django process. ``--rounds R`` runs (a) and (b) R
times, alternating, and keeps each cell's best (the machine's load drifts); it
also prints b/a within each round and their median, which a slow spell
during one configuration's run moves less. Targets:
b/a <= 1.10 for the view, b/a <= 2.0 for the raw save, at most one publish
per user per transaction. ``--quick`` runs small N (under a minute). Only
127.0.0.1 is contacted; everything the script starts, it stops.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.emulator import API_KEY, WSID, start_server_process  # noqa: E402

DATABASE_URL = os.environ.get(
    "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/fyno_bench_request"
)
BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/9")
LATENCY = 0.05
VERSION = "test"
DISTINCT_ID_PREFIX = "bench-"

CONFIGS = {"a": "(a) plain", "b": "(b) fyno", "c": "(c) naive"}
# (key, path, transaction): the cells of the table, in order.
CELLS = [
    ("raw-auto", "raw save", "autocommit"),
    ("raw-atomic", "raw save", "atomic(), 1 save"),
    ("raw-atomic10", "raw save", "atomic(), 10 saves"),
    ("view-auto", "view", "autocommit"),
    ("view-atomic", "view", "ATOMIC_REQUESTS"),
]
TARGETS = {"raw save": 2.0, "view": 1.10}
SAVES_PER_TXN = {"raw-auto": 1, "raw-atomic": 1, "raw-atomic10": 10, "view-auto": 1}
SAVES_PER_TXN["view-atomic"] = 1

# The profile-edit view's URLs (ROOT_URLCONF is this module); filled in by the child.
urlpatterns: list[Any] = []


# -- the child: one configuration, all its cells ------------------------------------------


def configure(config: str, endpoint: str) -> None:
    """Django settings of one configuration (django_fyno only in ``b``)."""
    import environ
    from django.conf import settings

    from benchmarks import settings as bench_settings

    apps = [
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
    ]
    if config == "b":
        apps.append("django_fyno")
    database = environ.Env.db_url_config(DATABASE_URL)
    database["CONN_MAX_AGE"] = None  # one connection, as a production site keeps them
    settings.configure(
        SECRET_KEY=bench_settings.SECRET_KEY,
        DEBUG=False,
        USE_TZ=True,
        ALLOWED_HOSTS=["testserver"],
        INSTALLED_APPS=apps,
        DATABASES={"default": database},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        MIDDLEWARE=[
            "django.middleware.security.SecurityMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
        ],
        ROOT_URLCONF="__main__",
        LOGIN_URL="/login/",
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        FYNO={
            **bench_settings.FYNO,
            "WSID": WSID,
            "API_KEY": API_KEY,
            "VERSION": VERSION,
            "ENDPOINT": endpoint,
            "TASK_MODE": "celery",
        },
        CELERY_BROKER_URL=BROKER_URL,
        CELERY_TASK_IGNORE_RESULT=True,
        LOGGING_CONFIG=None,
    )


class Counter:
    """Broker publishes seen by kombu (whatever path led there)."""

    publishes = 0


def count_publishes() -> None:
    from kombu.messaging import Producer

    publish = Producer.publish

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        Counter.publishes += 1
        return publish(self, *args, **kwargs)  # type: ignore[no-untyped-call]

    Producer.publish = counted  # type: ignore[method-assign]


def define_view() -> None:
    """The profile-edit view: login required, a ModelForm, save, message, redirect."""
    from django import forms
    from django.contrib import messages
    from django.contrib.auth import get_user_model
    from django.contrib.auth.decorators import login_required
    from django.http import HttpRequest, HttpResponse
    from django.shortcuts import redirect
    from django.urls import path

    class ProfileForm(forms.ModelForm):  # type: ignore[type-arg]
        class Meta:
            model = get_user_model()
            fields = ("first_name", "last_name", "email")

    @login_required
    def edit_profile(request: HttpRequest) -> HttpResponse:
        form = ProfileForm(request.POST or None, instance=request.user)
        if request.method == "POST" and form.is_valid():
            form.save()
            messages.success(request, "Your profile was saved.")
            return redirect("profile-done")
        return HttpResponse(str(form.errors), status=400)

    def done(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    urlpatterns[:] = [
        path("profile/", edit_profile, name="profile-edit"),
        path("profile/done/", done, name="profile-done"),
    ]


def connect_naive(endpoint: str) -> None:
    """(c): what a naive integration does, one blocking PUT per save."""
    import requests
    from django.contrib.auth import get_user_model
    from django.db.models.signals import post_save

    api = f"{endpoint}/{WSID}/{VERSION}"
    headers = {"Authorization": f"Bearer {API_KEY}"}

    def put_profile(sender: Any, instance: Any, **kwargs: Any) -> None:
        name = f"{instance.first_name} {instance.last_name}".strip()
        reply = requests.put(
            f"{api}/profiles/{DISTINCT_ID_PREFIX}{instance.pk}",
            json={"name": name},
            headers=headers,
            timeout=10,
        )
        reply.raise_for_status()

    post_save.connect(put_profile, sender=get_user_model(), weak=False)


class Redis:
    """The broker's queues (Celery on Redis keeps each queue in a list)."""

    def __init__(self) -> None:
        import redis

        self.client = redis.Redis.from_url(BROKER_URL)

    def queued(self) -> int:
        return sum(
            int(self.client.llen(key))
            for key in self.client.keys("*")
            if self.client.type(key) == b"list"
        )

    def task_names(self) -> set[str]:
        names = set()
        for key in self.client.keys("*"):
            if self.client.type(key) == b"list":
                for raw in self.client.lrange(key, 0, 4):
                    names.add(json.loads(raw)["headers"]["task"])
        return names

    def drain(self) -> int:
        count = self.queued()
        for key in self.client.keys("*"):
            if self.client.type(key) == b"list":
                self.client.delete(key)
        return count


class Emulator:
    """The emulator's control API (for (c): its request log)."""

    def __init__(self, endpoint: str) -> None:
        import requests

        self.requests = requests
        self.api = f"{endpoint}/{WSID}/{VERSION}"
        self.control = f"{endpoint.rsplit('/', 1)[0]}/_emulator/requests"

    def create_profile(self, distinct_id: str) -> None:
        reply = self.requests.post(
            f"{self.api}/profiles",
            json={"distinct_id": distinct_id, "name": "Bench"},
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=10,
        )
        assert reply.status_code < 500, reply.text

    def puts(self) -> int:
        log = self.requests.get(self.control, timeout=30).json()["requests"]
        return sum(1 for entry in log if entry["method"] == "PUT" and entry["status"] < 400)

    def clear(self) -> None:
        self.requests.delete(self.control, timeout=30)


def child(config: str, endpoint: str, saves: int, views: int, runs: int) -> dict[str, Any]:
    configure(config, endpoint)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection, connections, transaction
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    count_publishes()
    call_command("migrate", verbosity=0)
    redis = emulator = None
    if config == "b":
        import benchmarks.celery_app  # noqa: F401  - the current Celery app, on Redis

        redis = Redis()
        redis.drain()
    define_view()
    user_model = get_user_model()
    user_model.objects.filter(username="bench").delete()
    user = user_model.objects.create_user(
        "bench", "bench@example.com", "bench-password", first_name="Bench", last_name="User"
    )
    if config == "c":
        emulator = Emulator(endpoint)
        emulator.create_profile(f"{DISTINCT_ID_PREFIX}{user.pk}")
        connect_naive(endpoint)
    client = Client()
    client.force_login(user)
    view_user = user_model.objects.get(pk=user.pk)  # a fresh copy, as the view loads it

    def save(i: int) -> None:
        user.first_name = f"F{i}"
        user.save()

    def raw_auto(start: int, count: int) -> None:
        for i in range(start, start + count):
            save(i)

    def raw_atomic(start: int, count: int) -> None:
        for i in range(start, start + count):
            with transaction.atomic():
                save(i)

    def raw_atomic10(start: int, count: int) -> None:
        for t in range(start, start + count, 10):
            with transaction.atomic():
                for i in range(t, t + 10):
                    save(i)

    def post(start: int, count: int) -> None:
        for i in range(start, start + count):
            response = client.post(
                "/profile/",
                {"first_name": f"F{i}", "last_name": "User", "email": "bench@example.com"},
            )
            if response.status_code != 302:
                raise RuntimeError(f"the view answered {response.status_code}")
            # The page redirected to would show (and so consume) the message.
            client.cookies.pop("messages", None)

    def atomic_requests(on: bool) -> None:
        connections.settings["default"]["ATOMIC_REQUESTS"] = on
        connection.settings_dict["ATOMIC_REQUESTS"] = on

    naive = config == "c"
    plans: dict[str, tuple[Callable[[int, int], None], bool, int]] = {
        "raw-auto": (raw_auto, False, saves),
        "raw-atomic": (raw_atomic, False, saves),
        "raw-atomic10": (raw_atomic10, False, saves),
        "view-auto": (post, False, views),
        "view-atomic": (post, True, views),
    }
    results: dict[str, Any] = {}
    serial = 0
    for key, (run, atomic, count) in plans.items():
        count -= count % 10
        atomic_requests(atomic)
        run(serial, 20 if naive else 100)  # warm: imports, caches, connections
        serial += 1000
        if redis:
            redis.drain()
        if emulator:
            emulator.clear()
        # SQL statements per save, on a short run of its own.
        with CaptureQueriesContext(connection) as queries:
            run(serial, 10)
        serial += 1000
        # One query may carry two statements ("SET LOCAL …; INSERT …"): name them all.
        statements = [
            "+".join(part.split(" ", 1)[0].upper() for part in q["sql"].split("; "))
            for q in queries.captured_queries
        ]
        cell: dict[str, Any] = {
            "sql": len(statements) / 10,
            "commits": statements.count("COMMIT") / 10,
            # One transaction's statements (one save's in autocommit).
            "statements": statements[: len(statements) * SAVES_PER_TXN[key] // 10],
        }
        times: list[float] = []
        cpus: list[float] = []
        published = queued = logged = 0
        for _ in range(runs):
            if redis:
                from django_fyno import dispatch

                dispatch.flush()  # what earlier runs handed off is not this run's
                redis.drain()
            if emulator:
                emulator.clear()
            before = Counter.publishes
            started, cpu = time.perf_counter(), time.process_time()
            run(serial, count)
            elapsed = time.perf_counter() - started
            cpus.append((time.process_time() - cpu) / count * 1e6)
            serial += count
            times.append(elapsed / count * 1e6)
            if redis:
                # The last round may still be on the background thread: let it
                # leave before counting, or its message is counted in Redis only.
                dispatch.flush()
            published += Counter.publishes - before
            if redis:
                if not cell.get("tasks"):
                    cell["tasks"] = sorted(redis.task_names())
                queued += redis.drain()
            if emulator:
                logged += emulator.puts()
                emulator.clear()
        cell.update(
            us=min(times),
            runs=times,
            cpu=min(cpus),
            saves=count * runs,
            publishes=published,
            queued=queued,
            emulator_puts=logged,
        )
        results[key] = cell
    atomic_requests(False)
    user_model.objects.filter(pk=user.pk).delete()
    del view_user
    server = getattr(connection, "pg_version", 0)
    return {"vendor": connection.vendor, "server": server, "cells": results}


# -- the parent: start the emulator, run each configuration, print the table ---------------


def ensure_database(fresh: bool) -> None:
    import psycopg

    base, _, name = DATABASE_URL.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        if fresh:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{name}"')


def drop_database() -> None:
    import psycopg

    base, _, name = DATABASE_URL.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


def run_child(config: str, endpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    saves, views = (args.naive, args.naive) if config == "c" else (args.saves, args.requests)
    command = [sys.executable, __file__, "--child", config, "--endpoint", endpoint]
    command += ["--saves", str(saves), "--requests", str(views), "--runs", str(args.runs)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise RuntimeError(f"configuration {CONFIGS[config]} failed")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def merge(kept: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """Two rounds of one configuration: the best time of each cell, all counts added up."""
    if kept is None:
        return new
    for key, cell in new["cells"].items():
        old = kept["cells"][key]
        for name in ("publishes", "queued", "emulator_puts", "saves"):
            old[name] += cell[name]
        old["runs"] += cell["runs"]
        old["us"] = min(old["us"], cell["us"])
        old["cpu"] = min(old["cpu"], cell["cpu"])
    return kept


def _ratio(x: float | None, a: float) -> str:
    return "-" if x is None else f"{x / a:.2f}x"


def _round_ratios(a_runs: list[float], b_runs: list[float], per_round: int) -> list[float]:
    """b/a of each round's best runs (the runs are listed round after round)."""
    return [
        min(b_runs[start : start + per_round]) / min(a_runs[start : start + per_round])
        for start in range(0, min(len(a_runs), len(b_runs)), per_round)
    ]


def print_table(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> int:
    """Print the table; returns the number of targets missed."""
    a, b = results["a"]["cells"], results["b"]["cells"]
    c = results["c"]["cells"] if "c" in results else None
    server = results["a"]["server"]
    print(
        f"PostgreSQL {server // 10000}.{server % 10000}, Celery on {BROKER_URL}, "
        f"naive PUTs to the emulator with {LATENCY * 1000:.0f} ms latency"
    )
    rounds = f" x {args.rounds} rounds" if args.rounds > 1 else ""
    print(
        f"µs per save, best of {args.runs} runs{rounds} of {args.saves} raw saves / "
        f"{args.requests} view requests ((c): {args.naive} per run, 1 round)"
    )
    header = (
        f"{'path':<9} {'transaction':<19} {'(a) µs':>7} {'(b) µs':>7} {'(c) µs':>8} "
        f"{'b-a µs':>7} {'b/a':>6} {'c/a':>7} {'SQL a':>5} {'SQL b':>5} {'SQL c':>5} "
        f"{'pub/save':>8} {'pub/txn':>7}  target b/a"
    )
    print(header)
    print("-" * len(header))
    misses = 0
    for key, path, txn in CELLS:
        ta, tb = a[key]["us"], b[key]["us"]
        tc = c[key]["us"] if c else None
        sql_c = "-" if c is None else f"{c[key]['sql']:.1f}"
        pub_save = b[key]["publishes"] / b[key]["saves"]
        pub_txn = pub_save * SAVES_PER_TXN[key]
        target = TARGETS[path]
        verdict = "ok" if tb / ta <= target else "MISSED"
        publish_verdict = "" if pub_txn <= 1.0 else "  publishes MISSED"
        misses += (verdict != "ok") + bool(publish_verdict)
        print(
            f"{path:<9} {txn:<19} {ta:>7.0f} {tb:>7.0f} {'-' if tc is None else f'{tc:.0f}':>8} "
            f"{tb - ta:>7.0f} {tb / ta:>5.2f}x {_ratio(tc, ta):>7} {a[key]['sql']:>5.1f} "
            f"{b[key]['sql']:>5.1f} {sql_c:>5} "
            f"{pub_save:>8.2f} {pub_txn:>7.2f}  <= {target:.2f}x {verdict}{publish_verdict}"
        )
    print()
    print("Statements per transaction, in order:")
    for key, path, txn in CELLS:
        print(f"  {path:<9} {txn:<19} a: {' '.join(a[key]['statements'])}")
        print(f"  {'':<9} {'':<19} b: {' '.join(b[key]['statements'])}")
    print()
    print("CPU time of the Django process, µs per save (best run): a / b / b-a")
    for key, path, txn in CELLS:
        ca, cb = a[key]["cpu"], b[key]["cpu"]
        print(f"  {path:<9} {txn:<19} {ca:>6.0f} {cb:>6.0f} {cb - ca:>6.0f}")
    print()
    published = sum(b[key]["publishes"] for key, _, _ in CELLS)
    queued = sum(b[key]["queued"] for key, _, _ in CELLS)
    tasks = sorted({name for key, _, _ in CELLS for name in b[key].get("tasks", [])})
    check_b = "ok" if published == queued > 0 else "MISMATCH"
    print(
        f"check (b): {published} publishes counted in timed runs, {queued} messages found "
        f"in Redis ({', '.join(tasks)}): {check_b}"
    )
    misses += check_b != "ok"
    if c:
        saves_c = sum(c[key]["saves"] for key, _, _ in CELLS)
        puts = sum(c[key]["emulator_puts"] for key, _, _ in CELLS)
        check_c = "ok" if puts == saves_c else "MISMATCH"
        print(
            f"check (c): {saves_c} naive saves timed, the emulator logged {puts} successful "
            f"PUTs: {check_c}"
        )
        misses += check_c != "ok"
    if args.rounds > 1:
        # (a) and (b) alternate round by round: a ratio within one round is spared the
        # machine's slower and faster spells, which best-of-all-runs can straddle.
        print("b/a within each round (best run of each), and their median:")
        for key, path, txn in CELLS:
            ratios = _round_ratios(a[key]["runs"], b[key]["runs"], args.runs)
            listed = ", ".join(f"{ratio:.2f}" for ratio in ratios)
            print(f"  {path:<9} {txn:<19} {listed}  median {statistics.median(ratios):.2f}x")
        print()
    print("Every run, µs per save:")
    for key, path, txn in CELLS:
        floor = ", ".join(f"{t:.0f}" for t in a[key]["runs"])
        spread = ", ".join(f"{t:.0f}" for t in b[key]["runs"])
        print(f"  {path:<9} {txn:<19} a: {floor}")
        print(f"  {'':<9} {'':<19} b: {spread}")
    if misses:
        print(f"{misses} target(s) or check(s) missed")
    return misses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--saves", type=int, default=1000, help="raw saves per run (1000)")
    parser.add_argument("--requests", type=int, default=1000, help="view requests per run (1000)")
    parser.add_argument("--naive", type=int, default=200, help="saves/requests per run for (c)")
    parser.add_argument("--runs", type=int, default=3, help="runs per cell, best kept (3)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="run (a) and (b) this many times, alternating (1)"
    )
    parser.add_argument("--skip-naive", action="store_true", help="leave (c) out")
    parser.add_argument("--quick", action="store_true", help="small N: 100 / 100 / 10")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database")
    parser.add_argument("--child", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = child(args.child, args.endpoint, args.saves, args.requests, args.runs)
        print(json.dumps(result))
        return 0
    if args.quick:
        args.saves, args.requests, args.naive = 100, 100, 10
    ensure_database(fresh=True)
    server, endpoint = start_server_process("--latency", str(LATENCY))
    results: dict[str, dict[str, Any]] = {}
    plan = ["a", "b"] * args.rounds + ([] if args.skip_naive else ["c"])
    try:
        for config in plan:
            started = time.perf_counter()
            results[config] = merge(results.get(config), run_child(config, endpoint, args))
            elapsed = time.perf_counter() - started
            print(f"{CONFIGS[config]}: done in {elapsed:.0f}s", file=sys.stderr, flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)
        if not args.keep_db:
            drop_database()
    print_table(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
