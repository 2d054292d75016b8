"""A user's subscriptions in Fyno: the preference matrix, read, planned and written.

Plain functions shared by every face that shows or changes subscriptions (the
staff page in the admin, the end-user preference center). Fyno is the source
of truth and nothing is stored locally: every page load reads Fyno, and every
change is planned against what Fyno says *now*.

- :func:`load_matrix` reads a profile's preferences from Fyno, in the workspace
  the profile recorded, into a :class:`PreferenceMatrix` (sections → topics →
  channels, plus the global opt-out, ``meta.all``);
- :func:`form_choices` reads a submitted preference form (the fields the
  ``django_fyno/partials/preference_matrix.html`` partial renders);
- :func:`plan_changes` turns what was submitted into the minimal
  :class:`ChangeSet`, refusing what the matrix does not allow (an unknown
  topic, a channel the topic does not have on, opting out of a ``required``
  channel, a value that is neither ``opted-in`` nor ``opted-out``);
- :func:`save_changes` sends a change set in one ``PUT /subscriptions/preference``
  and returns the new matrix (Fyno's answer folded in, or read anew);
- :func:`subscribe_topic` / :func:`unsubscribe_topic` (or :func:`plan_topic`
  and :func:`send_topic`) change one topic with
  ``POST /subscriptions/list/{id}/user``, one request per channel.

Nothing here reaches Fyno with a change the matrix refuses: a change set with
refusals raises :class:`PreferenceRefused` before any request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from django_fyno.client import FynoClient, NotificationEvent, Preferences
from django_fyno.client.validation import PREFERENCE_CHANNELS
from django_fyno.clients import Workspace, client_for
from django_fyno.exceptions import FynoError, FynoValidationError, error_text
from django_fyno.models import FynoProfile

__all__ = [
    "ALL",
    "CHANNEL_LABELS",
    "CHANNEL_ORDER",
    "FIELD_PREFIX",
    "OPTED_IN",
    "OPTED_OUT",
    "SHOWN_PREFIX",
    "ChangeSet",
    "ChannelChoice",
    "PreferenceMatrix",
    "PreferenceRefused",
    "PreferencesNotReloaded",
    "PreferencesUnavailable",
    "Refusal",
    "Section",
    "TopicPreferences",
    "form_choices",
    "load_matrix",
    "matrix_from_preferences",
    "plan_changes",
    "plan_topic",
    "save_changes",
    "send_topic",
    "subscribe_topic",
    "unsubscribe_topic",
]

logger = logging.getLogger(__name__)

OPTED_IN = "opted-in"
OPTED_OUT = "opted-out"
STATUSES = (OPTED_IN, OPTED_OUT)
#: In place of a subscription id: the global preference (``meta.all``).
ALL = "all"

#: Form fields of the matrix: ``fyno:<subscription id>:<channel>`` and ``fyno:all``.
FIELD_PREFIX = "fyno:"
#: What the form showed for a field (``fyno-shown:…``): a field the user left as it
#: was shown is not sent, even when Fyno has changed since (someone else's change).
SHOWN_PREFIX = "fyno-shown:"

_PREFERRED_ORDER = (
    "email",
    "sms",
    "whatsapp",
    "voice",
    "push",
    "webpush",
    "inapp",
    "slack",
    "teams",
    "discord",
)
#: The order channels are shown in: every channel Fyno's preferences know.
CHANNEL_ORDER: tuple[str, ...] = tuple(
    channel for channel in _PREFERRED_ORDER if channel in PREFERENCE_CHANNELS
) + tuple(sorted(PREFERENCE_CHANNELS.difference(_PREFERRED_ORDER)))

CHANNEL_LABELS: dict[str, Promise] = {
    "email": _("Email"),
    "sms": _("SMS"),
    "whatsapp": _("WhatsApp"),
    "voice": _("Voice call"),
    "push": _("Mobile push"),
    "webpush": _("Web push"),
    "inapp": _("In-app"),
    "slack": _("Slack"),
    "teams": _("Microsoft Teams"),
    "discord": _("Discord"),
}

# Longest posted key or channel repeated in a refusal.
_MAX_SHOWN = 64


class PreferencesUnavailable(FynoError):
    """The profile's preferences cannot be read: it has no distinct id in Fyno yet,
    or it is being deleted there. Raised before any request."""


class PreferenceRefused(FynoValidationError):
    """A change the matrix does not allow; nothing was sent. ``refusals`` lists why."""

    def __init__(self, refusals: Iterable[Refusal]) -> None:
        self.refusals = tuple(refusals)
        super().__init__(
            "preferences", "; ".join(str(refusal.message) for refusal in self.refusals)
        )


class PreferencesNotReloaded(FynoError):
    """Fyno accepted a change, but its new state could not be read back.

    The change **was** saved; only the page showing it cannot be built.
    """


# -- the matrix ------------------------------------------------------------------


def _status(opted_in: bool) -> str:
    return OPTED_IN if opted_in else OPTED_OUT


@dataclass(frozen=True)
class ChannelChoice:
    """One channel of one topic: a checkbox of the matrix.

    ``opted_in`` is what Fyno says (always True for a ``required`` channel);
    ``checked`` is what a form shows: the same, unless a submission that could
    not be saved is being shown again (:meth:`PreferenceMatrix.with_choices`).
    """

    subscription_id: str
    channel: str
    required: bool
    opted_in: bool
    checked: bool
    # The user opted out of this channel everywhere ("all"); a required channel
    # is still used (Fyno treats it as transactional).
    globally_opted_out: bool
    updated_at: str | None = None

    @property
    def label(self) -> str:
        return str(CHANNEL_LABELS.get(self.channel, self.channel))

    @property
    def status(self) -> str:
        """``opted-in`` or ``opted-out``, as Fyno has it."""
        return _status(self.opted_in)

    @property
    def field_name(self) -> str:
        """The form field of the checkbox."""
        return f"{FIELD_PREFIX}{self.subscription_id}:{self.channel}"

    @property
    def shown_name(self) -> str:
        """The hidden form field recording what the checkbox showed."""
        return f"{SHOWN_PREFIX}{self.subscription_id}:{self.channel}"


@dataclass(frozen=True)
class TopicPreferences:
    """One subscription topic: its events, and a :class:`ChannelChoice` per channel
    the topic has ``on`` or ``required`` (``off`` channels are left out)."""

    subscription_id: str
    name: str
    description: str
    section: str
    # Position in the matrix (0, 1, …): unique, for HTML ids.
    index: int
    events: tuple[NotificationEvent, ...]
    channels: tuple[ChannelChoice, ...]

    def channel(self, name: object) -> ChannelChoice | None:
        """The topic's choice for channel ``name`` (None: the topic does not use it)."""
        return next((choice for choice in self.channels if choice.channel == name), None)

    @property
    def editable_channels(self) -> tuple[ChannelChoice, ...]:
        return tuple(choice for choice in self.channels if not choice.required)


