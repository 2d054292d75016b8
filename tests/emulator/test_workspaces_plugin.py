"""The pytest fixtures with several workspaces, run on inner test files as a user's suite."""

from __future__ import annotations

import pytest

# As in test_plugin: imported here so that in-process inner runs share one copy.
import requests  # noqa: F401
import responses  # noqa: F401

pytest_plugins = ["pytester"]

CONFTEST = """
import pytest

@pytest.fixture(scope="session")
def fyno_emulator_options():
    return {"workspaces": {"FYONE": "key-one", "FYTWO": "key-two"}}
"""

HEADER = """
import pytest
import requests
"""

FIXTURES = ["fyno_emulator", "fyno_live_emulator"]


def run(pytester: pytest.Pytester, body: str) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_inner=HEADER + body)
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:django")


@pytest.mark.parametrize("fixture", FIXTURES)
def test_the_handle_addresses_each_workspace(pytester: pytest.Pytester, fixture: str) -> None:
    result = run(
        pytester,
        f"""
def test_two({fixture}):
    handle = {fixture}
    assert (handle.wsid, handle.api_key) == ("FYONE", "key-one")
    two = handle.workspace("FYTWO")
    assert (two.wsid, two.api_key) == ("FYTWO", "key-two")
    assert two.headers == {{"Authorization": "Bearer key-two"}}
    assert two.env == {{
        "FYNO_ENDPOINT": handle.endpoint, "FYNO_WSID": "FYTWO", "FYNO_API_KEY": "key-two"
    }}
    assert [w.wsid for w in handle.workspaces] == ["FYONE", "FYTWO"]
    assert handle.workspace().wsid == "FYONE"
    with pytest.raises(LookupError):
        handle.workspace("FYNONE")

    two.set_fault("get_profile", fail_next=1, fail_next_status=503)
    assert set(two.faults) == {{"get_profile"}} and handle.faults == {{}}
    url = handle.endpoint + "/{{}}/live/profiles/U1"
    assert requests.get(url.format("FYTWO"), headers=two.headers).status_code == 503
    assert requests.get(url.format("FYONE"), headers=handle.headers).status_code == 400
    assert requests.get(url.format("FYONE"), headers=two.headers).status_code == 401
    assert [r.status for r in two.requests] == [503]
    assert [r.status for r in handle.requests] == [400, 401]
    requests.post(
        handle.endpoint + "/FYTWO/live/profiles", json={{"distinct_id": "U2"}}, headers=two.headers
    )
    assert set(two.state()["versions"]["live"]["profiles"]) == {{"U2"}}
    assert two.emulator.profiles() != {{}} and handle.emulator.profiles() == {{}}

    two.reset()
    assert two.requests == [] and two.faults == {{}}
    assert len(handle.requests) == 2
    handle.reset()
    assert handle.requests == []

def test_the_next_test_starts_empty({fixture}):
    for workspace in {fixture}.workspaces:
        assert workspace.requests == []
        assert workspace.state()["versions"]["live"]["profiles"] == {{}}
""",
    )
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize("fixture", FIXTURES)
def test_the_contract_check_covers_every_workspace(pytester: pytest.Pytester, fixture: str) -> None:
    result = run(
        pytester,
        f"""
def test_bad_on_two({fixture}):
    two = {fixture}.workspace("FYTWO")
    requests.post(two.endpoint + "/FYTWO/live/event", json={{"nope": 1}}, headers=two.headers)

def test_bad_on_both({fixture}):
    for space in {fixture}.workspaces:
        requests.get(space.endpoint + f"/{{space.wsid}}/staging/profiles/U1", headers=space.headers)

@pytest.mark.fyno_contract_violations_expected
def test_marked({fixture}):
    two = {fixture}.workspace("FYTWO")
    requests.post(two.endpoint + "/FYTWO/live/event", json={{"nope": 1}}, headers=two.headers)

def test_good_on_both({fixture}):
    for space in {fixture}.workspaces:
        requests.get(space.endpoint + f"/{{space.wsid}}/live/profiles/U1", headers=space.headers)
""",
    )
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        ["*POST /FYTWO/live/event (send_event) request: body: matches none of the allowed*"]
    )
    result.stdout.fnmatch_lines(["*2 Fyno contract violation(s)*"])
    result.stdout.fnmatch_lines(["*GET /FYONE/staging/profiles/U1 (get_profile) request:*"])
    result.stdout.fnmatch_lines(["*GET /FYTWO/staging/profiles/U1 (get_profile) request:*"])


def test_teardown_requests_to_another_workspace_are_checked(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
@pytest.fixture
def cleanup(fyno_emulator):
    yield
    two = fyno_emulator.workspace("FYTWO")
    requests.post(two.endpoint + "/FYTWO/live/profiles/delete", json={}, headers=two.headers)

def test_body(cleanup, fyno_emulator):
    pass
""",
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*POST /FYTWO/live/profiles/delete (delete_profiles) request*"])


def test_a_workspace_reset_between_checks_does_not_hide_later_requests(
    pytester: pytest.Pytester,
) -> None:
    # The test body's requests are checked after it; the teardown's at the end.
    result = run(
        pytester,
        """
@pytest.fixture
def cleanup(fyno_emulator):
    yield
    two = fyno_emulator.workspace("FYTWO")
    two.reset()
    requests.post(two.endpoint + "/FYTWO/live/event", json={"nope": 1}, headers=two.headers)

def test_body(cleanup, fyno_emulator):
    two = fyno_emulator.workspace("FYTWO")
    requests.get(two.endpoint + "/FYTWO/live/profiles/U1", headers=two.headers)
    requests.get(two.endpoint + "/FYTWO/live/profiles/U2", headers=two.headers)
""",
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*POST /FYTWO/live/event (send_event) request*"])


def test_one_workspace_options_are_unchanged(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_inner=HEADER
        + """
def test_default(fyno_emulator, fyno_live_emulator):
    for handle in (fyno_emulator, fyno_live_emulator):
        assert [w.wsid for w in handle.workspaces] == ["FYTEST"]
        assert handle.workspace().api_key == handle.api_key == "test-api-key"
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:django")
    result.assert_outcomes(passed=1)
