"""ProfileAdapter: how a project's user model maps to a Fyno profile.

Subclass it and name the subclass in ``FYNO["PROFILE_ADAPTER"]`` (like
django-allauth's adapters); :func:`get_adapter` resolves it when used.

The ``get_*`` methods return raw values; :meth:`ProfileAdapter.build_payload`
normalises them. A value Fyno would reject (an invalid email, a phone number
that is not E.164, an unknown timezone, a string over 255 characters or with
a NUL character or a surrogate, an unknown channel, a property of an
unsupported type or a number JSON cannot hold exactly) is dropped from the payload
with one warning on the ``django_fyno.adapter`` logger, so one bad field never
fails a user's sync. The warning names the user's distinct id and the field,
never the rejected value: it is personal data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any, ClassVar

from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.core.validators import validate_email
from django.utils.module_loading import import_string

from django_fyno.client.validation import (
    CHANNELS,
    MAX_PROPERTY_STRING,
    PHONE_CHANNELS,
    TOKEN_CHANNELS,
    check_phone,
    check_property_values,
    check_timezone,
    describe,
    text_problem,
)
from django_fyno.conf import fyno_settings
from django_fyno.exceptions import FynoConfigurationError, FynoValidationError

__all__ = [
    "SYNCED_CHANNELS",
    "ProfileAdapter",
    "ProfilePayload",
    "get_adapter",
    "load_adapter_class",
]

logger = logging.getLogger(__name__)

# Channels a profile sync owns: one destination each. push/inapp hold token
# lists that Fyno's SDKs register directly, so the sync never produces them.
SYNCED_CHANNELS: frozenset[str] = CHANNELS - TOKEN_CHANNELS

# Characters people type inside phone numbers ("+1 (415) 555-0100"): removed
# before the E.164 check, so a well-formed but formatted number is kept.
_PHONE_FORMATTING = str.maketrans("", "", " -().\u00a0")


@dataclass(frozen=True)
class ProfilePayload:
    """Everything we tell Fyno about one user, already normalised.

    ``channels`` holds single-destination channels only (email, sms, whatsapp,
    voice, slack, teams, discord): push/inapp tokens belong to Fyno's SDKs.
    """

    distinct_id: str
    name: str | None = None
    timezone: str | None = None
    status: int = 1
    channels: dict[str, str] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)

    def digest(self) -> str:
        """sha256 of the canonical JSON: equal payloads, equal digests."""
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()


class ProfileAdapter:
    """The default mapping; override any method in a subclass.

    Getters may return raw values (``None`` or ``""`` mean "nothing"):
    :meth:`build_payload` validates them. Set :attr:`sync_fields` to name the
    model fields your overrides read.
    """

    #: Model fields whose change matters. ``None``: email, first/last name,
    #: ``is_active`` and the ``PHONE_ATTRIBUTE`` field, those the model has.
    sync_fields: ClassVar[Iterable[str] | None] = None

    def get_distinct_id(self, user: Any) -> str:
        """The Fyno distinct id: the primary key as a string (int or UUID alike)."""
        return str(user.pk)

    def should_sync(self, user: Any) -> bool:
        """False keeps this user out of Fyno (e.g. service accounts)."""
        return True

    def get_name(self, user: Any) -> str | None:
        """Display name; ``get_full_name()`` when the model has it."""
        full_name = getattr(user, "get_full_name", None)
        name = full_name() if callable(full_name) else ""
        return (name or "").strip() or None

    def get_channels(self, user: Any) -> dict[str, str]:
        """Channel name -> destination: email from ``EMAIL_FIELD``, phone channels
        from ``FYNO["PHONE_ATTRIBUTE"]``."""
        channels: dict[str, str] = {}
        email_field = getattr(user, "get_email_field_name", lambda: "email")()
        email = getattr(user, email_field, "") or ""
        if email:
            channels["email"] = email
        phone_attribute = fyno_settings.PHONE_ATTRIBUTE
        phone = getattr(user, phone_attribute, "") if phone_attribute else ""
        if phone:
            # A phone-number object (e.g. django-phonenumber-field) prints as E.164.
            phone = str(phone)
            channels.update(sms=phone, whatsapp=phone, voice=phone)
        return channels

    def get_timezone(self, user: Any) -> str | None:
        """One of Fyno's timezone names, or None (Fyno's workspace default)."""
        return None

    def get_status(self, user: Any) -> int:
        """1 (active) or 0: Fyno sends nothing to an inactive user."""
        return 1 if getattr(user, "is_active", True) else 0

    def get_properties(self, user: Any) -> dict[str, Any]:
        """``$set`` properties derived from the user: str, int, float, bool or lists of those."""
        return {}

    def get_sync_fields(self) -> frozenset[str]:
        """Model fields whose change matters; a save touching none of them is ignored.

        Only fields the user model has are returned, so a ``save(update_fields=...)``
        can be compared with it directly.
        """
        user_model = get_user_model()
        if self.sync_fields is not None:
            names = set(self.sync_fields)
        else:
            names = {user_model.get_email_field_name(), "first_name", "last_name", "is_active"}
            if fyno_settings.PHONE_ATTRIBUTE:
                names.add(fyno_settings.PHONE_ATTRIBUTE)
        return frozenset(name for name in names if _model_has_field(user_model, name))

    def checked_distinct_id(self, user: Any) -> str:
        """:meth:`get_distinct_id`, checked: the one rule sync, ``notify()`` and
        ``properties()`` share.

        An int or UUID is turned into its string. Raises
        :class:`FynoValidationError` (field ``distinct_id``) for an empty or
        over-long id: a bug in the adapter, not in the user's data.
        """
        return _check_distinct_id(self.get_distinct_id(user))

    def build_payload(self, user: Any) -> ProfilePayload:
        """The normalised payload for ``user``; invalid values are dropped with a warning.

        Raises :class:`FynoValidationError` only when :meth:`get_distinct_id`
        returns an empty (or over-long) id: that is a bug in the adapter, not in the
        user's data, and no profile can be addressed without an id.
        """
        distinct_id = self.checked_distinct_id(user)
        return ProfilePayload(
            distinct_id=distinct_id,
            name=_normalise_name(distinct_id, self.get_name(user)),
            timezone=_normalise_timezone(distinct_id, self.get_timezone(user)),
            status=_normalise_status(distinct_id, self.get_status(user), user),
            channels=_normalise_channels(distinct_id, self.get_channels(user)),
            properties=_normalise_properties(distinct_id, self.get_properties(user)),
        )


def _model_has_field(model: Any, name: str) -> bool:
    try:
        model._meta.get_field(name)
    except FieldDoesNotExist:
        return False
    return True


def _drop(distinct_id: str, what: str, reason: str) -> None:
    """The one warning for one dropped field; never include the value itself."""
    logger.warning(
        "Fyno profile %s: dropped %s (%s)",
        distinct_id,
        what,
        reason,
        extra={"fyno_distinct_id": distinct_id, "fyno_field": what},
    )


def _blank(value: Any) -> bool:
    """None and empty strings mean "the user has none": omitted without a warning."""
    return value is None or (isinstance(value, str) and not value.strip())


def _check_distinct_id(value: Any) -> str:
    """Raise on an id no profile can have: a bug in the adapter, not bad user data."""
    too_long = f"get_distinct_id() must return at most {MAX_PROPERTY_STRING} characters"
    if isinstance(value, uuid.UUID) or (isinstance(value, int) and not isinstance(value, bool)):
        try:
            value = str(value)
        except ValueError:  # an int of more than 4,300 digits
            raise FynoValidationError("distinct_id", too_long) from None
    if not isinstance(value, str) or not value.strip():
        raise FynoValidationError("distinct_id", "get_distinct_id() must return a non-empty string")
    problem = text_problem(value)
    if problem is not None:
        raise FynoValidationError(
            "distinct_id", f"get_distinct_id() returned a string that {problem}"
        )
    if len(value) > MAX_PROPERTY_STRING:
        # The profile mirror stores it in a 255-character column.
        raise FynoValidationError("distinct_id", too_long)
    return value


def _normalise_name(distinct_id: str, name: Any) -> str | None:
    if _blank(name):
        return None
    if not isinstance(name, str):
        _drop(distinct_id, "name", "not a string")
        return None
    text: str = name.strip()
    if len(text) > MAX_PROPERTY_STRING:
        _drop(distinct_id, "name", f"longer than {MAX_PROPERTY_STRING} characters")
        return None
    problem = text_problem(text)
    if problem is not None:
        _drop(distinct_id, "name", problem)
        return None
    return text


def _normalise_timezone(distinct_id: str, timezone: Any) -> str | None:
    if _blank(timezone):
        return None
    try:
        # zoneinfo.ZoneInfo (and pytz) zones print as their IANA key.
        name = str(timezone).strip()
        return check_timezone(name)
    except (FynoValidationError, ValueError):  # ValueError: str() of a 4,300-digit int
        _drop(distinct_id, "timezone", "not one of the timezones Fyno accepts")
        return None


def _normalise_status(distinct_id: str, status: Any, user: Any) -> int:
    if status in (0, 1):  # True/False compare equal to 1/0: coerce them to int
        return int(status)
    _drop(distinct_id, "status", "must be 1 or 0; is_active decides instead")
    return 1 if getattr(user, "is_active", True) else 0


def _channel_problem(channel: Any, value: Any) -> tuple[str | None, str]:
    """(reason to drop or None, normalised value)."""
    if not isinstance(channel, str) or channel not in CHANNELS:
        return "not a channel Fyno knows", ""
    if channel in TOKEN_CHANNELS:
        return "push/inapp tokens are registered by Fyno's SDKs, not synced", ""
    if not isinstance(value, str):
        return "not a string", ""
    problem = text_problem(value)
    if problem is not None:
        return problem, ""
    value = value.strip()
    if channel in PHONE_CHANNELS:
        value = value.translate(_PHONE_FORMATTING)
        try:
            return None, check_phone(value, channel)
        except FynoValidationError:
            return "not an E.164 phone number such as +14155550100", ""
    if channel == "email":
        try:
            validate_email(value)
        except ValidationError:
            return "not a valid email address", ""
    return None, value


def _normalise_channels(distinct_id: str, channels: Mapping[Any, Any]) -> dict[str, str]:
    kept: dict[str, str] = {}
    # One bad phone number fills sms, whatsapp and voice: warn once for all three.
    dropped: dict[tuple[str, object], list[str]] = {}
    for channel, value in channels.items():
        if _blank(value):
            continue
        reason, normalised = _channel_problem(channel, value)
        if reason is None:
            kept[channel] = normalised
        else:
            same_value = value if isinstance(value, str) else id(value)
            dropped.setdefault((reason, same_value), []).append(describe(channel))
    for (reason, _), names in dropped.items():
        what = f"channel {names[0]}" if len(names) == 1 else f"channels {', '.join(names)}"
        _drop(distinct_id, what, reason)
    return kept


def _normalise_properties(distinct_id: str, properties: Mapping[Any, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for name, value in properties.items():
        if not isinstance(name, str) or not name.strip():
            _drop(distinct_id, "a property", "its name is not a non-empty string")
            continue
        if value is None:
            # Nothing to $set; clearing a property is an explicit $unset call.
            continue
        try:
            kept.update(check_property_values({name: value}, "properties"))
        except FynoValidationError as error:
            # The checks' messages never hold the value.
            _drop(distinct_id, f"property {describe(name)}", error.message)
    return kept


def load_adapter_class(path: Any) -> type[ProfileAdapter]:
    """The :class:`ProfileAdapter` subclass at dotted ``path``.

    Raises :class:`FynoConfigurationError` when it does not import or is not a
    ProfileAdapter subclass (system check ``fyno.E006`` reports the same).
    """
    if not isinstance(path, str) or not path:
        raise FynoConfigurationError(
            f"FYNO['PROFILE_ADAPTER'] must be a dotted path string, not {path!r}."
        )
    try:
        adapter_class = import_string(path)
    except ImportError as error:
        raise FynoConfigurationError(
            f"FYNO['PROFILE_ADAPTER'] = {path!r} cannot be imported: {error}"
        ) from error
    if not (isinstance(adapter_class, type) and issubclass(adapter_class, ProfileAdapter)):
        raise FynoConfigurationError(
            f"FYNO['PROFILE_ADAPTER'] = {path!r} is not a subclass of "
            "django_fyno.adapter.ProfileAdapter."
        )
    return adapter_class


# One instance per dotted path: adapters hold no per-user state, and a sync
# batch asks for the adapter once per user.
@cache
def _adapter_for(path: str) -> ProfileAdapter:
    return load_adapter_class(path)()


def get_adapter() -> ProfileAdapter:
    """The adapter named in ``FYNO["PROFILE_ADAPTER"]``, one instance per dotted path.

    The setting is read at each call, so ``override_settings`` takes effect.
    Raises :class:`FynoConfigurationError` when the path is wrong.
    """
    path = fyno_settings.PROFILE_ADAPTER
    if not isinstance(path, str):
        load_adapter_class(path)  # raises, with the message E006 shows too
    return _adapter_for(path)