@dataclass(frozen=True)
class Section:
    """A section of topics, as Fyno groups them."""

    name: str
    topics: tuple[TopicPreferences, ...]


@dataclass(frozen=True)
class PreferenceMatrix:
    """A user's subscriptions as Fyno reported them, for one profile in one workspace."""

    workspace: Workspace
    distinct_id: str
    sections: tuple[Section, ...]
    # The channels the user opted out of everywhere (``meta.all``).
    global_opt_out: frozenset[str]
    # What a form shows for the "unsubscribe from everything" switch.
    all_checked: bool
    # Whether the topics' events were asked for (``event_list=true``).
    with_events: bool = True
    # Fyno's GET answer the matrix was built from (not updated by applied()).
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def topics(self) -> tuple[TopicPreferences, ...]:
        """Every topic, in order."""
        return tuple(topic for section in self.sections for topic in section.topics)

    def topic(self, subscription_id: object) -> TopicPreferences | None:
        """The topic ``subscription_id`` (None: not in this user's matrix)."""
        return next(
            (topic for topic in self.topics if topic.subscription_id == subscription_id), None
        )

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels some topic uses, in :data:`CHANNEL_ORDER`."""
        used = {choice.channel for topic in self.topics for choice in topic.channels}
        return tuple(channel for channel in CHANNEL_ORDER if channel in used)

    @property
    def channel_options(self) -> tuple[tuple[str, str], ...]:
        """``(channel, label)`` of :attr:`channels`, for a ``<select>``."""
        return tuple(
            (channel, str(CHANNEL_LABELS.get(channel, channel))) for channel in self.channels
        )

    @property
    def unsubscribed_from_all(self) -> bool:
        """The global switch as Fyno has it: every channel the topics use is opted
        out everywhere (``meta.all``). False when no topic uses any channel."""
        channels = self.channels
        return bool(channels) and set(channels) <= self.global_opt_out

    @property
    def global_opt_out_labels(self) -> tuple[str, ...]:
        """Labels of the channels opted out everywhere, in order."""
        return tuple(
            str(CHANNEL_LABELS.get(channel, channel))
            for channel in CHANNEL_ORDER
            if channel in self.global_opt_out
        )

    def state(self) -> dict[str, dict[str, str]]:
        """``{subscription id: {channel: status}}`` as Fyno has it, plus
        ``{"all": {channel: "opted-out"}}`` for the global opt-outs."""
        state = {
            topic.subscription_id: {choice.channel: choice.status for choice in topic.channels}
            for topic in self.topics
        }
        state[ALL] = {
            channel: OPTED_OUT for channel in CHANNEL_ORDER if channel in self.global_opt_out
        }
        return state

    def as_json(self) -> dict[str, Any]:
        """The matrix as JSON-ready data (for a JSON API)."""
        return {
            "distinct_id": self.distinct_id,
            "all": {
                "unsubscribed": self.unsubscribed_from_all,
                "opted_out": [c for c in CHANNEL_ORDER if c in self.global_opt_out],
            },
            "sections": [
                {
                    "name": section.name,
                    "topics": [
                        {
                            "subscription_id": topic.subscription_id,
                            "name": topic.name,
                            "description": topic.description,
                            "events": [
                                {"event_id": event.event_id, "event_name": event.event_name}
                                for event in topic.events
                            ],
                            "channels": [
                                {
                                    "channel": choice.channel,
                                    "label": choice.label,
                                    "required": choice.required,
                                    "status": choice.status,
                                    "globally_opted_out": choice.globally_opted_out,
                                }
                                for choice in topic.channels
                            ],
                        }
                        for topic in section.topics
                    ],
                }
                for section in self.sections
            ],
        }

    def _rebuilt(
        self,
        choose: Mapping[tuple[str, str], bool],
        *,
        fyno: bool,
        global_opt_out: frozenset[str] | None = None,
        all_checked: bool | None = None,
    ) -> PreferenceMatrix:
        """A copy with ``choose[(subscription id, channel)]`` applied to the editable
        channels: to what Fyno has (``fyno``, then ``checked`` follows) or to what
        the form shows (``checked`` only)."""
        opted_out = self.global_opt_out if global_opt_out is None else global_opt_out
        sections = []
        for section in self.sections:
            topics = []
            for topic in section.topics:
                channels = []
                for choice in topic.channels:
                    wanted = choose.get((topic.subscription_id, choice.channel))
                    if choice.required or wanted is None:
                        opted_in, checked = choice.opted_in, choice.checked
                    elif fyno:
                        opted_in = checked = wanted
                    else:
                        opted_in, checked = choice.opted_in, wanted
                    if fyno:
                        checked = opted_in
                    channels.append(
                        replace(
                            choice,
                            opted_in=opted_in,
                            checked=checked,
                            globally_opted_out=choice.channel in opted_out,
                        )
                    )
                topics.append(replace(topic, channels=tuple(channels)))
            sections.append(replace(section, topics=tuple(topics)))
        matrix = replace(self, sections=tuple(sections), global_opt_out=opted_out)
        if all_checked is None:
            all_checked = matrix.unsubscribed_from_all if fyno else self.all_checked
        return replace(matrix, all_checked=all_checked)

    def with_choices(self, wanted: Mapping[str, Any]) -> PreferenceMatrix:
        """A copy whose checkboxes show ``wanted`` (as :func:`plan_changes` takes
        it) where the matrix allows it: a submission shown again after it could not
        be saved. What Fyno has (``opted_in``) is unchanged."""
        choose: dict[tuple[str, str], bool] = {}
        all_checked = self.all_checked
        for key, value in wanted.items():
            if key == ALL:
                status = _last(value)
                if status in STATUSES:
                    all_checked = status == OPTED_OUT
                continue
            topic = self.topic(key)
            if topic is None or not isinstance(value, Mapping):
                continue
            for channel, status in value.items():
                status = _last(status)
                if topic.channel(channel) is not None and status in STATUSES:
                    choose[(topic.subscription_id, channel)] = status == OPTED_IN
        return self._rebuilt(choose, fyno=False, all_checked=all_checked)

    def applied(self, updates: Mapping[str, Mapping[str, str]]) -> PreferenceMatrix:
        """A copy with Fyno's answer to a write (``{subscription id or "all":
        {channel: status}}``) folded in; what the answer does not name is unchanged,
        and a ``required`` channel stays opted in whatever it says."""
        choose: dict[tuple[str, str], bool] = {}
        opted_out = set(self.global_opt_out)
        for key, channels in updates.items():
            if not isinstance(channels, Mapping):
                continue
            for channel, status in channels.items():
                if status not in STATUSES:
                    continue
                if key == ALL:
                    if channel in PREFERENCE_CHANNELS:
                        if status == OPTED_OUT:
                            opted_out.add(channel)
                        else:
                            opted_out.discard(channel)
                else:
                    choose[(key, channel)] = status == OPTED_IN
        return self._rebuilt(choose, fyno=True, global_opt_out=frozenset(opted_out))


def matrix_from_preferences(
    preferences: Preferences,
    *,
    workspace: Workspace,
    distinct_id: str,
    with_events: bool = True,
) -> PreferenceMatrix:
    """Build the matrix from Fyno's answer to ``GET /subscriptions/preference``.

    Only what the answer vouches for is kept: a topic needs a subscription id (the
    first of two topics with one id wins), a channel must be one preferences know
    with ``channel_config`` ``on`` or ``required``. A missing preference is Fyno's
    default, ``opted-in``; a ``required`` channel is always opted in.
    """
    global_opt_out = frozenset(
        channel
        for channel, value in preferences.global_preference.preference.items()
        if value == OPTED_OUT and channel in PREFERENCE_CHANNELS
    )
    seen: set[str] = set()
    sections: list[Section] = []
    index = 0
    for section_name, topics in preferences.sections.items():
        built: list[TopicPreferences] = []
        for topic in topics:
            sid = topic.subscription_id
            if not sid or sid == ALL or sid in seen:
                logger.warning(
                    "Fyno preference topic skipped: %s subscription id %r",
                    "duplicate" if sid in seen else "missing or invalid",
                    sid,
                )
                continue
            seen.add(sid)
            channels = []
            for channel in CHANNEL_ORDER:
                config = topic.channel_config.get(channel)
                if config not in ("on", "required"):
                    continue
                required = config == "required"
                opted_in = required or topic.preference.get(channel) != OPTED_OUT
                updated = topic.updated_at.get(channel)
                channels.append(
                    ChannelChoice(
                        subscription_id=sid,
                        channel=channel,
                        required=required,
                        opted_in=opted_in,
                        checked=opted_in,
                        globally_opted_out=channel in global_opt_out,
                        updated_at=updated if isinstance(updated, str) else None,
                    )
                )
            built.append(
                TopicPreferences(
                    subscription_id=sid,
                    name=topic.name or sid,
                    description=topic.description or "",
                    section=section_name,
                    index=index,
                    events=topic.notification_events,
                    channels=tuple(channels),
                )
            )
            index += 1
        if built:
            sections.append(Section(section_name, tuple(built)))
    matrix = PreferenceMatrix(
        workspace=workspace,
        distinct_id=distinct_id,
        sections=tuple(sections),
        global_opt_out=global_opt_out,
        all_checked=False,
        with_events=with_events,
        raw=preferences.raw,
    )
    return replace(matrix, all_checked=matrix.unsubscribed_from_all)


def _fetch(
    client: FynoClient, workspace: Workspace, distinct_id: str, with_events: bool
) -> PreferenceMatrix:
    preferences = client.get_preferences(distinct_id, event_list=with_events)
    return matrix_from_preferences(
        preferences, workspace=workspace, distinct_id=distinct_id, with_events=with_events
    )


# States of a profile Fyno is deleting or has deleted (with its preferences).
_GONE = frozenset({str(FynoProfile.State.DELETING), str(FynoProfile.State.DELETED)})


def load_matrix(profile: FynoProfile, *, events: bool = True) -> PreferenceMatrix:
    """Read ``profile``'s subscriptions from Fyno, in the workspace the profile
    recorded (``GET /subscriptions/preference``, with ``event_list=true`` unless
    ``events`` is False).

    Raises :class:`PreferencesUnavailable` (no request) when the profile has no
    distinct id yet or is being deleted from Fyno, ``WorkspaceUnavailable`` when
    its workspace has no credentials any more, and any :class:`FynoError` of the
    request.
    """
    if profile.state in _GONE:
        raise PreferencesUnavailable(str(_("the profile is being deleted from Fyno")))
    if not profile.distinct_id:
        raise PreferencesUnavailable(str(_("the profile has not been synced to Fyno yet")))
    workspace = Workspace.of(profile)
    return _fetch(client_for(workspace), workspace, profile.distinct_id, events)


# -- planning changes ------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """One submitted entry that will not be sent, and why.

    ``reason`` is one of ``unknown-topic``, ``channel-not-on``, ``required`` and
    ``invalid``; ``key`` is the subscription id (or ``all``) as submitted.
    """

    UNKNOWN_TOPIC = "unknown-topic"
    CHANNEL_NOT_ON = "channel-not-on"
    REQUIRED = "required"
    INVALID = "invalid"

    key: str
    channel: str | None
    reason: str

    @property
    def message(self) -> str:
        where = self.key if self.channel is None else f"{self.key} / {self.channel}"
        if self.reason == self.UNKNOWN_TOPIC:
            text = _("%(where)s: not a topic of this user's subscriptions")
        elif self.reason == self.CHANNEL_NOT_ON:
            text = _("%(where)s: the topic does not use this channel")
        elif self.reason == self.REQUIRED:
            text = _("%(where)s: a required channel cannot be opted out")
        else:
            text = _("%(where)s: not a valid choice")
        return str(text) % {"where": where}


@dataclass(frozen=True)
class ChangeSet:
    """The changes a submission asks for, against one matrix.

    ``changes`` is exactly the ``user_preference`` a PUT sends: ``{subscription
    id or "all": {channel: "opted-in"|"opted-out"}}``, holding only entries that
    differ from what Fyno has. ``refused`` lists the entries the matrix does not
    allow; a change set with refusals is never sent.
    """

    distinct_id: str
    changes: dict[str, dict[str, str]]
    refused: tuple[Refusal, ...] = ()

    @property
    def empty(self) -> bool:
        """Nothing to send (and nothing refused)."""
        return not self.changes and not self.refused

    def count(self) -> int:
        """How many channel changes it holds."""
        return sum(len(channels) for channels in self.changes.values())

    def describe(self) -> str:
        """``"SGENERAL01 email opted-out, all sms opted-out"``: for a log."""
        return ", ".join(
            f"{key} {channel} {status}"
            for key, channels in self.changes.items()
            for channel, status in channels.items()
        )


def _shorten(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"


def _values(data: Any, name: str) -> list[Any]:
    if hasattr(data, "getlist"):
        return list(data.getlist(name))
    value = data[name]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _last(value: Any) -> Any:
    """The value a field ends with: a checkbox after its hidden "unchecked" value."""
    if isinstance(value, (list, tuple)):
        return value[-1] if value else None
    return value


def form_choices(data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(wanted, shown)`` from a submitted preference form (a ``QueryDict`` or a
    mapping), in the nested shape :func:`plan_changes` takes.

    Fields named ``fyno:<subscription id>:<channel>`` and ``fyno:all`` are the
    choices; ``fyno-shown:…`` what the form showed for them. A field given more
    than once counts with its last value (a checkbox after its hidden unchecked
    value). Other fields are ignored. Nothing is checked here.
    """
    wanted: dict[str, Any] = {}
    shown: dict[str, Any] = {}
    for name in data:
        if not isinstance(name, str):
            continue
        if name.startswith(SHOWN_PREFIX):
            target, rest = shown, name[len(SHOWN_PREFIX) :]
        elif name.startswith(FIELD_PREFIX):
            target, rest = wanted, name[len(FIELD_PREFIX) :]
        else:
            continue
        value = _last(_values(data, name))
        if rest == ALL:
            target[ALL] = value
            continue
        key, _sep, channel = rest.rpartition(":")
        if not key:  # "fyno:xyz": no channel; planned (and refused) as a topic "xyz"
            key, channel = rest, ""
        entry = target.setdefault(key, {})
        if isinstance(entry, dict):
            entry[channel] = value
    return wanted, shown


