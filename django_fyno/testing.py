"""pytest plugin shipped with django-fyno (registered through the ``pytest11`` entry point).

It imports the emulator lazily, inside fixtures, so that a project that
installs django-fyno without the ``emulator`` extra still runs its tests
(the fixtures then skip with the reason).

Fixtures
--------

``fyno_emulator``
    A fresh :class:`~django_fyno.emulator.app.Emulator` served *in-process*
    through ``responses`` at ``https://api.fyno.io/v1`` (no socket: ``requests``
    calls to that host reach the emulator; calls to any other host are refused
    by ``responses``). Yields a :class:`FynoEmulatorHandle`: ``.emulator``,
    ``.endpoint``, ``.url`` (root; the control API is ``{url}/_emulator/``),
    ``.wsid``, ``.api_key``, ``.headers`` (the ``Authorization`` header),
    ``.env`` (``FYNO_ENDPOINT``/``FYNO_WSID``/``FYNO_API_KEY``), ``.requests``
    (the request log), ``.reset()``.

``fyno_live_emulator``
    The same handle over real HTTP: an emulator served on 127.0.0.1 at an
    ephemeral port by a threaded server, for code that runs in other threads
    or processes (Celery workers, ``live_server``). The server lives for the
    whole session and is ``reset()`` before each test, so every test starts
    with empty state and an empty request log. ``.live`` is the
    :class:`~django_fyno.emulator.live.LiveEmulator`.

``fyno_emulator_options``
    Session-scoped dict of keyword arguments for the emulators above
    (``wsid``, ``api_key``, ``events``, ``strict_replies``). Override it in
    your ``conftest.py`` to change them::

        @pytest.fixture(scope="session")
        def fyno_emulator_options():
            return {"wsid": "FYMYAPP", "api_key": "k", "events": ["welcome"]}

The contract check
------------------

When a test using either emulator fixture has run, every request in the
emulator's log is checked against the vendored Fyno contract (request path,
query and body; the emulator's reply) and the test **fails**, listing the
violations, if any request breaks it. A request the emulator refused because
it broke the contract counts too: a client change that breaks the contract
fails the suite. Tests that send invalid requests on purpose are marked::

    @pytest.mark.fyno_contract_violations_expected
    def test_invalid_payload_is_refused(fyno_emulator): ...

Requests sent after the test body (by fixture teardowns) are checked when the
fixture ends, and reported as a teardown error.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from django_fyno.emulator.app import Emulator, LoggedRequest
    from django_fyno.emulator.live import LiveEmulator

__all__ = ["FynoEmulatorHandle", "contract_violations"]

MARKER = "fyno_contract_violations_expected"
_HANDLES = pytest.StashKey[list["FynoEmulatorHandle"]]()


@dataclass
class FynoEmulatorHandle:
    """What the emulator fixtures yield."""

    emulator: Emulator
    endpoint: str
    url: str
    api_key: str
    live: LiveEmulator | None = None
    # How many log entries the contract check has seen (the rest are checked later).
    _checked: int = field(default=0, repr=False)

    @property
    def wsid(self) -> str:
        return self.emulator.wsid

    @property
    def requests(self) -> list[LoggedRequest]:
        """The emulator's request log (the API key is never in it)."""
        return self.emulator.request_log

    @property
    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header the emulator accepts."""
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def env(self) -> dict[str, str]:
        """The settings Fyno's SDKs read, pointing at this emulator."""
        return {
            "FYNO_ENDPOINT": self.endpoint,
            "FYNO_WSID": self.wsid,
            "FYNO_API_KEY": self.api_key,
        }

    def reset(self) -> None:
        """Forget all state, faults and the request log."""
        self.emulator.reset()
        self._checked = 0

    def _unchecked_violations(self) -> list[str]:
        log = list(self.emulator.request_log)
        start, self._checked = self._checked, len(log)
        return contract_violations(log[start:])


