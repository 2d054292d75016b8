"""Local checks run before any HTTP request, so a bad input fails fast and names its field.

Each check raises :class:`FynoValidationError` (``field`` says where) and
returns the value in the shape the API wants.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .exceptions import FynoValidationError
from .timezones import TIMEZONES

__all__ = [
    "CHANNELS",
    "E164",
    "MAX_PROPERTY_STRING",
    "PREFERENCE_CHANNELS",
    "PREFERENCE_VALUES",
    "check_batch_action",
    "check_callback",
    "check_channel_names",
    "check_data",
    "check_distinct_id",
    "check_distinct_ids",
    "check_list_values",
    "check_number_values",
    "check_phone",
    "check_preference_channel",
    "check_preference_value",
    "check_profile_channel",
    "check_property_values",
    "check_status",
    "check_text",
    "check_timezone",
    "check_to",
    "check_unset",
    "check_user_preference",
]

# Channels of `to`, profile `channel` and channel deletion.
CHANNELS = frozenset(
    {"sms", "whatsapp", "email", "push", "inapp", "slack", "discord", "teams", "voice"}
)
# Preferences also know web push.
PREFERENCE_CHANNELS = CHANNELS | {"webpush"}
PREFERENCE_VALUES = frozenset({"opted-in", "opted-out"})
PHONE_CHANNELS = frozenset({"sms", "whatsapp", "voice"})
TOKEN_CHANNELS = frozenset({"push", "inapp"})
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
MAX_PROPERTY_STRING = 255
_PROPERTY_OPERATORS = ("$set", "$once", "$add", "$append", "$remove", "$unset")


def _fail(field: str, message: str) -> FynoValidationError:
    return FynoValidationError(field, message)


def check_text(value: object, field: str) -> str:
    """A non-blank string."""
    if not isinstance(value, str) or not value.strip():
        raise _fail(field, "must be a non-empty string")
    return value


def check_distinct_id(value: object, field: str = "distinct_id") -> str:
    """A non-blank distinct id."""
    return check_text(value, field)


def check_distinct_ids(values: object, field: str = "distinct_id") -> list[str]:
    """A non-empty list of non-blank distinct ids."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise _fail(field, "must be a list of distinct ids")
    found = [check_distinct_id(value, f"{field}[{index}]") for index, value in enumerate(values)]
    if not found:
        raise _fail(field, "must name at least one distinct id")
    return found


def check_timezone(value: object, field: str = "timezone") -> str:
    """One of the contract's timezone names."""
    if not isinstance(value, str) or value not in TIMEZONES:
        raise _fail(field, f"{value!r} is not a timezone Fyno accepts")
    return value


def check_status(value: object, field: str = "status") -> int:
    """1 (active) or 0 (inactive); bools are refused to avoid True/False surprises."""
    if isinstance(value, bool) or value not in (0, 1):
        raise _fail(field, "must be 1 (active) or 0 (inactive)")
    return 1 if value == 1 else 0


def check_phone(value: object, field: str) -> str:
    """An E.164 number such as +919879000000."""
    if not isinstance(value, str) or not E164.match(value):
        raise _fail(field, "must be an E.164 phone number such as +919879000000")
    return value


def _check_channel_name(name: object, field: str, allowed: frozenset[str]) -> str:
    if not isinstance(name, str) or name not in allowed:
        raise _fail(field, f"unknown channel {name!r}; expected one of {sorted(allowed)}")
    return name


def check_to(to: object, field: str = "to") -> dict[str, str]:
    """Event destinations: channel -> one string, phone channels in E.164."""
    if not isinstance(to, Mapping) or not to:
        raise _fail(field, "must be a non-empty mapping of channel to destination")
    checked: dict[str, str] = {}
    for channel, destination in to.items():
        name = _check_channel_name(channel, f"{field}.{channel}", CHANNELS)
        where = f"{field}.{name}"
        if name in PHONE_CHANNELS:
            checked[name] = check_phone(destination, where)
        else:
            checked[name] = check_text(destination, where)
    return checked


def _check_tokens(tokens: object, field: str) -> list[dict[str, Any]]:
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence):
        raise _fail(field, "must be a list of {token, integration_id?, status?} objects")
    checked = []
    for index, token in enumerate(tokens):
        where = f"{field}[{index}]"
        if not isinstance(token, Mapping):
            raise _fail(where, "must be a {token, integration_id?, status?} object")
        unknown = set(token) - {"token", "integration_id", "status"}
        if unknown:
            raise _fail(where, f"unknown keys {sorted(unknown)}")
        entry: dict[str, Any] = {"token": check_text(token.get("token"), f"{where}.token")}
        if token.get("integration_id") is not None:
            entry["integration_id"] = check_text(token["integration_id"], f"{where}.integration_id")
        if token.get("status") is not None:
            entry["status"] = check_status(token["status"], f"{where}.status")
        checked.append(entry)
    return checked


def check_profile_channel(channel: object, field: str = "channel") -> dict[str, Any]:
    """Profile channel data: scalar destinations, and token lists for push/inapp."""
    if not isinstance(channel, Mapping) or not channel:
        raise _fail(field, "must be a non-empty mapping of channel to destination")
    checked: dict[str, Any] = {}
    for name, value in channel.items():
        name = _check_channel_name(name, f"{field}.{name}", CHANNELS)
        where = f"{field}.{name}"
        if name in TOKEN_CHANNELS:
            checked[name] = _check_tokens(value, where)
        elif name in PHONE_CHANNELS:
            checked[name] = check_phone(value, where)
        else:
            checked[name] = check_text(value, where)
    return checked


