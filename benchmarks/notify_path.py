"""Cost of notify() in the caller's transaction, against a bare Model.objects.create.

    python benchmarks/notify_path.py [--calls 2000]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fyno_bench python benchmarks/notify_path.py

For 1 and for 100 calls per transaction, times (µs per call) and counts (SQL
queries per call, broker publishes per transaction) three things:

- ``create``: ``FynoOutbox.objects.create(...)`` of a similar row, the floor;
- ``notify``: ``notify("bench", to=<distinct id>, data=...)``, validation,
  the INSERT and, at commit, the one publish of the delivery task;
- the ratio of the two. Targets: at most 1.3x at 100 calls per transaction,
  at most 3x at 1.

Celery publishes to its in-memory transport (no broker needed, nothing is
delivered); the database is SQLite in memory unless DATABASE_URL says
otherwise (PostgreSQL gives the figures that matter in production).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

import django

django.setup()

from celery.signals import before_task_publish  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

import benchmarks.celery_app  # noqa: E402, F401  - the current Celery app
from django_fyno import notify  # noqa: E402
from django_fyno.models import FynoOutbox  # noqa: E402

PUBLISHES = [0]


@before_task_publish.connect
def _count_publish(**kwargs: object) -> None:
    PUBLISHES[0] += 1


def bare_create(n: int) -> None:
    FynoOutbox.objects.create(
        kind=FynoOutbox.Kind.EVENT,
        event="bench",
        distinct_id=f"user-{n}",
        payload={"order": n, "total": "12.50"},
    )


def via_notify(n: int) -> None:
    notify("bench", to=f"user-{n}", data={"order": n, "total": "12.50"})


def reset() -> None:
    FynoOutbox.objects.all().delete()
    PUBLISHES[0] = 0


def run(call: Callable[[int], None], calls: int, per_txn: int) -> int:
    """Make ``calls`` calls, ``per_txn`` per transaction; returns the transactions run."""
    transactions = calls // per_txn
    for t in range(transactions):
        with transaction.atomic():
            for i in range(per_txn):
                call(t * per_txn + i)
    return transactions


def time_per_call(call: Callable[[int], None], calls: int, per_txn: int) -> float:
    """µs per call, the best of three runs."""
    best = float("inf")
    for _ in range(3):
        reset()
        started = time.perf_counter()
        transactions = run(call, calls, per_txn)
        best = min(best, (time.perf_counter() - started) / (transactions * per_txn))
        assert FynoOutbox.objects.count() == transactions * per_txn
    return best * 1e6


def counts(call: Callable[[int], None], per_txn: int) -> tuple[float, float]:
    """(queries per call, broker publishes per transaction) over a short run.

    Short, because Django's query log keeps only the last 9,000 queries.
    """
    calls = 5 * per_txn
    reset()
    with CaptureQueriesContext(connection) as queries:
        transactions = run(call, calls, per_txn)
    # BEGIN/SAVEPOINT/COMMIT bookkeeping is the transaction's, not the call's.
    work = [q for q in queries.captured_queries if not _bookkeeping(q["sql"])]
    return len(work) / calls, PUBLISHES[0] / transactions


def _bookkeeping(sql: str) -> bool:
    return sql.split(" ", 1)[0].upper() in {"BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000, help="calls per measurement")
    args = parser.parse_args(argv)
    call_command("migrate", verbosity=0)
    for warm in (bare_create, via_notify):  # imports, caches, prepared statements
        reset()
        run(warm, 100, 100)

    print(f"database: {connection.vendor}; {args.calls} calls per measurement")
    header = (
        f"{'calls/txn':>9} {'create µs':>10} {'notify µs':>10} {'ratio':>6} "
        f"{'queries/call':>12} {'publishes/txn':>13} {'target':>7}"
    )
    print(header)
    print("-" * len(header))
    for per_txn, target in ((1, 3.0), (100, 1.3)):
        best_create = time_per_call(bare_create, args.calls, per_txn)
        best_notify = time_per_call(via_notify, args.calls, per_txn)
        queries, publishes = counts(via_notify, per_txn)
        ratio = best_notify / best_create
        verdict = "ok" if ratio <= target else "MISSED"
        print(
            f"{per_txn:>9} {best_create:>10.1f} {best_notify:>10.1f} {ratio:>5.2f}x "
            f"{queries:>12.2f} {publishes:>13.2f} {f'<={target}x':>7} {verdict}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
