"""No frame of an error django-fyno raises shows the API key.

Django's technical 500 page (``DEBUG = True``) and its error e-mails
(``AdminEmailHandler(include_html=True)``) show every frame's local variables,
those of every chained exception (``__cause__``/``__context__``) included.
These tests make failures happen for real (a closed port, a server that never
answers or hangs up, Fyno's error answers, resolvers with bad answers, tasks
failing), render what Django shows for the exception, HTML and text, and
search it for the key, and so for the ``Authorization: Bearer <key>`` header.

The key lives in module globals only: a test's own frame is part of the
traceback, and its local variables are shown too.
"""

from __future__ import annotations

import logging
import re
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from types import SimpleNamespace, TracebackType
from typing import Any

import pytest
import responses
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory, override_settings
from django.urls import path
from django.utils.log import AdminEmailHandler
from django.views.debug import ExceptionReporter

from django_fyno import notifications
from django_fyno.client import FynoClient, FynoConfig, RetryPolicy
from django_fyno.clients import (
    Workspace,
    client_for,
    get_client,
    get_config,
    reset_clients,
    workspace_for,
)
from django_fyno.exceptions import FynoAPIError, FynoError, FynoTransientError
from django_fyno.models import FynoProfile
from tests.conftest import make_user

# Long enough that however a renderer wraps it, one of KEY_PARTS shows whole.
KEY = "fk-Q7wZ3kP9xV2mR8tL4nB6yJ1"
KEY_PARTS = (KEY, KEY[:9], KEY[9:18], KEY[18:])
WSID = "FYLEAK"
ENDPOINT = "http://fyno.test/v1"
ANY_URL = re.compile(r"http://fyno\.test/.*")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType]
Endpoints = dict[str, Callable[[], AbstractContextManager[str]]]


def shows_key(text: str) -> bool:
    return any(part in text for part in KEY_PARTS)


def render(exc_info: ExcInfo, *, debug: bool = True) -> str:
    """What Django shows for this exception: the technical 500 page, HTML and text."""
    with override_settings(DEBUG=debug, ROOT_URLCONF=__name__):
        reporter = ExceptionReporter(RequestFactory().get("/"), *exc_info)
        page = reporter.get_traceback_html() + "\n" + reporter.get_traceback_text()
    # The page is about this exception, with its frames and their variables.
    assert type(exc_info[1]).__name__ in page
    assert "Local vars" in page
    return page


def raised(call: Callable[[], object], expected: type[BaseException] = FynoError) -> ExcInfo:
    try:
        call()
    except expected:
        exc_type, exc, tb = sys.exc_info()
        assert exc_type is not None
        assert exc is not None
        assert tb is not None
        return exc_type, exc, tb
    pytest.fail(f"{call} raised nothing")


def leaks(
    cases: dict[str, Callable[[], object]], expected: type[BaseException] = FynoError
) -> list[str]:
    """The names of the cases whose error, as Django shows it, holds the key."""
    found = []
    for name, call in cases.items():
        exc_info = raised(call, expected)
        if shows_key(render(exc_info)) or shows_key(str(exc_info[1])):
            found.append(name)
    return found


@pytest.fixture(autouse=True)
def _fresh_clients_and_pauses() -> Iterator[None]:
    reset_clients()
    cache.clear()  # the tasks pause a workspace whose key Fyno refuses
    yield
    cache.clear()
    reset_clients()


