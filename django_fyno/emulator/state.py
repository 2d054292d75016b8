"""The emulator's data: profiles, properties, events, OTPs, preferences and
suppressions of one workspace, per version (``live``/``test``).

Plain data and small pure helpers. The application holds one lock around
every read and write of a :class:`Store`; nothing here locks by itself.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

__all__ = [
    "CHANNEL_CONFIG_VALUES",
    "PREFERENCE_CHANNELS",
    "SCALAR_CHANNELS",
    "TOKEN_CHANNELS",
    "EventRecord",
    "Otp",
    "Profile",
    "Store",
    "Suppression",
    "Topic",
    "VersionState",
    "country_code",
    "default_preference_config",
    "iso",
    "property_type",
    "timezone_offset",
]

# Channels holding one destination, and channels holding a list of tokens.
SCALAR_CHANNELS = ("sms", "whatsapp", "email", "slack", "discord", "teams", "voice")
TOKEN_CHANNELS = ("push", "inapp")
ALL_CHANNELS = SCALAR_CHANNELS + TOKEN_CHANNELS
# Preferences also know web push, which profiles and events do not.
PREFERENCE_CHANNELS = (*ALL_CHANNELS, "webpush")
CHANNEL_CONFIG_VALUES = ("on", "off", "required")
VERSIONS = ("live", "test")

# A few common calling codes; the longest matching prefix wins.
_CALLING_CODES = {
    "1": "US",
    "7": "RU",
    "20": "EG",
    "27": "ZA",
    "31": "NL",
    "33": "FR",
    "34": "ES",
    "39": "IT",
    "41": "CH",
    "44": "GB",
    "46": "SE",
    "49": "DE",
    "52": "MX",
    "55": "BR",
    "60": "MY",
    "61": "AU",
    "62": "ID",
    "63": "PH",
    "64": "NZ",
    "65": "SG",
    "81": "JP",
    "82": "KR",
    "86": "CN",
    "90": "TR",
    "91": "IN",
    "92": "PK",
    "234": "NG",
    "254": "KE",
    "353": "IE",
    "880": "BD",
    "966": "SA",
    "971": "AE",
}


def iso(timestamp: float) -> str:
    """``2025-02-17T07:49:13.352Z``, the shape Fyno's replies use."""
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def country_code(number: str) -> str:
    """ISO country of an E.164 number from its calling code ("" when unknown)."""
    if not number.startswith("+"):
        return ""
    digits = number[1:4]
    for size in (3, 2, 1):
        found = _CALLING_CODES.get(digits[:size])
        if found:
            return found
    return ""


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ValueError, OSError):
        return None


def timezone_offset(name: str, when: float) -> str:
    """``+05:30`` for ``Asia/Kolkata`` at ``when`` (``+00:00`` when unknown)."""
    zone = _zone(name) if name else None
    offset = datetime.fromtimestamp(when, tz=zone or timezone.utc).utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset else 0
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{rest:02d}"


_DATE_PREFIX = re.compile(r"\d{4}-\d{2}-\d{2}")


def _is_iso_date(text: str) -> bool:
    if not _DATE_PREFIX.match(text):
        return False
    try:
        if len(text) == 10:
            date.fromisoformat(text)
        else:
            datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def property_type(value: Any) -> str | None:
    """The Fyno type a property value takes (None: not a property value)."""
    if isinstance(value, bool):  # before numbers: bool is an int in Python
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "date" if _is_iso_date(value) else "string"
    return None


@dataclass
class Profile:
    distinct_id: str
    profile_id: str
    version: str
    created_at: float
    updated_at: float
    name: str = ""
    status: int = 1
    timezone: str = ""
    # Scalar channels map to a string; push/inapp to a list of token dicts.
    channel: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    property_types: dict[str, str] = field(default_factory=dict)
    id_list: list[str] = field(default_factory=list)

    def first_active_token(self, name: str) -> str | None:
        for token in self.channel.get(name) or ():
            if token.get("status", 1) != 0:
                return str(token["token"])
        return None

    def fetched(self, now: float) -> dict[str, Any]:
        """The GET profile reply (the contract's ProfileFetched)."""
        channel: dict[str, Any] = {}
        for key, value in self.channel.items():
            if key in TOKEN_CHANNELS:
                channel[key] = [{**token, "status": token.get("status", 1)} for token in value]
            else:
                channel[key] = value
        number = self.channel.get("sms") or self.channel.get("whatsapp") or ""
        return {
            "distinct_id": self.distinct_id,
            "name": self.name,
            "status": self.status,
            "timezone": self.timezone,
            "timezone_offset": timezone_offset(self.timezone, now),
            "country_code": country_code(number or self.channel.get("voice", "")),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "channel": channel,
            # As stored: what the API was sent, without the defaults filled in.
            "channel_raw": _copy_channel(self.channel),
            "id_list": list(self.id_list),
            "profile_id": self.profile_id,
            "version": self.version,
            "properties": _copy_json(self.properties),
        }


