"""What django-fyno adds to the request path: a user's save, alone and in a profile-edit view.

    python benchmarks/request_path.py [--saves 2000] [--requests 2000] [--naive 200]
                                      [--chunk 100] [--skip-naive] [--quick]

Three configurations, each in its own process (their settings differ), on the
same PostgreSQL database (DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/fyno_bench_request, created and dropped):

- ``(a) plain``: INSTALLED_APPS without django_fyno, the floor;
- ``(b) fyno``: django_fyno installed, TASK_MODE "celery", publishing to a real
  Redis broker (CELERY_BROKER_URL, default redis://127.0.0.1:6379/9; no worker:
  the queue is emptied after each chunk, after its length was checked against
  the publishes counted);
- ``(c) naive``: no django_fyno, a ``post_save`` receiver making one HTTP PUT
  per save with ``requests`` to the emulator (its own process, 50 ms of
  latency per answer); its request log is checked for one PUT per save.

It times ``user.save()`` after a change of ``first_name`` (``--saves`` per
cell), and POSTs through a realistic profile-edit view driven by Django's test
client (session auth and user load from the database, a ModelForm of three
fields, the save, a success message, a redirect; ``--requests`` per cell), in
autocommit (Django's default) and with one transaction per save (``atomic()``
around the save, ATOMIC_REQUESTS for the view); plus ten saves of one user per
``atomic()``.

The three processes stay up, and (a) and (b) take turns, ``--chunk`` saves at
a time, the first of each pair alternating: both meet the machine's slower and
faster spells alike, which a run of one after a run of the other cannot
promise on a shared machine. b/a is the median of the pairs' ratios, printed
with their quartiles. The naive integration waits 50 ms per save, so it runs
``--naive`` saves per cell, after the pairs.

Printed per cell: the median chunk's µs per save, b-a, b/a and c/a, SQL
statements per save (BEGIN and COMMIT included), broker publishes per save and
per transaction, and the CPU time of the Django process (for (b), including
the background publishes its chunk caused). Targets: b/a <= 1.10 for the
view, b/a <= 2.0 for the raw save, at most one publish per user per
transaction. ``--quick`` runs small N (under a minute). Only 127.0.0.1 is
contacted; everything the script starts, it stops.
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


def child(config: str, endpoint: str) -> None:
    """Set one configuration up, then run what the parent asks, one JSON line each way."""
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
    flush: Callable[[], Any] = lambda: None  # noqa: E731
    if config == "b":
        import benchmarks.celery_app  # noqa: F401  - the current Celery app, on Redis
        from django_fyno import dispatch

        redis = Redis()
        redis.drain()
        flush = dispatch.flush
    define_view()
    user_model = get_user_model()
    # The three processes share the database: each has a user of its own.
    username = f"bench-{config}"
    user_model.objects.filter(username=username).delete()
    user = user_model.objects.create_user(
        username, "bench@example.com", "bench-password", first_name="Bench", last_name="User"
    )
    if config == "c":
        emulator = Emulator(endpoint)
        emulator.create_profile(f"{DISTINCT_ID_PREFIX}{user.pk}")
        connect_naive(endpoint)
    client = Client()
    client.force_login(user)
    serial = 0

    def save() -> None:
        nonlocal serial
        serial += 1
        user.first_name = f"F{serial}"
        user.save()

    def raw_auto(count: int) -> None:
        for _ in range(count):
            save()

    def raw_atomic(count: int) -> None:
        for _ in range(count):
            with transaction.atomic():
                save()

    def raw_atomic10(count: int) -> None:
        for _ in range(0, count, 10):
            with transaction.atomic():
                for _ in range(10):
                    save()

    def post(count: int) -> None:
        nonlocal serial
        for _ in range(count):
            serial += 1
            response = client.post(
                "/profile/",
                {"first_name": f"F{serial}", "last_name": "User", "email": "bench@example.com"},
            )
            if response.status_code != 302:
                raise RuntimeError(f"the view answered {response.status_code}")
            # The page redirected to would show (and so consume) the message.
            client.cookies.pop("messages", None)

    def atomic_requests(on: bool) -> None:
        connections.settings["default"]["ATOMIC_REQUESTS"] = on
        connection.settings_dict["ATOMIC_REQUESTS"] = on

    plans: dict[str, tuple[Callable[[int], None], bool]] = {
        "raw-auto": (raw_auto, False),
        "raw-atomic": (raw_atomic, False),
        "raw-atomic10": (raw_atomic10, False),
        "view-auto": (post, False),
        "view-atomic": (post, True),
    }

    def prepare(key: str) -> dict[str, Any]:
        """Warm the cell up, and name the statements of ten of its saves."""
        run, atomic = plans[key]
        atomic_requests(atomic)
        run(20 if config == "c" else 100)  # imports, caches, connections
        with CaptureQueriesContext(connection) as queries:
            run(10)
        flush()
        if redis:
            redis.drain()
        if emulator:
            emulator.clear()
        # One query may carry two statements ("SET LOCAL …; INSERT …"): name them all.
        statements = [
            "+".join(part.split(" ", 1)[0].upper() for part in q["sql"].split("; "))
            for q in queries.captured_queries
        ]
        return {
            "sql": len(statements) / 10,
            # One transaction's statements (one save's in autocommit).
            "statements": statements[: len(statements) * SAVES_PER_TXN[key] // 10],
        }

    def timed(key: str, count: int) -> dict[str, Any]:
        """One chunk: wall time of the saves; CPU time including the background
        publishes they caused (waited for once the clock stopped)."""
        run, _ = plans[key]
        before = Counter.publishes
        started, cpu = time.perf_counter(), time.process_time()
        run(count)
        elapsed = time.perf_counter() - started
        flush()  # the last publish may still be on the background thread
        cpu_used = time.process_time() - cpu
        found: dict[str, Any] = {
            "us": elapsed / count * 1e6,
            "cpu": cpu_used / count * 1e6,
            "publishes": Counter.publishes - before,
            "queued": 0,
            "tasks": [],
            "emulator_puts": 0,
        }
        if redis:
            found["tasks"] = sorted(redis.task_names())
            found["queued"] = redis.drain()
        if emulator:
            found["emulator_puts"] = emulator.puts()
            emulator.clear()
        return found

    server = getattr(connection, "pg_version", 0)
    print(json.dumps({"ready": connection.vendor, "server": server}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["do"] == "prepare":
            answer = prepare(command["cell"])
        else:
            answer = timed(command["cell"], command["count"])
        print(json.dumps(answer), flush=True)
    atomic_requests(False)
    user_model.objects.filter(pk=user.pk).delete()
    flush()


class Child:
    """One configuration's process, driven line by line."""

    def __init__(self, config: str, endpoint: str) -> None:
        self.config = config
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--child", config, "--endpoint", endpoint],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.hello = self._answer()

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"configuration {CONFIGS[self.config]} failed (see above)")
        return json.loads(line)  # type: ignore[no-any-return]

    def ask(self, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        """Let the child clean up and exit (it stops at the end of its input)."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


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


def _naive_chunk(args: argparse.Namespace) -> int:
    """(c) waits 50 ms per save: its chunks are smaller (a multiple of ten)."""
    return max(10, min(args.chunk, args.naive) // 10 * 10)


def measure(children: dict[str, Child], key: str, args: argparse.Namespace) -> dict[str, Any]:
    """One cell: (a) and (b) in alternating chunks, then (c) on its own."""
    cells = {
        config: {"chunks": [], **child.ask(do="prepare", cell=key)}
        for config, child in children.items()
    }
    pairs = max(
        1, args.saves // args.chunk if key.startswith("raw") else args.requests // args.chunk
    )
    for i in range(pairs):
        # Alternate who goes first: neither always follows the other's leftovers.
        for config in ("a", "b") if i % 2 == 0 else ("b", "a"):
            chunk = children[config].ask(do="time", cell=key, count=args.chunk)
            cells[config]["chunks"].append(chunk)
    if "c" in children:
        for _ in range(max(1, args.naive // _naive_chunk(args))):
            chunk = children["c"].ask(do="time", cell=key, count=_naive_chunk(args))
            cells["c"]["chunks"].append(chunk)
    for cell in cells.values():
        chunks = cell["chunks"]
        cell["us"] = statistics.median(chunk["us"] for chunk in chunks)
        cell["cpu"] = statistics.median(chunk["cpu"] for chunk in chunks)
        for name in ("publishes", "queued", "emulator_puts"):
            cell[name] = sum(chunk[name] for chunk in chunks)
        cell["tasks"] = sorted({task for chunk in chunks for task in chunk["tasks"]})
    for config, cell in cells.items():
        size = _naive_chunk(args) if config == "c" else args.chunk
        cell["saves"] = len(cell["chunks"]) * size
    a_chunks, b_chunks = cells["a"]["chunks"], cells["b"]["chunks"]
    cells["b"]["ratios"] = sorted(
        b["us"] / a["us"] for a, b in zip(a_chunks, b_chunks, strict=True)
    )
    cells["b"]["cpu_ratios"] = sorted(
        b["cpu"] / a["cpu"] for a, b in zip(a_chunks, b_chunks, strict=True)
    )
    return cells


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def print_table(
    results: dict[str, dict[str, Any]], hello: dict[str, Any], args: argparse.Namespace
) -> int:
    """Print the table; returns the number of targets missed."""
    server = hello["server"]
    naive = "" if args.skip_naive else f", naive PUTs to the emulator at {LATENCY * 1000:.0f} ms"
    print(f"PostgreSQL {server // 10000}.{server % 10000}, Celery on {BROKER_URL}{naive}")
    print(
        f"(a) and (b) alternate in chunks of {args.chunk}: {args.saves} raw saves and "
        f"{args.requests} view requests each per cell; µs per save is the median chunk's; "
        f"b/a is the median of the {args.chunk}-save pairs' ratios, [q1-q3] their quartiles"
    )
    header = (
        f"{'path':<9} {'transaction':<19} {'(a) µs':>7} {'(b) µs':>7} {'(c) µs':>8} "
        f"{'b-a µs':>7} {'b/a':>6} {'[q1-q3]':>11} {'c/a':>7} {'SQL a':>5} {'SQL b':>5} "
        f"{'SQL c':>5} {'pub/save':>8} {'pub/txn':>7}  target b/a"
    )
    print(header)
    print("-" * len(header))
    misses = 0
    for key, path, txn in CELLS:
        a, b, c = results[key]["a"], results[key]["b"], results[key].get("c")
        ta, tb = a["us"], b["us"]
        q1, ratio, q3 = _quartiles(b["ratios"])
        tc = "-" if c is None else f"{c['us']:.0f}"
        c_ratio = "-" if c is None else f"{c['us'] / ta:.2f}x"
        sql_c = "-" if c is None else f"{c['sql']:.1f}"
        pub_save = b["publishes"] / b["saves"]
        pub_txn = pub_save * SAVES_PER_TXN[key]
        target = TARGETS[path]
        verdict = "ok" if ratio <= target else "MISSED"
        publish_verdict = "" if pub_txn <= 1.0 else "  publishes MISSED"
        misses += (verdict != "ok") + bool(publish_verdict)
        print(
            f"{path:<9} {txn:<19} {ta:>7.0f} {tb:>7.0f} {tc:>8} {tb - ta:>7.0f} "
            f"{ratio:>5.2f}x {f'[{q1:.2f}-{q3:.2f}]':>11} {c_ratio:>7} {a['sql']:>5.1f} "
            f"{b['sql']:>5.1f} {sql_c:>5} {pub_save:>8.2f} {pub_txn:>7.2f}  "
            f"<= {target:.2f}x {verdict}{publish_verdict}"
        )
    print()
    print("Statements per transaction, in order:")
    for key, path, txn in CELLS:
        print(f"  {path:<9} {txn:<19} a: {' '.join(results[key]['a']['statements'])}")
        print(f"  {'':<9} {'':<19} b: {' '.join(results[key]['b']['statements'])}")
    print()
    print(
        "CPU time of the Django process, µs per save (median chunk; (b)'s includes its "
        "background publishes): a / b / b-a, and b/a (median of the pairs)"
    )
    for key, path, txn in CELLS:
        ca, cb = results[key]["a"]["cpu"], results[key]["b"]["cpu"]
        cpu_ratio = statistics.median(results[key]["b"]["cpu_ratios"])
        print(f"  {path:<9} {txn:<19} {ca:>6.0f} {cb:>6.0f} {cb - ca:>6.0f}  {cpu_ratio:.2f}x")
    print()
    published = sum(results[key]["b"]["publishes"] for key, _, _ in CELLS)
    queued = sum(results[key]["b"]["queued"] for key, _, _ in CELLS)
    tasks = sorted({name for key, _, _ in CELLS for name in results[key]["b"]["tasks"]})
    check_b = "ok" if published == queued > 0 else "MISMATCH"
    print(
        f"check (b): {published} publishes counted in timed chunks, {queued} messages found "
        f"in Redis ({', '.join(tasks)}): {check_b}"
    )
    misses += check_b != "ok"
    if not args.skip_naive:
        saves_c = sum(results[key]["c"]["saves"] for key, _, _ in CELLS)
        puts = sum(results[key]["c"]["emulator_puts"] for key, _, _ in CELLS)
        check_c = "ok" if puts == saves_c else "MISMATCH"
        print(
            f"check (c): {saves_c} naive saves timed, the emulator logged {puts} successful "
            f"PUTs: {check_c}"
        )
        misses += check_c != "ok"
    print()
    print("b/a of every pair of chunks, sorted:")
    for key, path, txn in CELLS:
        listed = " ".join(f"{ratio:.2f}" for ratio in results[key]["b"]["ratios"])
        print(f"  {path:<9} {txn:<19} {listed}")
    if misses:
        print(f"{misses} target(s) or check(s) missed")
    return misses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--saves", type=int, default=2000, help="raw saves per cell (2000)")
    parser.add_argument("--requests", type=int, default=2000, help="view requests per cell (2000)")
    parser.add_argument("--naive", type=int, default=200, help="saves/requests per cell for (c)")
    parser.add_argument("--chunk", type=int, default=100, help="saves per chunk (100)")
    parser.add_argument("--skip-naive", action="store_true", help="leave (c) out")
    parser.add_argument("--quick", action="store_true", help="small N: 200 / 200 / 10")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database")
    parser.add_argument("--child", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.endpoint)
        return 0
    if args.quick:
        args.saves, args.requests, args.naive, args.chunk = 200, 200, 10, 50
    if args.chunk < 10 or args.chunk % 10:
        parser.error("--chunk must be a multiple of 10 (one cell saves ten per transaction)")
    ensure_database(fresh=True)
    server, endpoint = start_server_process("--latency", str(LATENCY))
    children: dict[str, Child] = {}
    results: dict[str, dict[str, Any]] = {}
    try:
        for config in ["a", "b"] + ([] if args.skip_naive else ["c"]):
            children[config] = Child(config, endpoint)
        for key, path, txn in CELLS:
            started = time.perf_counter()
            results[key] = measure(children, key, args)
            elapsed = time.perf_counter() - started
            print(f"{path} {txn}: done in {elapsed:.0f}s", file=sys.stderr, flush=True)
    finally:
        for running in children.values():
            running.close()
        server.terminate()
        server.wait(timeout=10)
        if not args.keep_db:
            drop_database()
    print_table(results, children["a"].hello, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