def check_channel_names(names: object, field: str = "channels") -> list[str]:
    """A non-empty list of known channel names."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        raise _fail(field, "must be a list of channel names")
    found = [
        _check_channel_name(name, f"{field}[{index}]", CHANNELS) for index, name in enumerate(names)
    ]
    if not found:
        raise _fail(field, "must name at least one channel")
    return found


def check_preference_channel(name: object, field: str = "channel") -> str:
    """A channel that preferences know (the event channels and webpush)."""
    return _check_channel_name(name, field, PREFERENCE_CHANNELS)


def check_preference_value(value: object, field: str) -> str:
    """'opted-in' or 'opted-out'."""
    if not isinstance(value, str) or value not in PREFERENCE_VALUES:
        raise _fail(field, "must be 'opted-in' or 'opted-out'")
    return value


def check_user_preference(preferences: object, field: str = "preferences") -> dict[str, Any]:
    """``{subscription_id or "all": {channel: "opted-in"|"opted-out"}}``, none of it empty."""
    if not isinstance(preferences, Mapping) or not preferences:
        raise _fail(field, "must map subscription ids (or 'all') to channel preferences")
    checked: dict[str, dict[str, str]] = {}
    for subscription_id, channels in preferences.items():
        where = f"{field}.{subscription_id}"
        check_text(subscription_id, where)
        if not isinstance(channels, Mapping) or not channels:
            raise _fail(where, "must map channels to 'opted-in' or 'opted-out'")
        checked[subscription_id] = {
            check_preference_channel(channel, f"{where}.{channel}"): check_preference_value(
                value, f"{where}.{channel}"
            )
            for channel, value in channels.items()
        }
    return checked


def check_data(data: object, field: str = "data") -> dict[str, Any]:
    """Template placeholders: a mapping."""
    if not isinstance(data, Mapping):
        raise _fail(field, "must be a mapping of placeholder names to values")
    return dict(data)


def check_callback(callback: object, field: str = "callback") -> dict[str, Any]:
    """Delivery-report echo fields; ``custom_id`` is required."""
    if not isinstance(callback, Mapping):
        raise _fail(field, "must be a mapping with at least 'custom_id'")
    check_text(callback.get("custom_id"), f"{field}.custom_id")
    return dict(callback)


def _property_names(values: object, field: str) -> Mapping[Any, Any]:
    if not isinstance(values, Mapping) or not values:
        raise _fail(field, "must be a non-empty mapping of property names to values")
    for name in values:
        check_text(name, f"{field}.{name}")
    return values


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_scalar(value: object, field: str, *, allow_bool: bool) -> None:
    if isinstance(value, str):
        if len(value) > MAX_PROPERTY_STRING:
            raise _fail(field, f"strings are limited to {MAX_PROPERTY_STRING} characters")
    elif isinstance(value, bool):
        if not allow_bool:
            raise _fail(field, "must be a single number or string")
    elif not _is_number(value):
        raise _fail(field, "must be a string, a finite number or a boolean")


def check_property_values(values: object, field: str) -> dict[str, Any]:
    """``$set``/``$once`` values: string (<= 255 chars), number, boolean or a list of those."""
    checked = dict(_property_names(values, field))
    for name, value in checked.items():
        where = f"{field}.{name}"
        if isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                _check_scalar(item, f"{where}[{index}]", allow_bool=True)
            checked[name] = list(value)
        else:
            _check_scalar(value, where, allow_bool=True)
    return checked


def check_number_values(values: object, field: str) -> dict[str, Any]:
    """``$add`` values: finite numbers (negative to decrement)."""
    checked = dict(_property_names(values, field))
    for name, value in checked.items():
        if not _is_number(value):
            raise _fail(f"{field}.{name}", "must be a finite number (not a string or boolean)")
    return checked


def check_list_values(values: object, field: str) -> dict[str, Any]:
    """``$append``/``$remove`` values: one number or string per property."""
    checked = dict(_property_names(values, field))
    for name, value in checked.items():
        where = f"{field}.{name}"
        if not isinstance(value, str) and not _is_number(value):
            raise _fail(where, "must be a single number or string (one value per call)")
        _check_scalar(value, where, allow_bool=False)
    return checked


def check_unset(names: object, field: str = "$unset") -> list[str]:
    """``$unset``: a non-empty list of property names."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        raise _fail(field, "must be a list of property names")
    found = [check_text(name, f"{field}[{index}]") for index, name in enumerate(names)]
    if not found:
        raise _fail(field, "must name at least one property")
    return found


def check_batch_action(action: object, field: str) -> dict[str, Any]:
    """One batch item's ``action``: at least one of the six operators, each valid."""
    if not isinstance(action, Mapping) or not action:
        raise _fail(field, f"must be a mapping with at least one of {list(_PROPERTY_OPERATORS)}")
    unknown = set(action) - set(_PROPERTY_OPERATORS)
    if unknown:
        raise _fail(field, f"unknown operators {sorted(unknown)}")
    checkers = {
        "$set": check_property_values,
        "$once": check_property_values,
        "$add": check_number_values,
        "$append": check_list_values,
        "$remove": check_list_values,
    }
    checked: dict[str, Any] = {}
    for operator, values in action.items():
        where = f"{field}.{operator}"
        if operator == "$unset":
            checked[operator] = check_unset(values, where)
        else:
            checked[operator] = checkers[operator](values, where)
    return checked
