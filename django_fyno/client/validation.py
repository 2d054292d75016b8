"""Local checks run before any HTTP request, so a bad input fails fast and names its field.

Each check raises :class:`FynoValidationError` (``field`` says where) and
returns the value in the shape the API wants.

Besides each field's own rule, every string, key and number anywhere in the
input must be something Fyno and the databases hold exactly as given: no NUL
character (PostgreSQL refuses it), no surrogate code point (it has no UTF-8
form), integers within ``±MAX_SAFE_INTEGER`` and finite floats (Fyno reads
JSON numbers as doubles), and nested data at most ``MAX_DEPTH`` levels deep.
The checks are iterative (no ``RecursionError``), and a message never echoes
the value: a key in a ``field`` path is shown as is only when it is short and
printable, otherwise as an escaped excerpt.
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
    "MAX_DEPTH",
    "MAX_PROPERTY_STRING",
    "MAX_SAFE_INTEGER",
    "PREFERENCE_CHANNELS",
    "PREFERENCE_VALUES",
    "check_batch_action",
    "check_callback",
    "check_channel_names",
    "check_data",
    "check_distinct_id",
    "check_distinct_ids",
    "check_json",
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
    "describe",
    "describe_keys",
    "label",
    "number_problem",
    "text_problem",
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
#: Deepest nesting of mappings and lists in event data and callbacks; the value
#: itself is level 1 (the limit delivery reports have too).
MAX_DEPTH = 32
#: Largest integer magnitude: Fyno reads JSON numbers as IEEE doubles, which hold
#: every integer up to 2**53 - 1 exactly (JavaScript's ``Number.MAX_SAFE_INTEGER``).
MAX_SAFE_INTEGER = 2**53 - 1
_PROPERTY_OPERATORS = ("$set", "$once", "$add", "$append", "$remove", "$unset")
# Longest key or value shown as is in a field path or a message.
_MAX_SHOWN = 64
# NUL (PostgreSQL refuses it in text and jsonb) and surrogates (no UTF-8 form).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _fail(field: str, message: str) -> FynoValidationError:
    return FynoValidationError(field, message)


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be sent or stored as given, or None.

    A NUL character (PostgreSQL refuses it in text and JSON) or a surrogate code
    point (``"\\ud800"``: it has no UTF-8 encoding, and PostgreSQL refuses it).
    """
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "must not contain a NUL character"
    return "must not contain a surrogate code point (it has no UTF-8 encoding)"


def number_problem(value: int | float) -> str | None:
    """Why a number cannot be sent exactly, or None.

    An integer beyond ``±MAX_SAFE_INTEGER`` (Fyno's JSON numbers are doubles) or
    a NaN or infinite float (JSON has neither). Never converts an int to float.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return None
        return f"integers must be within ±{MAX_SAFE_INTEGER} (2**53 - 1)"
    if math.isfinite(value):
        return None
    return "must be a finite number"


def _shown_as_is(value: object) -> str | None:
    """``value`` as text when it is short and printable enough to show, else None."""
    if isinstance(value, str):
        text = value
    elif value is None or (isinstance(value, (int, float)) and number_problem(value) is None):
        text = repr(value)
    else:
        return None
    return text if len(text) <= _MAX_SHOWN and text.isprintable() else None


def describe(value: object) -> str:
    """A short, printable stand-in for ``value`` in a message: its ``repr`` when
    that is short and printable, else an escaped excerpt or its type."""
    text = _shown_as_is(value)
    if text is not None:
        return repr(value) if isinstance(value, str) else text
    if isinstance(value, str):
        excerpt = ascii(value[: _MAX_SHOWN // 2])
        return f"{excerpt}…" if len(value) > _MAX_SHOWN // 2 else excerpt
    return f"<{_type_name(value)}>"


def label(key: object) -> str:
    """``key`` as a step of a ``field`` path: as is when short and printable,
    else :func:`describe`'s escaped excerpt (``data.'k\\x00'``)."""
    text = _shown_as_is(key)
    return text if text is not None else describe(key)