def _copy_channel(channel: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: [dict(token) for token in value] if key in TOKEN_CHANNELS else value
        for key, value in channel.items()
    }


def _copy_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_json(item) for item in value]
    return value


@dataclass
class EventRecord:
    """One notification the emulator accepted (each bulk item is one record)."""

    request_id: str
    event: str
    version: str
    time: float
    distinct_id: str | None
    to: dict[str, Any]
    data: dict[str, Any]
    callback: dict[str, Any] | None
    response: dict[str, dict[str, str]]  # channel -> {destination, msg_id, status}
    seq: int | None = None  # position in a bulk request
    profile_found: bool = False
    skipped: dict[str, str] = field(default_factory=dict)  # channel -> why not sent
    otp: str | None = None

    @property
    def custom_id(self) -> str | None:
        return self.callback.get("custom_id") if self.callback else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "event": self.event,
            "version": self.version,
            "time": self.time,
            "received_time": iso(self.time),
            "distinct_id": self.distinct_id,
            "to": _copy_json(self.to),
            "data": _copy_json(self.data),
            "callback": _copy_json(self.callback),
            "custom_id": self.custom_id,
            "channels": sorted(self.response),
            "response": _copy_json(self.response),
            "seq": self.seq,
            "profile_found": self.profile_found,
            "skipped": dict(self.skipped),
            "otp": self.otp,
        }


@dataclass
class Otp:
    code: str
    request_id: str | None
    destinations: set[str]
    created_at: float
    used: bool = False


@dataclass
class Suppression:
    _id: str
    channel: str
    distinct_id: str
    destination: str
    description: str
    created_at: float
    expiry_ts: str

    def as_dict(self) -> dict[str, str]:
        return {
            "_id": self._id,
            "destination": self.destination,
            "distinct_id": self.distinct_id,
            "channel": self.channel,
            "description": self.description,
            "created_at": iso(self.created_at),
            "expiry_ts": self.expiry_ts,
        }


@dataclass
class Topic:
    subscription_id: str
    name: str
    description: str
    channel_config: dict[str, str]
    notification_events: list[dict[str, str]]

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Topic:
        """A topic from its JSON description; ValueError names what is wrong."""
        if not isinstance(raw, Mapping):
            raise ValueError("each topic must be an object")
        sub_id = raw.get("subscription_id")
        if not isinstance(sub_id, str) or not sub_id or sub_id == "all":
            raise ValueError("topic subscription_id must be a non-empty string other than 'all'")
        config = dict(raw.get("channel_config") or {})
        for channel, value in config.items():
            if channel not in PREFERENCE_CHANNELS:
                raise ValueError(f"topic {sub_id}: unknown channel {channel!r}")
            if value not in CHANNEL_CONFIG_VALUES:
                raise ValueError(
                    f"topic {sub_id}: channel_config.{channel} must be on/off/required"
                )
        events = []
        for item in raw.get("notification_events") or ():
            if isinstance(item, str):
                item = {"event_id": item, "event_name": item}
            events.append(
                {"event_id": str(item["event_id"]), "event_name": str(item["event_name"])}
            )
        return cls(
            subscription_id=sub_id,
            name=str(raw.get("name") or sub_id),
            description=str(raw.get("description") or ""),
            channel_config=config,
            notification_events=events,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "subscription_id": self.subscription_id,
            "name": self.name,
            "description": self.description,
            "channel_config": dict(self.channel_config),
            "notification_events": [dict(item) for item in self.notification_events],
        }


def default_preference_config() -> dict[str, list[dict[str, Any]]]:
    """One section, two topics: enough for a preference page out of the box."""
    every = {channel: "on" for channel in PREFERENCE_CHANNELS}
    return {
        "General": [
            {
                "subscription_id": "SGENERAL01",
                "name": "Product updates",
                "description": "News about features and offers.",
                "channel_config": {**every, "voice": "off"},
                "notification_events": [
                    {"event_id": "EPRODUCT01", "event_name": "product_update"},
                    {"event_id": "ENEWSLET01", "event_name": "newsletter"},
                ],
            },
            {
                "subscription_id": "SGENERAL02",
                "name": "Account and security",
                "description": "Sign-in codes and alerts about your account.",
                "channel_config": {**every, "email": "required", "sms": "required"},
                "notification_events": [
                    {"event_id": "ESECURIT01", "event_name": "security_alert"},
                    {"event_id": "ELOGINOT01", "event_name": "login_otp"},
                ],
            },
        ]
    }


@dataclass
class VersionState:
    """Everything that belongs to one version of the workspace."""

    profiles: dict[str, Profile] = field(default_factory=dict)
    # distinct_id -> subscription_id -> channel -> (opted-in|opted-out, when)
    preferences: dict[str, dict[str, dict[str, tuple[str, float]]]] = field(default_factory=dict)
    # distinct_id -> channel -> when the user opted out of it everywhere
    global_opt_out: dict[str, dict[str, float]] = field(default_factory=dict)


