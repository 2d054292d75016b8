"""One function per Fyno operation: the emulator's semantics.

Each handler gets a :class:`Ctx` (the store, the version, the request's path
parameters, query and validated JSON body) and returns ``(status, reply)``.
Handlers run under the application's lock and never block.

Where Fyno's documentation is silent, the choice made is written next to the
code that makes it (look for "Docs are silent").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .state import (
    ALL_CHANNELS,
    PREFERENCE_CHANNELS,
    SCALAR_CHANNELS,
    TOKEN_CHANNELS,
    EventRecord,
    Otp,
    Profile,
    Store,
    Suppression,
    Topic,
    VersionState,
    iso,
    property_type,
)

__all__ = ["HANDLERS", "PROPERTY_KEYS", "Ctx", "Reply", "error", "precheck"]

Reply = tuple[int, Any]

# The property operations and the body key each one takes.
PROPERTY_KEYS = {
    "set_properties": "$set",
    "set_properties_once": "$once",
    "increment_properties": "$add",
    "append_to_lists": "$append",
    "remove_from_lists": "$remove",
    "unset_properties": "$unset",
}
# Property writes that create an unknown profile (list-remove and unset do not).
_CREATING_ACTIONS = frozenset({"$set", "$once", "$add", "$append"})
MAX_STRING = 255
_PHONE = re.compile(r"\+?[1-9]\d{6,14}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_OTP_DIGITS = re.compile(r"\d{4,6}")
NOT_FOUND = "incorrect/non existing distinct_id provided"


@dataclass
class Ctx:
    store: Store
    version: str  # "" for the suppression operations, which have no version
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    now: float

    @property
    def state(self) -> VersionState:
        return self.store.versions[self.version]


def error(message: str, status: int = 400) -> Reply:
    return status, {"_message": message, "status": "error"}


def _ok(message: str, status: int = 200) -> Reply:
    return status, {"_message": message, "status": "ok"}


def precheck(operation: str, query: Mapping[str, str], body: Any) -> str | None:
    """Fyno's own message for a missing distinct_id, before generic validation."""
    if operation == "get_preferences" and not query.get("distinct_id"):
        return "distinct_id is required to list preference!"
    if operation == "set_preferences" and not query.get("distinct_id"):
        return "distinct_id is required!"
    if operation == "set_subscription" and not (isinstance(body, dict) and body.get("distinct_id")):
        return "distinct_id is required!"
    return None


# --- profiles -------------------------------------------------------------