def _type_name(value: object) -> str:
    name = type(value).__name__
    return name if len(name) <= _MAX_SHOWN and name.isprintable() else "object"


def check_text(value: object, field: str) -> str:
    """A non-blank string without NUL characters or surrogates."""
    if not isinstance(value, str) or not value.strip():
        raise _fail(field, "must be a non-empty string")
    problem = text_problem(value)
    if problem is not None:
        raise _fail(field, problem)
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
        raise _fail(field, f"{describe(value)} is not a timezone Fyno accepts")
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
        raise _fail(field, f"unknown channel {describe(name)}; expected one of {sorted(allowed)}")
    return name


def check_to(to: object, field: str = "to") -> dict[str, str]:
    """Event destinations: channel -> one string, phone channels in E.164."""
    if not isinstance(to, Mapping) or not to:
        raise _fail(field, "must be a non-empty mapping of channel to destination")
    checked: dict[str, str] = {}
    for channel, destination in to.items():
        name = _check_channel_name(channel, f"{field}.{label(channel)}", CHANNELS)
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
        unknown = [key for key in token if key not in ("token", "integration_id", "status")]
        if unknown:
            raise _fail(where, f"unknown keys {describe_keys(unknown)}")
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
        name = _check_channel_name(name, f"{field}.{label(name)}", CHANNELS)
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
        where = f"{field}.{label(subscription_id)}"
        check_text(subscription_id, where)
        if not isinstance(channels, Mapping) or not channels:
            raise _fail(where, "must map channels to 'opted-in' or 'opted-out'")
        checked[subscription_id] = {
            check_preference_channel(channel, f"{where}.{label(channel)}"): check_preference_value(
                value, f"{where}.{label(channel)}"
            )
            for channel, value in channels.items()
        }
    return checked


def describe_keys(keys: Iterable[object]) -> str:
    """Keys for a message (``unknown keys [...]``), each :func:`describe`'d, at most five."""
    shown = [describe(key) for key in keys]
    more = f" and {len(shown) - 5} more" if len(shown) > 5 else ""
    return f"[{', '.join(sorted(shown)[:5])}]{more}"


# Marks the end of a container's children on check_json's stack.
_LEAVE = object()

# A step of a field path, kept unformatted until a message needs it:
# (the parent step, a mapping key or a list index, whether it is an index).
_Step = tuple[Any, object, bool]


def _path(step: _Step | str) -> str:
    parts: list[str] = []
    while not isinstance(step, str):
        step, key, is_index = step
        parts.append(f"[{key}]" if is_index else f".{label(key)}")
    parts.append(step)
    return "".join(reversed(parts))


def _key_problem(key: object) -> str | None:
    """Why a mapping key cannot be sent as given (json writes a number key as a string)."""
    if isinstance(key, str):
        problem = text_problem(key)
    elif isinstance(key, (int, float)):
        problem = number_problem(key)
    elif key is None:
        return None
    else:
        return f"keys must be strings (or numbers, booleans, None), not {_type_name(key)}"
    return None if problem is None else f"the key {problem}"