# -- Fyno out of reach ------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def silent_server(*, hang_up: bool) -> Iterator[str]:
    """An endpoint that reads requests and never answers: holds the connection or hangs up."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.05)
    held: list[socket.socket] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            conn.recv(65536)
            if hang_up:
                conn.close()
            else:
                held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        done.set()
        thread.join(5)
        listener.close()
        for conn in held:
            conn.close()


@pytest.fixture
def unreachable(monkeypatch: pytest.MonkeyPatch) -> Endpoints:
    """Ways of not reaching Fyno: name -> a context manager giving such an endpoint."""

    @contextmanager
    def refused() -> Iterator[str]:
        yield f"http://127.0.0.1:{closed_port()}/v1"

    @contextmanager
    def connecting_fails(error: OSError) -> Iterator[str]:
        def create_connection(*args: Any, **kwargs: Any) -> socket.socket:
            raise error

        with monkeypatch.context() as patch:
            patch.setattr("urllib3.util.connection.create_connection", create_connection)
            yield ENDPOINT

    return {
        "connection refused": refused,
        "DNS failure": lambda: connecting_fails(
            socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        ),
        "connect timeout": lambda: connecting_fails(TimeoutError("timed out")),
        "read timeout": lambda: silent_server(hang_up=False),
        "connection dropped": lambda: silent_server(hang_up=True),
    }


def fyno_client(endpoint: str = ENDPOINT) -> FynoClient:
    return FynoClient(
        wsid=WSID,
        api_key=KEY,
        endpoint=endpoint,
        connect_timeout=0.5,
        read_timeout=0.2,
        retry=RetryPolicy(max_attempts=2, sleep=lambda seconds: None),
    )


# Two calls Fyno may have acted on (never retried once sent) and one retried;
# each with input the client refuses before sending.
CALLS: dict[str, tuple[Callable[[FynoClient], object], Callable[[FynoClient], object]]] = {
    "verify_otp": (
        lambda fyno: fyno.verify_otp("123456", request_id="req-1"),
        lambda fyno: fyno.verify_otp("123456"),
    ),
    "send_event": (
        lambda fyno: fyno.send_event("welcome", distinct_id="u1"),
        lambda fyno: fyno.send_event("welcome", distinct_id=""),
    ),
    "get_profile": (
        lambda fyno: fyno.get_profile("u1"),
        lambda fyno: fyno.get_profile(""),
    ),
}

# Fyno's error answers.
ANSWERS: dict[str, tuple[int, dict[str, Any]]] = {
    "401": (401, {"_message": "Invalid API details"}),
    "400": (400, {"_message": "Invalid request", "request_id": "r-400"}),
    "404": (404, {"_message": "Not Found"}),
    "429": (429, {"_message": "Too many requests"}),
    "500": (500, {"_message": "Internal Server Error"}),
    "503": (503, {"_message": "Service Unavailable"}),
}


@pytest.mark.parametrize("name", CALLS)
def test_no_failure_of_a_client_call_shows_the_key(name: str, unreachable: Endpoints) -> None:
    call, bad_call = CALLS[name]
    found = []
    for failure, endpoint in unreachable.items():
        with endpoint() as url, fyno_client(url) as fyno:
            page = render(raised(partial(call, fyno), FynoTransientError))
        if shows_key(page):
            found.append(failure)
    for status, (code, body) in ANSWERS.items():
        with (
            responses.RequestsMock(assert_all_requests_are_fired=False) as mocked,
            fyno_client() as fyno,
        ):
            mocked.add(responses.GET, ANY_URL, json=body, status=code)
            mocked.add(responses.POST, ANY_URL, json=body, status=code)
            exc_info = raised(partial(call, fyno), FynoAPIError)
        if shows_key(render(exc_info)):
            found.append(f"answer {status}")
    with fyno_client() as fyno:
        if shows_key(render(raised(partial(bad_call, fyno)))):
            found.append("input refused")
    assert found == []


def test_transport_errors_chain_a_bare_copy_of_the_system_error(unreachable: Endpoints) -> None:
    """What went wrong is still said, by a copy of the socket error: no frames, no chain."""
    with unreachable["connection refused"]() as url, fyno_client(url) as fyno:
        exc_info = raised(partial(fyno.verify_otp, "123456", request_id="req-1"))
    error = exc_info[1]
    cause = error.__cause__
    assert isinstance(cause, ConnectionRefusedError)
    assert cause.__traceback__ is None
    assert cause.__cause__ is None
    assert cause.__context__ is None
    assert error.__context__ is None
    page = render(exc_info)
    assert f"The above exception ({cause}) was the direct cause" in page
    assert not shows_key(page)


def test_no_configuration_error_of_the_client_shows_the_key() -> None:
    cases: dict[str, Callable[[], object]] = {
        "empty wsid": lambda: FynoClient(wsid="", api_key=KEY),
        "bad version": lambda: FynoClient(wsid=WSID, api_key=KEY, version="prod"),
        "bad endpoint": lambda: FynoClient(wsid=WSID, api_key=KEY, endpoint="ftp://fyno.test"),
        "bad timeout": lambda: FynoClient(wsid=WSID, api_key=KEY, read_timeout=0),
        "key with a space": lambda: FynoClient(wsid=WSID, api_key=f"{KEY} x"),
        "config and key": lambda: FynoClient(
            config=FynoConfig(wsid=WSID, api_key=KEY), api_key=KEY
        ),
    }
    assert leaks(cases) == []


# -- Django: verify_otp, the debug page and the error e-mail ---------------------------


def otp_view(request: HttpRequest) -> HttpResponse:
    valid = notifications.verify_otp(request.GET["otp"], request_id="req-1")
    return HttpResponse("valid" if valid else "wrong")


urlpatterns = [path("otp/", otp_view)]


def fyno_settings(**extra: Any) -> dict[str, Any]:
    return {
        "WSID": WSID,
        "API_KEY": KEY,
        "VERSION": "live",
        "ENDPOINT": ENDPOINT,
        "TASK_MODE": "inline",
        "READ_TIMEOUT": 0.2,
        "CONNECT_TIMEOUT": 0.5,
        "RETRY": {"MAX_ATTEMPTS": 1},
        **extra,
    }


def test_debug_page_of_verify_otp_never_shows_the_key(unreachable: Endpoints) -> None:
    """The issue's case: DEBUG = True and Fyno cannot be reached."""
    found = []
    for failure, endpoint in unreachable.items():
        with (
            endpoint() as url,
            override_settings(DEBUG=True, ROOT_URLCONF=__name__, FYNO=fyno_settings(ENDPOINT=url)),
        ):
            response = Client(raise_request_exception=False).get("/otp/?otp=123456")
        page = response.content.decode()
        assert response.status_code == 500
        assert "Fyno" in page
        assert "otp_view" in page
        if shows_key(page):
            found.append(failure)
    assert found == []