def _channel_data(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Channel data as stored: non-empty scalars, tokens deduplicated by token."""
    channel: dict[str, Any] = {}
    for key, value in raw.items():
        if key in TOKEN_CHANNELS:
            tokens: dict[str, dict[str, Any]] = {}
            for token in value or ():
                tokens[token["token"]] = dict(token)  # a later duplicate wins
            if tokens:
                channel[key] = list(tokens.values())
        elif key in SCALAR_CHANNELS and value:
            channel[key] = value
    return channel


def _add_tokens(current: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    tokens = {token["token"]: token for token in current}
    for token in new:
        # A token already present keeps its place; its status/integration update.
        tokens[token["token"]] = {**tokens.get(token["token"], {}), **token}
    return list(tokens.values())


def _new_profile(ctx: Ctx, distinct_id: str) -> Profile:
    return Profile(
        distinct_id=distinct_id,
        profile_id=ctx.store.new_hex(24),
        version=ctx.version,
        created_at=ctx.now,
        updated_at=ctx.now,
    )


def _apply_profile_fields(profile: Profile, body: Mapping[str, Any]) -> None:
    if "name" in body:
        profile.name = body["name"] or ""
    if "status" in body:
        profile.status = 1 if body["status"] is None else body["status"]  # null means 1
    if "timezone" in body:
        profile.timezone = body["timezone"] or ""
    if "channel" in body:
        profile.channel = _channel_data(body["channel"] or {})


def _duplicate(distinct_id: str, version: str) -> Reply:
    return error(
        f"Distinct ID '{distinct_id}' already exists in the '{version}' version of your workspace"
    )


def _rename(state: VersionState, old: str, new: str) -> Profile:
    """Move a profile, and the preferences kept under its id, to a new id."""
    profile = state.profiles.pop(old)
    profile.distinct_id = new
    state.profiles[new] = profile
    if old in state.preferences:
        state.preferences[new] = state.preferences.pop(old)
    if old in state.global_opt_out:
        state.global_opt_out[new] = state.global_opt_out.pop(old)
    return profile


def _forget(state: VersionState, distinct_id: str) -> None:
    state.profiles.pop(distinct_id, None)
    state.preferences.pop(distinct_id, None)
    state.global_opt_out.pop(distinct_id, None)


def create_profile(ctx: Ctx) -> Reply:
    distinct_id = ctx.body["distinct_id"]
    if distinct_id in ctx.state.profiles:
        return _duplicate(distinct_id, ctx.version)
    profile = _new_profile(ctx, distinct_id)
    _apply_profile_fields(profile, ctx.body)
    ctx.state.profiles[distinct_id] = profile
    return _ok("Profile created successfully", 201)


def get_profile(ctx: Ctx) -> Reply:
    profile = ctx.state.profiles.get(ctx.params["distinct_id"])
    if profile is None:
        return error(NOT_FOUND)
    return 200, profile.fetched(ctx.now)


def update_profile(ctx: Ctx) -> Reply:
    distinct_id = ctx.params["distinct_id"]
    profile = ctx.state.profiles.get(distinct_id)
    if profile is None:
        return error("Unable to update the record since the record does not exist")
    new_id = ctx.body.get("distinct_id")
    if new_id and new_id != distinct_id:
        # Docs are silent on renaming onto an existing id: refuse, as create does.
        if new_id in ctx.state.profiles:
            return _duplicate(new_id, ctx.version)
        profile = _rename(ctx.state, distinct_id, new_id)
    _apply_profile_fields(profile, ctx.body)
    profile.updated_at = ctx.now
    return _ok("1 Record(s) updated successfully")


def merge_profiles(ctx: Ctx) -> Reply:
    source_id = ctx.params["source_distinct_id"]
    target_id = ctx.params["target_distinct_id"]
    profiles = ctx.state.profiles
    source = profiles.get(source_id)
    if source is None:
        return error("merge from id does not exist")
    if source_id == target_id:
        # Docs are silent; merging a profile into itself would delete it.
        return error("Source and target distinct_id must differ")
    target = profiles.get(target_id)
    if target is None:
        renamed = _rename(ctx.state, source_id, target_id)
        _link(renamed, source_id)
        renamed.updated_at = ctx.now
        return _ok("1 Record(s) updated and 0 Records(s) deleted")
    # The target survives: where both have a value, the target's wins.
    for key, value in source.channel.items():
        if key in TOKEN_CHANNELS:
            target.channel[key] = _add_tokens(value, target.channel.get(key, []))
        else:
            target.channel.setdefault(key, value)
    for key, value in source.properties.items():
        if key not in target.properties:
            target.properties[key] = value
            target.property_types[key] = source.property_types[key]
    target.name = target.name or source.name
    target.timezone = target.timezone or source.timezone
    _link(target, source_id, *source.id_list)
    target.updated_at = ctx.now
    _forget(ctx.state, source_id)
    return _ok("1 Record(s) updated and 1 Records(s) deleted")


def _link(profile: Profile, *ids: str) -> None:
    for other in ids:
        if other != profile.distinct_id and other not in profile.id_list:
            profile.id_list.append(other)


def delete_profiles(ctx: Ctx) -> Reply:
    found = [i for i in dict.fromkeys(ctx.body["distinct_id"]) if i in ctx.state.profiles]
    if not found:
        return error("Cannot delete non existing user")
    for distinct_id in found:
        _forget(ctx.state, distinct_id)
    return _ok(f"{len(found)} User(s) deleted successfully")


def update_channels(ctx: Ctx) -> Reply:
    profile = ctx.state.profiles.get(ctx.params["distinct_id"])
    if profile is None:
        return error(NOT_FOUND)
    for key, value in ctx.body["channel"].items():
        if key in TOKEN_CHANNELS:
            merged = _add_tokens(profile.channel.get(key, []), [dict(t) for t in value or ()])
            if merged:
                profile.channel[key] = merged
        elif key in SCALAR_CHANNELS:
            if value:
                profile.channel[key] = value
            else:
                # Docs are silent on an empty value: treat it as "no destination".
                profile.channel.pop(key, None)
    profile.updated_at = ctx.now
    return _ok("Channel has been modified successfully")


def delete_channels(ctx: Ctx) -> Reply:
    profile = ctx.state.profiles.get(ctx.params["distinct_id"])
    if profile is None:
        return error(NOT_FOUND)
    changed = False
    if "channel" in ctx.body:
        for name in ctx.body["channel"]:
            changed = profile.channel.pop(name, None) is not None or changed
    else:
        for name in TOKEN_CHANNELS:
            drop = set(ctx.body.get(name) or ())
            tokens = profile.channel.get(name, [])
            kept = [token for token in tokens if token["token"] not in drop]
            if len(kept) != len(tokens):
                changed = True
                if kept:
                    profile.channel[name] = kept
                else:
                    del profile.channel[name]
    if not changed:
        return error("Unable to delete channel since the channel does not exist")
    profile.updated_at = ctx.now
    return _ok("Channel has been modified successfully")


# --- properties -----------------------------------------------------------


def _fits(value: Any) -> bool:
    # Fyno caps strings at 255 characters. Property writes are queued (202), so
    # a longer value is dropped silently like a wrong-typed one, not refused.
    return not (isinstance(value, str) and len(value) > MAX_STRING)


def _compatible(current: str, new: str) -> bool:
    # A date is written as a string, so a string property accepts one too.
    return current == new or (current == "string" and new == "date")


def _unique(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if value not in out:  # lists are short; values may be unhashable
            out.append(value)
    return out


def _set(profile: Profile, values: Mapping[str, Any], *, once: bool) -> None:
    for name, value in values.items():
        kind = property_type(value)
        if kind is None:
            continue
        if kind == "list":
            value = _unique([item for item in value if _fits(item)])
        elif not _fits(value):
            continue
        current = profile.property_types.get(name)
        if current is not None and (once or not _compatible(current, kind)):
            continue
        profile.property_types.setdefault(name, kind)
        profile.properties[name] = value


def _add(profile: Profile, values: Mapping[str, Any]) -> None:
    for name, amount in values.items():
        if property_type(amount) != "number":
            continue
        current = profile.property_types.get(name)
        if current is None:
            profile.property_types[name] = "number"
            profile.properties[name] = amount
        elif current == "number":
            profile.properties[name] += amount


def _append(profile: Profile, values: Mapping[str, Any]) -> None:
    for name, value in values.items():
        if property_type(value) not in ("number", "string", "date") or not _fits(value):
            continue
        current = profile.property_types.get(name)
        if current is None:
            profile.property_types[name] = "list"
            profile.properties[name] = [value]
        elif current == "list" and value not in profile.properties[name]:
            profile.properties[name].append(value)


def _remove(profile: Profile, values: Mapping[str, Any]) -> None:
    for name, value in values.items():
        if profile.property_types.get(name) == "list" and value in profile.properties[name]:
            profile.properties[name].remove(value)


def _unset(profile: Profile, names: list[str]) -> None:
    for name in names:
        profile.properties.pop(name, None)
        profile.property_types.pop(name, None)


def _apply_action(ctx: Ctx, distinct_id: str, key: str, argument: Any) -> str | None:
    """Apply one property action; the error text, or None when accepted."""
    if key == "$unset" and not argument:
        return "$unset channel should have atleast one item in array"
    profile = ctx.state.profiles.get(distinct_id)
    if profile is None:
        if key not in _CREATING_ACTIONS:
            return None  # list-remove and unset ignore unknown users
        profile = ctx.state.profiles[distinct_id] = _new_profile(ctx, distinct_id)
    if key in ("$set", "$once"):
        _set(profile, argument, once=key == "$once")
    elif key == "$add":
        _add(profile, argument)
    elif key == "$append":
        _append(profile, argument)
    elif key == "$remove":
        _remove(profile, argument)
    else:
        _unset(profile, argument)
    profile.updated_at = ctx.now
    return None


def _property_handler(key: str) -> Callable[[Ctx], Reply]:
    def handle(ctx: Ctx) -> Reply:
        problem = _apply_action(ctx, ctx.body["distinct_id"], key, ctx.body[key])
        if problem:
            return error(problem)
        return 202, {"request_id": ctx.store.new_uuid()}

    handle.__name__ = handle.__qualname__ = f"property_{key[1:]}"
    handle.__doc__ = f"The {key} property operation."
    return handle


def batch_properties(ctx: Ctx) -> Reply:
    results = []
    for item in ctx.body["batch"]:
        outcome: dict[str, str] = {}
        for key, argument in item["action"].items():
            if key in _ACTION_KEYS:
                problem = _apply_action(ctx, item["distinct_id"], key, argument)
                outcome[key] = problem or "ok"
        results.append(outcome)
    return 202, {"request_id": ctx.store.new_uuid(), "batch": results}


_ACTION_KEYS = frozenset(PROPERTY_KEYS.values())


# --- events ---------------------------------------------------------------


def _blocked(ctx: Ctx, event: str, distinct_id: str | None, channel: str, dest: str) -> str:
    """Why a channel is not sent to ("" when it is)."""
    store = ctx.store
    if (channel, dest) in store.suppressed or (
        distinct_id is not None and (channel, distinct_id) in store.suppressed
    ):
        return "suppressed"
    required = False
    if distinct_id is not None:
        chosen = ctx.state.preferences.get(distinct_id, {})
        for topic in store.topics_by_event.get(event, ()):
            config = topic.channel_config.get(channel, "on")
            if config == "off":
                return f"channel off for topic {topic.subscription_id}"
            if config == "required":
                required = True
            elif chosen.get(topic.subscription_id, {}).get(channel, ("",))[0] == "opted-out":
                return f"opted out of topic {topic.subscription_id}"
        # A required channel is transactional: it ignores the global opt-out.
        if not required and channel in ctx.state.global_opt_out.get(distinct_id, {}):
            return "globally opted out"
    return ""


def _is_otp(event: str, data: Mapping[str, Any]) -> bool:
    return "otp" in event.lower() or "otp" in data


def _record_otp(ctx: Ctx, record: EventRecord, *, single: bool) -> None:
    store = ctx.store
    destinations = [reply["destination"] for reply in record.response.values()]
    given = record.data.get("otp")
    code = next((store.otp_presets.pop(d) for d in destinations if d in store.otp_presets), None)
    if code is None and isinstance(given, (str, int)) and _OTP_DIGITS.fullmatch(str(given)):
        code = str(given)  # the caller chose the code and put it in the template data
    code = code or store.otp_code or store.new_otp_code()
    # In a bulk request the request_id is shared, so only destinations identify an OTP.
    otp = Otp(code, record.request_id if single else None, set(destinations), ctx.now)
    if single:
        store.otp_by_request[record.request_id] = otp
    for destination in destinations:
        store.otp_by_destination[destination] = otp
    record.otp = code


def _notify(
    ctx: Ctx, event: str, item: Mapping[str, Any], request_id: str, seq: int | None
) -> EventRecord:
    distinct_id = item.get("distinct_id")
    to = dict(item.get("to") or {})
    profile = ctx.state.profiles.get(distinct_id) if distinct_id is not None else None
    callback = item.get("callback")
    record = EventRecord(
        request_id=request_id,
        event=event,
        version=ctx.version,
        time=ctx.now,
        distinct_id=distinct_id,
        to=to,
        data=dict(item.get("data") or {}),
        callback=dict(callback) if callback else None,
        response={},
        seq=seq,
        profile_found=profile is not None,
    )
    if profile is not None and profile.status == 0:
        # An inactive user gets nothing, even at an explicit `to`; still logged.
        record.skipped["*"] = "profile inactive (status 0)"
    else:
        # Docs are silent on an unknown distinct_id without `to`: accepted (202)
        # with an empty response, as the send is asynchronous on Fyno's side.
        destinations: dict[str, str] = {}
        if profile is not None:
            for name in SCALAR_CHANNELS:
                if profile.channel.get(name):
                    destinations[name] = profile.channel[name]
            for name in TOKEN_CHANNELS:
                token = profile.first_active_token(name)
                if token:
                    destinations[name] = token
        destinations.update(
            {k: v for k, v in to.items() if k in ALL_CHANNELS and isinstance(v, str) and v}
        )
        for channel, destination in destinations.items():
            why = _blocked(ctx, event, distinct_id, channel, destination)
            if why:
                record.skipped[channel] = why
                continue
            msg_id = f"{ctx.store.new_uuid()}:{ctx.store.new_hex(4)}"
            record.response[channel] = {
                "destination": destination,
                "msg_id": msg_id,
                "status": "ok",
            }
    if _is_otp(event, record.data):
        _record_otp(ctx, record, single=seq is None)
    ctx.store.record_event(record)
    return record


# Fyno's unknown-event message calls the live version "prod".
_VERSION_WORDS = {"live": "prod"}


def _unknown_event(ctx: Ctx, event: str) -> Reply | None:
    allowed = ctx.store.allowed_events
    if allowed is not None and event not in allowed:
        where = _VERSION_WORDS.get(ctx.version, ctx.version)
        return error(
            f"The notification event name '{event}' is invalid or does not exists on {where}"
        )
    return None


def send_event(ctx: Ctx) -> Reply:
    event = ctx.body["event"]
    refused = _unknown_event(ctx, event)
    if refused:
        return refused
    request_id = ctx.store.new_uuid()
    record = _notify(ctx, event, ctx.body, request_id, None)
    return 202, {
        "event": event,
        "received_time": iso(ctx.now),
        "request_id": request_id,
        "response": {key: dict(value) for key, value in record.response.items()},
    }


def send_bulk(ctx: Ctx) -> Reply:
    event = ctx.body["event"]
    refused = _unknown_event(ctx, event)
    if refused:
        return refused
    request_id = ctx.store.new_uuid()
    response = []
    for seq, item in enumerate(ctx.body["batch"]):
        record = _notify(ctx, event, item, request_id, seq)
        response.append({"seq": seq, **{k: dict(v) for k, v in record.response.items()}})
    return 202, {
        "event": event,
        "received_time": int(ctx.now * 1000),
        "request_id": request_id,
        "response": response,
    }


def verify_otp(ctx: Ctx) -> Reply:
    store = ctx.store
    request_id = ctx.query.get("request_id")
    destination = ctx.query.get("destination")
    if not request_id and not destination:
        return error("request_id or destination is required to validate an OTP")
    otp = store.otp_by_request.get(request_id) if request_id else None
    if otp is None and destination:
        otp = store.otp_by_destination.get(destination)
    if otp is None or otp.used or otp.code != ctx.query["otp"]:
        return error("user entered the wrong OTP")
    otp.used = True  # one use: forget it everywhere
    if otp.request_id and store.otp_by_request.get(otp.request_id) is otp:
        del store.otp_by_request[otp.request_id]
    for dest in otp.destinations:
        if store.otp_by_destination.get(dest) is otp:
            del store.otp_by_destination[dest]
    return _ok("OTP successfully validated.")


# --- preferences ----------------------------------------------------------


def _topic_view(ctx: Ctx, topic: Topic, distinct_id: str, with_events: bool) -> dict[str, Any]:
    chosen = ctx.state.preferences.get(distinct_id, {}).get(topic.subscription_id, {})
    global_out = ctx.state.global_opt_out.get(distinct_id, {})
    config = {channel: topic.channel_config.get(channel, "on") for channel in PREFERENCE_CHANNELS}
    preference: dict[str, str] = {}
    for channel, setting in config.items():
        if setting == "off":
            continue
        value = chosen.get(channel, ("opted-in", 0.0))[0]
        preference[channel] = "opted-in" if setting == "required" else value
    return {
        "subscription_id": topic.subscription_id,
        "name": topic.name,
        "description": topic.description,
        "channel_config": config,
        "preference": preference,
        "is_global_opted_out": {c: True for c in preference if c in global_out},
        "updated_at": {channel: iso(when) for channel, (_, when) in chosen.items()},
        # Always present (the contract requires it); filled when event_list=true.
        "notification_events": [dict(e) for e in topic.notification_events] if with_events else [],
    }


def get_preferences(ctx: Ctx) -> Reply:
    # Docs are silent on an unknown distinct_id: it gets the defaults, since
    # Fyno keeps preferences apart from profiles.
    distinct_id = ctx.query["distinct_id"]
    with_events = ctx.query.get("event_list", "false").lower() == "true"
    global_out = ctx.state.global_opt_out.get(distinct_id, {})
    result = {
        section: [_topic_view(ctx, topic, distinct_id, with_events) for topic in topics]
        for section, topics in ctx.store.sections.items()
    }
    meta = {
        "all": {
            "preference": {channel: "opted-out" for channel in global_out},
            "updated_at": {channel: iso(when) for channel, when in global_out.items()},
        }
    }
    return 200, {"meta": meta, "result": result}


def _check_choices(key: str, choices: Any) -> str | None:
    if not isinstance(choices, dict):
        return f"user_preference.{key} must be an object of channel: opted-in|opted-out"
    for channel, value in choices.items():
        if channel not in PREFERENCE_CHANNELS:
            return f"user_preference.{key}.{channel}: unknown channel"
        if value not in ("opted-in", "opted-out"):
            return f"user_preference.{key}.{channel} must be 'opted-in' or 'opted-out'"
    return None


def _apply_choices(
    ctx: Ctx, distinct_id: str, key: str, choices: Mapping[str, str]
) -> dict[str, str]:
    """Apply one subscription's (or ``all``'s) choices; what was applied."""
    state = ctx.state
    applied: dict[str, str] = {}
    if key == "all":
        global_out = state.global_opt_out.setdefault(distinct_id, {})
        for channel, value in choices.items():
            if value == "opted-out":
                global_out.setdefault(channel, ctx.now)
            else:
                global_out.pop(channel, None)
            applied[channel] = value
        if not global_out:
            del state.global_opt_out[distinct_id]
        return applied
    topic = ctx.store.topics[key]
    chosen = state.preferences.setdefault(distinct_id, {}).setdefault(key, {})
    for channel, value in choices.items():
        setting = topic.channel_config.get(channel, "on")
        if setting == "off":
            continue  # the topic does not use this channel: nothing to apply
        if setting == "required":
            # Docs say a required channel "cannot be opted out"; the request is
            # not refused, the channel stays opted-in and the echo says so.
            value = "opted-in"
        chosen[channel] = (value, ctx.now)
        applied[channel] = value
    return applied


def _unknown_subscription(ctx: Ctx, key: str) -> Reply | None:
    if key != "all" and key not in ctx.store.topics:
        return error(f"Subscription ID '{key}' does not exist")
    return None


def set_preferences(ctx: Ctx) -> Reply:
    distinct_id = ctx.query["distinct_id"]
    wanted = ctx.body["user_preference"]
    for key, choices in wanted.items():  # check everything before changing anything
        refused = _unknown_subscription(ctx, key)
        if refused:
            return refused
        problem = _check_choices(key, choices)
        if problem:
            return error(problem)
    return 200, {key: _apply_choices(ctx, distinct_id, key, c) for key, c in wanted.items()}


def set_subscription(ctx: Ctx) -> Reply:
    key = ctx.params["subscription_id"]
    refused = _unknown_subscription(ctx, key)
    if refused:
        return refused
    body = ctx.body
    choices = {body["channel"]: body["status"]}
    return 200, {key: _apply_choices(ctx, body["distinct_id"], key, choices)}


# --- suppressions ---------------------------------------------------------


def list_suppressions(ctx: Ctx) -> Reply:
    return 200, [item.as_dict() for item in ctx.store.suppressions.values()]


def _valid_destination(channel: str, destination: str) -> bool:
    if channel in ("sms", "whatsapp", "voice"):
        return bool(_PHONE.fullmatch(destination))
    if channel == "email":
        return bool(_EMAIL.fullmatch(destination))
    return bool(destination)


def add_suppression(ctx: Ctx) -> Reply:
    body = ctx.body
    channel = body["channel"]
    if channel not in PREFERENCE_CHANNELS:
        return error(f"Invalid channel '{channel}'")
    distinct_id = body.get("distinct_id") or ""
    # Both ids given: distinct_id wins and the destination is not kept.
    destination = "" if distinct_id else (body.get("destination") or "")
    if not distinct_id and not _valid_destination(channel, destination):
        return error(f"Invalid destination for channel {channel}")
    store = ctx.store
    description = str(body.get("description") or "")
    expiry = str(body.get("expiry_ts") or "")
    # Docs are silent on adding the same entry twice: update it, keep one record.
    for item in store.suppressions.values():
        if (item.channel, item.distinct_id, item.destination) == (
            channel,
            distinct_id,
            destination,
        ):
            item.description, item.expiry_ts = description, expiry
            break
    else:
        _id = store.new_hex(24)
        store.suppressions[_id] = Suppression(
            _id, channel, distinct_id, destination, description, ctx.now, expiry
        )
        store.suppressed.add((channel, distinct_id or destination))
    return 200, {"status": "ok", "_message": "User has been added to the suppression!"}


def delete_suppression(ctx: Ctx) -> Reply:
    store = ctx.store
    # Only the highest-precedence parameter given counts: _id, distinct_id, destination.
    for field_name in ("_id", "distinct_id", "destination"):
        wanted = ctx.query.get(field_name)
        if wanted:
            break
    else:
        return error("One of _id, distinct_id or destination is required")
    if field_name == "_id":
        doomed = [wanted] if wanted in store.suppressions else []
    else:
        doomed = [
            _id for _id, item in store.suppressions.items() if getattr(item, field_name) == wanted
        ]
    if not doomed:
        return error("Unable to delete non existing data!")
    for _id in doomed:
        del store.suppressions[_id]
    store.reindex_suppressions()
    return 200, {"status": "ok", "_message": f"{len(doomed)} record(s) has been deleted!"}


HANDLERS: dict[str, Callable[[Ctx], Reply]] = {
    "send_event": send_event,
    "send_bulk": send_bulk,
    "create_profile": create_profile,
    "get_profile": get_profile,
    "update_profile": update_profile,
    "merge_profiles": merge_profiles,
    "delete_profiles": delete_profiles,
    "update_channels": update_channels,
    "delete_channels": delete_channels,
    "get_preferences": get_preferences,
    "set_preferences": set_preferences,
    "set_subscription": set_subscription,
    "verify_otp": verify_otp,
    **{name: _property_handler(key) for name, key in PROPERTY_KEYS.items()},
    "batch_properties": batch_properties,
    "list_suppressions": list_suppressions,
    "add_suppression": add_suppression,
    "delete_suppression": delete_suppression,
}
