"""``manage.py fyno_erase``: one person's data out of Fyno and out of django-fyno's rows."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_fyno import erase
from django_fyno.erase import ErasureError, ErasurePlan, ErasureRefused


def _ids(pks: list[int]) -> str:
    shown = ", ".join(f"#{pk}" for pk in pks[:20])
    more = f" and {len(pks) - 20} more" if len(pks) > 20 else ""
    return f"{len(pks)}" + (f" ({shown}{more})" if pks else "")


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in this environment
        return "unknown"


class Command(BaseCommand):
    help = (
        "Right to erasure: delete a person's Fyno profile (and wait until Fyno confirms), "
        "remove the mirror row, scrub personal data from their outbox messages and delivery "
        "reports (ids, states and timestamps are kept), and write one audit line on the "
        "django_fyno.audit logger. Safe to run twice. The Django user is left alone."
    )
    # Erasure must work while an unrelated system check fails.
    requires_system_checks = ()

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "target",
            metavar="USER_ID_OR_DISTINCT_ID",
            help="The user's primary key, or a distinct id (for a user already deleted).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="List what would be done; change nothing, call nothing.",
        )
        parser.add_argument(
            "--operator",
            default=None,
            help="Who runs the erasure, for the audit line (default: the OS user).",
        )
        parser.add_argument(
            "--reference",
            default="",
            help="The erasure request's reference (a ticket number), for the audit line.",
        )
        parser.add_argument(
            "--allow-existing-user",
            action="store_true",
            help="Erase even though the Django user still exists and would be synced to Fyno "
            "again at its next save (a new profile would then be created).",
        )
        parser.add_argument(
            "--wait",
            type=float,
            default=erase.CONFIRM_TIMEOUT,
            metavar="SECONDS",
            help="How long to wait for Fyno to confirm each deletion "
            f"(default {erase.CONFIRM_TIMEOUT:g}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        verbosity: int = options["verbosity"]
        if options["wait"] < 0:
            raise CommandError("--wait must be 0 or more")
        try:
            plan = erase.plan_erasure(options["target"])
        except ErasureError as error:
            raise CommandError(str(error)) from None
        if options["dry_run"]:
            self._describe(plan, verbosity)
            if plan.synced_again and not options["allow_existing_user"]:
                raise CommandError(
                    f"a real run would refuse: user {plan.user_pk} still exists and would be "
                    "synced to Fyno again at its next save (see --allow-existing-user)"
                )
            if not plan.fyno:
                raise CommandError(f"a real run would refuse: {plan.no_workspace}")
            if verbosity >= 1:
                self.stdout.write("Dry run: nothing was changed.")
            return
        if plan.synced_again and options["allow_existing_user"] and verbosity >= 0:
            self.stderr.write(
                self.style.WARNING(
                    f"User {plan.user_pk} still exists: its next save creates a new Fyno "
                    "profile with its data. Delete or anonymise the user too."
                )
            )
        try:
            report = erase.erase(
                options["target"],
                operator=options["operator"] or _os_user(),
                reference=options["reference"],
                allow_existing_user=options["allow_existing_user"],
                confirm_timeout=options["wait"],
            )
        except ErasureRefused as error:
            raise CommandError(f"refused: {error}") from None
        except ErasureError as error:
            raise CommandError(str(error)) from None
        if verbosity >= 1:
            spaces = ", ".join(str(space) for space in report.deleted_in)
            self.stdout.write(f"Fyno profile deleted and confirmed gone in: {spaces}")
            self.stdout.write(f"Mirror rows removed: {_ids(report.profiles_removed)}")
            self.stdout.write(
                f"Outbox messages scrubbed: {_ids(report.outbox_scrubbed)}; "
                f"unsent ones cancelled: {_ids(report.cancelled)}"
            )
            self.stdout.write(f"Delivery reports scrubbed: {_ids(report.reports_scrubbed)}")
            self.stdout.write(self.style.SUCCESS("Erased."))

    def _describe(self, plan: ErasurePlan, verbosity: int) -> None:
        if verbosity < 1:
            return
        if plan.user_pk is not None:
            state = "would be synced again at its next save" if plan.synced_again else "not synced"
            self.stdout.write(f"Django user {plan.user_pk} still exists ({state}); it is kept.")
        for workspace in plan.workspaces:
            self.stdout.write(
                f"Would delete the Fyno profile in workspace {workspace}, then wait until "
                "Fyno no longer has it."
            )
        if verbosity >= 2:
            self.stdout.write(f"Distinct ids: {', '.join(plan.distinct_ids)}")
        self.stdout.write(f"Would remove mirror rows: {_ids(plan.profile_pks)}")
        self.stdout.write(
            f"Would scrub outbox messages: {_ids(plan.outbox_pks)}; "
            f"cancel unsent ones: {_ids(plan.pending_pks)}"
        )
        if plan.sending_pks:
            self.stdout.write(
                f"Being sent right now (a real run would wait for them): {_ids(plan.sending_pks)}"
            )
        self.stdout.write(f"Would scrub delivery reports: {_ids(plan.report_pks)}")
