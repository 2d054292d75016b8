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
    (the request log), ``.faults``/``.set_fault()``/``.clear_faults()``,
    ``.state()``, ``.reset()``; all of the default workspace, except
    ``reset()``, which resets every workspace. ``.workspace("FY2")`` is a
    :class:`FynoWorkspaceHandle` with the same attributes for one workspace.

``fyno_live_emulator``
    The same handle over real HTTP: an emulator served on 127.0.0.1 at an
    ephemeral port by a threaded server, for code that runs in other threads
    or processes (Celery workers, ``live_server``). The server lives for the
    whole session and is ``reset()`` before each test, so every test starts
    with empty state and an empty request log. ``.live`` is the
    :class:`~django_fyno.emulator.live.LiveEmulator`.

``fyno_emulator_options``
    Session-scoped dict of keyword arguments for the emulators above (any
    ``Emulator`` option: ``wsid``, ``api_key``, or ``workspaces`` for
    several; ``events``, ``strict_replies``, ``faults``, ``seed``,
    ``allow_remote_webhooks`` to let the webhook sender call other hosts
    than this one...).
    Override it in your ``conftest.py`` to change them::

        @pytest.fixture(scope="session")
        def fyno_emulator_options():
            return {"wsid": "FYMYAPP", "api_key": "k", "events": ["welcome"]}

        # or two tenants, each with its own state, faults and request log:
        @pytest.fixture(scope="session")
        def fyno_emulator_options():
            return {"workspaces": {"FYONE": "key-1", "FYTWO": "key-2"}}

The contract check
------------------

