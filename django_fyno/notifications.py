"""Notify users and update their Fyno properties from application code.

:func:`notify` and :func:`properties` only validate their input and write
:class:`~django_fyno.models.FynoOutbox` rows in the caller's transaction (one
INSERT), then ask for delivery after commit: no HTTP request is made in the
caller's request, and a rolled-back transaction sends nothing.
:func:`verify_otp` is the exception: its caller needs the answer now.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, overload

from django.contrib.auth import get_user_model
from django.db import IntegrityError, models, router, transaction

from django_fyno import links, outbox
from django_fyno.adapter import ProfileAdapter, get_adapter
from django_fyno.client import validation as check
from django_fyno.clients import Workspace, get_client, workspace_for, workspaces_for
from django_fyno.conf import fyno_settings
from django_fyno.exceptions import FynoValidationError
from django_fyno.models import FynoOutbox

__all__ = [
    "CALLBACK_FIELDS",
    "INSERT_BATCH_SIZE",
    "PropertyUpdates",
    "notify",
    "properties",
    "resolve_distinct_id",
    "verify_otp",
]

#: The ``callback`` fields a caller may set. ``custom_id`` is not one of them:
#: it is always the outbox row's id, so Fyno's delivery reports find their row.
CALLBACK_FIELDS = ("custom1", "custom2", "custom3", "allowlist_url")

#: Recipients per INSERT statement when notifying many at once.
INSERT_BATCH_SIZE = 1000

# The outbox's CharField columns (event, distinct_id, dedupe_key) hold 255 characters.
# Every string, number and nesting level is also checked by client.validation (check.*):
# no NUL, no surrogates, exact JSON numbers, at most check.MAX_DEPTH levels, before
# anything is written, so bad input never reaches the database (where PostgreSQL's
# DataError would abort the caller's transaction).
MAX_LENGTH = 255

_MISSING: Any = object()


def _check_length(value: str, field: str) -> str:
    if len(value) > MAX_LENGTH:
        raise FynoValidationError(field, f"must be at most {MAX_LENGTH} characters")
    return value


def _user_distinct_id(
    user: models.Model, field: str, user_model: type[models.Model], adapter: ProfileAdapter
) -> str:
    if not isinstance(user, user_model):
        raise FynoValidationError(
            field, f"must be a {user_model.__name__} or a distinct id, not a {type(user).__name__}"
        )
    # _state.adding also catches a model whose pk has a default (UUIDField) but was never saved.
    if user.pk is None or user._state.adding:
        raise FynoValidationError(field, "is an unsaved user: save it before notifying it")
    try:
        return adapter.checked_distinct_id(user)
    except FynoValidationError as error:
        raise FynoValidationError(field, error.message) from None


def _distinct_id(
    recipient: Any, field: str, user_model: type[models.Model], adapter: ProfileAdapter
) -> str:
    if isinstance(recipient, str):
        distinct_id = check.check_distinct_id(recipient, field)
    elif isinstance(recipient, models.Model):
        distinct_id = _user_distinct_id(recipient, field, user_model, adapter)
    else:
        raise FynoValidationError(
            field, f"must be a user or a distinct id string, not {type(recipient).__name__}"
        )
    return _check_length(distinct_id, field)


def resolve_distinct_id(recipient: Any, field: str = "to") -> str:
    """The distinct id of ``recipient``: a saved user (through the adapter) or a distinct id.

    Raises :class:`FynoValidationError` for an unsaved user or a blank id.
    """
    return _distinct_id(recipient, field, get_user_model(), get_adapter())


def _workspace_of(recipient: Any) -> Workspace:
    """The workspace a message to ``recipient`` goes to: its user's, else the project's."""
    return workspace_for(recipient if isinstance(recipient, models.Model) else None)


def _recipients(recipients: Iterable[Any]) -> list[tuple[str, Workspace]]:
    """Each recipient's distinct id and workspace, in order, each once; iterates
    ``recipients`` once (a queryset costs its one SELECT, and the adapter reads
    only the loaded rows)."""
    user_model, adapter = get_user_model(), get_adapter()
    listed = list(recipients)
    found = [
        _distinct_id(recipient, f"to[{index}]", user_model, adapter)
        for index, recipient in enumerate(listed)
    ]
    if not found:
        raise FynoValidationError("to", "names no recipient")
    users = [r if isinstance(r, models.Model) else None for r in listed]
    workspaces = workspaces_for(users)
    # A recipient listed twice is notified once.
    return list(dict(zip(found, workspaces, strict=True)).items())


def _check_event(event: Any) -> str:
    return _check_length(check.check_text(event, "event"), "event")


def _check_data(data: Any) -> dict[str, Any]:
    if data is None:
        return {}
    checked = check.check_data(data)
    try:
        text = json.dumps(checked, allow_nan=False)
    except (TypeError, ValueError) as error:
        # json's messages name the type ("Object of type datetime…"), never the value.
        raise FynoValidationError("data", f"must be JSON-serialisable: {error}") from None
    # The row then holds exactly what is sent (and what it reads back from the database).
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _check_callback(callback: Any) -> dict[str, Any]:
    if callback is None:
        return {}
    if not isinstance(callback, Mapping):
        raise FynoValidationError("callback", f"must be a mapping of {', '.join(CALLBACK_FIELDS)}")
    if "custom_id" in callback:
        raise FynoValidationError(
            "callback.custom_id",
            "is reserved: django-fyno sends the outbox row's id so delivery reports find the row",
        )
    unknown = [key for key in callback if key not in CALLBACK_FIELDS]
    if unknown:
        raise FynoValidationError(
            "callback",
            f"unknown keys {check.describe_keys(unknown)}; expected {', '.join(CALLBACK_FIELDS)}",
        )
    checked: dict[str, Any] = {}
    for key in ("custom1", "custom2", "custom3"):
        if key in callback:
            checked[key] = check.check_text(callback[key], f"callback.{key}")
    if "allowlist_url" in callback:
        checked["allowlist_url"] = _check_allowlist_url(callback["allowlist_url"])
    return checked


def _check_allowlist_url(urls: Any) -> str | list[str]:
    """Fyno takes one allowlist URL name, or a list of them."""
    field = "callback.allowlist_url"
    if isinstance(urls, str):
        return check.check_text(urls, field)
    if not isinstance(urls, (list, tuple)) or not urls:
        raise FynoValidationError(
            field, "must be an allowlist URL name or a non-empty list of names"
        )
    return [check.check_text(name, f"{field}[{index}]") for index, name in enumerate(urls)]


def _check_dedupe_key(dedupe_key: Any) -> str | None:
    if dedupe_key is None:
        return None
    return _check_length(check.check_text(dedupe_key, "dedupe_key"), "dedupe_key")


def _db(using: str | None) -> str:
    return using or router.db_for_write(FynoOutbox)


def _insert_once(row: FynoOutbox, using: str) -> tuple[FynoOutbox, bool]:
    """Insert a row carrying a dedupe key, or return the row already holding its scope.

    The unique constraint (on ``dedupe_hash``) decides under concurrency; the
    savepoint keeps the caller's transaction usable after the IntegrityError.
    """
    try:
        with transaction.atomic(using=using):
            row.save(using=using, force_insert=True)
    except IntegrityError:
        existing = FynoOutbox.objects.using(using).filter(dedupe_hash=row.dedupe_hash).first()
        if existing is None:
            raise  # another constraint failed: not a duplicate
        return existing, False
    return row, True


def _insert_many_once(rows: list[FynoOutbox], using: str) -> list[FynoOutbox]:
    """Insert the rows whose dedupe scope is new; return every scope's row, in order.

    ``ON CONFLICT DO NOTHING`` never raises, so the caller's transaction stays
    usable and a concurrent notify with the same keys cannot fail this one.
    """
    manager = FynoOutbox.objects.using(using)
    manager.bulk_create(rows, batch_size=INSERT_BATCH_SIZE, ignore_conflicts=True)
    hashes = [row.dedupe_hash for row in rows]
    stored: dict[str | None, FynoOutbox] = {}
    for start in range(0, len(hashes), INSERT_BATCH_SIZE):
        chunk = hashes[start : start + INSERT_BATCH_SIZE]
        stored.update((row.dedupe_hash, row) for row in manager.filter(dedupe_hash__in=chunk))
    return [stored[key] for key in hashes]


@overload
def notify(
    event: str,
    to: str | models.Model | Mapping[str, str],
    data: Mapping[str, Any] | None = None,
    *,
    destinations: Mapping[str, str] | None = None,
    callback: Mapping[str, Any] | None = None,
    dedupe_key: str | None = None,
    using: str | None = None,
) -> FynoOutbox: ...


@overload
def notify(
    event: str,
    to: Iterable[Any],
    data: Mapping[str, Any] | None = None,
    *,
    destinations: Mapping[str, str] | None = None,
    callback: Mapping[str, Any] | None = None,
    dedupe_key: str | None = None,
    using: str | None = None,
) -> list[FynoOutbox]: ...


def notify(
    event: str,
    to: Any,
    data: Mapping[str, Any] | None = None,
    *,
    destinations: Mapping[str, str] | None = None,
    callback: Mapping[str, Any] | None = None,
    dedupe_key: str | None = None,
    using: str | None = None,
) -> FynoOutbox | list[FynoOutbox]:
    """Send Fyno ``event`` to ``to``: stored now in the outbox, delivered after commit.

    ``to`` is one recipient (a saved user, a distinct id, or a mapping of
    explicit destinations such as ``{"email": ..., "sms": ...}``), returning
    its row; or many (a queryset or list of users or distinct ids), returning
    one row per distinct recipient. ``destinations`` adds explicit destinations
    to one user or distinct id (Fyno merges them over the profile's channels).

    ``dedupe_key`` is scoped to ``event``: a call whose event and key are
    already stored stores nothing and returns the stored row. With many
    recipients the scope also holds each recipient, so a re-run stores rows
    only for recipients not yet notified. Every row keeps the key as given.

    Raises :class:`FynoValidationError`, before anything is written (the
    database never sees the bad value, and the caller's transaction stays
    usable), for an unknown recipient or invalid destinations, data,
    callback, event name or key: including a NUL character or a surrogate in
    any string, a number JSON cannot hold exactly, or data nested deeper
    than ``MAX_DEPTH`` levels.
    """
    event = _check_event(event)
    payload = _check_data(data)
    extra_callback = _check_callback(callback)
    key = _check_dedupe_key(dedupe_key)
    db = _db(using)

    with_links = fyno_settings.ADD_LINKS_TO_EVENTS

    def row(
        workspace: Workspace, distinct_id: str = "", channels: dict[str, str] | None = None
    ) -> FynoOutbox:
        # A copy per row: rows handed back must not share mutable state.
        data = json.loads(json.dumps(payload))
        if with_links and distinct_id:
            # Signed for this recipient; what the caller's data already says wins.
            data = {**links.links_for(distinct_id, workspace), **data}
        return FynoOutbox(
            kind=str(FynoOutbox.Kind.EVENT),
            event=event,
            distinct_id=distinct_id,
            to=channels or {},
            payload=data,
            callback=dict(extra_callback),
            dedupe_key=key,
            dedupe_hash=None if key is None else FynoOutbox.dedupe_hash_for(event, key),
            **workspace.fields(),
        )

    if isinstance(to, Mapping):
        if destinations is not None:
            raise FynoValidationError(
                "destinations", "give destinations with a user or distinct id in `to`"
            )
        single = row(workspace_for(None), channels=check.check_to(to, "to"))
    elif isinstance(to, (str, models.Model)):
        checked_to = None if destinations is None else check.check_to(destinations, "destinations")
        single = row(_workspace_of(to), resolve_distinct_id(to), checked_to)
    elif isinstance(to, Iterable) and not isinstance(to, bytes):
        if destinations is not None:
            # The same destinations for everyone would send every copy to one address.
            raise FynoValidationError("destinations", "can only go with one recipient")
        rows = [row(workspace, distinct_id) for distinct_id, workspace in _recipients(to)]
        if key is not None:
            for item in rows:
                item.dedupe_hash = FynoOutbox.dedupe_hash_for(event, key, item.distinct_id)
            created = _insert_many_once(rows, db)
        else:
            created = FynoOutbox.objects.using(db).bulk_create(rows, batch_size=INSERT_BATCH_SIZE)
        outbox.schedule_delivery({Workspace.of(item) for item in created}, db)
        return created
    else:
        raise FynoValidationError(
            "to",
            "must be a user, a distinct id, a mapping of destinations, "
            f"or a list or queryset of users or distinct ids, not {type(to).__name__}",
        )

    if key is not None:
        stored, inserted = _insert_once(single, db)
        if inserted:
            outbox.schedule_delivery([Workspace.of(stored)], db)
        return stored
    single.save(using=db, force_insert=True)
    outbox.schedule_delivery([Workspace.of(single)], db)
    return single


class PropertyUpdates:
    """Property operations on one Fyno profile, each stored as one outbox row.

    Every method validates its values, writes one row and returns ``self``,
    so calls chain: ``properties(user).add("logins", 1).set(plan="pro")``.
    The rows written so far are in :attr:`rows`.
    """

    def __init__(self, distinct_id: str, using: str, workspace: Workspace) -> None:
        self.distinct_id = distinct_id
        self.using = using
        self.workspace = workspace
        self.rows: list[FynoOutbox] = []

    def __repr__(self) -> str:
        return f"<PropertyUpdates for {self.distinct_id!r}>"

    def _write(self, operation: str, payload: dict[str, Any]) -> PropertyUpdates:
        row = FynoOutbox(
            kind=str(FynoOutbox.Kind.PROPERTY),
            event=operation,
            distinct_id=self.distinct_id,
            payload=payload,
            **self.workspace.fields(),
        )
        row.save(using=self.using, force_insert=True)
        self.rows.append(row)
        outbox.schedule_delivery([self.workspace], self.using)
        return self

    @staticmethod
    def _values(operation: str, name: Any, value: Any, values: dict[str, Any]) -> dict[str, Any]:
        """``(name, value)`` and ``**values`` as one mapping (names that are not
        identifiers need the positional form)."""
        if name is _MISSING:
            return values
        if not isinstance(name, str):  # a list would not even be hashable
            raise FynoValidationError(
                f"{operation}.{check.label(name)}", "the property name must be a non-empty string"
            )
        if value is _MISSING:
            raise FynoValidationError(f"{operation}.{check.label(name)}", "give a value")
        if name in values:
            raise FynoValidationError(f"{operation}.{check.label(name)}", "given twice")
        return {name: value, **values}

    def set(self, name: Any = _MISSING, value: Any = _MISSING, /, **values: Any) -> PropertyUpdates:
        """``$set``: strings (at most 255 characters), numbers, booleans or lists of those."""
        merged = self._values("$set", name, value, values)
        return self._write("$set", check.check_property_values(merged, "$set"))

    def set_once(
        self, name: Any = _MISSING, value: Any = _MISSING, /, **values: Any
    ) -> PropertyUpdates:
        """``$once``: like :meth:`set`, but Fyno keeps a property that already has a value."""
        merged = self._values("$once", name, value, values)
        return self._write("$once", check.check_property_values(merged, "$once"))

    def add(
        self, name: Any = _MISSING, number: Any = _MISSING, /, **numbers: Any
    ) -> PropertyUpdates:
        """``$add``: add numbers (negative to subtract)."""
        merged = self._values("$add", name, number, numbers)
        return self._write("$add", check.check_number_values(merged, "$add"))

    def append(
        self, name: Any = _MISSING, value: Any = _MISSING, /, **values: Any
    ) -> PropertyUpdates:
        """``$append``: add one string or number to each named list."""
        merged = self._values("$append", name, value, values)
        return self._write("$append", check.check_list_values(merged, "$append"))

    def remove(
        self, name: Any = _MISSING, value: Any = _MISSING, /, **values: Any
    ) -> PropertyUpdates:
        """``$remove``: remove one string or number from each named list."""
        merged = self._values("$remove", name, value, values)
        return self._write("$remove", check.check_list_values(merged, "$remove"))

    def unset(self, *names: str) -> PropertyUpdates:
        """``$unset``: delete the named properties."""
        checked = list(dict.fromkeys(check.check_unset(names, "$unset")))
        return self._write("$unset", {"names": checked})


def properties(user_or_distinct_id: Any, *, using: str | None = None) -> PropertyUpdates:
    """Property operations for one profile: ``properties(user).add("logins", 1)``.

    Raises :class:`FynoValidationError` for an unsaved user or a blank distinct id.
    """
    return PropertyUpdates(
        resolve_distinct_id(user_or_distinct_id, "distinct_id"),
        _db(using),
        _workspace_of(user_or_distinct_id),
    )


def verify_otp(
    otp: str,
    *,
    request_id: str | None = None,
    destination: str | None = None,
    user: Any = None,
) -> bool:
    """Ask Fyno now whether ``otp`` is right: True, or False for a wrong code.

    Give the ``request_id`` of the OTP event or its ``destination``, not both;
    ``user`` picks the workspace when ``FYNO["CLIENT_RESOLVER"]`` is set.
    Transport failures, 5xx and 429 raise :class:`FynoTransientError`
    subclasses; other refusals raise :class:`FynoAPIError` subclasses.
    """
    return get_client(user).verify_otp(otp, request_id=request_id, destination=destination)
