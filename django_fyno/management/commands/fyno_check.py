"""``manage.py fyno_check``: are the Fyno settings valid and do the credentials work?"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.core import checks
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_fyno.client import FynoClient, FynoConfig, RetryPolicy
from django_fyno.client.exceptions import (
    FynoAPIError,
    FynoAuthError,
    FynoError,
    FynoTransportError,
)
from django_fyno.clients import get_config


def _root_cause(exc: BaseException) -> str:
    """The innermost cause's text ("[Errno 111] Connection refused"), for unreachable hosts."""
    seen: set[int] = set()
    current: BaseException | None = exc
    text = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current)
        # urllib3 wraps the socket error in MaxRetryError.reason, not in __cause__.
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
            continue
        nested = current.args[0] if current.args else None
        current = nested if isinstance(nested, BaseException) else current.__cause__
    # "HTTPConnection(host=..., port=...): Failed to establish a new connection: [Errno 111] ..."
    return text.rsplit(": ", 1)[-1] if "Failed to establish" in text else text


class Command(BaseCommand):
    help = (
        "Check django-fyno's settings, then make one read-only authenticated call to Fyno "
        "to prove the workspace id, API key, version and endpoint work."
    )
    # The fyno checks run inside handle(), reported in this command's own words.
    requires_system_checks = ()

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--skip-call",
            action="store_true",
            help="Only validate the settings; do not contact Fyno.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        verbosity: int = options["verbosity"]
        self._run_system_checks(verbosity)
        try:
            config = get_config()
        except FynoError as exc:
            raise CommandError(f"Fyno settings are invalid: {exc}") from None
        where = f"workspace {config.wsid}, version {config.version}, endpoint {config.endpoint}"
        if options["skip_call"]:
            if verbosity >= 1:
                self.stdout.write(self.style.SUCCESS(f"settings OK ({where})"))
            return
        if verbosity >= 2:
            self.stdout.write(f"Calling Fyno: list suppressions ({where})")
        count = self._call(config, where)
        if verbosity >= 2:
            self.stdout.write(f"Fyno answered: {count} suppression(s) in the workspace")
        if verbosity >= 1:
            self.stdout.write(self.style.SUCCESS(f"credentials OK ({where})"))

    def _run_system_checks(self, verbosity: int) -> None:
        """Print django-fyno's system check messages; stop on errors."""
        found = [
            message
            # databases=[]: static checks only. Django 6 would otherwise have every
            # model's JSONField ask each database for its features.
            for message in checks.run_checks(databases=[])
            if (message.id or "").startswith("fyno.") and not message.is_silenced()
        ]
        errors = [message for message in found if message.is_serious()]
        for message in found:
            line = f"{message.id}: {message.msg}"
            if message.hint:
                line += f"\n    HINT: {message.hint}"
            if message.is_serious():
                self.stderr.write(self.style.ERROR(line))
            elif verbosity >= 1:
                self.stdout.write(self.style.WARNING(line))
        if errors:
            raise CommandError(
                f"Fyno settings have {len(errors)} error(s); fix them before checking credentials."
            )
        if verbosity >= 2 and not found:
            self.stdout.write("Fyno system checks: no issues")

    def _call(self, config: FynoConfig, where: str) -> int:
        """Make one harmless authenticated read; raise CommandError naming the problem."""
        # One attempt: a wrong endpoint should fail now, not after the retry policy's backoff.
        once = dataclasses.replace(config, retry=RetryPolicy(max_attempts=1))
        try:
            with FynoClient(config=once) as client:
                return len(client.list_suppressions())
        except FynoAuthError as exc:
            problem = (
                f"Fyno rejected the API key or workspace id ({exc.status} {exc.message}) [{where}]"
            )
        except FynoTransportError as exc:
            problem = f"cannot reach {config.endpoint}: {exc.message} ({_root_cause(exc)})"
        except FynoAPIError as exc:
            problem = f"Fyno API error: {exc} [{where}]"
        except FynoError as exc:
            problem = f"Fyno check failed: {exc} [{where}]"
        # Belt and braces: whatever a server or proxy echoed back, never print the key.
        raise CommandError(problem.replace(config.api_key, "[API key hidden]"))
