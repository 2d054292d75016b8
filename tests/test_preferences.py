"""django_fyno.preferences against the in-process emulator: what is read, planned and sent.

Every test checks what the emulator holds and which requests reached it; the
emulator (Fyno's side) is the only thing stood in for.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.http import QueryDict
from django.test import override_settings

from django_fyno import preferences
from django_fyno.client import FynoServerError, Preferences
from django_fyno.clients import Workspace, WorkspaceUnavailable, get_client
from django_fyno.emulator import handlers
from django_fyno.models import FynoProfile
from django_fyno.preferences import (
    ALL,
    CHANNEL_ORDER,
    OPTED_IN,
    OPTED_OUT,
    PreferenceMatrix,
    PreferenceRefused,
    PreferencesNotReloaded,
    PreferencesUnavailable,
    Refusal,
)
from tests.conftest import here
from tests.preference_topics import config

pytestmark = pytest.mark.django_db

VERSION = settings.FYNO["VERSION"]
SECTIONS = {
    "Marketing": [
        {
            "subscription_id": "SNEWS",
            "name": "Newsletter",
            "description": "Monthly news.",
            "channel_config": config(email="on", sms="on"),
            "notification_events": [{"event_id": "ENEWS", "event_name": "newsletter"}],
        },
        {
            "subscription_id": "SOFFERS",
            "name": "Offers",
            "description": "",
            "channel_config": config(email="on", push="on", whatsapp="on"),
        },
    ],
    "Account": [
        {
            "subscription_id": "SSECURITY",
            "name": "Security",
            "description": "Sign-in alerts.",
            "channel_config": config(email="required", sms="on"),
            "notification_events": ["login_otp", "security_alert"],
        }
    ],
}


@pytest.fixture
def fyno(fyno_emulator: Any) -> Iterator[Any]:
    """The emulator with the sections above; the client does not retry by itself."""
    fyno_emulator.emulator.configure_preferences(SECTIONS)
    with override_settings(FYNO={**settings.FYNO, "RETRY": {"MAX_ATTEMPTS": 1}}):
        yield fyno_emulator


@pytest.fixture
def profile() -> FynoProfile:
    return FynoProfile.objects.create(distinct_id="ada-1", state="synced", **here())


def operations(fyno: Any) -> list[str | None]:
    return [entry.operation for entry in fyno.emulator.request_log]


def writes(fyno: Any) -> list[Any]:
    return [entry for entry in fyno.emulator.request_log if entry.method != "GET"]


def stored(fyno: Any, distinct_id: str = "ada-1") -> dict[str, Any]:
    """What the emulator holds for a user: {subscription id: {channel: preference}}, and all."""
    reply = fyno.emulator.preferences(VERSION, distinct_id)
    topics = {t["subscription_id"]: t["preference"] for ts in reply["result"].values() for t in ts}
    return {**topics, ALL: reply["meta"]["all"]["preference"]}


def opt_out(fyno: Any, subscription_id: str, channel: str, distinct_id: str = "ada-1") -> None:
    """Someone else changes the user's preferences in Fyno (the log forgets it)."""
    get_client().set_preferences(distinct_id, {subscription_id: {channel: OPTED_OUT}})
    fyno.emulator.clear_request_log()


def opt_out_everywhere(fyno: Any, *channels: str, distinct_id: str = "ada-1") -> None:
    get_client().set_preferences(distinct_id, {ALL: dict.fromkeys(channels, OPTED_OUT)})
    fyno.emulator.clear_request_log()


# -- reading ----------------------------------------------------------------------