def _shown_value(shown: Mapping[str, Any] | None, key: str, channel: str | None) -> Any:
    if not shown or key not in shown:
        return None
    entry = shown[key]
    if channel is None:
        return _last(entry)
    return _last(entry.get(channel)) if isinstance(entry, Mapping) else None


def _plan_all(
    matrix: PreferenceMatrix,
    value: Any,
    shown: Mapping[str, Any] | None,
    changes: dict[str, dict[str, str]],
    refused: list[Refusal],
) -> None:
    """The global preference: a switch (``"opted-out"``: unsubscribe from
    everything) or Fyno's own shape, ``{channel: status}``."""
    if isinstance(value, Mapping):
        for channel, status in value.items():
            status = _last(status)
            if channel not in PREFERENCE_CHANNELS or status not in STATUSES:
                refused.append(Refusal(ALL, _shorten(channel), Refusal.INVALID))
            elif (channel in matrix.global_opt_out) != (status == OPTED_OUT) and (
                _shown_value(shown, ALL, channel) != status
            ):
                changes.setdefault(ALL, {})[channel] = status
        return
    status = _last(value)
    if status not in STATUSES:
        refused.append(Refusal(ALL, None, Refusal.INVALID))
        return
    if _shown_value(shown, ALL, None) == status:
        return  # the switch was left as the form showed it
    if status == OPTED_OUT and not matrix.unsubscribed_from_all:
        # Everything: every channel Fyno knows, not only those topics use today.
        channels = [c for c in CHANNEL_ORDER if c not in matrix.global_opt_out]
    elif status == OPTED_IN:
        channels = [c for c in CHANNEL_ORDER if c in matrix.global_opt_out]
    else:
        channels = []
    if channels:
        changes[ALL] = {channel: str(status) for channel in channels}


