"""Recording outcomes: each row's state after a send, written only while the claim owns it.

Every write carries the claim's token (the lease expiry), so a drainer that
outlived its lease cannot overwrite a row someone else has re-claimed. The
writer also keeps the lease (:meth:`Writer.renew`, before each request) and
follows the token as it changes. Rows that fail for good are logged at
WARNING with their event, ids and Fyno's message.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, router, transaction
from django.db.models import Case, F, JSONField, QuerySet, Value, When

from django_fyno.client.backoff import full_jitter
from django_fyno.conf import fyno_settings
from django_fyno.exceptions import MAX_ERROR_LENGTH
from django_fyno.models import FynoOutbox
from django_fyno.outbox import claim as claiming
from django_fyno.outbox.claim import Clock
from django_fyno.outbox.send import Reply

__all__ = ["DrainReport", "Writer", "backoff"]

logger = logging.getLogger("django_fyno.outbox")
_State = FynoOutbox.State
_LOGGED_IDS = 10


@dataclass
class DrainReport:
    """What one drain did, in rows (``requests``: HTTP requests sent)."""

    claimed: int = 0
    sent: int = 0
    failed: int = 0  # Fyno refused them (400) or they can never be sent
    retried: int = 0  # back to pending for a later attempt
    ambiguous: int = 0  # may or may not have reached Fyno (5xx, read timeout)
    held: int = 0  # ambiguous and left "unknown" (UNKNOWN_POLICY "hold")
    dead: int = 0  # OUTBOX_MAX_ATTEMPTS (after an ambiguous send: OUTBOX_MAX_SENDS) reached
    released: int = 0  # claimed, then handed back unsent (pause, or a pass cut short)
    # Taken back (the lease expired, or a delivery report settled it) before this
    # drainer sent the row or wrote its outcome: not sent by it again, nothing written.
    lost: int = 0
    requests: int = 0
    paused: bool = False
    # Seconds until there is work again (pause or backoff); None: nothing pending.
    retry_in: float | None = None

    def add(self, other: DrainReport) -> None:
        """Sum ``other`` into this report (a drain of several workspaces)."""
        for name in ("claimed", "sent", "failed", "retried", "ambiguous", "held", "dead"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("released", "lost", "requests"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.paused = self.paused or other.paused
        if other.retry_in is not None:
            self.retry_in = min(self.retry_in, other.retry_in) if self.retry_in else other.retry_in


def backoff(attempts: int) -> timedelta:
    """The wait before a row's next attempt: full jitter (the client's formula)."""
    return timedelta(
        seconds=full_jitter(
            attempts, fyno_settings.OUTBOX_BACKOFF_BASE, fyno_settings.OUTBOX_BACKOFF_MAX
        )
    )


def _log_given_up(rows: list[FynoOutbox], state: str, message: str) -> None:
    if not rows:
        return
    ids = ", ".join(str(row.pk) for row in rows[:_LOGGED_IDS])
    more = f" and {len(rows) - _LOGGED_IDS} more" if len(rows) > _LOGGED_IDS else ""
    events = ", ".join(sorted({row.event for row in rows}))
    logger.warning(
        "Fyno outbox: %d message(s) %s (event %s; rows %s%s): %s",
        len(rows),
        state,
        events,
        ids,
        more,
        message,
    )


class Writer:
    """Writes outcomes of one claim, only to rows that still carry its token."""

    def __init__(
        self, token: datetime, report: DrainReport, clock: Clock, *, fresh: bool = False
    ) -> None:
        self.token = token
        self.report = report
        self.clock = clock
        self.alias = router.db_for_write(FynoOutbox)
        # The claim was taken just now: its first request needs no renewal.
        self._fresh = fresh

    def renew(self, rows: list[FynoOutbox]) -> set[int]:
        """Extend the lease of ``rows`` (the claim's unsent ones) before a request.

        Returns the pks still held: only those may be sent. The others were
        taken back and are counted ``lost``. Later writes use the new token.
        """
        if self._fresh:
            self._fresh = False
            return {row.pk for row in rows}
        held, self.token = claiming.renew([row.pk for row in rows], self.token, self.clock)
        self.report.lost += len(rows) - len(held)
        return held

    def _owned(self, pks: Iterable[int]) -> QuerySet[FynoOutbox]:
        rows: QuerySet[FynoOutbox] = FynoOutbox.objects.filter(
            pk__in=list(pks), state=_State.SENDING, lease_expires_at=self.token
        )
        return rows

    def _update(self, pks: list[int], **fields: Any) -> int:
        written = int(self._owned(pks).update(lease_expires_at=None, **fields))
        self.report.lost += len(pks) - written
        return written

    def sent_all(self, accepted: list[tuple[Reply, list[FynoOutbox]]]) -> None:
        """Fyno accepted these requests (one wave's), each for its rows: each row
        ``sent``, or ``failed`` where the reply refused its item.

        On PostgreSQL one ``UPDATE … FROM (VALUES …)`` writes every row sent,
        each with its own result and request id; elsewhere one ``UPDATE`` with
        a ``CASE`` per request.
        """
        if connections[self.alias].vendor == "postgresql":
            self.report.sent += self._sent_from_values(accepted)
        else:
            for reply, _ in accepted:
                if reply.results:
                    self.report.sent += self._sent_with_case(reply)
        for reply, rows in accepted:
            by_pk = {row.pk: row for row in rows}
            for pk, message in reply.refused.items():
                written = self._update(
                    [pk],
                    state=_State.FAILED,
                    request_id=reply.request_id[:64],
                    attempts=F("attempts") + 1,
                    last_error=message,
                )
                self.report.failed += written
                if written:
                    _log_given_up([by_pk[pk]], "refused by Fyno", message)

    def _sent_with_case(self, reply: Reply) -> int:
        whens = [
            When(pk=pk, then=Value(result, JSONField())) for pk, result in reply.results.items()
        ]
        return self._update(
            list(reply.results),
            state=_State.SENT,
            request_id=reply.request_id[:64],
            result=Case(*whens, output_field=JSONField()),
            sent_at=self.clock(),
            attempts=F("attempts") + 1,
            last_error="",
        )

    def _sent_from_values(self, accepted: list[tuple[Reply, list[FynoOutbox]]]) -> int:
        """PostgreSQL: each row's request id and result joined from a ``VALUES``
        list (its cost does not grow with a ``CASE`` per row), in one statement."""
        given = [
            (pk, reply.request_id[:64], json.dumps(result))
            for reply, _ in accepted
            for pk, result in reply.results.items()
        ]
        if not given:
            return 0
        quote = connections[self.alias].ops.quote_name
        table = quote(FynoOutbox._meta.db_table)
        values = ", ".join(["(%s::bigint, %s, %s::jsonb)"] * len(given))
        # Only the quoted table name is interpolated; every value is a parameter.
        sql = (
            f"UPDATE {table} AS row SET state = %s, request_id = given.request_id,"  # noqa: S608
            " result = given.result, sent_at = %s, attempts = row.attempts + 1,"
            " last_error = '', lease_expires_at = NULL"
            f" FROM (VALUES {values}) AS given (id, request_id, result)"
            " WHERE row.id = given.id AND row.state = %s AND row.lease_expires_at = %s"
        )
        params: list[Any] = [_State.SENT, self.clock()]
        for row in given:
            params.extend(row)
        params += [_State.SENDING, self.token]
        with connections[self.alias].cursor() as cursor:
            cursor.execute(sql, params)
            written = int(cursor.rowcount)
        self.report.lost += len(given) - written
        return written

    def failed(self, rows: list[FynoOutbox], message: str) -> None:
        message = message[:MAX_ERROR_LENGTH]
        self.report.failed += self._update(
            [row.pk for row in rows],
            state=_State.FAILED,
            attempts=F("attempts") + 1,
            last_error=message,
        )
        _log_given_up(rows, "failed", message)

    def release(self, rows: list[FynoOutbox], message: str = "") -> None:
        """Hand back rows that were never sent: no attempt counted."""
        fields: dict[str, Any] = {"state": _State.PENDING}
        if message:
            fields["last_error"] = message[:MAX_ERROR_LENGTH]
        self.report.released += self._update([row.pk for row in rows], **fields)

    def rate_limited(self, rows: list[FynoOutbox], retry_after: float, message: str) -> None:
        """429: Fyno refused to look at the request; the attempt is not counted."""
        due = self.clock() + timedelta(seconds=retry_after)
        self.report.retried += self._update(
            [row.pk for row in rows], state=_State.PENDING, next_attempt_at=due, last_error=message
        )

    def retry_later(self, rows: list[FynoOutbox], message: str, *, ambiguous: bool) -> None:
        """Back to pending with backoff (counted as an attempt), or dead at the limit.

        The limit is ``OUTBOX_MAX_ATTEMPTS``; for an ambiguous send (it may have
        reached Fyno) also ``OUTBOX_MAX_SENDS``, which bounds how many times
        one row can be sent: a row is sent again only while it has spent
        fewer attempts than that.
        """
        max_attempts = fyno_settings.OUTBOX_MAX_ATTEMPTS
        if ambiguous:
            max_attempts = min(max_attempts, fyno_settings.OUTBOX_MAX_SENDS)
        now = self.clock()
        dead = []
        with transaction.atomic():
            for row in rows:
                attempts = row.attempts + 1
                if attempts >= max_attempts:
                    if self._update(
                        [row.pk], state=_State.DEAD, attempts=attempts, last_error=message
                    ):
                        self.report.dead += 1
                        dead.append(row)
                    continue
                written = self._update(
                    [row.pk],
                    state=_State.PENDING,
                    attempts=attempts,
                    next_attempt_at=now + backoff(attempts),
                    last_error=message,
                )
                self.report.retried += written
        if ambiguous:
            self.report.ambiguous += len(rows)
        _log_given_up(dead, f"dead after {max_attempts} attempts", message)

    def hold(self, rows: list[FynoOutbox], message: str) -> None:
        """Ambiguous under UNKNOWN_POLICY "hold": left for staff or a delivery report."""
        self.report.ambiguous += len(rows)
        self.report.held += self._update(
            [row.pk for row in rows],
            state=_State.UNKNOWN,
            attempts=F("attempts") + 1,
            last_error=message,
        )