def test_the_matrix_is_fyno_structure_sections_topics_events_channels(
    fyno: Any, profile: FynoProfile
) -> None:
    matrix = preferences.load_matrix(profile)

    [request] = fyno.emulator.request_log
    assert request.operation == "get_preferences"
    assert request.query == {"distinct_id": "ada-1", "event_list": "true"}
    assert [section.name for section in matrix.sections] == ["Marketing", "Account"]
    assert [t.subscription_id for t in matrix.topics] == ["SNEWS", "SOFFERS", "SSECURITY"]
    news, offers, security = matrix.topics
    assert (news.name, news.description, news.section) == (
        "Newsletter",
        "Monthly news.",
        "Marketing",
    )
    assert [e.event_name for e in news.events] == ["newsletter"]
    assert [e.event_name for e in security.events] == ["login_otp", "security_alert"]
    # Only the channels a topic has on or required, in the display order; none is off.
    assert [c.channel for c in news.channels] == ["email", "sms"]
    assert [c.channel for c in offers.channels] == ["email", "whatsapp", "push"]
    assert [(c.channel, c.required, c.opted_in) for c in security.channels] == [
        ("email", True, True),
        ("sms", False, True),
    ]
    assert matrix.channels == ("email", "sms", "whatsapp", "push")
    assert matrix.global_opt_out == frozenset()
    assert not matrix.unsubscribed_from_all
    assert matrix.workspace.wsid == "FYTEST"


def test_the_matrix_holds_the_users_choices_and_the_global_opt_out(
    fyno: Any, profile: FynoProfile
) -> None:
    opt_out(fyno, "SNEWS", "sms")
    opt_out(fyno, "SSECURITY", "email")  # required: Fyno keeps it opted in anyway
    opt_out_everywhere(fyno, "push")

    matrix = preferences.load_matrix(profile, events=False)

    assert fyno.emulator.request_log[0].query["event_list"] == "false"
    assert matrix.state() == {
        "SNEWS": {"email": OPTED_IN, "sms": OPTED_OUT},
        "SOFFERS": {"email": OPTED_IN, "whatsapp": OPTED_IN, "push": OPTED_IN},
        "SSECURITY": {"email": OPTED_IN, "sms": OPTED_IN},
        ALL: {"push": OPTED_OUT},
    }
    offers = matrix.topic("SOFFERS")
    assert offers is not None
    push = offers.channel("push")
    assert push is not None
    assert push.globally_opted_out
    assert not matrix.unsubscribed_from_all
    assert matrix.global_opt_out_labels == ("Mobile push",)


def test_a_profile_without_a_distinct_id_or_being_deleted_is_not_read(
    fyno: Any, profile: FynoProfile
) -> None:
    unsynced = FynoProfile.objects.create(state="pending", **here())
    with pytest.raises(PreferencesUnavailable, match="not been synced"):
        preferences.load_matrix(unsynced)
    profile.state = FynoProfile.State.DELETED
    with pytest.raises(PreferencesUnavailable, match="deleted"):
        preferences.load_matrix(profile)
    assert fyno.emulator.request_log == []


def test_the_matrix_is_read_in_the_profiles_workspace_only(fyno: Any) -> None:
    elsewhere = FynoProfile.objects.create(
        distinct_id="ada-1", state="synced", wsid="FYGONE", version="test", endpoint=fyno.endpoint
    )
    with pytest.raises(WorkspaceUnavailable):
        preferences.load_matrix(elsewhere)
    assert fyno.emulator.request_log == []


def test_an_answer_that_drifts_from_the_contract_keeps_only_what_it_vouches_for(
    fyno: Any,
) -> None:
    answer = Preferences.from_json(
        {
            "meta": {"all": {"preference": {"email": "opted-out", "fax": "opted-out"}}},
            "result": {
                "S": [
                    {"name": "no id", "channel_config": {"email": "on"}},
                    {
                        "subscription_id": "S1",
                        "channel_config": {"email": "on", "fax": "on", "sms": "weird"},
                    },
                    {"subscription_id": "S1", "name": "twice"},
                ],
                "Empty": [],
            },
        }
    )
    matrix = preferences.matrix_from_preferences(
        answer, workspace=Workspace("FYTEST", "test", ""), distinct_id="u"
    )
    assert [(t.subscription_id, t.name) for t in matrix.topics] == [("S1", "S1")]
    assert [c.channel for c in matrix.topics[0].channels] == ["email"]
    assert [s.name for s in matrix.sections] == ["S"]
    assert matrix.global_opt_out == {"email"}
    assert matrix.unsubscribed_from_all  # every channel the topics use is opted out