def plan_changes(
    matrix: PreferenceMatrix,
    wanted: Mapping[str, Any],
    *,
    shown: Mapping[str, Any] | None = None,
) -> ChangeSet:
    """The minimal change set for ``wanted`` against ``matrix`` (pure: no request).

    ``wanted`` is ``{subscription id: {channel: "opted-in"|"opted-out"}}``, plus
    optionally ``"all"``: either the switch (``"opted-out"``: unsubscribe from
    everything; ``"opted-in"``: take every global opt-out back) or Fyno's
    ``{channel: status}``. What it leaves out is left as it is.

    An entry is sent only when it differs from what Fyno has and, when ``shown``
    (what the form showed, as :func:`form_choices` gives it) names the entry,
    from what was shown: a checkbox the user did not touch never overwrites a
    change made elsewhere since the page was built.

    Refused (never sent): a subscription id not in the matrix, a channel the
    topic does not have ``on`` or ``required``, opting out of a ``required``
    channel, a value that is not ``opted-in``/``opted-out``. Opting *in* to a
    required channel is no change (it always is).
    """
    changes: dict[str, dict[str, str]] = {}
    refused: list[Refusal] = []
    for key, value in wanted.items():
        if not isinstance(key, str):
            refused.append(Refusal(_shorten(key), None, Refusal.INVALID))
            continue
        if key == ALL:
            _plan_all(matrix, value, shown, changes, refused)
            continue
        topic = matrix.topic(key)
        if topic is None:
            refused.append(Refusal(_shorten(key), None, Refusal.UNKNOWN_TOPIC))
            continue
        if not isinstance(value, Mapping):
            refused.append(Refusal(_shorten(key), None, Refusal.INVALID))
            continue
        for channel, posted in value.items():
            choice = topic.channel(channel)
            if choice is None:
                refused.append(Refusal(key, _shorten(channel), Refusal.CHANNEL_NOT_ON))
                continue
            status = _last(posted)
            if status not in STATUSES:
                refused.append(Refusal(key, choice.channel, Refusal.INVALID))
            elif choice.required:
                if status == OPTED_OUT:
                    refused.append(Refusal(key, choice.channel, Refusal.REQUIRED))
            elif status != choice.status and _shown_value(shown, key, choice.channel) != status:
                changes.setdefault(key, {})[choice.channel] = status
    return ChangeSet(matrix.distinct_id, changes, tuple(refused))


