"""The webhook view's plumbing: the masked secret from the URL, and older Django versions.

What every webhook view must do over HTTP is in ``tests/webhook_suite.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.handlers.asgi import ASGIHandler
from django.core.signals import got_request_exception, request_finished, request_started
from django.db import close_old_connections
from django.http import HttpRequest
from django.test import Client
from django.urls import resolve, reverse

from django_fyno import webhooks
from django_fyno.views import DeliveryReportWebhookView, WebhookSecret

ROOT = Path(__file__).resolve().parent.parent
SECRET = "Tq3-webhook_secret-for-tests-9Zk"


def test_the_secret_reaches_the_view_masked(settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.urls"
    url = reverse("django_fyno:webhook", kwargs={"secret": SECRET})
    assert url == f"/fyno/webhooks/{SECRET}/"
    match = resolve(url)
    secret = match.kwargs["secret"]
    assert isinstance(secret, WebhookSecret)
    assert secret.value == SECRET
    # What a traceback's frame variables, resolver_match or a log line would show.
    assert (repr(secret), str(secret), f"{secret}") == ("<secret>", "<secret>", "<secret>")
    assert SECRET not in repr(match)
    assert SECRET not in repr(match.kwargs)


def test_a_masked_secret_reverses_to_itself(settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.urls"
    masked = WebhookSecret(SECRET)
    assert reverse("django_fyno:webhook", kwargs={"secret": masked}) == f"/fyno/webhooks/{SECRET}/"


def test_the_view_is_exempt_from_login_and_csrf() -> None:
    view = DeliveryReportWebhookView.as_view()
    assert getattr(view, "login_required", None) is False
    assert getattr(view, "csrf_exempt", None) is True


# --- what servers add to a request ----------------------------------------------


@pytest.fixture
def failing(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[HttpRequest]]:
    """The webhook failing unexpectedly; the requests got_request_exception received."""
    settings.ROOT_URLCONF = "tests.urls"
    settings.FYNO = {**settings.FYNO, "WEBHOOK_SECRET": SECRET}

    def bug(body: bytes) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(webhooks, "receive_reports", bug)
    requests: list[HttpRequest] = []

    def receiver(sender: Any, request: HttpRequest, **kwargs: Any) -> None:
        requests.append(request)

    got_request_exception.connect(receiver, dispatch_uid="test-webhook-view")
    yield requests
    got_request_exception.disconnect(dispatch_uid="test-webhook-view")


def test_a_wsgi_servers_copies_of_the_path_are_masked(failing: list[HttpRequest]) -> None:
    # gunicorn's RAW_URI, uWSGI's and Apache's REQUEST_URI: the request line's path.
    url = f"/fyno/webhooks/{SECRET}/"
    client = Client(raise_request_exception=False, REQUEST_URI=url, RAW_URI=url + "?a=1")
    assert client.post(url, data="{}", content_type="application/json").status_code == 500
    (request,) = failing
    assert request.META["REQUEST_URI"] == "/fyno/webhooks/<secret>/"
    assert request.META["RAW_URI"] == "/fyno/webhooks/<secret>/?a=1"


def test_an_asgi_servers_raw_path_is_masked(failing: list[HttpRequest]) -> None:
    url = f"/fyno/webhooks/{SECRET}/"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": url,
        "raw_path": url.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
    }
    sent: list[dict[str, Any]] = []
    bodies = [{"type": "http.request", "body": b"{}", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if bodies:
            return bodies.pop()
        await asyncio.Event().wait()  # the client never disconnects; Django stops listening
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    # As Django's test clients do: the handler's signals must not close the test's
    # database connections.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        async_to_sync(ASGIHandler())(scope, receive, send)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    assert sent[0]["status"] == 500
    (request,) = failing
    # The very scope the server passed (an access log reads it too).
    assert request.scope is scope  # type: ignore[attr-defined]
    assert (scope["path"], scope["raw_path"]) == (
        "/fyno/webhooks/<secret>/",
        b"/fyno/webhooks/<secret>/",
    )