# -- planning -----------------------------------------------------------------


@pytest.fixture
def matrix(fyno: Any, profile: FynoProfile) -> PreferenceMatrix:
    matrix = preferences.load_matrix(profile)
    fyno.emulator.clear_request_log()
    return matrix


def test_only_what_differs_from_fyno_is_planned(matrix: PreferenceMatrix) -> None:
    changes = preferences.plan_changes(
        matrix,
        {
            "SNEWS": {"email": OPTED_IN, "sms": OPTED_OUT},  # email unchanged
            "SOFFERS": {"push": OPTED_OUT},
            "SSECURITY": {"email": OPTED_IN},  # required: always in, no change
        },
    )
    assert changes.refused == ()
    assert changes.changes == {"SNEWS": {"sms": OPTED_OUT}, "SOFFERS": {"push": OPTED_OUT}}
    assert changes.count() == 2
    assert preferences.plan_changes(matrix, {}).empty
    assert preferences.plan_changes(matrix, {"SNEWS": {"email": OPTED_IN}}).empty


@pytest.mark.parametrize(
    ("wanted", "refusal"),
    [
        ({"SOTHER": {"email": OPTED_OUT}}, ("SOTHER", None, Refusal.UNKNOWN_TOPIC)),
        ({"SNEWS": {"push": OPTED_OUT}}, ("SNEWS", "push", Refusal.CHANNEL_NOT_ON)),
        ({"SNEWS": {"fax": OPTED_OUT}}, ("SNEWS", "fax", Refusal.CHANNEL_NOT_ON)),
        ({"SSECURITY": {"email": OPTED_OUT}}, ("SSECURITY", "email", Refusal.REQUIRED)),
        ({"SNEWS": {"email": "yes"}}, ("SNEWS", "email", Refusal.INVALID)),
        ({"SNEWS": {"email": None}}, ("SNEWS", "email", Refusal.INVALID)),
        ({"SNEWS": {"email": ["opted-out", 7]}}, ("SNEWS", "email", Refusal.INVALID)),
        ({"SNEWS": "opted-out"}, ("SNEWS", None, Refusal.INVALID)),
        ({ALL: "unsubscribe"}, (ALL, None, Refusal.INVALID)),
        ({ALL: {"fax": OPTED_OUT}}, (ALL, "fax", Refusal.INVALID)),
        ({7: {"email": OPTED_OUT}}, ("7", None, Refusal.INVALID)),
    ],
)
def test_hostile_entries_are_refused_and_never_reach_fyno(
    fyno: Any, matrix: PreferenceMatrix, wanted: dict[Any, Any], refusal: tuple[Any, ...]
) -> None:
    # Alongside a valid change: a refusal stops the whole change set.
    changes = preferences.plan_changes(matrix, {**wanted, "SOFFERS": {"push": OPTED_OUT}})
    assert [(r.key, r.channel, r.reason) for r in changes.refused] == [refusal]
    assert changes.refused[0].message

    with pytest.raises(PreferenceRefused) as refused:
        preferences.save_changes(matrix, changes)

    assert refused.value.refusals == changes.refused
    assert fyno.emulator.request_log == []
    assert stored(fyno)["SOFFERS"]["push"] == OPTED_IN


def test_a_field_left_as_shown_is_not_sent_even_when_fyno_changed_since(
    fyno: Any, matrix: PreferenceMatrix, profile: FynoProfile
) -> None:
    # The page showed SNEWS/sms opted in; meanwhile the user opted out elsewhere.
    opt_out(fyno, "SNEWS", "sms")
    fresh = preferences.load_matrix(profile)
    shown = {"SNEWS": {"email": OPTED_IN, "sms": OPTED_IN}}
    wanted = {"SNEWS": {"email": OPTED_OUT, "sms": OPTED_IN}}  # staff only unticked email

    changes = preferences.plan_changes(fresh, wanted, shown=shown)

    assert changes.changes == {"SNEWS": {"email": OPTED_OUT}}
    preferences.save_changes(fresh, changes)
    assert stored(fyno)["SNEWS"] == {"email": OPTED_OUT, "sms": OPTED_OUT}


