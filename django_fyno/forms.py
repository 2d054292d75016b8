"""The end-user preference center's forms: the HTML form and the JSON body.

Both are read into the shape :func:`django_fyno.preferences.plan_changes` takes
and planned against what Fyno has *now*; nothing here stores anything.

- :class:`PreferenceForm` loads one profile's matrix from Fyno, reads a posted
  form (the fields ``django_fyno/partials/preference_matrix.html`` renders),
  saves what changed and keeps what a page needs to show: the matrix (or why
  there is none), a notice, and an error summary whose entries link to fields;
- :func:`read_json_changes` checks a JSON API body and gives the same shape;
- :func:`matrix_as_json` is the JSON API's view of a matrix.

Messages are written for the people whose preferences these are: they never
hold Fyno's answers, ids the user did not see, or anything posted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from django_fyno import preferences
from django_fyno.exceptions import FynoError, FynoTransientError, error_text
from django_fyno.models import FynoProfile
from django_fyno.preferences import ChangeSet, PreferenceMatrix, Refusal

__all__ = [
    "ID_PREFIX",
    "MAX_TOPICS",
    "NOT_AVAILABLE_YET",
    "InvalidChanges",
    "PreferenceForm",
    "Problem",
    "UnsubscribeForm",
    "matrix_as_json",
    "problems_of",
    "read_json_changes",
]

logger = logging.getLogger(__name__)

#: Prefix of the HTML ids of the matrix (the partial's default).
ID_PREFIX = "fyno-pref"
#: The most topics one JSON body may name.
MAX_TOPICS = 500
_BODY_KEYS = ("all", "topics")
# The user has no profile in Fyno yet (not synced), or it is being deleted.
NOT_AVAILABLE_YET = gettext_lazy(
    "Your notification preferences are not available yet. Please try again later."
)


@dataclass(frozen=True)
class Problem:
    """An entry of a page's error summary: what is wrong, and the id of the field
    it is about (None: the form as a whole)."""

    text: str
    field_id: str | None = None


def _topic_name(matrix: PreferenceMatrix, key: str) -> str:
    topic = matrix.topic(key)
    return topic.name if topic is not None else ""


def _problem(matrix: PreferenceMatrix, refusal: Refusal, id_prefix: str) -> Problem:
    """A refusal in words for the user; never repeats what was posted."""
    if refusal.key == preferences.ALL:
        return Problem(
            _("The choice “Unsubscribe from everything” is not valid."), f"{id_prefix}-all"
        )
    topic = matrix.topic(refusal.key)
    if topic is None:
        return Problem(_("A submitted topic is not one of your subscriptions."))
    choice = topic.channel(refusal.channel)
    field_id = f"{id_prefix}-{topic.index}-{choice.channel}" if choice is not None else None
    names = {"topic": topic.name, "channel": choice.label if choice is not None else ""}
    if refusal.reason == Refusal.REQUIRED:
        text = _("%(topic)s: %(channel)s is required and cannot be turned off.") % names
    elif refusal.reason == Refusal.CHANNEL_NOT_ON:
        text = _("%(topic)s: a submitted channel is not used by this topic.") % names
    else:
        text = _("%(topic)s: a submitted choice is not valid.") % names
    return Problem(text, field_id)


def problems_of(
    matrix: PreferenceMatrix, changes: ChangeSet, id_prefix: str = ID_PREFIX
) -> list[Problem]:
    """The refusals of a change set as an error summary (one entry per distinct text)."""
    found: list[Problem] = []
    for refusal in changes.refused:
        problem = _problem(matrix, refusal, id_prefix)
        if problem not in found:
            found.append(problem)
    return found


@dataclass
class PreferenceForm:
    """The preference form of one profile (None: the user has none yet).

    :meth:`load` reads the matrix; :meth:`save` plans a submission against a
    fresh read and sends what changed. Afterwards: ``matrix`` is what to show
    (None: nothing the page can vouch for, ``unavailable`` says why),
    ``notice`` a message for the user, ``problems`` the error summary, and
    ``saved`` whether Fyno accepted a change.
    """

    profile: FynoProfile | None
    id_prefix: str = ID_PREFIX
    matrix: PreferenceMatrix | None = None
    unavailable: str = ""
    notice: str = ""
    problems: list[Problem] = field(default_factory=list)
    saved: bool = False
    # The failure of the last request to Fyno, for a caller choosing a status.
    error: FynoError | None = field(default=None, repr=False)

    @classmethod
    def for_user(cls, user: Any, **kwargs: Any) -> PreferenceForm:
        """The form of ``user``'s own profile: the one place the preference center
        chooses whose preferences it shows, from the signed-in user alone."""
        profile = FynoProfile.objects.filter(user_id=user.pk).first() if user.pk else None
        return cls(profile, **kwargs)

    def load(self) -> PreferenceMatrix | None:
        """Read the matrix as Fyno has it now; None (``unavailable`` set) on failure."""
        self.matrix = None
        self.error = None
        if self.profile is None:
            self.unavailable = str(NOT_AVAILABLE_YET)
            return None
        try:
            self.matrix = preferences.load_matrix(self.profile)
        except preferences.PreferencesUnavailable as error:
            self.error = error
            self.unavailable = str(NOT_AVAILABLE_YET)
        except FynoError as error:
            self.error = error
            logger.warning(
                "Fyno preferences of profile %s could not be read: %s",
                self.profile.pk,
                error_text(error),
            )
            self.unavailable = _(
                "Your notification preferences cannot be loaded right now, so none are "
                "shown. Please try again in a few minutes."
            )
        return self.matrix

    def save(self, data: Mapping[str, Any]) -> bool:
        """Save a posted form (a ``QueryDict``); True when Fyno accepted a change.

        Every field but the matrix's own is ignored: whose preferences these are
        comes from ``profile``, never from the submission.
        """
        wanted, shown = preferences.form_choices(data)
        return self.save_wanted(wanted, shown)

    def save_wanted(self, wanted: Mapping[str, Any], shown: Mapping[str, Any] | None) -> bool:
        """Save choices in :func:`~django_fyno.preferences.plan_changes`'s shape."""
        matrix = self.load()
        if matrix is None:
            return False
        changes = preferences.plan_changes(matrix, wanted, shown=shown)
        if changes.refused:
            self.problems = problems_of(matrix, changes, self.id_prefix)
            self.matrix = matrix.with_choices(wanted)
            return False
        if not changes.changes:
            self.notice = _("Nothing to save: your preferences already are as shown.")
            return False
        try:
            self.matrix = preferences.save_changes(matrix, changes)
        except preferences.PreferencesNotReloaded as error:
            self.error = error
            self.saved = True
            self.matrix = None
            self.unavailable = _(
                "Your preferences have been saved, but they cannot be shown right now. "
                "Reload the page in a few minutes to see them."
            )
            return True
        except FynoError as error:
            self.error = error
            logger.warning(
                "Fyno preferences of profile %s could not be saved: %s",
                self.profile.pk if self.profile is not None else None,
                error_text(error),
            )
            self.problems = [
                Problem(
                    _(
                        "Your changes could not be saved right now. Your choices are kept "
                        "below: please save again in a few minutes."
                    )
                )
            ]
            self.matrix = matrix.with_choices(wanted)
            return False
        self.saved = True
        self.notice = _("Your preferences have been saved.")
        return True

    @property
    def fyno_failed(self) -> bool:
        """Whether Fyno (not the submission) is why the last step did not succeed."""
        return self.error is not None and not isinstance(
            self.error, preferences.PreferencesUnavailable
        )

    @property
    def fyno_transient(self) -> bool:
        """Whether Fyno's failure is worth retrying soon (a timeout, a 5xx, a 429)."""
        return isinstance(self.error, (FynoTransientError, preferences.PreferencesNotReloaded))


