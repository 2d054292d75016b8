"""Typed results of the client's calls. Each keeps Fyno's reply as ``raw``.

Parsing is lenient: a field Fyno leaves out becomes None (or empty), so a
reply that drifts from the contract still yields a result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Acknowledgement",
    "BatchPropertyUpdate",
    "BulkEventItem",
    "BulkEventResult",
    "ChannelResult",
    "EventResult",
    "GlobalPreference",
    "NotificationEvent",
    "PreferenceUpdate",
    "Preferences",
    "Profile",
    "PropertyUpdate",
    "Suppression",
    "Topic",
]


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


@dataclass(frozen=True)
class ChannelResult:
    """What Fyno did for one channel of an event."""

    destination: str | None
    msg_id: str | None
    status: str | None

    @classmethod
    def from_json(cls, data: Any) -> ChannelResult:
        data = _mapping(data)
        return cls(
            _text(data.get("destination")), _text(data.get("msg_id")), _text(data.get("status"))
        )


def _channel_results(data: Mapping[str, Any]) -> dict[str, ChannelResult]:
    return {
        channel: ChannelResult.from_json(result)
        for channel, result in data.items()
        if isinstance(result, Mapping)
    }


@dataclass(frozen=True)
class EventResult:
    """Reply to :meth:`FynoClient.send_event` (202: queued)."""

    request_id: str | None
    event: str | None
    received_time: str | None  # an ISO string here; the bulk reply uses epoch ms
    channels: dict[str, ChannelResult]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> EventResult:
        data = _mapping(data)
        received = data.get("received_time")
        return cls(
            request_id=_text(data.get("request_id")),
            event=_text(data.get("event")),
            received_time=None if received is None else str(received),
            channels=_channel_results(_mapping(data.get("response"))),
            raw=data,
        )


@dataclass(frozen=True)
class BulkEventItem:
    """One item of a bulk reply; ``seq`` is the item's position in the batch."""

    seq: int | None
    channels: dict[str, ChannelResult]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> BulkEventItem:
        data = _mapping(data)
        seq = data.get("seq")
        return cls(
            seq=seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
            channels=_channel_results({k: v for k, v in data.items() if k != "seq"}),
            raw=data,
        )


