"""The pytest plugin, run on inner test files as a user's suite would run it."""

from __future__ import annotations

import sys

import pytest

# Imported here so that in-process inner runs share one copy: pytester drops the
# modules an inner run imports, and a second import of requests breaks its own
# isinstance checks ("You can only merge into CookieJar").
import requests  # noqa: F401
import responses  # noqa: F401

pytest_plugins = ["pytester"]


def _emulator_logs_requests() -> bool:
    from django_fyno.emulator.app import Emulator

    emulator = Emulator()
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/FYTEST/live/x", "QUERY_STRING": ""}
    emulator(environ, lambda *_: None)
    return bool(emulator.request_log)


# The interface stub answers 501 and logs nothing, so there is nothing to check.
needs_logging = pytest.mark.skipif(
    not _emulator_logs_requests(), reason="the emulator does not log requests yet"
)

HEADER = """
import pytest
import requests

AUTH = {"Authorization": "Bearer test-api-key"}
"""


def run(pytester: pytest.Pytester, body: str) -> pytest.RunResult:
    pytester.makepyfile(test_inner=HEADER + body)
    # pytest-django is off in the inner run: Django is already set up by ours,
    # and the plugin must not need it anyway.
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:django")


def test_the_plugin_imports_nothing_heavy() -> None:
    import subprocess

    code = (
        "import sys, django_fyno.testing;"
        "heavy = [m for m in ('yaml', 'openapi_schema_validator', 'responses', 'django',"
        " 'django_fyno.emulator') if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run(  # noqa: S603 - our own interpreter, a constant script
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_a_conforming_request_passes(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
def test_get(fyno_emulator):
    assert fyno_emulator.endpoint == "https://api.fyno.io/v1"
    assert fyno_emulator.wsid == "FYTEST"
    assert fyno_emulator.env["FYNO_API_KEY"] == "test-api-key"
    requests.get(f"{fyno_emulator.endpoint}/FYTEST/live/profiles/U1", headers=AUTH)
    assert [r.path for r in fyno_emulator.requests] in ([], ["/FYTEST/live/profiles/U1"])
""",
    )
    result.assert_outcomes(passed=1)


@needs_logging
@pytest.mark.parametrize("fixture", ["fyno_emulator", "fyno_live_emulator"])
def test_a_request_breaking_the_contract_fails_the_test(
    pytester: pytest.Pytester, fixture: str
) -> None:
    result = run(
        pytester,
        f"""
def test_bad_event({fixture}):
    requests.post(f"{{{fixture}.endpoint}}/FYTEST/live/event", json={{"nope": 1}}, headers=AUTH)

def test_bad_version({fixture}):
    requests.get(f"{{{fixture}.endpoint}}/FYTEST/staging/profiles/U1", headers=AUTH)
""",
    )
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*Fyno contract violation(s)*",
            "*POST /FYTEST/live/event (send_event) request: body: matches none of the allowed*",
            "*fyno_contract_violations_expected*",
        ]
    )
    result.stdout.fnmatch_lines(["*GET /FYTEST/staging/profiles/U1 (get_profile) request:*"])


@pytest.mark.parametrize("fixture", ["fyno_emulator", "fyno_live_emulator"])
def test_the_marker_allows_violations(pytester: pytest.Pytester, fixture: str) -> None:
    result = run(
        pytester,
        f"""
@pytest.mark.fyno_contract_violations_expected
def test_bad_event({fixture}):
    requests.post(f"{{{fixture}.endpoint}}/FYTEST/live/event", json={{"nope": 1}}, headers=AUTH)
""",
    )
    result.assert_outcomes(passed=1)


@needs_logging
def test_an_unknown_route_is_a_violation(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
def test_unknown(fyno_emulator):
    requests.get(f"{fyno_emulator.endpoint}/FYTEST/live/nowhere", headers=AUTH)
""",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*GET /FYTEST/live/nowhere: no operation of the contract*"])


@needs_logging
def test_requests_from_fixture_teardown_are_checked_too(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
@pytest.fixture
def cleanup(fyno_emulator):
    yield
    requests.post(f"{fyno_emulator.endpoint}/FYTEST/live/profiles/delete", json={}, headers=AUTH)

def test_body(cleanup, fyno_emulator):
    pass
""",
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*POST /FYTEST/live/profiles/delete (delete_profiles) request*"])


@needs_logging
def test_a_failing_test_shows_its_violations_without_a_teardown_error(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
def test_fails(fyno_emulator):
    requests.post(f"{fyno_emulator.endpoint}/FYTEST/live/event", json={"x": 1}, headers=AUTH)
    assert False, "the test's own failure"
""",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the test's own failure*", "*fyno contract*"])


def test_the_live_emulator_is_reset_between_tests(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
def test_one(fyno_live_emulator):
    assert fyno_live_emulator.requests == []
    assert fyno_live_emulator.endpoint.startswith("http://127.0.0.1:")
    requests.get(f"{fyno_live_emulator.endpoint}/FYTEST/live/profiles/U1", headers=AUTH)

def test_two(fyno_live_emulator):
    assert fyno_live_emulator.requests == []
    assert fyno_live_emulator.live is not None
""",
    )
    result.assert_outcomes(passed=2)


def test_options_can_be_overridden_in_a_conftest(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import pytest

@pytest.fixture(scope="session")
def fyno_emulator_options():
    return {"wsid": "FYMINE", "api_key": "mine"}
"""
    )
    result = run(
        pytester,
        """
def test_mine(fyno_emulator, fyno_live_emulator):
    assert fyno_emulator.wsid == fyno_live_emulator.wsid == "FYMINE"
    assert fyno_emulator.headers == {"Authorization": "Bearer mine"}
    assert fyno_live_emulator.api_key == "mine"
""",
    )
    result.assert_outcomes(passed=1)


def test_the_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["*fyno_contract_violations_expected*"])


@pytest.mark.parametrize("fixture", ["fyno_emulator", "fyno_live_emulator"])
def test_logged_violations_fail_the_test(pytester: pytest.Pytester, fixture: str) -> None:
    # Independent of the emulator's semantics: put entries in its log directly.
    result = run(
        pytester,
        f"""
import time
from django_fyno.emulator.app import LoggedRequest

def entry(method, path, body, status, reply, query=None):
    return LoggedRequest(method, path, query or {{}}, body, status, reply, None, time.time())

def test_logged({fixture}):
    log = {fixture}.requests
    log.append(entry("GET", "/_emulator/state", None, 200, {{}}))
    log.append(entry("POST", "/FYTEST/live/event", {{"nope": 1}}, 0, None))
    log.append(entry("GET", "/FYTEST/live/subscriptions/preference", None, 503, None))
    log.append(entry("DELETE", "/FYTEST/live/nowhere", None, 400, None))

@pytest.mark.fyno_contract_violations_expected
def test_marked({fixture}):
    log = {fixture}.requests
    log.append(entry("POST", "/FYTEST/live/event", {{"nope": 1}}, 400, {{"_message": "x"}}))
""",
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*3 Fyno contract violation(s)*",
            "*POST /FYTEST/live/event (send_event) request: body: matches none of the allowed*",
            "*GET /FYTEST/live/subscriptions/preference (get_preferences) request: distinct_id:*",
            "*DELETE /FYTEST/live/nowhere: no operation of the contract*",
            "*@pytest.mark.fyno_contract_violations_expected*",
        ]
    )
    assert "_emulator" not in result.stdout.str()


@pytest.mark.parametrize("fixture", ["fyno_emulator", "fyno_live_emulator"])
def test_a_trailing_slash_passes_the_contract_check(
    pytester: pytest.Pytester, fixture: str
) -> None:
    # Fyno ignores one trailing slash (its Node SDK sends one), so the check does too.
    result = run(
        pytester,
        f"""
def test_create({fixture}):
    url = f"{{{fixture}.endpoint}}/FYTEST/live/profiles/"
    assert requests.post(url, json={{"distinct_id": "U1"}}, headers=AUTH).status_code == 201
    assert [r.path for r in {fixture}.requests] == ["/FYTEST/live/profiles/"]
""",
    )
    result.assert_outcomes(passed=1)


def test_remote_webhooks_are_off_unless_the_options_allow_them(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import pytest

@pytest.fixture(scope="session")
def fyno_emulator_options():
    return {"allow_remote_webhooks": True}
"""
    )
    pytester.makepyfile(
        test_default="""
import pytest
from django_fyno.emulator.app import Emulator, WebhookError

def test_default():
    with pytest.raises(WebhookError, match="--allow-remote-webhooks"):
        Emulator().register_webhook("https://hooks.example.com/fyno")
"""
    )
    result = run(
        pytester,
        """
def test_allowed(fyno_emulator, fyno_live_emulator):
    for handle in (fyno_emulator, fyno_live_emulator):
        assert handle.emulator.allow_remote_webhooks is True
        handle.emulator.register_webhook("https://hooks.example.com/fyno")
        assert handle.emulator.webhook_url == "https://hooks.example.com/fyno"
""",
    )
    result.assert_outcomes(passed=2)
