"""One abstract suite of webhook-security tests, run against every webhook view.

Subclass :class:`WebhookSecuritySuite` in a test module, under a name pytest
collects (``TestXxxWebhookSecurity``), and fill in the hooks:

- ``url_name``: the route name, reversible with ``kwargs={"secret": ...}`` (the
  secret in the path) and without (the secret in the ``X-Fyno-Webhook-Secret``
  header);
- ``valid_body()``: a JSON-able body the view accepts (it may create rows);
- ``unknown_reference_body()``: a well-formed body naming something that does
  not exist, which the view must refuse with 400;
- ``stored_count()``: how many rows the view has stored;
- ``break_view(monkeypatch)``: make the view fail on ``valid_body()`` with an
  unexpected error (a bug, a database error), whose message says ``"database is gone"``.

The suite itself is not collected (its name does not start with ``Test``).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import middleware as auth_middleware
from django.core import mail
from django.core.signals import got_request_exception
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client
from django.urls import resolve, reverse
from django.utils.log import AdminEmailHandler

from django_fyno.webhooks import SECRET_HEADER

BAD_BODIES = {
    "not JSON": b"{not json",
    "not UTF-8": b"\xff\xfe{}",
    "a number": b"3",
    "a string": b'"report"',
    "null": b"null",
    "an empty list": b"[]",
    "a list of non-objects": b"[1, 2]",
    "a list with one non-object": b'[{"status": "delivered"}, "x"]',
    # JSON Python reads but no database stores or reads back (and PostgreSQL's
    # jsonb refuses NUL anywhere, keys included).
    "NaN": b'{"status": "sent", "n": NaN}',
    "Infinity in a list": b'[{"status": "sent"}, {"n": -Infinity}]',
    "a lone surrogate": b'{"status": "\\ud800"}',
    "NUL in a string": b'{"status": "a\\u0000b"}',
    "NUL in a key": b'{"\\u0000": "x"}',
    "nesting 990 deep": b'{"a": ' + b"[" * 990 + b"]" * 990 + b"}",
    "nesting 100000 deep": b"[" * 100_000 + b"]" * 100_000,
}


class WebhookSecuritySuite:
    """Security tests every Fyno webhook view must pass. Subclass and fill in the hooks."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.django_db]

    # A URLconf that includes the view (set through the settings fixture: the
    # test settings have no ROOT_URLCONF for pytest-django's urls marker to swap).
    urlconf: ClassVar[str] = "tests.urls"
    url_name: ClassVar[str] = "django_fyno:webhook"
    secret: ClassVar[str] = "Tq3-webhook_secret-for-tests-9Zk"

    # --- hooks ---------------------------------------------------------------

    def valid_body(self) -> Any:
        raise NotImplementedError

    def unknown_reference_body(self) -> Any:
        raise NotImplementedError

    def stored_count(self) -> int:
        raise NotImplementedError

    def break_view(self, monkeypatch: pytest.MonkeyPatch) -> None:
        raise NotImplementedError

    # --- helpers -------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _webhook_settings(self, settings: Any) -> None:
        settings.ROOT_URLCONF = self.urlconf
        settings.FYNO = {**settings.FYNO, "WEBHOOK_SECRET": self.secret}

    def path_url(self, secret: str | None = None) -> str:
        return reverse(self.url_name, kwargs={"secret": secret or self.secret})

    def header_url(self) -> str:
        return reverse(self.url_name)

    def post(
        self,
        client: Client,
        body: Any,
        *,
        url: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> HttpResponse:
        data = body if isinstance(body, bytes) else json.dumps(body)
        response: HttpResponse = client.post(
            url or self.path_url(),
            data=data,
            content_type="application/json",
            headers=headers or {},
        )
        return response

    # --- Fyno's verification GET ---------------------------------------------

    def test_verification_echoes_fyno_token(self, client: Client) -> None:
        response = client.get(self.path_url(), {"fyno_token": "tok-123abc"})
        assert response.status_code == 200
        assert response.content == b"tok-123abc"
        assert response["Content-Type"].startswith("text/plain")
        assert response["X-Content-Type-Options"] == "nosniff"

    def test_verification_with_the_secret_in_a_header(self, client: Client) -> None:
        response = client.get(
            self.header_url(), {"fyno_token": "tok"}, headers={SECRET_HEADER: self.secret}
        )
        assert (response.status_code, response.content) == (200, b"tok")

    @pytest.mark.parametrize("query", [{}, {"fyno_token": ""}, {"fyno_token": "x" * 513}])
    def test_verification_without_a_usable_token_is_400(
        self, client: Client, query: dict[str, str]
    ) -> None:
        assert client.get(self.path_url(), query).status_code == 400

    def test_verification_requires_the_secret(self, client: Client) -> None:
        wrong = client.get(self.path_url("not-the-secret"), {"fyno_token": "tok"})
        missing = client.get(self.header_url(), {"fyno_token": "tok"})
        assert (wrong.status_code, missing.status_code) == (403, 403)
        assert b"tok" not in wrong.content + missing.content

    # --- the secret ----------------------------------------------------------

    def test_secret_in_the_path_is_accepted(self, client: Client) -> None:
        assert self.post(client, self.valid_body()).status_code == 200
        assert self.stored_count() > 0

    def test_secret_in_a_header_is_accepted(self, client: Client) -> None:
        response = self.post(
            client, self.valid_body(), url=self.header_url(), headers={SECRET_HEADER: self.secret}
        )
        assert response.status_code == 200
        assert self.stored_count() > 0

    @pytest.mark.parametrize("where", ["path", "header", "missing header", "empty header"])
    def test_wrong_or_missing_secret_is_403_and_stores_nothing(
        self, client: Client, where: str
    ) -> None:
        body = self.valid_body()
        if where == "path":
            response = self.post(client, body, url=self.path_url(self.secret + "x"))
        else:
            given = {"header": self.secret[:-1], "empty header": ""}.get(where)
            headers = {SECRET_HEADER: given} if given is not None else {}
            response = self.post(client, body, url=self.header_url(), headers=headers)
        assert response.status_code == 403
        assert self.stored_count() == 0

    def test_a_header_does_not_rescue_a_wrong_path_secret(self, client: Client) -> None:
        response = self.post(
            client,
            self.valid_body(),
            url=self.path_url("wrong"),
            headers={SECRET_HEADER: self.secret},
        )
        assert response.status_code == 403

    def test_no_configured_secret_refuses_everything(self, client: Client, settings: Any) -> None:
        body = self.valid_body()
        settings.FYNO = {**settings.FYNO, "WEBHOOK_SECRET": ""}
        assert self.post(client, body, url=self.header_url()).status_code == 403
        assert self.post(client, body, url=self.path_url("anything")).status_code == 403
        assert client.get(self.path_url("anything"), {"fyno_token": "t"}).status_code == 403
        assert self.stored_count() == 0

    def test_any_secret_of_a_list_is_accepted(self, client: Client, settings: Any) -> None:
        settings.FYNO = {**settings.FYNO, "WEBHOOK_SECRET": ["old-secret", self.secret]}
        assert (
            self.post(client, self.valid_body(), url=self.path_url("old-secret")).status_code == 200
        )
        assert self.post(client, self.valid_body()).status_code == 200
        assert self.post(client, self.valid_body(), url=self.path_url("new")).status_code == 403

    def test_secret_is_compared_in_constant_time(
        self, client: Client, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls: list[tuple[Any, Any]] = []
        real: Callable[[Any, Any], bool] = hmac.compare_digest

        def spy(a: Any, b: Any) -> bool:
            calls.append((a, b))
            return real(a, b)

        monkeypatch.setattr(hmac, "compare_digest", spy)
        assert self.post(client, self.valid_body()).status_code == 200
        assert self.post(client, self.valid_body(), url=self.path_url("wrong")).status_code == 403
        secret = self.secret.encode()
        assert any(secret in (a, b) or self.secret in (a, b) for a, b in calls)
        assert any(b"wrong" in (a, b) or "wrong" in (a, b) for a, b in calls)

    # --- the body ------------------------------------------------------------

    @pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
    def test_malformed_body_is_400_and_stores_nothing(self, client: Client, body: bytes) -> None:
        response = self.post(client, body)
        assert response.status_code == 400
        assert self.stored_count() == 0

    def test_unknown_reference_is_400_and_stores_nothing(self, client: Client) -> None:
        response = self.post(client, self.unknown_reference_body())
        assert response.status_code == 400
        assert self.stored_count() == 0

    def test_the_same_delivery_twice_is_stored_once(self, client: Client) -> None:
        body = self.valid_body()
        assert self.post(client, body).status_code == 200
        stored = self.stored_count()
        assert self.post(client, body).status_code == 200
        assert self.stored_count() == stored

    # --- HTTP ----------------------------------------------------------------

    @pytest.mark.parametrize("method", ["put", "patch", "delete", "head", "options"])
    def test_other_methods_are_405(self, client: Client, method: str) -> None:
        response = getattr(client, method)(self.path_url())
        assert response.status_code == 405
        assert set(response["Allow"].split(", ")) == {"GET", "POST"}

    def test_post_is_exempt_from_csrf(self) -> None:
        client = Client(enforce_csrf_checks=True)
        assert self.post(client, self.valid_body()).status_code == 200

    # --- what a rejection reveals --------------------------------------------

    def _rejections(self, client: Client) -> list[HttpResponse]:
        """One response of each kind of rejection, all with the real secret in the path."""
        return [
            self.post(client, self.valid_body(), url=self.path_url("wrong")),
            self.post(client, self.valid_body(), url=self.header_url()),
            self.post(client, b"{not json"),
            self.post(client, self.unknown_reference_body()),
            client.get(self.path_url()),
            client.put(self.path_url()),
        ]

    def test_rejections_reveal_no_secret_and_no_traceback(
        self, client: Client, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level("DEBUG")
        for response in self._rejections(client):
            assert response.status_code in (400, 403, 405)
            assert response["Content-Type"].startswith("text/plain")
            assert self.secret.encode() not in response.content
            assert b"Traceback" not in response.content
        # The path carries the secret: no log line may show it, not even Django's.
        assert self.secret not in caplog.text
        assert "Traceback" not in caplog.text
        assert not [record for record in caplog.records if record.exc_info]
        # Not even masked: a rejection is logged without the path, and not by django.request.
        assert self.header_url() not in caplog.text
        assert not [record for record in caplog.records if record.name == "django.request"]

    def test_rejections_are_logged_as_security_warnings(
        self, client: Client, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level("WARNING")
        self.post(client, self.valid_body(), url=self.path_url("wrong"))
        self.post(client, b"{not json")
        names = [r.name for r in caplog.records if r.levelname == "WARNING"]
        assert any(name.startswith("django.security.") for name in names)
        assert len([name for name in names if name.startswith("django.security.")]) == 2

    # --- behind LoginRequiredMiddleware (Django >= 5.1) -----------------------

    @pytest.fixture
    def login_required_everywhere(self, settings: Any) -> None:
        if not hasattr(auth_middleware, "LoginRequiredMiddleware"):
            pytest.skip("Django < 5.1 has no LoginRequiredMiddleware")
        settings.MIDDLEWARE = [
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.auth.middleware.LoginRequiredMiddleware",
        ]

    @pytest.mark.usefixtures("login_required_everywhere")
    def test_login_required_middleware_lets_fyno_in(self, client: Client) -> None:
        verification = client.get(self.path_url(), {"fyno_token": "tok"})
        assert (verification.status_code, verification.content) == (200, b"tok")
        assert self.post(client, self.valid_body()).status_code == 200
        in_header = self.post(
            client, self.valid_body(), url=self.header_url(), headers={SECRET_HEADER: self.secret}
        )
        assert in_header.status_code == 200
        assert self.stored_count() > 0

    @pytest.mark.usefixtures("login_required_everywhere")
    def test_login_required_middleware_is_in_force_for_other_views(
        self, client: Client, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The control: the same request to a view without the exemption goes to login.
        monkeypatch.setattr(resolve(self.path_url()).func, "login_required", True, raising=False)
        response = client.get(self.path_url(), {"fyno_token": "tok"})
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")

    # --- an unexpected error ---------------------------------------------------

    @pytest.fixture
    def failure(
        self,
        settings: Any,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
        request: pytest.FixtureRequest,
    ) -> Iterator[Failure]:
        """The view broken, ADMINS mail configured, and what Django's handling saw."""
        include_html = getattr(request, "param", False)
        settings.DEBUG = False
        settings.ADMINS = [("Ops", "ops@example.com")]
        caplog.set_level("DEBUG")
        self.break_view(monkeypatch)
        seen = Failure(html_mail=include_html)

        def receiver(sender: Any, request: HttpRequest, **kwargs: Any) -> None:
            seen.signals.append(_what_a_receiver_sees(request))

        handler = AdminEmailHandler(include_html=include_html)
        handler.setLevel(logging.ERROR)
        # Where Django's default LOGGING puts it (the test settings configure none).
        django_logger = logging.getLogger("django")
        django_logger.addHandler(handler)
        got_request_exception.connect(receiver, dispatch_uid="webhook-suite")
        try:
            yield seen
        finally:
            got_request_exception.disconnect(dispatch_uid="webhook-suite")
            django_logger.removeHandler(handler)

    def _fail(self, where: str) -> HttpResponse:
        """POST ``valid_body()`` to the broken view, with the secret ``where`` says."""
        body = self.valid_body()
        if where == "asgi":
            async_client = AsyncClient(raise_request_exception=False)
            response: HttpResponse = async_to_sync(async_client.post)(
                self.path_url(), data=json.dumps(body), content_type="application/json"
            )
            return response
        client = Client(raise_request_exception=False)
        if where == "header":
            headers = {SECRET_HEADER: self.secret}
            return self.post(client, body, url=self.header_url(), headers=headers)
        return self.post(client, body)

    def test_an_unexpected_error_goes_to_djangos_handler(
        self, failure: Failure, caplog: pytest.LogCaptureFixture
    ) -> None:
        response = self._fail("path")
        assert response.status_code == 500
        # Django's handler500 answered (the default one: no 500.html in the tests).
        assert b"Server Error (500)" in response.content
        assert b"database is gone" not in response.content
        assert len(failure.signals) == 1
        (logged,) = [r for r in caplog.records if r.name == "django.request"]
        assert logged.levelname == "ERROR"
        assert logged.exc_info is not None
        assert "database is gone" in str(logged.exc_info[1])
        assert logged.getMessage() == "Internal Server Error: /fyno/webhooks/<secret>/"
        (sent,) = mail.outbox
        assert sent.to == ["ops@example.com"]
        assert sent.subject.endswith("Internal Server Error: /fyno/webhooks/<secret>/")
        assert "database is gone" in sent.body
        assert self.stored_count() == 0

    @pytest.mark.parametrize("where", ["path", "header", "asgi"])
    @pytest.mark.parametrize(
        "failure", [False, True], ids=["text mail", "HTML mail"], indirect=True
    )
    def test_an_unexpected_error_reveals_no_secret(
        self, failure: Failure, caplog: pytest.LogCaptureFixture, where: str
    ) -> None:
        assert self._fail(where).status_code == 500
        secret = self.secret
        # Every log record, whatever its logger: message, traceback, and its extras
        # (Django's records carry the request).
        assert caplog.records
        formatter = logging.Formatter()
        for record in caplog.records:
            assert secret not in formatter.format(record)
            assert secret not in repr(vars(record))
        # The mail to ADMINS (its text and, when configured, its HTML with frame variables).
        (sent,) = mail.outbox
        assert "database is gone" in sent.body
        assert secret not in sent.subject
        assert secret not in sent.body
        alternatives = getattr(sent, "alternatives", [])
        assert len(alternatives) == (1 if failure.html_mail else 0)
        for content, _ in alternatives:
            assert "database is gone" in content
            assert secret not in content
        # What got_request_exception's receivers (Sentry, error reporting) see.
        (seen,) = failure.signals
        assert seen["path"].startswith(self.header_url())
        assert not [name for name, value in seen.items() if secret in value], seen
        if where != "header":
            assert seen["path"] == self.header_url() + "<secret>/"


@dataclass
class Failure:
    """How ADMINS are mailed, and what ``got_request_exception`` receivers saw of each
    failed request."""

    html_mail: bool
    signals: list[dict[str, str]] = field(default_factory=list)


def _what_a_receiver_sees(request: HttpRequest) -> dict[str, str]:
    """The parts of a request an error reporter reads, as text."""
    seen = {
        "path": request.path,
        "path_info": request.path_info,
        "PATH_INFO": request.META["PATH_INFO"],
        "full path": request.get_full_path(),
        "absolute URI": request.build_absolute_uri(),
        "META": repr(request.META),
        "headers": repr(dict(request.headers)),
        "resolver_match": repr(request.resolver_match),
        "repr": repr(request),
    }
    scope = getattr(request, "scope", None)
    if scope is not None:
        seen["scope"] = repr(scope)
    return seen