def test_form_choices_reads_the_partials_fields_last_value_wins() -> None:
    data = QueryDict(mutable=True)
    data.setlist("fyno:SNEWS:email", [OPTED_OUT, OPTED_IN])  # hidden, then the ticked box
    data.setlist("fyno:SNEWS:sms", [OPTED_OUT])  # unticked
    data.setlist("fyno-shown:SNEWS:sms", [OPTED_IN])
    data.setlist("fyno:odd:id:push", [OPTED_OUT])  # subscription ids may hold ":"
    data.setlist("fyno:all", [OPTED_IN, OPTED_OUT])
    data.setlist("fyno:nochannel", [OPTED_OUT])
    data.setlist("csrfmiddlewaretoken", ["x"])
    data.setlist("distinct_id", ["someone-else"])

    wanted, shown = preferences.form_choices(data)

    assert wanted == {
        "SNEWS": {"email": OPTED_IN, "sms": OPTED_OUT},
        "odd:id": {"push": OPTED_OUT},
        ALL: OPTED_OUT,
        "nochannel": {"": OPTED_OUT},
    }
    assert shown == {"SNEWS": {"sms": OPTED_IN}}


# -- writing ------------------------------------------------------------------


def test_a_save_is_one_put_with_only_the_changes_and_fyno_holds_them(
    fyno: Any, matrix: PreferenceMatrix
) -> None:
    changes = preferences.plan_changes(
        matrix, {"SNEWS": {"email": OPTED_IN, "sms": OPTED_OUT}, "SOFFERS": {"push": OPTED_OUT}}
    )

    saved = preferences.save_changes(matrix, changes)

    [put] = fyno.emulator.request_log  # Fyno's answer named every change: no GET after
    assert (put.operation, put.query) == ("set_preferences", {"distinct_id": "ada-1"})
    assert put.body == {
        "user_preference": {"SNEWS": {"sms": OPTED_OUT}, "SOFFERS": {"push": OPTED_OUT}}
    }
    assert stored(fyno)["SNEWS"] == {"email": OPTED_IN, "sms": OPTED_OUT}
    assert stored(fyno)["SOFFERS"]["push"] == OPTED_OUT
    assert saved.state() == matrix.state() | {
        "SNEWS": {"email": OPTED_IN, "sms": OPTED_OUT},
        "SOFFERS": {"email": OPTED_IN, "whatsapp": OPTED_IN, "push": OPTED_OUT},
    }
    news = saved.topic("SNEWS")
    assert news is not None
    assert [c.checked for c in news.channels] == [True, False]


def test_nothing_to_change_sends_nothing(fyno: Any, matrix: PreferenceMatrix) -> None:
    changes = preferences.plan_changes(matrix, {"SNEWS": {"email": OPTED_IN}})
    assert preferences.save_changes(matrix, changes) is matrix
    assert fyno.emulator.request_log == []


def test_a_change_set_of_another_matrix_is_not_sent(fyno: Any, matrix: PreferenceMatrix) -> None:
    other = preferences.ChangeSet("bob-2", {"SNEWS": {"sms": OPTED_OUT}})
    with pytest.raises(ValueError, match="another profile"):
        preferences.save_changes(matrix, other)
    assert fyno.emulator.request_log == []


