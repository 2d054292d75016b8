"""Sending claimed rows: check them, group them into requests, make one request per group.

Events of the same name go out through ``/event/bulk`` (each reply item is
mapped back to its row by ``seq``); property operations of many users through
``/profiles/properties/batch``. A single row uses its own endpoint.

With ``OUTBOX_CONCURRENCY`` above 1, a :class:`Sender` keeps that many
requests in flight at once, on threads that only make HTTP requests (the
database is written by the drainer's own thread, so no transaction and no
connection is shared with them); :func:`next_wave` picks which requests may
go out together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from django_fyno.client import FynoClient
from django_fyno.client import validation as check
from django_fyno.client.exceptions import FynoError
from django_fyno.exceptions import MAX_ERROR_LENGTH, error_text
from django_fyno.models import FynoOutbox

__all__ = ["PROPERTY_OPERATIONS", "Reply", "Sender", "next_wave", "problem", "send", "units"]

# Property operation -> the client method that sends it alone.
PROPERTY_OPERATIONS: dict[str, str] = {
    "$set": "set_properties",
    "$once": "set_properties_once",
    "$add": "increment_properties",
    "$append": "append_to_lists",
    "$remove": "remove_from_lists",
    "$unset": "unset_properties",
}
# FynoOutbox.Kind's values, as plain strings (what a row's ``kind`` holds).
_EVENT = "event"
_PROPERTY = "property"


def _callback(row: FynoOutbox) -> dict[str, Any]:
    return {**(row.callback or {}), "custom_id": str(row.pk)}


def event_item(row: FynoOutbox) -> dict[str, Any]:
    """The ``/event`` (or bulk item) body of an event row."""
    item: dict[str, Any] = {"callback": _callback(row)}
    if row.distinct_id:
        item["distinct_id"] = row.distinct_id
    if row.to:
        item["to"] = row.to
    if row.payload:
        item["data"] = row.payload
    return item


def property_argument(row: FynoOutbox) -> Any:
    if row.event == "$unset":
        payload = row.payload or {}
        return list(payload.get("names", []) if isinstance(payload, Mapping) else payload)
    return row.payload


def problem(row: FynoOutbox) -> str | None:
    """Why Fyno could never accept this row (checked locally, before sending), or None."""
    try:
        if row.kind == _EVENT:
            check.check_text(row.event, "event")
            item = event_item(row)
            if "distinct_id" not in item and "to" not in item:
                return "the message has neither a distinct_id nor destinations (to)"
            if "distinct_id" in item:
                check.check_distinct_id(item["distinct_id"], "distinct_id")
            if "to" in item:
                check.check_to(item["to"], "to")
            if "data" in item:
                check.check_data(item["data"], "data")
            check.check_callback(item["callback"], "callback")
        elif row.kind == _PROPERTY:
            if row.event not in PROPERTY_OPERATIONS:
                return f"unknown property operation {row.event!r}"
            check.check_distinct_id(row.distinct_id, "distinct_id")
            check.check_batch_action({row.event: property_argument(row)}, "action")
        else:
            return f"unknown outbox kind {row.kind!r}"
    except FynoError as error:
        return error_text(error, "not sent: ")
    return None


def units(rows: list[FynoOutbox], bulk_size: int) -> list[list[FynoOutbox]]:
    """Group claimed rows into requests.

    Events: by name, ``bulk_size`` per bulk request. Property operations: in
    row order, ``bulk_size`` per batch, and a batch is cut before a second
    operation for the same user, so one user's operations never share a
    request (Fyno does not promise to apply a batch's items in order).
    """
    events: dict[str, list[list[FynoOutbox]]] = {}
    properties: list[list[FynoOutbox]] = []
    users: set[str] = set()
    for row in rows:
        if row.kind == _EVENT:
            chunks = events.setdefault(row.event, [[]])
            if len(chunks[-1]) >= bulk_size:
                chunks.append([])
            chunks[-1].append(row)
            continue
        if not properties or len(properties[-1]) >= bulk_size or row.distinct_id in users:
            properties.append([])
            users = set()
        properties[-1].append(row)
        users.add(row.distinct_id)
    grouped = [chunk for chunks in events.values() for chunk in chunks]
    return grouped + properties


@dataclass
class Reply:
    """Fyno accepted a request: its request id, and per row its result or refusal."""

    request_id: str
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)


def send(client: FynoClient, unit: list[FynoOutbox]) -> Reply:
    """One request for ``unit`` (rows of one event, or property rows of distinct users)."""
    first = unit[0]
    if first.kind == _EVENT:
        if len(unit) == 1:
            single = client.send_event(first.event, **event_item(first))
            response = single.raw.get("response")
            result = dict(response) if isinstance(response, Mapping) else {}
            return Reply(single.request_id or "", {first.pk: result})
        bulk = client.send_bulk(first.event, [event_item(row) for row in unit])
        by_seq = {item.seq: item.raw for item in bulk.items if item.seq is not None}
        results = {
            row.pk: {k: v for k, v in by_seq.get(seq, {}).items() if k != "seq"}
            for seq, row in enumerate(unit)
        }
        return Reply(bulk.request_id or "", results)
    if len(unit) == 1:
        method = getattr(client, PROPERTY_OPERATIONS[first.event])
        update = method(first.distinct_id, property_argument(first))
        return Reply(update.request_id or "", {first.pk: {first.event: "ok"}})
    items: list[dict[str, Any]] = [
        {"distinct_id": row.distinct_id, "action": {row.event: property_argument(row)}}
        for row in unit
    ]
    batch = client.batch_properties(items)
    reply = Reply(batch.request_id or "")
    for index, row in enumerate(unit):
        outcome = dict(batch.items[index]) if index < len(batch.items) else {}
        refusal = next((str(v) for v in outcome.values() if v != "ok"), None)
        if refusal is None:
            reply.results[row.pk] = outcome
        else:
            reply.refused[row.pk] = refusal[:MAX_ERROR_LENGTH]
    return reply


def next_wave(queue: list[list[FynoOutbox]], width: int) -> list[list[FynoOutbox]]:
    """The first units of ``queue`` that may be in flight together, at most ``width``.

    Fyno does not promise to apply concurrent requests in order, so a wave
    stops before a property unit for a user already in it: one user's
    operations still go out one after the other. Events promise no order.
    """
    wave: list[list[FynoOutbox]] = []
    users: set[str] = set()
    for unit in queue[:width]:
        if unit[0].kind == _PROPERTY:
            distinct_ids = {row.distinct_id for row in unit}
            if wave and not users.isdisjoint(distinct_ids):
                break
            users |= distinct_ids
        wave.append(unit)
    return wave


Outcome = Reply | FynoError
Send = Callable[[FynoClient, list[FynoOutbox]], Reply]


class Sender:
    """Sends the units of a wave, at most ``width`` at once; a context manager.

    Width 1 sends in the calling thread, one request after the other. Above
    1, the requests go out from a pool of ``width`` threads, while the
    calling thread may do ``meanwhile`` (claim the next batch), and waits for
    every answer before returning: nothing is left in flight.
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self._pool = ThreadPoolExecutor(width, "fyno-outbox-send") if width > 1 else None

    def __enter__(self) -> Sender:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def send_all(
        self,
        send_one: Send,
        client: FynoClient,
        wave: list[list[FynoOutbox]],
        meanwhile: Callable[[], None] | None = None,
    ) -> list[Outcome]:
        """Each unit's reply or FynoError, in order (other exceptions propagate)."""
        if self._pool is None or (len(wave) == 1 and meanwhile is None):
            outcomes = [_attempt(send_one, client, unit) for unit in wave]
            if meanwhile is not None:
                meanwhile()
            return outcomes
        futures: list[Future[Outcome]] = [
            self._pool.submit(_attempt, send_one, client, unit) for unit in wave
        ]
        try:
            if meanwhile is not None:
                meanwhile()
        finally:
            wait(futures)  # every answer, even if ``meanwhile`` failed
        return [future.result() for future in futures]


def _attempt(send_one: Send, client: FynoClient, unit: list[FynoOutbox]) -> Outcome:
    try:
        return send_one(client, unit)
    except FynoError as error:
        return error