@dataclass
class UnsubscribeForm:
    """Unsubscribing one profile from one topic (``topic``), or from everything (None).

    :meth:`load` reads the matrix to show what the link does; :meth:`save`
    unsubscribes with one ``PUT /subscriptions/preference``: from a topic, every
    channel of it but the required ones; from everything, the global opt-out
    (``all``). Saving twice changes nothing the second time.
    """

    profile: FynoProfile
    topic: str | None
    matrix: PreferenceMatrix | None = None
    done: bool = False
    # The topic is no longer one of the user's: there is nothing to unsubscribe from.
    gone: bool = False
    error: FynoError | None = field(default=None, repr=False)

    def load(self) -> PreferenceMatrix | None:
        """The matrix as Fyno has it now; None when it cannot be read."""
        self.matrix = None
        self.error = None
        try:
            self.matrix = preferences.load_matrix(self.profile, events=False)
        except FynoError as error:
            self.error = error
            logger.warning(
                "Fyno preferences of profile %s could not be read: %s",
                self.profile.pk,
                error_text(error),
            )
        return self.matrix

    @property
    def everything(self) -> bool:
        return self.topic is None

    @property
    def topic_name(self) -> str:
        """The topic's name as Fyno has it ("" when unknown or not loaded)."""
        if self.matrix is None or self.topic is None:
            return ""
        return _topic_name(self.matrix, self.topic)

    @property
    def already(self) -> bool:
        """Whether there is nothing left to unsubscribe from."""
        if self.matrix is None:
            return False
        if self.topic is None:
            return self.matrix.unsubscribed_from_all
        topic = self.matrix.topic(self.topic)
        return topic is None or all(not choice.opted_in for choice in topic.editable_channels)

    def _changes(self, matrix: PreferenceMatrix) -> ChangeSet:
        if self.topic is None:
            return preferences.plan_changes(matrix, {preferences.ALL: preferences.OPTED_OUT})
        return preferences.plan_topic(matrix, self.topic, preferences.OPTED_OUT)

    def save(self) -> bool:
        """Unsubscribe; True when the profile is (now, or already) unsubscribed."""
        matrix = self.load()
        if matrix is None:
            return False
        if self.topic is not None and matrix.topic(self.topic) is None:
            self.gone = self.done = True
            return True
        changes = self._changes(matrix)
        try:
            self.matrix = preferences.save_changes(matrix, changes)
        except preferences.PreferencesNotReloaded:
            self.matrix = None  # saved: only the new state could not be read back
        except FynoError as error:
            self.error = error
            logger.warning(
                "Fyno unsubscribe of profile %s failed: %s", self.profile.pk, error_text(error)
            )
            return False
        if changes.changes:
            logger.info("Fyno profile %s unsubscribed through a signed link", self.profile.pk)
        self.done = True
        return True