def plan_topic(
    matrix: PreferenceMatrix,
    subscription_id: object,
    status: object,
    *,
    channel: object = None,
) -> ChangeSet:
    """The change set subscribing (``"opted-in"``) or unsubscribing (``"opted-out"``)
    the user to one topic: one channel, or (``channel`` None or empty) every
    channel of the topic that differs. Unsubscribing from a whole topic leaves
    its ``required`` channels on; naming a required channel to opt out of it is
    refused, as are an unknown topic, a channel the topic does not use and any
    other status."""
    topic = matrix.topic(subscription_id)
    if topic is None:
        refusal = Refusal(_shorten(subscription_id), None, Refusal.UNKNOWN_TOPIC)
        return ChangeSet(matrix.distinct_id, {}, (refusal,))
    sid = topic.subscription_id
    if status not in STATUSES:
        return ChangeSet(matrix.distinct_id, {}, (Refusal(sid, None, Refusal.INVALID),))
    if channel is None or channel == "":
        choices: tuple[ChannelChoice, ...] = topic.editable_channels
    else:
        choice = topic.channel(channel)
        if choice is None:
            refusal = Refusal(sid, _shorten(channel), Refusal.CHANNEL_NOT_ON)
            return ChangeSet(matrix.distinct_id, {}, (refusal,))
        if choice.required:
            refused = (Refusal(sid, choice.channel, Refusal.REQUIRED),)
            return ChangeSet(matrix.distinct_id, {}, refused if status == OPTED_OUT else ())
        choices = (choice,)
    wanted = {choice.channel: str(status) for choice in choices if choice.status != status}
    return ChangeSet(matrix.distinct_id, {sid: wanted} if wanted else {})


