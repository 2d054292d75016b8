"""Several workspaces in one emulator: routing, keys, isolation, control API, CLI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses

from django_fyno.emulator.__main__ import banner, build_emulator, parse_args
from django_fyno.emulator.app import Emulator, UnknownWorkspace, Workspace
from django_fyno.emulator.faults import Fault
from django_fyno.emulator.live import LiveEmulator
from tests.emulator.wsgi import Reply, call

ONE, TWO = "FYONE", "FYTWO"
KEYS = {ONE: "key-one", TWO: "key-two"}
EMAIL = {"email": "a@example.com"}


def api(app: Emulator, method: str, wsid: str, path: str, body: Any = None, **kw: Any) -> Reply:
    """A Fyno API call on ``wsid``'s live version, with its own key unless ``auth`` says."""
    kw.setdefault("auth", KEYS.get(wsid))
    return call(app, method, f"/{wsid}/{path}", body, **kw)


def control(app: Emulator, method: str, name: str, body: Any = None, **query: str) -> Reply:
    return call(app, method, f"/_emulator/{name}", body, auth=None, query=query)


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(workspaces=KEYS, seed=5)


# --- the Python API ----------------------------------------------------------


def test_one_workspace_is_still_the_default_form() -> None:
    emulator = Emulator("FYSOLO", "solo-key")
    assert list(emulator.workspaces) == ["FYSOLO"]
    assert (emulator.wsid, emulator.api_key) == ("FYSOLO", "solo-key")
    assert emulator.workspace() is emulator.default_workspace is emulator.workspace("FYSOLO")
    assert emulator.request_log is emulator.workspace().request_log
    assert repr(emulator) == "Emulator(wsid='FYSOLO')"
    assert (Emulator().wsid, Emulator().api_key) == ("FYTEST", "test-api-key")


def test_several_workspaces_the_first_is_the_default(emulator: Emulator) -> None:
    assert list(emulator.workspaces) == [ONE, TWO]
    assert (emulator.wsid, emulator.api_key) == (ONE, "key-one")
    two = emulator.workspace(TWO)
    assert isinstance(two, Workspace)
    assert (two.wsid, two.api_key) == (TWO, "key-two")
    # Neither repr shows a key.
    assert "key-" not in repr(emulator) + repr(two)
    assert repr(emulator) == "Emulator(workspaces=['FYONE', 'FYTWO'])"


def test_add_workspace_serves_it_at_once(emulator: Emulator) -> None:
    three = emulator.add_workspace("FYTHREE", "key-three", events=["only"])
    assert emulator.workspace("FYTHREE") is three
    assert call(emulator, "GET", "/FYTHREE/live/profiles/U1", auth="key-three").status == 400
    refused = call(
        emulator, "POST", "/FYTHREE/live/event", {"event": "x", "to": EMAIL}, auth="key-three"
    )
    assert refused.status == 400
    assert three.events == {"only"}
    assert emulator.workspace(ONE).events is None  # the others keep theirs