class CapturedEmailHandler(AdminEmailHandler):
    """AdminEmailHandler(include_html=True), keeping what it would mail."""

    def __init__(self) -> None:
        super().__init__(include_html=True)
        self.mails: list[str] = []

    def send_mail(self, subject: str, message: str, *args: Any, **kwargs: Any) -> None:
        self.mails.append(f"{subject}\n{message}\n{kwargs.get('html_message')}")


def test_error_email_of_verify_otp_never_shows_the_key(unreachable: Endpoints) -> None:
    handler = CapturedEmailHandler()
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    try:
        with (
            unreachable["connection refused"]() as url,
            override_settings(DEBUG=False, ROOT_URLCONF=__name__, FYNO=fyno_settings(ENDPOINT=url)),
        ):
            response = Client(raise_request_exception=False).get("/otp/?otp=123456")
    finally:
        logger.removeHandler(handler)
    assert response.status_code == 500
    [mail] = handler.mails
    assert "FynoConnectionError" in mail
    assert "otp_view" in mail
    assert not shows_key(mail)


# -- Django: the resolver's answers, stored workspaces --------------------------------

# What the resolver answers next (set by the tests).
answer: list[Any] = [None]


def resolver(user: Any = None, *, workspace: Workspace | None = None) -> Any:
    return answer[0]


# Answers the app refuses, each holding the key.
BAD_ANSWERS: dict[str, Any] = {
    "not a dict": (WSID, KEY),
    "no WSID": {"API_KEY": KEY},
    "unknown key": {"WSID": WSID, "API_KEY": KEY, "REGION": "eu"},
    "WSID not a string": {"WSID": 7, "API_KEY": KEY},
    "API_KEY not a string": {"WSID": WSID, "API_KEY": KEY.encode()},
    "empty ENDPOINT": {"WSID": WSID, "API_KEY": KEY, "ENDPOINT": ""},
    "VERSION neither live nor test": {"WSID": WSID, "API_KEY": KEY, "VERSION": "prod"},
}
# Answers whose workspace is fine but whose client cannot be built.
UNUSABLE_ANSWERS: dict[str, Any] = {
    "ENDPOINT not http(s)": {"WSID": WSID, "API_KEY": KEY, "ENDPOINT": "ftp://fyno.test"},
    "API_KEY with a space": {"WSID": WSID, "API_KEY": f"{KEY} x"},
}
# And two more for rows' stored workspaces.
ANSWERS_FOR_A_STORED_WORKSPACE: dict[str, Any] = {
    "another workspace": {"WSID": "FYOTHER", "API_KEY": KEY},
    "None": None,
}
RESOLVED = fyno_settings(CLIENT_RESOLVER=f"{__name__}.resolver")
USER = SimpleNamespace(pk=1, username="ada")