class Store:
    """All the state of one emulated workspace."""

    def __init__(self, seed: int | None = None) -> None:
        # Not for secrets: seedable on purpose, so that a test run repeats.
        self.random = random.Random(seed)  # noqa: S311
        self.versions: dict[str, VersionState] = {name: VersionState() for name in VERSIONS}
        self.allowed_events: set[str] | None = None
        self.events_log: list[EventRecord] = []
        # Indexes, so that delivery reports and OTPs never scan the log.
        self.events_by_request: dict[str, list[EventRecord]] = {}
        self.events_by_custom_id: dict[str, list[EventRecord]] = {}
        self.suppressions: dict[str, Suppression] = {}  # by _id, in insertion order
        # (channel, distinct_id or destination): what a send must skip, in O(1).
        self.suppressed: set[tuple[str, str]] = set()
        self.otp_by_request: dict[str, Otp] = {}
        self.otp_by_destination: dict[str, Otp] = {}
        self.otp_presets: dict[str, str] = {}  # destination -> code for its next OTP
        self.otp_code: str | None = None  # code for every OTP when set
        self.topics: dict[str, Topic] = {}
        self.sections: dict[str, list[Topic]] = {}
        self.topics_by_event: dict[str, list[Topic]] = {}
        self.webhook_url: str | None = None
        self.configure_preferences(default_preference_config())

    # Identifiers come from the store's random generator, so a seeded store
    # hands out the same ids run after run.
    def new_uuid(self) -> str:
        return str(uuid.UUID(int=self.random.getrandbits(128), version=4))

    def new_hex(self, size: int) -> str:
        return f"{self.random.getrandbits(size * 4):0{size}x}"

    def new_otp_code(self) -> str:
        return f"{self.random.randrange(10**6):06d}"

    def configure_preferences(self, sections: Mapping[str, Iterable[Mapping[str, Any]]]) -> None:
        """Replace the sections and topics (ValueError when malformed)."""
        if not isinstance(sections, Mapping):
            raise ValueError("sections must map a section name to a list of topics")
        parsed: dict[str, list[Topic]] = {}
        by_id: dict[str, Topic] = {}
        for section, topics in sections.items():
            if isinstance(topics, (str, bytes)) or not isinstance(topics, Iterable):
                raise ValueError(f"section {section!r} must be a list of topics")
            parsed[str(section)] = []
            for raw in topics:
                topic = Topic.from_mapping(raw)
                if topic.subscription_id in by_id:
                    raise ValueError(f"subscription_id {topic.subscription_id} is used twice")
                by_id[topic.subscription_id] = topic
                parsed[str(section)].append(topic)
        by_event: dict[str, list[Topic]] = {}
        for topic in by_id.values():
            for item in topic.notification_events:
                by_event.setdefault(item["event_name"], []).append(topic)
        self.sections, self.topics, self.topics_by_event = parsed, by_id, by_event

    def preference_config(self) -> dict[str, list[dict[str, Any]]]:
        return {
            name: [topic.as_dict() for topic in topics] for name, topics in self.sections.items()
        }

    def reindex_suppressions(self) -> None:
        self.suppressed = {
            (item.channel, item.distinct_id or item.destination)
            for item in self.suppressions.values()
        }

    def record_event(self, record: EventRecord) -> None:
        self.events_log.append(record)
        self.events_by_request.setdefault(record.request_id, []).append(record)
        if record.custom_id:
            self.events_by_custom_id.setdefault(record.custom_id, []).append(record)

    def dump(self) -> dict[str, Any]:
        """Everything, as JSON-ready data (for tests and the control API)."""
        now = time.time()
        versions: dict[str, Any] = {}
        for name, state in self.versions.items():
            versions[name] = {
                "profiles": {key: profile.fetched(now) for key, profile in state.profiles.items()},
                "preferences": {
                    user: {
                        sub: {channel: value for channel, (value, _) in channels.items()}
                        for sub, channels in subs.items()
                    }
                    for user, subs in state.preferences.items()
                },
                "global_opt_out": {
                    user: sorted(channels) for user, channels in state.global_opt_out.items()
                },
                "events": [
                    record.as_dict() for record in self.events_log if record.version == name
                ],
            }
        return {
            "versions": versions,
            "suppressions": [item.as_dict() for item in self.suppressions.values()],
            "allowed_events": sorted(self.allowed_events)
            if self.allowed_events is not None
            else None,
            "preference_config": self.preference_config(),
            "webhook_url": self.webhook_url,
            "otps": [
                {
                    "code": otp.code,
                    "request_id": otp.request_id,
                    "destinations": sorted(otp.destinations),
                    "used": otp.used,
                }
                for otp in {id(otp): otp for otp in self._all_otps()}.values()
            ],
        }

    def _all_otps(self) -> Iterable[Otp]:
        yield from self.otp_by_request.values()
        yield from self.otp_by_destination.values()