@dataclass(frozen=True)
class BulkEventResult:
    """Reply to :meth:`FynoClient.send_bulk` (202: queued)."""

    request_id: str | None
    event: str | None
    received_time: float | None  # epoch milliseconds
    items: tuple[BulkEventItem, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> BulkEventResult:
        data = _mapping(data)
        received = data.get("received_time")
        return cls(
            request_id=_text(data.get("request_id")),
            event=_text(data.get("event")),
            received_time=(
                received
                if isinstance(received, (int, float)) and not isinstance(received, bool)
                else None
            ),
            items=tuple(BulkEventItem.from_json(item) for item in _list(data.get("response"))),
            raw=data,
        )


@dataclass(frozen=True)
class Profile:
    """A Fyno profile as :meth:`FynoClient.get_profile` returns it."""

    distinct_id: str | None
    name: str | None
    status: int | None
    timezone: str | None
    timezone_offset: str | None
    country_code: str | None
    created_at: str | None
    updated_at: str | None
    channel: dict[str, Any]
    id_list: tuple[str, ...]
    profile_id: str | None
    version: str | None
    properties: dict[str, Any]
    channel_raw: Any
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Profile:
        data = _mapping(data)
        status = data.get("status")
        return cls(
            distinct_id=_text(data.get("distinct_id")),
            name=_text(data.get("name")),
            status=status if isinstance(status, int) and not isinstance(status, bool) else None,
            timezone=_text(data.get("timezone")),
            timezone_offset=_text(data.get("timezone_offset")),
            country_code=_text(data.get("country_code")),
            created_at=_text(data.get("created_at")),
            updated_at=_text(data.get("updated_at")),
            channel=_mapping(data.get("channel")),
            id_list=tuple(str(item) for item in _list(data.get("id_list"))),
            profile_id=_text(data.get("profile_id")),
            version=_text(data.get("version")),
            properties=_mapping(data.get("properties")),
            channel_raw=data.get("channel_raw"),
            raw=data,
        )


@dataclass(frozen=True)
class NotificationEvent:
    """An event attached to a subscription topic (with ``event_list=True``)."""

    event_id: str | None
    event_name: str | None


@dataclass(frozen=True)
class Topic:
    """One subscription topic and the user's preference per channel."""

    subscription_id: str | None
    name: str | None
    description: str | None
    channel_config: dict[str, str]  # channel -> "on" | "off" | "required"
    preference: dict[str, str]  # channel -> "opted-in" | "opted-out"
    is_global_opted_out: dict[str, bool]
    updated_at: dict[str, str]
    notification_events: tuple[NotificationEvent, ...]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Topic:
        data = _mapping(data)
        return cls(
            subscription_id=_text(data.get("subscription_id")),
            name=_text(data.get("name")),
            description=_text(data.get("description")),
            channel_config=_mapping(data.get("channel_config")),
            preference=_mapping(data.get("preference")),
            is_global_opted_out=_mapping(data.get("is_global_opted_out")),
            updated_at=_mapping(data.get("updated_at")),
            notification_events=tuple(
                NotificationEvent(_text(item.get("event_id")), _text(item.get("event_name")))
                for item in _list(data.get("notification_events"))
                if isinstance(item, Mapping)
            ),
            raw=data,
        )


@dataclass(frozen=True)
class GlobalPreference:
    """``meta.all``: the channels the user opted out of globally."""

    preference: dict[str, str]
    updated_at: dict[str, str]


@dataclass(frozen=True)
class Preferences:
    """Reply to :meth:`FynoClient.get_preferences`: sections of topics, plus ``meta.all``."""

    global_preference: GlobalPreference
    sections: dict[str, tuple[Topic, ...]]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Preferences:
        data = _mapping(data)
        overall = _mapping(_mapping(data.get("meta")).get("all"))
        return cls(
            global_preference=GlobalPreference(
                preference=_mapping(overall.get("preference")),
                updated_at=_mapping(overall.get("updated_at")),
            ),
            sections={
                str(section): tuple(Topic.from_json(topic) for topic in _list(topics))
                for section, topics in _mapping(data.get("result")).items()
            },
            raw=data,
        )

    def topics(self) -> tuple[Topic, ...]:
        """Every topic of every section, in order."""
        return tuple(topic for topics in self.sections.values() for topic in topics)


@dataclass(frozen=True)
class PreferenceUpdate:
    """Reply to a preference write: ``{subscription_id: {channel: preference}}``."""

    preferences: dict[str, dict[str, str]]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> PreferenceUpdate:
        data = _mapping(data)
        return cls(
            preferences={
                str(key): _mapping(value)
                for key, value in data.items()
                if isinstance(value, Mapping)
            },
            raw=data,
        )


@dataclass(frozen=True)
class Suppression:
    """One entry of the suppression list."""

    id: str | None
    destination: str | None
    distinct_id: str | None
    channel: str | None
    description: str | None
    created_at: str | None
    expiry_ts: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Suppression:
        data = _mapping(data)
        return cls(
            id=_text(data.get("_id")),
            destination=_text(data.get("destination")),
            distinct_id=_text(data.get("distinct_id")),
            channel=_text(data.get("channel")),
            description=_text(data.get("description")),
            created_at=_text(data.get("created_at")),
            expiry_ts=_text(data.get("expiry_ts")),
            raw=data,
        )


@dataclass(frozen=True)
class PropertyUpdate:
    """Reply to a property write (202: queued; applied asynchronously)."""

    request_id: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> PropertyUpdate:
        data = _mapping(data)
        return cls(request_id=_text(data.get("request_id")), raw=data)


@dataclass(frozen=True)
class BatchPropertyUpdate:
    """Reply to :meth:`FynoClient.batch_properties`: per item, operator -> "ok"."""

    request_id: str | None
    items: tuple[dict[str, str], ...]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> BatchPropertyUpdate:
        data = _mapping(data)
        return cls(
            request_id=_text(data.get("request_id")),
            items=tuple(_mapping(item) for item in _list(data.get("batch"))),
            raw=data,
        )


@dataclass(frozen=True)
class Acknowledgement:
    """A plain ``{"_message", "status"}`` reply."""

    message: str | None
    status: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Any) -> Acknowledgement:
        data = _mapping(data)
        return cls(message=_text(data.get("_message")), status=_text(data.get("status")), raw=data)