def _answering(what: str, call: Callable[[], object]) -> Callable[[], object]:
    """``call`` with the resolver answering the answer named ``what``.

    Names, not answers, are held here: this frame is in the traceback too.
    """

    def answered() -> object:
        answer[0] = {**BAD_ANSWERS, **UNUSABLE_ANSWERS, **ANSWERS_FOR_A_STORED_WORKSPACE}[what]
        return call()

    return answered


ENTRY_POINTS: dict[str, Callable[[], object]] = {
    "get_config": lambda: get_config(USER),
    "get_client": lambda: get_client(USER),
    "verify_otp": lambda: notifications.verify_otp("123456", request_id="req-1", user=USER),
}


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_no_refused_resolver_answer_shows_the_key(name: str) -> None:
    entry = ENTRY_POINTS[name]
    cases = {what: _answering(what, entry) for what in [*BAD_ANSWERS, *UNUSABLE_ANSWERS]}
    with override_settings(FYNO=RESOLVED):
        assert leaks(cases) == []


def test_no_refused_resolver_answer_shows_the_key_in_workspace_for() -> None:
    cases = {what: _answering(what, lambda: workspace_for(USER)) for what in BAD_ANSWERS}
    with override_settings(FYNO=RESOLVED):
        assert leaks(cases) == []


def test_settings_whose_client_cannot_be_built_do_not_show_the_key() -> None:
    cases: dict[str, Callable[[], object]] = {
        "get_client": get_client,
        "verify_otp": lambda: notifications.verify_otp("123456", request_id="req-1"),
    }
    with override_settings(FYNO=fyno_settings(API_KEY=f"{KEY} x")):
        assert leaks(cases) == []


def test_client_for_a_stored_workspace_never_shows_the_key() -> None:
    stored = Workspace(WSID, "live", ENDPOINT)
    # A stored row keeps its version and endpoint: only the answer's key is used.
    answers = [*BAD_ANSWERS, "API_KEY with a space", *ANSWERS_FOR_A_STORED_WORKSPACE]
    answers.remove("VERSION neither live nor test")
    cases = {what: _answering(what, lambda: client_for(stored)) for what in answers}
    with override_settings(FYNO=RESOLVED):
        assert leaks(cases) == []


def crashing_resolver(user: Any = None, *, workspace: Workspace | None = None) -> Any:
    api_key = KEY  # read from the tenant, say; then something goes wrong
    raise LookupError(f"no Fyno workspace for {user!r} ({len(api_key)})")


def test_error_email_hides_the_variables_of_a_crashing_resolver() -> None:
    """The resolver hands out keys: error reports do not show its frames' variables.

    (With DEBUG = True Django shows every variable of the project's own code.)
    """
    handler = CapturedEmailHandler()
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    try:
        with override_settings(
            DEBUG=False,
            ROOT_URLCONF=__name__,
            FYNO=fyno_settings(CLIENT_RESOLVER=f"{__name__}.crashing_resolver"),
        ):
            response = Client(raise_request_exception=False).get("/otp/?otp=123456")
    finally:
        logger.removeHandler(handler)
    assert response.status_code == 500
    [mail] = handler.mails
    assert "LookupError" in mail
    assert "crashing_resolver" in mail
    assert not shows_key(mail)


# -- Celery tasks --------------------------------------------------------------------


@pytest.mark.django_db
def test_failing_tasks_never_show_the_key(celery_tasks: Any) -> None:
    found = []
    url = f"http://127.0.0.1:{closed_port()}/v1"
    with override_settings(FYNO=fyno_settings(ENDPOINT=url)):
        user = make_user("ada")
        FynoProfile.objects.create(
            distinct_id="gone",
            state=FynoProfile.State.DELETING,
            **Workspace(WSID, "live", url).fields(),
        )
        found += leaks(
            {
                "sync, Fyno unreachable": partial(celery_tasks.sync_profiles_task, [user.pk]),
                "delete, Fyno unreachable": celery_tasks.delete_profiles_task,
            }
        )
    # A key Fyno refuses: syncs pause (nothing raised); deletions are retried later.
    FynoProfile.objects.filter(distinct_id="gone").update(endpoint=ENDPOINT)
    with (
        override_settings(FYNO=fyno_settings()),
        responses.RequestsMock(assert_all_requests_are_fired=False) as mocked,
    ):
        mocked.add(responses.POST, ANY_URL, json=ANSWERS["401"][1], status=401)
        found += leaks({"delete, key refused": celery_tasks.delete_profiles_task})
    assert found == []