def check_json(value: object, field: str, *, max_depth: int = MAX_DEPTH) -> None:
    """Check that ``value`` is JSON that Fyno and the databases hold exactly as given.

    Mappings (string keys; numbers, booleans and None are written as strings,
    as :mod:`json` does), lists and tuples, strings without NUL or surrogates,
    integers within ``±MAX_SAFE_INTEGER``, finite floats, booleans and None,
    nested at most ``max_depth`` levels (``value`` itself is level 1), and not
    containing itself. Iterative: any depth of input is refused without
    recursion. ``field`` of the error is the path to the bad value
    (``data.items[3].name``); a nesting error names ``field`` itself.
    """
    # Entries: (value, its path, its depth), or (_LEAVE, container) on leaving one.
    stack: list[tuple[object, Any, int]] = [(value, field, 1)]
    open_containers: set[int] = set()
    while stack:
        item, step, depth = stack.pop()
        if item is _LEAVE:
            open_containers.discard(id(step))
        elif isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                raise _fail(_path(step), problem)
        elif isinstance(item, (int, float)):
            problem = number_problem(item)
            if problem is not None:
                raise _fail(_path(step), problem)
        elif item is None:
            continue
        elif isinstance(item, (Mapping, list, tuple)):
            if depth > max_depth:
                raise _fail(field, f"nests deeper than {max_depth} levels")
            if id(item) in open_containers:
                raise _fail(field, "contains itself")
            open_containers.add(id(item))
            stack.append((_LEAVE, item, depth))
            children: list[tuple[object, Any, int]] = []
            if isinstance(item, Mapping):
                for key, child in item.items():
                    problem = _key_problem(key)
                    if problem is not None:
                        where = (step, key, False) if isinstance(key, str) else step
                        raise _fail(_path(where), problem)
                    children.append((child, (step, key, False), depth + 1))
            else:
                children.extend(
                    (child, (step, index, True), depth + 1) for index, child in enumerate(item)
                )
            # Reversed, so the first bad value in reading order is the one reported.
            stack.extend(reversed(children))
        else:
            raise _fail(
                _path(step),
                f"{_type_name(item)} is not JSON: use strings, numbers, booleans, None, "
                "lists and dicts",
            )


def check_data(data: object, field: str = "data") -> dict[str, Any]:
    """Template placeholders: a mapping of JSON values (see :func:`check_json`)."""
    if not isinstance(data, Mapping):
        raise _fail(field, "must be a mapping of placeholder names to values")
    check_json(data, field)
    return dict(data)


def check_callback(callback: object, field: str = "callback") -> dict[str, Any]:
    """Delivery-report echo fields of JSON values; ``custom_id`` is required."""
    if not isinstance(callback, Mapping):
        raise _fail(field, "must be a mapping with at least 'custom_id'")
    check_text(callback.get("custom_id"), f"{field}.custom_id")
    check_json(callback, field)
    return dict(callback)


def _property_names(values: object, field: str) -> Mapping[Any, Any]:
    if not isinstance(values, Mapping) or not values:
        raise _fail(field, "must be a non-empty mapping of property names to values")
    for name in values:
        where = f"{field}.{label(name)}"
        if not isinstance(name, str) or not name.strip():
            raise _fail(where, "the property name must be a non-empty string")
        problem = text_problem(name)
        if problem is not None:
            raise _fail(where, f"the property name {problem}")
    return values


def _check_number(value: object, field: str, message: str) -> None:
    """A finite number (not a boolean) that JSON holds exactly."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(field, message)
    problem = number_problem(value)
    if problem is not None:
        raise _fail(field, problem)


def _check_scalar(value: object, field: str, *, allow_bool: bool) -> None:
    if isinstance(value, str):
        if len(value) > MAX_PROPERTY_STRING:
            raise _fail(field, f"strings are limited to {MAX_PROPERTY_STRING} characters")
        problem = text_problem(value)
        if problem is not None:
            raise _fail(field, problem)
    elif isinstance(value, bool):
        if not allow_bool:
            raise _fail(field, "must be a single number or string")
    else:
        _check_number(value, field, "must be a string, a finite number or a boolean")


def check_property_values(values: object, field: str) -> dict[str, Any]:
    """``$set``/``$once`` values: string (<= 255 chars), number, boolean or a list of those."""
    checked = dict(_property_names(values, field))
    for name, value in checked.items():
        where = f"{field}.{label(name)}"
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
        _check_number(
            value, f"{field}.{label(name)}", "must be a finite number (not a string or boolean)"
        )
    return checked


def check_list_values(values: object, field: str) -> dict[str, Any]:
    """``$append``/``$remove`` values: one number or string per property."""
    checked = dict(_property_names(values, field))
    for name, value in checked.items():
        where = f"{field}.{label(name)}"
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
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
    unknown = [operator for operator in action if operator not in _PROPERTY_OPERATORS]
    if unknown:
        raise _fail(field, f"unknown operators {describe_keys(unknown)}")
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
