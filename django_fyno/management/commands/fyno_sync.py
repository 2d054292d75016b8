"""``manage.py fyno_sync``: backfill or resync users' Fyno profiles."""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections
from django.db.models import QuerySet
from django.utils.dateparse import parse_date, parse_datetime

from django_fyno import backfill, sync
from django_fyno.adapter import get_adapter
from django_fyno.conf import fyno_settings
from django_fyno.models import FynoProfile

# Failed users named one by one on stderr (all of them with --verbosity 2).
_SHOWN_FAILURES = 10
# Chunks in progress at once: one being recorded while the next one's requests go out.
_WINDOW = 2


class Command(BaseCommand):
    help = (
        "Sync users to Fyno profiles: all, or the ones selected. Users whose profile "
        "already matches are skipped (so an interrupted run can simply be run again) "
        "unless --force is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--ids", help="Comma-separated user primary keys.")
        parser.add_argument(
            "--since",
            help="Only users who joined on or after this date or datetime (ISO 8601; "
            "uses the user model's date_joined).",
        )
        parser.add_argument(
            "--failed", action="store_true", help="Only users whose last sync failed."
        )
        parser.add_argument(
            "--dirty",
            action="store_true",
            help="Only users saved but not synced yet (e.g. with TASK_MODE 'off' and no "
            "sweeper); also sends pending profile deletions.",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Resend each profile's full state even when nothing changed (puts back "
            "edits made in Fyno directly).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be sent and show one payload; send nothing.",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=1,
            help="Requests to Fyno in flight at once, one thread each (default 1).",
        )
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=None,
            help="Users read, and their outcomes written, per query (default: SYNC_BATCH_SIZE).",
        )
        parser.add_argument(
            "--no-progress", action="store_true", help="No progress counter on stderr."
        )

    # -- selection --------------------------------------------------------------------

    def _queryset(self, options: dict[str, Any]) -> QuerySet[Any]:
        user_model = get_user_model()
        users: QuerySet[Any] = user_model._base_manager.all()
        if options["ids"]:
            try:
                pks = [user_model._meta.pk.to_python(v) for v in options["ids"].split(",") if v]
            except Exception as error:
                raise CommandError(f"--ids: {error}") from error
            users = users.filter(pk__in=pks)
        if options["since"]:
            since = parse_datetime(options["since"]) or parse_date(options["since"])
            if since is None:
                raise CommandError(f"--since: {options['since']!r} is not an ISO date")
            if not any(f.name == "date_joined" for f in user_model._meta.get_fields()):
                raise CommandError("--since needs a date_joined field on the user model")
            users = users.filter(date_joined__gte=since)
        if options["failed"]:
            users = users.filter(fyno_profile__state=FynoProfile.State.FAILED)
        if options["dirty"]:
            users = users.filter(fyno_profile__dirty_since__isnull=False)
        return users

    def _chunks(self, users: QuerySet[Any], size: int) -> Iterator[list[Any]]:
        """Users in primary-key order, ``size`` at a time (one query each): memory stays flat."""
        last_pk = None
        while True:
            page = users.order_by("pk")
            if last_pk is not None:
                page = page.filter(pk__gt=last_pk)
            chunk = list(page[:size])
            if not chunk:
                return
            last_pk = chunk[-1].pk
            yield chunk

    # -- running ------------------------------------------------------------------------

    def handle(self, *args: Any, **options: Any) -> None:
        if options["concurrency"] < 1:
            raise CommandError("--concurrency must be at least 1")
        if options["chunk_size"] is not None and options["chunk_size"] < 1:
            raise CommandError("--chunk-size must be at least 1")
        size = options["chunk_size"] or fyno_settings.SYNC_BATCH_SIZE
        users = self._queryset(options)
        self._verbosity = int(options["verbosity"])
        self._progress = not options["no_progress"] and self.stderr.isatty()
        self._done = 0
        self._total = users.count()
        self._counts: Counter[str] = Counter()
        self._causes: Counter[str] = Counter()
        self._refused: dict[str, str] = {}
        if options["dry_run"]:
            self._dry_run(users, size, force=options["force"])
        else:
            if not fyno_settings.ENABLED:
                raise CommandError("django-fyno is disabled (FYNO['ENABLED'] is False)")
            self._run(users, size, options["concurrency"], force=options["force"])
            if options["dirty"]:
                self._counts["deleted"] = sync.delete_pending_profiles()
        if self._progress:
            self.stderr.write("")
        self._summary(dry_run=options["dry_run"])
        failed = self._counts["failed"]
        if failed:
            raise CommandError(f"{failed} user(s) failed to sync")

    def _count(self, user_pk: Any, outcome: sync.SyncOutcome, error: Exception | None) -> None:
        self._counts[outcome.value] += 1
        if outcome is sync.SyncOutcome.FAILED:
            cause = str(error) if error is not None else "unknown error"
            self._causes[cause] += 1
            if self._verbosity >= 2 or self._counts["failed"] <= _SHOWN_FAILURES:
                self.stderr.write(f"user {user_pk}: {cause}")
        self._done += 1
        if self._progress:
            self.stderr.write(f"\r{self._done}/{self._total}", ending="")
            self.stderr.flush()

    def _dry_run(self, users: QuerySet[Any], size: int, *, force: bool) -> None:
        """Count what each user's plan says (the decision a sync makes), send nothing."""
        adapter = get_adapter()
        sample = None
        for chunk in self._chunks(users, size):
            for plan in backfill.plan_users(chunk, adapter=adapter, force=force):
                self._count(plan.user.pk, backfill.expected_outcome(plan), plan.error)
                if sample is None and plan.payload is not None and plan.sends:
                    sample = plan.payload
        if sample is not None:
            self.stdout.write("Sample payload:")
            self.stdout.write(json.dumps(asdict(sample), indent=2, cls=DjangoJSONEncoder))

    def _run(self, users: QuerySet[Any], size: int, concurrency: int, *, force: bool) -> None:
        """Sync the users a chunk at a time, ``concurrency`` requests in flight.

        While one chunk's requests go out on the pool's threads, the previous
        chunk's outcomes are written and the next chunk is read and planned:
        at most ``_WINDOW`` chunks are in memory, whatever the number of users.
        """
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fyno_sync")
        engine = backfill.Backfill(executor=pool, pool_size=concurrency, force=force)
        window: deque[backfill.BackfillChunk] = deque()
        try:
            for chunk in self._chunks(users, size):
                window.append(engine.start(chunk))
                if len(window) >= _WINDOW:
                    self._finish(window.popleft())
            while window:
                self._finish(window.popleft())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # interrupted: send no more
            raise
        _close_connections(pool, concurrency)
        pool.shutdown(wait=True)
        for workspace, refusal in engine.refused.items():
            self._refused[str(workspace)] = refusal.message or str(refusal)

    def _finish(self, chunk: backfill.BackfillChunk) -> None:
        for result in chunk.finish():
            self._count(result.user.pk, result.outcome, result.error)

    def _summary(self, *, dry_run: bool) -> None:
        counts = self._counts
        parts = ["created", "updated", "unchanged", "failed"]
        parts += [k for k in ("excluded", "vetoed", "missing", "deleted") if counts[k]]
        line = ", ".join(f"{key}: {counts[key]}" for key in parts)
        prefix = "Dry run, nothing sent. Would have " if dry_run else ""
        style = self.style.ERROR if counts["failed"] else self.style.SUCCESS
        if self._verbosity or counts["failed"] or dry_run:
            self.stdout.write(style(f"{prefix}{line}"))
        for workspace, message in self._refused.items():
            self.stderr.write(
                f"Fyno refused the credentials of workspace {workspace} (401 {message}): "
                "fix FYNO['API_KEY'] (or what CLIENT_RESOLVER returns for it). Nothing more "
                "was sent to it in this run; its users stay to sync."
            )
        named = counts["failed"] if self._verbosity >= 2 else _SHOWN_FAILURES
        if counts["failed"] > named:  # not every failed user was named: sum them up
            self.stderr.write("Failures by cause:")
            for cause, number in self._causes.most_common(_SHOWN_FAILURES):
                self.stderr.write(f"  {number} user(s): {cause}")


def _close_connections(pool: ThreadPoolExecutor, workers: int) -> None:
    """Close the database connections of every thread of ``pool``.

    The requests touch no database, but a thread's connection would outlive
    the command otherwise. Each of ``workers`` tasks waits for all the others,
    so every thread of the pool runs exactly one of them.
    """
    barrier = threading.Barrier(workers)

    def close() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):  # a thread was stuck
            barrier.wait(timeout=30)
        connections.close_all()

    for future in [pool.submit(close) for _ in range(workers)]:
        future.result()