def test_unknown_workspace_is_a_lookup_error_naming_the_served_ones(emulator: Emulator) -> None:
    with pytest.raises(UnknownWorkspace, match=r"unknown workspace 'FYNONE'; .* FYONE, FYTWO"):
        emulator.workspace("FYNONE")
    assert issubclass(UnknownWorkspace, LookupError)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"wsid": "FYA", "workspaces": {"FYB": "k"}}, TypeError, "either"),
        ({"api_key": "k", "workspaces": {"FYB": "k"}}, TypeError, "either"),
        ({"workspaces": {}}, ValueError, "at least one"),
        ({"workspaces": {"FYB": {"events": ["x"]}}}, ValueError, "needs an api_key"),
        ({"workspaces": {"FYB": 42}}, TypeError, "API key"),
        ({"workspaces": {"FYB": {"api_key": "k", "colour": 1}}}, TypeError, "colour"),
    ],
)
def test_bad_workspace_arguments_are_refused(
    arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Emulator(**arguments)


@pytest.mark.parametrize(
    "wsid", ["", "FY/ONE", "FY ONE", "../etc", "FY?x", "FYÖ", "_emulator", "-FY", "v1", "F" * 65]
)
def test_a_wsid_that_cannot_be_one_path_segment_is_refused(wsid: str) -> None:
    with pytest.raises(ValueError, match="invalid WSID"):
        Emulator(workspaces={wsid: "k"})


@pytest.mark.parametrize("key", ["", "with space", "line\nbreak", "tab\tkey", "clé"])
def test_a_key_that_cannot_travel_in_a_header_is_refused_without_showing_it(key: str) -> None:
    with pytest.raises(ValueError, match="invalid API key") as raised:
        Emulator(workspaces={"FYOK": key})
    assert not key or key not in str(raised.value)


def test_a_wsid_is_served_once(emulator: Emulator) -> None:
    with pytest.raises(ValueError, match="already served"):
        emulator.add_workspace(TWO, "other-key")
    assert emulator.workspace(TWO).api_key == "key-two"


def test_per_workspace_options() -> None:
    emulator = Emulator(
        workspaces={ONE: "key-one", TWO: {"api_key": "key-two", "events": ["welcome"]}},
        events=["otp_login"],
    )
    assert emulator.workspace(ONE).events == {"otp_login"}
    assert emulator.workspace(TWO).events == {"welcome"}


def test_seeded_workspaces_repeat_but_do_not_share_ids() -> None:
    def request_ids(emulator: Emulator) -> list[str]:
        return [
            api(emulator, "POST", wsid, "live/event", {"event": "e", "to": EMAIL}).json[
                "request_id"
            ]
            for wsid in emulator.workspaces
        ]

    first = request_ids(Emulator(workspaces=KEYS, seed=5))
    assert first == request_ids(Emulator(workspaces=KEYS, seed=5))
    assert first[0] != first[1]
    # The default workspace hands out the ids a one-workspace emulator does.
    solo = Emulator(ONE, "key-one", seed=5)
    assert (
        api(solo, "POST", ONE, "live/event", {"event": "e", "to": EMAIL}).json["request_id"]
        == (first[0])
    )


def test_a_fault_object_given_once_acts_in_each_workspace() -> None:
    fault = Fault(fail_next=1, fail_next_status=503)
    emulator = Emulator(workspaces=KEYS, faults={"get_profile": fault})
    for wsid in (ONE, TWO):
        assert api(emulator, "GET", wsid, "live/profiles/U1").status == 503
        assert api(emulator, "GET", wsid, "live/profiles/U1").status == 400
    assert fault.fail_next == 1  # the caller's object is a template, not consumed


def test_python_controls_act_on_one_workspace(emulator: Emulator) -> None:
    two = emulator.workspace(TWO)
    two.set_fault("send_event", fail_next=1, fail_next_status=429)
    two.set_events(["welcome"])
    two.set_otp("123456")
    assert emulator.faults_config()["faults"] == {}
    assert emulator.events is None
    assert api(emulator, "POST", ONE, "live/event", {"event": "x", "to": EMAIL}).status == 202
    assert api(emulator, "POST", TWO, "live/event", {"event": "welcome", "to": EMAIL}).status == 429
    sent = api(emulator, "POST", TWO, "live/event", {"event": "login_otp", "to": EMAIL})
    assert sent.status == 400  # not in WS2's event list
    api(emulator, "POST", TWO, "live/event", {"event": "welcome", "to": EMAIL, "data": {"otp": 1}})
    assert [e["event"] for e in emulator.events_log] == ["x"]
    assert [e["event"] for e in two.events_log] == ["welcome"]
    assert two.events_log[0]["otp"] == "123456"


def test_reset_of_the_emulator_resets_every_workspace_and_of_one_only_it(
    emulator: Emulator,
) -> None:
    for wsid in (ONE, TWO):
        api(emulator, "POST", wsid, "live/profiles", {"distinct_id": "U1"})
        emulator.workspace(wsid).set_fault("get_profile", error_rate=1.0)
    emulator.workspace(TWO).reset()
    assert emulator.workspace(TWO).profiles() == {}
    assert emulator.workspace(TWO).request_log == []
    assert emulator.workspace(TWO).faults_config()["faults"] == {}
    assert set(emulator.profiles()) == {"U1"}
    assert len(emulator.request_log) == 1
    assert "get_profile" in emulator.faults_config()["faults"]
    emulator.reset()
    assert emulator.profiles() == {}
    assert emulator.request_log == []
    assert emulator.faults_config()["faults"] == {}


# --- routing and keys --------------------------------------------------------


def test_each_workspace_keeps_its_own_state_and_log(emulator: Emulator) -> None:
    assert api(emulator, "POST", ONE, "live/profiles", {"distinct_id": "U1"}).status == 201
    assert api(emulator, "POST", TWO, "live/profiles", {"distinct_id": "U2"}).status == 201
    # The same distinct id may exist in both: no duplicate across workspaces.
    assert api(emulator, "POST", TWO, "live/profiles", {"distinct_id": "U1"}).status == 201
    assert api(emulator, "POST", TWO, "suppressions", {"channel": "email", **_dest()}).status == 200
    assert set(emulator.workspace(ONE).profiles()) == {"U1"}
    assert set(emulator.workspace(TWO).profiles()) == {"U1", "U2"}
    assert emulator.suppressions == []
    assert len(emulator.workspace(TWO).suppressions) == 1
    assert [r.path for r in emulator.request_log] == ["/FYONE/live/profiles"]
    assert {r.path for r in emulator.workspace(TWO).request_log} == {
        "/FYTWO/live/profiles",
        "/FYTWO/suppressions",
    }


def _dest() -> dict[str, str]:
    return {"destination": "a@example.com"}


@pytest.mark.parametrize(("path_wsid", "key_of"), [(ONE, TWO), (TWO, ONE)])
def test_a_key_of_another_workspace_is_a_401(
    emulator: Emulator, path_wsid: str, key_of: str
) -> None:
    refused = api(emulator, "GET", path_wsid, "live/profiles/U1", auth=KEYS[key_of])
    assert (refused.status, refused.message) == (401, "Invalid API details")
    # Logged where it was sent, and nowhere else.
    assert [r.status for r in emulator.workspace(path_wsid).request_log] == [401]
    assert emulator.workspace(key_of).request_log == []
    assert api(emulator, "GET", path_wsid, "live/profiles/U1").status == 400  # own key: served


def test_an_unknown_wsid_is_a_401_logged_by_the_default_workspace(emulator: Emulator) -> None:
    for key in KEYS.values():
        assert call(emulator, "GET", "/FYNONE/live/profiles/U1", auth=key).status == 401
    assert [r.path for r in emulator.request_log] == ["/FYNONE/live/profiles/U1"] * 2
    assert emulator.workspace(TWO).request_log == []


def test_unknown_event_names_the_version_of_the_request() -> None:
    emulator = Emulator(events=["welcome"])
    for version, word in (("test", "test"), ("live", "prod")):
        refused = call(emulator, "POST", f"/FYTEST/{version}/event", {"event": "x", "to": EMAIL})
        assert refused.status == 400
        assert refused.message == (
            f"The notification event name 'x' is invalid or does not exists on {word}"
        )
        bulk = call(
            emulator,
            "POST",
            f"/FYTEST/{version}/event/bulk",
            {"event": "x", "batch": [{"to": EMAIL}]},
        )
        assert bulk.message == refused.message


# --- the control API ---------------------------------------------------------


def test_health_lists_the_workspaces(emulator: Emulator) -> None:
    assert control(emulator, "GET", "health").json == {
        "status": "ok",
        "wsid": ONE,
        "workspaces": [ONE, TWO],
    }


@pytest.mark.parametrize(
    ("method", "name"),
    [
        ("GET", "state"),
        ("GET", "faults"),
        ("POST", "faults"),
        ("GET", "requests"),
        ("DELETE", "requests"),
        ("POST", "reset"),
        ("GET", "events"),
        ("GET", "otp"),
        ("GET", "webhook"),
        ("POST", "delivery-report"),
        ("GET", "health"),
    ],
)
def test_an_unknown_workspace_is_a_404_naming_the_served_ones(
    emulator: Emulator, method: str, name: str
) -> None:
    reply = control(emulator, method, name, {}, workspace="FY/../x")
    assert reply.status == 404
    assert reply.json == {
        "_message": "unknown workspace 'FY/../x'; this emulator serves FYONE, FYTWO",
        "status": "error",
    }


def test_an_empty_workspace_parameter_is_a_400(emulator: Emulator) -> None:
    reply = control(emulator, "GET", "state", workspace="")
    assert (reply.status, reply.json["status"]) == (400, "error")
    assert "must name a workspace" in reply.message


def test_unknown_endpoints_stay_404_and_405_with_a_workspace(emulator: Emulator) -> None:
    assert control(emulator, "GET", "nowhere", workspace=TWO).status == 404
    assert control(emulator, "PUT", "state", workspace=TWO).status == 405


def test_state_faults_and_requests_of_one_workspace(emulator: Emulator) -> None:
    api(emulator, "POST", ONE, "live/profiles", {"distinct_id": "U1"})
    api(emulator, "POST", TWO, "live/profiles", {"distinct_id": "U2"})
    assert control(emulator, "GET", "state").json["wsid"] == ONE
    state = control(emulator, "GET", "state", workspace=TWO).json
    assert (state["wsid"], set(state["versions"]["live"]["profiles"])) == (TWO, {"U2"})

    faults = {"faults": {"get_profile": {"fail_next": 1, "fail_next_status": 503}}}
    assert control(emulator, "POST", "faults", faults, workspace=TWO).status == 200
    assert control(emulator, "GET", "faults").json["faults"] == {}
    assert set(control(emulator, "GET", "faults", workspace=TWO).json["faults"]) == {"get_profile"}
    assert api(emulator, "GET", ONE, "live/profiles/U1").status == 200
    assert api(emulator, "GET", TWO, "live/profiles/U2").status == 503
    assert api(emulator, "GET", TWO, "live/profiles/U2").status == 200
    control(emulator, "DELETE", "faults", workspace=TWO)
    assert emulator.workspace(TWO).faults_config()["faults"] == {}

    paths = [
        r["path"] for r in control(emulator, "GET", "requests", workspace=TWO).json["requests"]
    ]
    assert paths == ["/FYTWO/live/profiles"] + ["/FYTWO/live/profiles/U2"] * 2
    assert control(emulator, "DELETE", "requests", workspace=TWO).status == 200
    assert emulator.workspace(TWO).request_log == []
    assert len(emulator.request_log) == 2  # the default workspace's log is untouched


def test_reset_without_a_workspace_resets_them_all(emulator: Emulator) -> None:
    for wsid in (ONE, TWO):
        api(emulator, "POST", wsid, "live/profiles", {"distinct_id": "U1"})
    reply = control(emulator, "POST", "reset", workspace=TWO)
    assert reply.json == {"_message": "Workspace FYTWO reset", "status": "ok"}
    assert emulator.workspace(TWO).profiles() == {}
    assert set(emulator.profiles()) == {"U1"}
    assert control(emulator, "POST", "reset").json["_message"] == "Emulator reset"
    assert emulator.profiles() == {}


def test_events_preferences_and_otp_of_one_workspace(emulator: Emulator) -> None:
    assert control(emulator, "POST", "events", {"events": ["only"]}, workspace=TWO).json == {
        "events": ["only"]
    }
    assert control(emulator, "GET", "events").json == {"events": None}
    assert api(emulator, "POST", TWO, "test/event", {"event": "x", "to": EMAIL}).message == (
        "The notification event name 'x' is invalid or does not exists on test"
    )

    sections = {"Mine": [{"subscription_id": "SMINE", "name": "Mine"}]}
    control(emulator, "POST", "preferences", {"sections": sections}, workspace=TWO)
    assert list(control(emulator, "GET", "preferences", workspace=TWO).json["sections"]) == ["Mine"]
    assert list(control(emulator, "GET", "preferences").json["sections"]) == ["General"]

    control(emulator, "POST", "otp", {"code": "4242", "destination": "+15550001"}, workspace=TWO)
    assert control(emulator, "GET", "otp", workspace=TWO, destination="+15550001").json == {
        "otp": "4242"
    }
    assert control(emulator, "GET", "otp", destination="+15550001").json == {"otp": None}


@responses.activate
def test_webhook_and_delivery_report_of_one_workspace(emulator: Emulator) -> None:
    responses.add(responses.POST, "http://localhost:8999/two-hook", json={"ok": True})
    hook = {"url": "http://localhost:8999/two-hook"}
    assert control(emulator, "POST", "webhook", hook, workspace=TWO).status == 200
    assert control(emulator, "GET", "webhook").json == {"url": None}
    assert control(emulator, "GET", "webhook", workspace=TWO).json == hook

    sent = api(
        emulator,
        "POST",
        TWO,
        "live/event",
        {"event": "e", "to": EMAIL, "callback": {"custom_id": "7"}},
    ).json
    # The default workspace sent nothing and has no webhook.
    assert control(emulator, "POST", "delivery-report", {"custom_id": "7"}).status == 400
    reply = control(emulator, "POST", "delivery-report", {"custom_id": "7"}, workspace=TWO)
    assert reply.status == 200
    (report,) = reply.json["reports"]
    assert report["report"]["request_id"] == sent["request_id"]
    assert len(responses.calls) == 1
    assert control(emulator, "DELETE", "webhook", workspace=TWO).status == 200
    assert emulator.workspace(TWO).webhook_url is None


# --- over real HTTP ----------------------------------------------------------


@pytest.fixture
def live() -> Iterator[LiveEmulator]:
    with LiveEmulator(workspaces=KEYS) as served:
        yield served


def _http(live: LiveEmulator, method: str, wsid: str, path: str, **kw: Any) -> Any:
    kw.setdefault("headers", {"Authorization": f"Bearer {KEYS[wsid]}"})
    return requests.request(method, f"{live.endpoint}/{wsid}/{path}", timeout=5, **kw)


def test_two_workspaces_over_http_each_get_only_their_own_traffic(live: LiveEmulator) -> None:
    assert (live.wsid, live.api_key) == (ONE, "key-one")
    with requests.Session() as session:  # one keep-alive connection for both
        for wsid, user in ((ONE, "ada"), (TWO, "bob"), (TWO, "cy")):
            reply = session.post(
                f"{live.endpoint}/{wsid}/live/profiles",
                json={"distinct_id": user, "channel": {"email": f"{user}@example.com"}},
                headers={"Authorization": f"Bearer {KEYS[wsid]}"},
                timeout=5,
            )
            assert reply.status_code == 201
        sent = session.post(
            f"{live.endpoint}/{TWO}/live/event",
            json={"event": "welcome", "distinct_id": "bob"},
            headers={"Authorization": f"Bearer {KEYS[TWO]}"},
            timeout=5,
        )
        assert sent.status_code == 202
    one, two = live.workspace(ONE), live.workspace(TWO)
    assert set(one.profiles()) == {"ada"}
    assert set(two.profiles()) == {"bob", "cy"}
    assert one.events_log == []
    assert [(e["event"], e["distinct_id"]) for e in two.events_log] == [("welcome", "bob")]
    assert [r.path for r in one.request_log] == ["/FYONE/live/profiles"]
    assert [r.path for r in two.request_log] == ["/FYTWO/live/profiles"] * 2 + ["/FYTWO/live/event"]
    # The user is unknown in the other workspace.
    assert _http(live, "GET", ONE, "live/profiles/bob").status_code == 400
    assert _http(live, "GET", TWO, "live/profiles/bob").json()["distinct_id"] == "bob"


@pytest.mark.parametrize(
    "knobs",
    [
        {"error_rate": 1.0, "error_status": 503},
        {"throttle_rate": 1.0, "retry_after": 9},
        {"fail_next": 3, "fail_next_status": "drop"},
    ],
)
def test_a_fault_on_one_workspace_over_http_leaves_the_other_alone(
    live: LiveEmulator, knobs: dict[str, Any]
) -> None:
    live.workspace(ONE).set_fault(None, **knobs)
    for _ in range(3):
        try:
            faulted = _http(live, "GET", ONE, "live/profiles/U1")
        except requests.ConnectionError:
            pass  # the drop fault
        else:
            assert faulted.status_code in (429, 503)
            if faulted.status_code == 429:
                assert faulted.headers["Retry-After"] == "9"
        assert _http(live, "GET", TWO, "live/profiles/U1").status_code == 400  # served
    assert {r.status for r in live.workspace(ONE).request_log} <= {0, 429, 503}
    assert [r.status for r in live.workspace(TWO).request_log] == [400] * 3


def test_cross_workspace_keys_are_401_over_http(live: LiveEmulator) -> None:
    for wsid, other in ((ONE, TWO), (TWO, ONE)):
        reply = _http(
            live,
            "GET",
            wsid,
            "live/profiles/U1",
            headers={"Authorization": f"Bearer {KEYS[other]}"},
        )
        assert reply.status_code == 401
        assert reply.json() == {"_message": "Invalid API details", "status": "error"}
        # Nothing of the key in either log.
        for space in live.emulator.workspaces.values():
            assert all("Authorization" not in r.headers for r in space.request_log)


def test_the_control_api_over_http_addresses_each_workspace(live: LiveEmulator) -> None:
    base = f"{live.url}/_emulator"
    assert requests.get(f"{base}/health", timeout=5).json()["workspaces"] == [ONE, TWO]
    _http(live, "POST", ONE, "live/profiles", json={"distinct_id": "ada"})
    _http(live, "POST", TWO, "live/profiles", json={"distinct_id": "bob"})
    for wsid, user in ((ONE, "ada"), (TWO, "bob")):
        state = requests.get(f"{base}/state", params={"workspace": wsid}, timeout=5).json()
        assert set(state["versions"]["live"]["profiles"]) == {user}
        log = requests.get(f"{base}/requests", params={"workspace": wsid}, timeout=5).json()
        assert [r["path"] for r in log["requests"]] == [f"/{wsid}/live/profiles"]
    faults = {"faults": {"*": {"fail_next": 1, "fail_next_status": 503}}}
    set_ = requests.post(f"{base}/faults", params={"workspace": TWO}, json=faults, timeout=5)
    assert set_.status_code == 200
    assert _http(live, "GET", ONE, "live/profiles/ada").status_code == 200
    assert _http(live, "GET", TWO, "live/profiles/bob").status_code == 503
    unknown = requests.get(f"{base}/state", params={"workspace": "FYNONE"}, timeout=5)
    assert unknown.status_code == 404
    assert unknown.json()["status"] == "error"


# --- the command line --------------------------------------------------------


def test_workspace_options_parse_in_order() -> None:
    args = parse_args(["--workspace", "FYONE:key-one", "--workspace", "FYTWO:k:with:colons"])
    assert args.workspaces == [("FYONE", "key-one"), ("FYTWO", "k:with:colons")]
    emulator = build_emulator(args)
    assert list(emulator.workspaces) == ["FYONE", "FYTWO"]
    assert emulator.workspace("FYTWO").api_key == "k:with:colons"


def test_without_workspace_options_wsid_and_api_key_make_the_one_workspace() -> None:
    assert parse_args([]).workspaces == [("FYTEST", "test-api-key")]
    args = parse_args(["--wsid", "FYSOLO", "--api-key", "solo"])
    assert args.workspaces == [("FYSOLO", "solo")]
    assert build_emulator(args).workspace().api_key == "solo"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--workspace", "FYONE-secret-key"], "no ':' found"),
        (["--workspace", ":secret-key"], "the WSID before ':' is empty"),
        (["--workspace", "FYONE:"], "the key of 'FYONE' is empty"),
        (["--workspace", "FY/ONE:secret-key"], "invalid WSID 'FY/ONE'"),
        (["--workspace", "FY ONE:secret-key"], "invalid WSID 'FY ONE'"),
        (["--workspace", "FYÖ:secret-key"], "invalid WSID 'FYÖ'"),
        (["--workspace", "_emulator:secret-key"], "invalid WSID '_emulator'"),
        (["--workspace", "FYONE:secret key"], "invalid API key"),
        (["--workspace", "A:secret-key", "--workspace", "A:secret-key2"], "'A' is given twice"),
        (["--workspace", "A:secret-key", "--wsid", "B"], "either --workspace"),
        (["--workspace", "A:secret-key", "--api-key", "secret-key2"], "either --workspace"),
        (["--wsid", "FY/x"], "invalid WSID"),
    ],
)
def test_bad_workspace_options_exit_2_and_never_show_a_key(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "secret" not in err


def test_the_banner_lists_every_workspace() -> None:
    emulator = Emulator(workspaces=KEYS)
    text = banner(emulator, "http://127.0.0.1:1/v1", "http://127.0.0.1:1")
    lines = text.splitlines()
    assert "FYNO_ENDPOINT=http://127.0.0.1:1/v1" in lines
    assert [line for line in lines if line.startswith("FYNO_")] == [
        "FYNO_ENDPOINT=http://127.0.0.1:1/v1",
        "FYNO_WSID=FYONE",
        "FYNO_API_KEY=key-one",
        "FYNO_WSID=FYTWO",
        "FYNO_API_KEY=key-two",
    ]
    assert "# workspace FYONE (default)" in lines
    assert "?workspace=WSID" in text
    assert lines[-1] == "FYNO_API_KEY=key-two"


def test_the_cli_serves_two_workspaces() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "django_fyno.emulator",
            "--port",
            "0",
            "--verbose",
            "--workspace",
            "FYONE:cli-key-one",
            "--workspace",
            "FYTWO:cli-key-two",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        env: list[tuple[str, str]] = []
        for line in process.stdout:
            if line.startswith("FYNO_"):
                name, _, value = line.strip().partition("=")
                env.append((name, value))
            if line.startswith("FYNO_API_KEY=cli-key-two"):
                break
        endpoint = dict(env)["FYNO_ENDPOINT"]
        assert env[1:] == [
            ("FYNO_WSID", "FYONE"),
            ("FYNO_API_KEY", "cli-key-one"),
            ("FYNO_WSID", "FYTWO"),
            ("FYNO_API_KEY", "cli-key-two"),
        ]
        own = requests.post(
            f"{endpoint}/FYTWO/live/profiles",
            json={"distinct_id": "U1"},
            headers={"Authorization": "Bearer cli-key-two"},
            timeout=5,
        )
        assert own.status_code == 201
        crossed = requests.get(
            f"{endpoint}/FYONE/live/profiles/U1",
            headers={"Authorization": "Bearer cli-key-two"},
            timeout=5,
        )
        assert crossed.status_code == 401
        root = endpoint.rsplit("/v1", 1)[0]
        state = requests.get(f"{root}/_emulator/state", params={"workspace": "FYTWO"}, timeout=5)
        assert set(state.json()["versions"]["live"]["profiles"]) == {"U1"}
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "POST /v1/FYTWO/live/profiles 201" in stderr
    assert "cli-key" not in stderr  # keys only on the banner, never in the log