def test_the_switch_unsubscribes_from_everything_and_back(
    fyno: Any, matrix: PreferenceMatrix, profile: FynoProfile
) -> None:
    opt_out_everywhere(fyno, "sms")
    matrix = preferences.load_matrix(profile)
    fyno.emulator.clear_request_log()

    changes = preferences.plan_changes(matrix, {ALL: OPTED_OUT}, shown={ALL: OPTED_IN})
    saved = preferences.save_changes(matrix, changes)

    [put] = fyno.emulator.request_log
    everything_but_sms = {c: OPTED_OUT for c in CHANNEL_ORDER if c != "sms"}
    assert put.body == {"user_preference": {ALL: everything_but_sms}}
    assert set(stored(fyno)[ALL]) == set(CHANNEL_ORDER)
    assert saved.unsubscribed_from_all
    assert saved.all_checked

    # Left as shown: nothing. Turned off: every global opt-out is taken back.
    assert preferences.plan_changes(saved, {ALL: OPTED_OUT}, shown={ALL: OPTED_OUT}).empty
    back = preferences.plan_changes(saved, {ALL: OPTED_IN}, shown={ALL: OPTED_OUT})
    restored = preferences.save_changes(saved, back)
    assert back.changes == {ALL: dict.fromkeys(CHANNEL_ORDER, OPTED_IN)}
    assert stored(fyno)[ALL] == {}
    assert not restored.unsubscribed_from_all
    assert not restored.global_opt_out


def test_fyno_s_own_shape_for_all_sets_single_channels(fyno: Any, matrix: PreferenceMatrix) -> None:
    changes = preferences.plan_changes(matrix, {ALL: {"email": OPTED_OUT, "sms": OPTED_IN}})
    assert changes.changes == {ALL: {"email": OPTED_OUT}}
    saved = preferences.save_changes(matrix, changes)
    assert stored(fyno)[ALL] == {"email": OPTED_OUT}
    assert saved.global_opt_out == {"email"}


