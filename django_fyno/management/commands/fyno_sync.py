"""``manage.py fyno_sync``: backfill or resync users' Fyno profiles."""

from __future__ import annotations

import json
import queue
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections
from django.db.models import QuerySet
from django.utils.dateparse import parse_date, parse_datetime

from django_fyno import sync
from django_fyno.adapter import get_adapter
from django_fyno.client.exceptions import FynoError
from django_fyno.conf import fyno_settings
from django_fyno.models import FynoProfile

_STOP = object()


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
            help="Only users saved but not synced yet (e.g. with TASK_MODE 'off' or "
            "'on_commit' and no sweeper); also flushes pending profile deletions.",
        )
        parser.add_argument("--force", action="store_true", help="Send even when nothing changed.")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be sent and show one payload; send nothing.",
        )
        parser.add_argument(
            "--concurrency", type=int, default=1, help="Threads sending to Fyno (default 1)."
        )
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=None,
            help="Users read per query (default: SYNC_BATCH_SIZE).",
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
        """Users in primary-key order, ``size`` at a time: memory stays constant."""
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
        size = options["chunk_size"] or int(fyno_settings.SYNC_BATCH_SIZE)
        users = self._queryset(options)
        total = users.count()
        self._progress = not options["no_progress"] and self.stderr.isatty()
        self._done = 0
        self._total = total
        if options["dry_run"]:
            counts = self._dry_run(users, size, force=options["force"])
        else:
            if not fyno_settings.ENABLED:
                raise CommandError("django-fyno is disabled (FYNO['ENABLED'] is False)")
            counts = self._run(users, size, options["concurrency"], force=options["force"])
            if options["dirty"]:
                counts["deleted"] = sync.delete_pending_profiles()
        if self._progress:
            self.stderr.write("")
        self._summary(counts, dry_run=options["dry_run"])
        if counts["failed"]:
            raise CommandError(f"{counts['failed']} user(s) failed to sync")

    def _tick(self) -> None:
        self._done += 1
        if self._progress:
            self.stderr.write(f"\r{self._done}/{self._total}", ending="")
            self.stderr.flush()

    def _dry_run(self, users: QuerySet[Any], size: int, *, force: bool) -> Counter[str]:
        adapter = get_adapter()
        counts: Counter[str] = Counter()
        sample = None
        for chunk in self._chunks(users, size):
            rows = {
                row.user_id: row
                for row in FynoProfile.objects.filter(user_id__in=[u.pk for u in chunk])
            }
            for user in chunk:
                self._tick()
                if not adapter.should_sync(user):
                    counts["skipped"] += 1
                    continue
                try:
                    payload = adapter.build_payload(user)
                except FynoError as error:
                    counts["failed"] += 1
                    self.stderr.write(f"user {user.pk}: {error}")
                    continue
                row = rows.get(user.pk)
                if row is None or row.distinct_id is None:
                    counts["created"] += 1
                elif force or row.payload_hash != payload.digest():
                    counts["updated"] += 1
                else:
                    counts["unchanged"] += 1
                    continue
                sample = sample or payload
        if sample is not None:
            self.stdout.write("Sample payload:")
            self.stdout.write(json.dumps(asdict(sample), indent=2, cls=DjangoJSONEncoder))
        return counts

    def _run(
        self, users: QuerySet[Any], size: int, concurrency: int, *, force: bool
    ) -> Counter[str]:
        counts: Counter[str] = Counter()
        lock = threading.Lock()

        def sync_one(user_pk: Any) -> None:
            try:
                outcome = sync.sync_profile(user_pk, force=force).value
            except Exception as error:  # transient (after retries), or an adapter bug:
                outcome = "failed"  # count it and go on, a dead worker would hang the run
                self.stderr.write(f"user {user_pk}: {error}")
            with lock:
                counts[outcome] += 1
                self._tick()

        pks = (user.pk for chunk in self._chunks(users.only("pk"), size) for user in chunk)
        if concurrency == 1:
            for user_pk in pks:
                sync_one(user_pk)
            return counts

        # A bounded queue keeps memory constant however many users there are.
        work: queue.Queue[Any] = queue.Queue(maxsize=concurrency * 4)

        def worker() -> None:
            try:
                while (item := work.get()) is not _STOP:
                    sync_one(item)
            finally:
                connections.close_all()  # this thread's connections only

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        try:
            for user_pk in pks:
                work.put(user_pk)
        finally:
            for _ in threads:
                work.put(_STOP)
            for thread in threads:
                thread.join()
        return counts

    def _summary(self, counts: Counter[str], *, dry_run: bool) -> None:
        parts = ["created", "updated", "unchanged", "failed"]
        parts += [key for key in ("skipped", "vetoed", "missing", "deleted") if counts[key]]
        line = ", ".join(f"{key}: {counts[key]}" for key in parts)
        prefix = "Dry run, nothing sent. Would have " if dry_run else ""
        style = self.style.ERROR if counts["failed"] else self.style.SUCCESS
        self.stdout.write(style(f"{prefix}{line}"))
