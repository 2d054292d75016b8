"""``manage.py fyno_reconcile``: find (and fix) Fyno profiles that drifted from our mirror."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import QuerySet

from django_fyno import reconcile
from django_fyno.conf import fyno_settings
from django_fyno.models import FynoProfile

Drift = reconcile.Drift

#: Exit status when drift was found and not fixed.
EXIT_DRIFT = 1
#: Exit status when a profile could not be compared, or a fix failed.
EXIT_FAILED = 2

_HEADLINE = {
    Drift.DIFFERS: "fields differ",
    Drift.MISSING: "missing in Fyno",
    Drift.EXTRA: "extra in Fyno: the profile of a deleted user",
}
_SUMMARY = (
    (Drift.IN_SYNC, "in sync"),
    (Drift.DIFFERS, "differ"),
    (Drift.MISSING, "missing in Fyno"),
    (Drift.EXTRA, "extra in Fyno"),
    (Drift.NOT_SYNCED, "never synced"),
    (Drift.EXCLUDED, "excluded"),
    (Drift.FAILED, "failed"),
)


def _quoted(text: str) -> str:
    return repr(text) if text else "nothing"


class Command(BaseCommand):
    help = (
        "Compare users' Fyno profiles (GET /profiles/{id}, in each profile's workspace) "
        "with what Fyno last accepted from us, and print the drift: profiles missing in "
        "Fyno, profiles Fyno still has for deleted users, fields that differ. --fix syncs "
        "the drifted profiles again (and deletes the extra ones). Exits with 1 when drift "
        "is left, 2 when a profile could not be compared or fixed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--ids",
            help="Comma-separated user primary keys (default: every user, and the rows of "
            "deleted users whose profile may still be in Fyno).",
        )
        parser.add_argument(
            "--fix",
            action="store_true",
            help="Resend the full profile of each drifted user; delete the profiles Fyno "
            "still has for deleted users.",
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
            help="Users read and compared per chunk (default: SYNC_BATCH_SIZE).",
        )
        parser.add_argument(
            "--no-progress", action="store_true", help="No progress counter on stderr."
        )

    # -- selection ----------------------------------------------------------------------

    def _users(self, ids: str | None) -> QuerySet[Any]:
        user_model = get_user_model()
        users: QuerySet[Any] = user_model._base_manager.all()
        if ids:
            try:
                pks = [user_model._meta.pk.to_python(value) for value in ids.split(",") if value]
            except Exception as error:
                raise CommandError(f"--ids: {error}") from error
            users = users.filter(pk__in=pks)
        return users

    @staticmethod
    def _chunks(queryset: QuerySet[Any], size: int) -> Iterator[list[Any]]:
        """``queryset`` in primary-key order, ``size`` at a time: memory stays flat."""
        last_pk = None
        while True:
            page = queryset.order_by("pk")
            if last_pk is not None:
                page = page.filter(pk__gt=last_pk)
            chunk = list(page[:size])
            if not chunk:
                return
            last_pk = chunk[-1].pk
            yield chunk

    # -- running ------------------------------------------------------------------------

    def handle(self, *args: Any, **options: Any) -> None:
        concurrency = options["concurrency"]
        if concurrency < 1:
            raise CommandError("--concurrency must be at least 1")
        if options["chunk_size"] is not None and options["chunk_size"] < 1:
            raise CommandError("--chunk-size must be at least 1")
        if not fyno_settings.ENABLED:
            raise CommandError("django-fyno is disabled (FYNO['ENABLED'] is False)")
        size = options["chunk_size"] or fyno_settings.SYNC_BATCH_SIZE
        self._verbosity = int(options["verbosity"])
        self._fix = bool(options["fix"])
        self._progress = not options["no_progress"] and self.stderr.isatty()
        self._counts: Counter[Drift] = Counter()
        self._fixed = 0
        self._not_fixed = 0
        self._done = 0
        users = self._users(options["ids"])
        orphans: QuerySet[FynoProfile] | None = None
        if not options["ids"]:
            orphans = reconcile.orphan_rows()
        self._total = users.count() + (orphans.count() if orphans is not None else 0)
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fyno_reconcile")
        try:
            for chunk in self._chunks(users, size):
                self._run(reconcile.rows_for_users(chunk), pool, concurrency)
            if orphans is not None:
                for rows in self._chunks(orphans, size):
                    self._run(rows, pool, concurrency)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # interrupted: ask no more
            raise
        pool.shutdown(wait=True)
        if self._progress:
            self.stderr.write("")
        self._summary()
        if self._counts[Drift.FAILED] or self._not_fixed:
            raise CommandError(
                f"{self._counts[Drift.FAILED]} profile(s) could not be compared, "
                f"{self._not_fixed} not fixed",
                returncode=EXIT_FAILED,
            )
        drifted = sum(count for drift, count in self._counts.items() if drift.drifted)
        if drifted and not self._fix:
            raise CommandError(
                f"{drifted} profile(s) drifted from our mirror (--fix syncs them again)",
                returncode=EXIT_DRIFT,
            )

    def _run(self, rows: list[FynoProfile], pool: ThreadPoolExecutor, concurrency: int) -> None:
        comparisons = reconcile.compare_profiles(rows, executor=pool, pool_size=concurrency)
        fixes: dict[int, reconcile.RowResult] = {}
        if self._fix:
            for result in reconcile.fix(comparisons, executor=pool, pool_size=concurrency):
                fixes[id(result.row)] = result
        for comparison in comparisons:
            self._show(comparison, fixes.get(id(comparison.row)))

    def _show(self, comparison: reconcile.Comparison, fixed: reconcile.RowResult | None) -> None:
        drift = comparison.drift
        self._counts[drift] += 1
        self._done += 1
        where = f"{comparison.label} (workspace {comparison.workspace or '-'})"
        if self._progress:
            self.stderr.write("\r", ending="")
        if drift is Drift.FAILED:
            self.stderr.write(f"{where}: could not compare: {comparison.error}")
        elif drift.drifted:
            self.stdout.write(f"{where}: {_HEADLINE[drift]}")
            if drift is Drift.DIFFERS:
                for item in comparison.drifted_fields:
                    self.stdout.write(f"    {self._describe(item)}")
        elif self._verbosity >= 2:
            pending = " (a change made here is not sent yet)" if comparison.pending else ""
            self.stdout.write(f"{where}: {drift.value.replace('_', ' ')}{pending}")
        if fixed is not None:
            if fixed.ok:
                self._fixed += 1
                self.stdout.write(f"    fixed: {fixed.outcome}")
            else:
                self._not_fixed += 1
                self.stderr.write(f"{where}: not fixed: {fixed.error}")
        if self._progress:
            self.stderr.write(f"{self._done}/{self._total}", ending="")
            self.stderr.flush()

    @staticmethod
    def _describe(item: reconcile.FieldComparison) -> str:
        kind = item.drift_kind
        if kind == "missing":
            return f"{item.name}: missing in Fyno (it accepted {_quoted(item.accepted_text)})"
        if kind == "extra":
            return f"{item.name}: extra in Fyno: {_quoted(item.theirs_text)}"
        return (
            f"{item.name}: Fyno has {_quoted(item.theirs_text)}, "
            f"it accepted {_quoted(item.accepted_text)}"
        )

    def _summary(self) -> None:
        counts = self._counts
        line = ", ".join(
            f"{counts[drift]} {label}"
            for drift, label in _SUMMARY
            if counts[drift] or drift in (Drift.IN_SYNC, Drift.FAILED)
        )
        drifted = sum(count for drift, count in counts.items() if drift.drifted)
        trouble = (drifted and not self._fix) or counts[Drift.FAILED] or self._not_fixed
        if self._verbosity or trouble:
            style = self.style.ERROR if trouble else self.style.SUCCESS
            self.stdout.write(style(f"Compared {sum(counts.values())} profile(s): {line}."))
            if self._fix and (self._fixed or self._not_fixed):
                self.stdout.write(f"Fixed {self._fixed}, not fixed {self._not_fixed}.")
            if counts[Drift.NOT_SYNCED]:
                self.stdout.write("Profiles never synced are sent by `manage.py fyno_sync`.")