def test_an_answer_that_does_not_name_every_change_is_read_anew(
    fyno: Any, matrix: PreferenceMatrix, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = handlers.HANDLERS["set_preferences"]

    def forgetful(ctx: Any) -> Any:
        status, _reply = original(ctx)
        return status, {}

    monkeypatch.setitem(handlers.HANDLERS, "set_preferences", forgetful)
    changes = preferences.plan_changes(matrix, {"SNEWS": {"sms": OPTED_OUT}})

    saved = preferences.save_changes(matrix, changes)

    assert operations(fyno) == ["set_preferences", "get_preferences"]
    assert saved.state()["SNEWS"] == {"email": OPTED_IN, "sms": OPTED_OUT}


def test_saved_but_not_read_back_says_it_was_saved(
    fyno: Any, matrix: PreferenceMatrix, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = handlers.HANDLERS["set_preferences"]
    monkeypatch.setitem(handlers.HANDLERS, "set_preferences", lambda ctx: (original(ctx)[0], {}))
    fyno.set_fault("get_preferences", error_rate=1, error_status=503)

    with pytest.raises(PreferencesNotReloaded, match="Saved in Fyno"):
        preferences.save_changes(
            matrix, preferences.plan_changes(matrix, {"SNEWS": {"sms": OPTED_OUT}})
        )
    assert stored(fyno)["SNEWS"]["sms"] == OPTED_OUT


def test_a_refused_put_raises_and_fyno_is_unchanged(fyno: Any, matrix: PreferenceMatrix) -> None:
    fyno.set_fault("set_preferences", error_rate=1, error_status=503)
    changes = preferences.plan_changes(matrix, {"SNEWS": {"sms": OPTED_OUT}})
    with pytest.raises(FynoServerError):
        preferences.save_changes(matrix, changes)
    assert stored(fyno)["SNEWS"]["sms"] == OPTED_IN


def test_with_choices_shows_a_submission_again_without_changing_what_fyno_has(
    matrix: PreferenceMatrix,
) -> None:
    shown = matrix.with_choices(
        {
            "SNEWS": {"sms": OPTED_OUT},
            "SSECURITY": {"email": OPTED_OUT},
            "SOTHER": {},
            ALL: OPTED_OUT,
        }
    )
    news, security = shown.topic("SNEWS"), shown.topic("SSECURITY")
    assert news is not None
    assert security is not None
    sms = news.channel("sms")
    assert sms is not None
    assert (sms.checked, sms.opted_in) == (False, True)
    email = security.channel("email")
    assert email is not None
    assert email.checked
    assert shown.all_checked
    assert not shown.unsubscribed_from_all
    assert shown.state() == matrix.state()


# -- one topic ------------------------------------------------------------------


def test_unsubscribing_a_topic_posts_each_channel_but_the_required_ones(
    fyno: Any, matrix: PreferenceMatrix
) -> None:
    after = preferences.unsubscribe_topic(matrix, "SSECURITY")

    assert [(e.operation, e.path, e.body) for e in fyno.emulator.request_log] == [
        (
            "set_subscription",
            "/FYTEST/test/subscriptions/list/SSECURITY/user",
            {"channel": "sms", "distinct_id": "ada-1", "status": OPTED_OUT},
        )
    ]
    assert stored(fyno)["SSECURITY"] == {"email": OPTED_IN, "sms": OPTED_OUT}
    assert after.state()["SSECURITY"] == {"email": OPTED_IN, "sms": OPTED_OUT}


def test_subscribing_a_topic_posts_only_the_channels_that_differ(
    fyno: Any, matrix: PreferenceMatrix, profile: FynoProfile
) -> None:
    opt_out(fyno, "SOFFERS", "push")
    opt_out(fyno, "SOFFERS", "email")
    matrix = preferences.load_matrix(profile)
    fyno.emulator.clear_request_log()

    after = preferences.subscribe_topic(matrix, "SOFFERS")

    assert [e.body["channel"] for e in writes(fyno)] == ["email", "push"]
    assert operations(fyno) == ["set_subscription", "set_subscription"]
    assert stored(fyno)["SOFFERS"] == dict.fromkeys(("email", "whatsapp", "push"), OPTED_IN)
    assert after.state()["SOFFERS"] == stored(fyno)["SOFFERS"]


def test_one_channel_of_a_topic(fyno: Any, matrix: PreferenceMatrix) -> None:
    preferences.unsubscribe_topic(matrix, "SNEWS", channel="email")
    assert [e.body for e in writes(fyno)] == [
        {"channel": "email", "distinct_id": "ada-1", "status": OPTED_OUT}
    ]
    assert stored(fyno)["SNEWS"] == {"email": OPTED_OUT, "sms": OPTED_IN}


@pytest.mark.parametrize(
    ("subscription_id", "status", "channel", "reason"),
    [
        ("SOTHER", OPTED_OUT, None, Refusal.UNKNOWN_TOPIC),
        ("SSECURITY", OPTED_OUT, "email", Refusal.REQUIRED),
        ("SNEWS", OPTED_OUT, "push", Refusal.CHANNEL_NOT_ON),
        ("SNEWS", "off", None, Refusal.INVALID),
        (["SNEWS"], OPTED_OUT, None, Refusal.UNKNOWN_TOPIC),
    ],
)
def test_a_refused_topic_change_sends_nothing(
    fyno: Any,
    matrix: PreferenceMatrix,
    subscription_id: Any,
    status: str,
    channel: Any,
    reason: str,
) -> None:
    changes = preferences.plan_topic(matrix, subscription_id, status, channel=channel)
    assert [r.reason for r in changes.refused] == [reason]
    with pytest.raises(PreferenceRefused):
        preferences.send_topic(matrix, changes)
    assert fyno.emulator.request_log == []


def test_subscribing_a_required_channel_is_no_change(fyno: Any, matrix: PreferenceMatrix) -> None:
    assert preferences.plan_topic(matrix, "SSECURITY", OPTED_IN, channel="email").empty
    assert preferences.subscribe_topic(matrix, "SSECURITY", channel="email") is matrix
    assert fyno.emulator.request_log == []


def test_as_json(matrix: PreferenceMatrix) -> None:
    data = matrix.as_json()
    assert data["distinct_id"] == "ada-1"
    assert data["all"] == {"unsubscribed": False, "opted_out": []}
    security = data["sections"][1]["topics"][0]
    assert security["subscription_id"] == "SSECURITY"
    assert security["events"][0] == {"event_id": "login_otp", "event_name": "login_otp"}
    assert security["channels"][0] == {
        "channel": "email",
        "label": "Email",
        "required": True,
        "status": OPTED_IN,
        "globally_opted_out": False,
    }