def contract_violations(entries: list[LoggedRequest]) -> list[str]:
    """One line per contract problem in ``entries`` (requests to the control API are skipped)."""
    from django_fyno.emulator import contract

    problems: list[str] = []
    for entry in entries:
        if entry.path.startswith("/_emulator"):
            continue
        where = f"{entry.method} {entry.path}"
        found = contract.find_operation(entry.method, entry.path)
        if found is None:
            problems.append(f"{where}: no operation of the contract has this method and path")
            continue
        op, params = found
        for problem in contract.validate_request(op, params, entry.query, entry.body):
            problems.append(f"{where} ({op.name}) request: {problem}")
        # No reply to check when the connection was dropped (fault injection).
        if entry.reply is not None or (0 < entry.status < 500 and entry.status != 204):
            for problem in contract.validate_reply(op, entry.status, entry.reply):
                problems.append(f"{where} ({op.name}) reply {entry.status}: {problem}")
    return problems


def _report(handle: FynoEmulatorHandle, item: pytest.Item) -> str | None:
    problems = handle._unchecked_violations()
    if not problems or item.get_closest_marker(MARKER) is not None:
        return None
    lines = "\n".join(f"  - {problem}" for problem in problems)
    return (
        f"{len(problems)} Fyno contract violation(s) in requests to the emulator:\n{lines}\n"
        f"(mark the test with @pytest.mark.{MARKER} if they are intended)"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}: requests to the Fyno emulator may break the API contract in this test "
        "(the fyno_emulator fixtures' contract check is off).",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    # After the test body: check its requests, so a violation fails the test
    # itself rather than erroring in teardown.
    handles = item.stash.get(_HANDLES, [])
    try:
        result = yield
    except BaseException:
        # The test failed (or skipped) anyway: show the violations beside its
        # error instead of adding a teardown error for them.
        for handle in handles:
            message = _report(handle, item)
            if message is not None:
                item.add_report_section("call", "fyno contract", message)
        raise
    for handle in handles:
        message = _report(handle, item)
        if message is not None:
            pytest.fail(message, pytrace=False)
    return result


def _import_emulator() -> None:
    try:
        import django_fyno.emulator.contract  # noqa: F401 - needs the `emulator` extra
    except ImportError as error:  # pragma: no cover - depends on the installation
        pytest.skip(f"the Fyno emulator needs django-fyno[emulator]: {error}")


def _track(
    request: pytest.FixtureRequest, handle: FynoEmulatorHandle
) -> Iterator[FynoEmulatorHandle]:
    request.node.stash.setdefault(_HANDLES, []).append(handle)
    yield handle
    message = _report(handle, request.node)
    if message is not None:
        pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def fyno_emulator_options() -> dict[str, Any]:
    """Keyword arguments for the emulators; override in a ``conftest.py``."""
    return {"wsid": "FYTEST", "api_key": "test-api-key"}


@pytest.fixture
def fyno_emulator(
    request: pytest.FixtureRequest, fyno_emulator_options: dict[str, Any]
) -> Iterator[FynoEmulatorHandle]:
    """An emulator reached in-process through ``responses`` at ``https://api.fyno.io/v1``."""
    _import_emulator()
    from django_fyno.emulator.app import Emulator
    from django_fyno.emulator.responses_adapter import DEFAULT_ENDPOINT, EmulatorMock

    options = dict(fyno_emulator_options)
    api_key = options.setdefault("api_key", "test-api-key")
    emulator = Emulator(**options)
    with EmulatorMock(emulator, DEFAULT_ENDPOINT) as mocked:
        handle = FynoEmulatorHandle(emulator, mocked.endpoint, mocked.url, api_key)
        yield from _track(request, handle)


@pytest.fixture(scope="session")
def _fyno_live_server(fyno_emulator_options: dict[str, Any]) -> Iterator[LiveEmulator]:
    _import_emulator()
    from django_fyno.emulator.live import LiveEmulator

    options = dict(fyno_emulator_options)
    with LiveEmulator(**options) as live:
        yield live


@pytest.fixture
def fyno_live_emulator(
    request: pytest.FixtureRequest, _fyno_live_server: LiveEmulator
) -> Iterator[FynoEmulatorHandle]:
    """An emulator over real HTTP on 127.0.0.1 (session server, reset for each test)."""
    live = _fyno_live_server
    handle = FynoEmulatorHandle(live.emulator, live.endpoint, live.url, live.api_key, live=live)
    handle.reset()
    try:
        yield from _track(request, handle)
    finally:
        handle.reset()