# -- writing ---------------------------------------------------------------------


def _check_sendable(matrix: PreferenceMatrix, changes: ChangeSet) -> None:
    if changes.refused:
        raise PreferenceRefused(changes.refused)
    if changes.distinct_id != matrix.distinct_id:
        raise ValueError("the change set was planned for another profile's matrix")


def _after_write(
    client: FynoClient,
    matrix: PreferenceMatrix,
    sent: Mapping[str, Mapping[str, str]],
    answer: Mapping[str, Mapping[str, str]],
) -> PreferenceMatrix:
    """The matrix after a write: Fyno's answer folded in when it names every
    channel sent; otherwise read anew (a failure to read is PreferencesNotReloaded)."""
    complete = all(
        isinstance(answer.get(key), Mapping) and channel in answer[key]
        for key, channels in sent.items()
        for channel in channels
    )
    if complete:
        return matrix.applied(answer)
    try:
        return _fetch(client, matrix.workspace, matrix.distinct_id, matrix.with_events)
    except FynoError as error:
        raise PreferencesNotReloaded(
            str(_("Saved in Fyno, but the new subscriptions could not be read back: %(error)s"))
            % {"error": error_text(error)}
        ) from None


def save_changes(matrix: PreferenceMatrix, changes: ChangeSet) -> PreferenceMatrix:
    """Send ``changes`` in one ``PUT /subscriptions/preference`` for the matrix's
    profile and workspace; the new matrix, from Fyno's answer (or read anew when
    the answer does not name every channel sent).

    No request when the change set is empty. Raises :class:`PreferenceRefused`
    (no request) when it holds refusals, any :class:`FynoError` of the PUT (the
    change may or may not have been applied on a timeout), and
    :class:`PreferencesNotReloaded` when the change was saved but could not be
    read back.
    """
    _check_sendable(matrix, changes)
    if not changes.changes:
        return matrix
    client = client_for(matrix.workspace)
    answer = client.set_preferences(matrix.distinct_id, changes.changes)
    logger.info("Fyno preferences of %s changed: %s", matrix.distinct_id, changes.describe())
    return _after_write(client, matrix, changes.changes, answer.preferences)


