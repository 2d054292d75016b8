"""``manage.py fyno_outbox``: inspect the outbox, retry what failed, purge what was sent."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from django_fyno import outbox
from django_fyno.models import FynoOutbox
from django_fyno.outbox.operations import RETRYABLE


class Command(BaseCommand):
    help = (
        "Show how many outbox messages are in each state (the default), put failed, dead "
        "or unknown messages back in the queue (--retry), delete old sent ones "
        "(--purge-sent), or deliver now without Celery (--drain)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_mutually_exclusive_group()
        actions.add_argument(
            "--retry",
            action="store_true",
            help="Put failed, dead and unknown messages back to pending (filter with --state, "
            "--event, --older-than). Retrying 'unknown' ones may send them twice.",
        )
        actions.add_argument(
            "--purge-sent",
            type=int,
            metavar="DAYS",
            help="Delete sent messages sent more than DAYS days ago.",
        )
        actions.add_argument(
            "--drain",
            action="store_true",
            help="Take back expired leases and deliver due messages now, in this process.",
        )
        parser.add_argument(
            "--state",
            action="append",
            choices=[str(state) for state in RETRYABLE],
            help="With --retry: only this state (repeatable). Default: all three.",
        )
        parser.add_argument("--event", help="With --retry: only this event or operation name.")
        parser.add_argument(
            "--older-than",
            type=int,
            metavar="DAYS",
            help="With --retry: only messages created more than DAYS days ago.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        filters_given = options["state"] or options["event"] or options["older_than"] is not None
        if filters_given and not options["retry"]:
            raise CommandError("--state, --event and --older-than only go with --retry")
        if options["retry"]:
            self._retry(options)
        elif options["purge_sent"] is not None:
            self._purge(options["purge_sent"])
        elif options["drain"]:
            self._drain()
        else:
            self._counts()

    def _counts(self) -> None:
        counts = outbox.counts()
        width = max(len(state) for state in counts)
        for state, count in counts.items():
            self.stdout.write(f"{state:<{width}}  {count}")
        self.stdout.write(f"{'total':<{width}}  {sum(counts.values())}")

    def _retry(self, options: dict[str, Any]) -> None:
        rows = FynoOutbox.objects.filter(state__in=options["state"] or list(RETRYABLE))
        if options["event"]:
            rows = rows.filter(event=options["event"])
        if options["older_than"] is not None:
            if options["older_than"] < 0:
                raise CommandError("--older-than must be 0 or more days")
            rows = rows.filter(
                created_at__lt=timezone.now() - timedelta(days=options["older_than"])
            )
        count = outbox.retry(rows)
        self.stdout.write(f"Put {count} message(s) back in the queue.")

    def _purge(self, days: int) -> None:
        if days < 0:
            raise CommandError("--purge-sent must be 0 or more days")
        deleted = outbox.purge_sent(days)
        self.stdout.write(f"Deleted {deleted} sent message(s) older than {days} day(s).")

    def _drain(self) -> None:
        swept = outbox.sweep_outbox(schedule=False)
        report = outbox.drain()
        self.stdout.write(
            f"Took back {swept.reclaimed + swept.held + swept.dead} expired lease(s); "
            f"sent {report.sent}, failed {report.failed}, retrying {report.retried}, "
            f"unknown {report.held}, dead {report.dead} in {report.requests} request(s)."
        )
        if report.paused:
            self.stdout.write(f"Fyno is paused for {report.retry_in:.0f}s more; run again later.")