# -- the JSON API --------------------------------------------------------------------


class InvalidChanges(ValueError):
    """A JSON API body that is not a valid change; its message is safe to show."""


def _reject_constant(name: str) -> Any:
    raise InvalidChanges(
        _("The body is not valid JSON: %(name)s is not a number.") % {"name": name}
    )


def _parse(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidChanges(_("The body is not UTF-8 text.")) from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except InvalidChanges:
        raise
    except (ValueError, RecursionError):
        # ValueError also covers integers too long to read (int_max_str_digits).
        raise InvalidChanges(_("The body is not valid JSON.")) from None


def _status(unsubscribed: bool) -> str:
    return preferences.OPTED_OUT if unsubscribed else preferences.OPTED_IN


def read_json_changes(body: bytes) -> dict[str, Any]:
    """The changes a JSON API body asks for, in ``plan_changes``'s ``wanted`` shape.

    The body is ``{"all": bool, "topics": {"<subscription id>": {"<channel>":
    bool}}}``, both keys optional: ``"all": true`` unsubscribes from everything,
    a channel ``true`` subscribes to it, ``false`` unsubscribes. Anything else (an
    unknown key, a value that is not a boolean, NaN, a deep structure) raises
    :class:`InvalidChanges`; whether the topics and channels exist is for
    ``plan_changes`` to say.
    """
    data = _parse(body)
    if not isinstance(data, dict):
        raise InvalidChanges(_("The body must be a JSON object."))
    unknown = [key for key in data if key not in _BODY_KEYS]
    if unknown:
        raise InvalidChanges(_("The body may only have the keys “all” and “topics”."))
    wanted: dict[str, Any] = {}
    if "all" in data:
        if not isinstance(data["all"], bool):
            raise InvalidChanges(_("“all” must be true or false."))
        wanted[preferences.ALL] = _status(data["all"])
    topics = data.get("topics", {})
    if not isinstance(topics, dict):
        raise InvalidChanges(_("“topics” must be an object of topic ids."))
    if len(topics) > MAX_TOPICS:
        raise InvalidChanges(_("“topics” names too many topics."))
    for topic_id, channels in topics.items():
        if topic_id == preferences.ALL:
            raise InvalidChanges(_("Use the key “all” to unsubscribe from everything."))
        if not isinstance(channels, dict) or not all(
            isinstance(value, bool) for value in channels.values()
        ):
            raise InvalidChanges(
                _("Each topic must be an object of channels set to true or false.")
            )
        wanted[topic_id] = {
            channel: _status(not subscribed) for channel, subscribed in channels.items()
        }
    return wanted


def matrix_as_json(matrix: PreferenceMatrix) -> dict[str, Any]:
    """A matrix in the JSON API's shape (see the preference center's docs)."""
    return {
        "all": matrix.unsubscribed_from_all,
        "unsubscribed_everywhere": [
            channel for channel in preferences.CHANNEL_ORDER if channel in matrix.global_opt_out
        ],
        "sections": [
            {
                "name": section.name,
                "topics": [
                    {
                        "id": topic.subscription_id,
                        "name": topic.name,
                        "description": topic.description,
                        "events": [event.event_name or event.event_id for event in topic.events],
                        "channels": {
                            choice.channel: {
                                "label": choice.label,
                                "subscribed": choice.opted_in,
                                "required": choice.required,
                            }
                            for choice in topic.channels
                        },
                    }
                    for topic in section.topics
                ],
            }
            for section in matrix.sections
        ],
    }