def send_topic(matrix: PreferenceMatrix, changes: ChangeSet) -> PreferenceMatrix:
    """Send ``changes`` (from :func:`plan_topic`) with one
    ``POST /subscriptions/list/{id}/user`` per channel; the new matrix.

    Raises like :func:`save_changes`. When a request fails after others were
    accepted, those stay applied: read the matrix again to show the truth.
    """
    _check_sendable(matrix, changes)
    if not changes.changes:
        return matrix
    client = client_for(matrix.workspace)
    answer: dict[str, dict[str, str]] = {}
    for key, channels in changes.changes.items():
        for channel, status in channels.items():
            reply = client.set_subscription(
                key, distinct_id=matrix.distinct_id, channel=channel, status=status
            )
            for echoed, values in reply.preferences.items():
                answer.setdefault(echoed, {}).update(values)
    logger.info("Fyno subscriptions of %s changed: %s", matrix.distinct_id, changes.describe())
    return _after_write(client, matrix, changes.changes, answer)


def subscribe_topic(
    matrix: PreferenceMatrix, subscription_id: str, *, channel: str | None = None
) -> PreferenceMatrix:
    """Opt the user in to one topic (every channel, or ``channel``); the new matrix."""
    return send_topic(matrix, plan_topic(matrix, subscription_id, OPTED_IN, channel=channel))


def unsubscribe_topic(
    matrix: PreferenceMatrix, subscription_id: str, *, channel: str | None = None
) -> PreferenceMatrix:
    """Opt the user out of one topic (every channel but the required ones, or
    ``channel``; a required one is refused); the new matrix."""
    return send_topic(matrix, plan_topic(matrix, subscription_id, OPTED_OUT, channel=channel))