When a test using either emulator fixture has run, every request in the
request logs of all the emulator's workspaces is checked against the
vendored Fyno contract (request path, query and body; the emulator's reply)
and the test **fails**, listing the violations, if any request breaks it. A
request the emulator refused because it broke the contract counts too: a
client change that breaks the contract fails the suite. Tests that send
invalid requests on purpose are marked::

    @pytest.mark.fyno_contract_violations_expected
    def test_invalid_payload_is_refused(fyno_emulator): ...

Requests sent after the test body (by fixture teardowns) are checked when the
fixture ends, and reported as a teardown error.

Checking what your code notified
--------------------------------

``fyno_outbox``
    A :class:`FynoOutboxView`: the :class:`~django_fyno.models.FynoOutbox`
    rows in the test database, read anew on every access (like
    ``django.core.mail.outbox``, but for Fyno events and property operations).

:func:`assert_notified`
    ``assert_notified(user, "welcome", data={"name": "Ada"})`` fails, listing
    what *was* notified, unless the outbox holds such an event. It reads outbox
    rows, so it works whether delivery is eager, after commit, by a worker, or off.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from django_fyno.emulator.app import Emulator, LoggedRequest, Workspace
    from django_fyno.emulator.faults import Fault
    from django_fyno.emulator.live import LiveEmulator
    from django_fyno.models import FynoOutbox

__all__ = [
    "FynoEmulatorHandle",
    "FynoOutboxView",
    "FynoWorkspaceHandle",
    "assert_notified",
    "contract_violations",
]

MARKER = "fyno_contract_violations_expected"
_HANDLES = pytest.StashKey[list["FynoEmulatorHandle"]]()


@dataclass
class FynoWorkspaceHandle:
    """One workspace of the emulator, as a test sees it.

    ``emulator`` is the :class:`~django_fyno.emulator.workspace.Workspace`:
    it has the Python control methods of ``Emulator`` (``events_log``,
    ``set_otp``, ``profiles``...), acting on this workspace only.
    """

    emulator: Emulator | Workspace
    endpoint: str
    url: str
    api_key: str

    @property
    def wsid(self) -> str:
        return self.emulator.wsid

    @property
    def requests(self) -> list[LoggedRequest]:
        """The workspace's request log (the API key is never in it)."""
        return self.emulator.request_log

    @property
    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header the workspace accepts."""
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def env(self) -> dict[str, str]:
        """The settings Fyno's SDKs read, pointing at this workspace."""
        return {
            "FYNO_ENDPOINT": self.endpoint,
            "FYNO_WSID": self.wsid,
            "FYNO_API_KEY": self.api_key,
        }

    @property
    def faults(self) -> dict[str, dict[str, Any]]:
        """The faults in force: ``{"*" or operation: knobs}``."""
        faults: dict[str, dict[str, Any]] = self.emulator.faults_config()["faults"]
        return faults

    def set_fault(self, operation: str | None = None, **knobs: Any) -> Fault:
        """Put a fault in force for ``operation`` (None: every request), e.g.
        ``set_fault("send_event", fail_next=2, fail_next_status=503)``."""
        return self.emulator.set_fault(operation, **knobs)

    def clear_faults(self, operation: str | None = None) -> None:
        """Remove one operation's fault, or all of them."""
        self.emulator.clear_faults(operation)

    def state(self) -> dict[str, Any]:
        """Profiles, events, preferences and suppressions, JSON-ready."""
        return self.emulator.state()

    def reset(self) -> None:
        """Forget this workspace's state, faults and request log."""
        self.emulator.reset()


@dataclass
class FynoEmulatorHandle(FynoWorkspaceHandle):
    """What the emulator fixtures yield: the default workspace, and the others.

    Its attributes are those of the default (first) workspace, except
    :meth:`reset`, which resets every workspace; :meth:`workspace` gives
    another one.
    """

    emulator: Emulator
    live: LiveEmulator | None = None
    # The last request the contract check has seen, per workspace: the ones
    # after it are checked next time (all of them once the log was reset).
    _checked: dict[str, LoggedRequest] = field(default_factory=dict, repr=False)

    def workspace(self, wsid: str | None = None) -> FynoWorkspaceHandle:
        """The workspace ``wsid`` (None: the default one); LookupError if not served."""
        space = self.emulator.workspace(wsid)
        return FynoWorkspaceHandle(space, self.endpoint, self.url, space.api_key)

    @property
    def workspaces(self) -> list[FynoWorkspaceHandle]:
        """Every workspace, the default one first."""
        return [self.workspace(wsid) for wsid in self.emulator.workspaces]

    def reset(self) -> None:
        """Forget all state, faults and request logs, of every workspace."""
        self.emulator.reset()

    def _unchecked_violations(self) -> list[str]:
        fresh: list[LoggedRequest] = []
        for wsid, space in self.emulator.workspaces.items():
            log = list(space.request_log)
            last = self._checked.pop(wsid, None)
            start = 0
            if last is not None:
                # Usually the last checked entry is near the end: look from there.
                start = next(
                    (index + 1 for index in range(len(log) - 1, -1, -1) if log[index] is last), 0
                )
            if log:
                self._checked[wsid] = log[-1]
            fresh += log[start:]
        return contract_violations(fresh)


def contract_violations(entries: list[LoggedRequest]) -> list[str]:
    """One line per contract problem in ``entries`` (requests to the control API are skipped)."""
    from django_fyno.emulator import contract

    problems: list[str] = []
    for entry in entries:
        if entry.path.startswith("/_emulator"):
            continue
        where = f"{entry.method} {entry.path}"
        # One trailing slash is ignored, as Fyno (Express) ignores it.
        found = contract.find_operation(entry.method, contract.route_path(entry.path))
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

    emulator = Emulator(**fyno_emulator_options)
    with EmulatorMock(emulator, DEFAULT_ENDPOINT) as mocked:
        handle = FynoEmulatorHandle(emulator, mocked.endpoint, mocked.url, emulator.api_key)
        yield from _track(request, handle)


@pytest.fixture(scope="session")
def _fyno_live_server(fyno_emulator_options: dict[str, Any]) -> Iterator[LiveEmulator]:
    _import_emulator()
    from django_fyno.emulator.app import Emulator
    from django_fyno.emulator.live import LiveEmulator

    with LiveEmulator(Emulator(**fyno_emulator_options)) as live:
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


# -- checking what was notified ---------------------------------------------------
# Django models are imported inside functions: this plugin is loaded before
# Django is set up, and in projects that never use these helpers.


def _outbox_rows(using: str | None, after: int = 0) -> QuerySet[FynoOutbox]:
    from django.db import router

    from django_fyno.models import FynoOutbox

    db: str = using or router.db_for_write(FynoOutbox)
    rows: QuerySet[FynoOutbox] = FynoOutbox.objects.using(db).filter(pk__gt=after).order_by("pk")
    return rows


class FynoOutboxView:
    """The outbox rows of the test database, read anew on every access.

    The test database starts empty for each test, so these are the rows the
    test wrote (events and property operations, whatever their state), in the
    order they were written. :meth:`clear` hides the rows written so far.
    """

    def __init__(self, using: str | None = None) -> None:
        self.using = using
        self._after = 0

    def all(self) -> list[FynoOutbox]:
        """Every row (events and property operations)."""
        return list(_outbox_rows(self.using, self._after))

    def events(self, name: str | None = None) -> list[FynoOutbox]:
        """Event rows, only those of event ``name`` when given."""
        rows = _outbox_rows(self.using, self._after).filter(kind="event")
        return list(rows if name is None else rows.filter(event=name))

    def property_updates(self, operation: str | None = None) -> list[FynoOutbox]:
        """Property-operation rows, only those of ``operation`` (e.g. ``"$add"``) when given."""
        rows = _outbox_rows(self.using, self._after).filter(kind="property")
        return list(rows if operation is None else rows.filter(event=operation))

    def clear(self) -> None:
        """Hide the rows written so far (they stay in the database, and are still delivered)."""
        last = _outbox_rows(self.using).values_list("pk", flat=True).last()
        self._after = last or 0

    def __len__(self) -> int:
        return _outbox_rows(self.using, self._after).count()

    def __iter__(self) -> Iterator[FynoOutbox]:
        return iter(self.all())

    def __repr__(self) -> str:
        return f"<FynoOutboxView: {_describe_rows(self.all())}>"


@pytest.fixture
def fyno_outbox(db: None) -> FynoOutboxView:
    """The FynoOutbox rows the test writes (enables database access, like ``db``)."""
    return FynoOutboxView()


def _describe(row: FynoOutbox) -> str:
    recipient = [repr(row.distinct_id)] if row.distinct_id else []
    if row.to:
        recipient.append(f"to={row.to!r}")
    return f"{row.event!r} to {' '.join(recipient)} data={row.payload!r} ({row.state})"


def _describe_rows(rows: list[FynoOutbox]) -> str:
    if not rows:
        return "no events"
    return f"{len(rows)} event(s):\n" + "\n".join(f"  - {_describe(row)}" for row in rows)


def _contains(stored: Any, expected: Mapping[str, Any]) -> bool:
    return isinstance(stored, Mapping) and all(
        key in stored and stored[key] == value for key, value in expected.items()
    )


def assert_notified(
    recipient: Any,
    event: str,
    data: Mapping[str, Any] | None = None,
    count: int | None = None,
    *,
    using: str | None = None,
) -> list[FynoOutbox]:
    """Assert that ``event`` was notified to ``recipient``; return the matching rows.

    ``recipient`` is a user, a distinct id, or a mapping of destinations that
    the row's ``to`` must contain. With ``data``, only rows whose data contains
    these items count (other keys may be present). ``count`` None means at
    least one; otherwise exactly ``count`` (0: never notified). The failure
    message lists every event the outbox holds.
    """
    from django_fyno.notifications import resolve_distinct_id

    # Compare with what was stored: notify() keeps the JSON form of data.
    expected_data = None if data is None else json.loads(json.dumps(dict(data)))
    if isinstance(recipient, Mapping):
        who = f"destinations containing {dict(recipient)!r}"
        expected_to: Mapping[str, Any] | None = recipient
        distinct_id = None
    else:
        distinct_id = resolve_distinct_id(recipient, "recipient")
        who = f"distinct id {distinct_id!r}"
        expected_to = None
    events = list(_outbox_rows(using).filter(kind="event"))
    matching = [
        row
        for row in events
        if row.event == event
        and (distinct_id is None or row.distinct_id == distinct_id)
        and (expected_to is None or _contains(row.to, expected_to))
        and (expected_data is None or _contains(row.payload, expected_data))
    ]
    if (count is None and matching) or len(matching) == count:
        return matching
    wanted = "at least one" if count is None else f"exactly {count}"
    with_data = "" if expected_data is None else f" with data containing {expected_data!r}"
    raise AssertionError(
        f"Expected {wanted} {event!r} event(s) to {who}{with_data}; found {len(matching)}.\n"
        f"The outbox holds {_describe_rows(events)}"
    )
