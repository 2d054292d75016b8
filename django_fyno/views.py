"""Views of django-fyno. Thin: the decisions live in :mod:`django_fyno.webhooks`."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotAllowed,
    JsonResponse,
)
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from django_fyno import webhooks

__all__ = [
    "SECRET_PLACEHOLDER",
    "DeliveryReportWebhookView",
    "FynoWebhookView",
    "WebhookSecret",
]

logger = logging.getLogger(__name__)

# What Django's error handling sees in place of the webhook secret.
SECRET_PLACEHOLDER = "<secret>"  # noqa: S105 - a placeholder, not a secret


class WebhookSecret:
    """A webhook secret from the URL path, shown as ``<secret>`` by ``repr`` and ``str``.

    The ``fyno_secret`` path converter of :mod:`django_fyno.urls` hands the
    secret to the view as one of these, so the keyword arguments that every
    frame of a traceback holds (which Django's HTML error mail and error
    trackers show) do not reveal it. ``value`` is the secret itself.
    """

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return SECRET_PLACEHOLDER

    __str__ = __repr__


def _unlogged(response: HttpResponse) -> HttpResponse:
    # The request path may carry the webhook secret: stop Django's request logger
    # from writing "<status>: <path>" for this response (it was logged without the path).
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def _given_secret(request: HttpRequest, in_path: object) -> str | None:
    """The secret the request carries: in the path (``secret`` argument), else the header."""
    if isinstance(in_path, WebhookSecret):
        return in_path.value
    if in_path is not None:
        return str(in_path)  # a route of the project's own, with a plain converter
    return request.headers.get(webhooks.SECRET_HEADER)


def _mask_secret(request: HttpRequest, secret: str | None, *kwargs_dicts: Any) -> None:
    """Replace ``secret`` with ``<secret>`` in what Django's error handling reads of ``request``.

    That is ``path``, ``path_info``, every text of ``META`` (``PATH_INFO``, the
    server's ``REQUEST_URI``/``RAW_URI``, the secret header), ``headers``, the
    ASGI scope's path, and the URL keyword arguments (in ``resolver_match`` and
    ``kwargs_dicts``), so the ``django.request`` log line, the ADMINS mail,
    ``got_request_exception`` receivers and error trackers never see it.
    """
    if not secret:
        return
    forms = sorted({secret, quote(secret, safe="")}, key=len, reverse=True)

    def masked(text: str) -> str:
        for form in forms:
            text = text.replace(form, SECRET_PLACEHOLDER)
        return text

    request.path = masked(request.path)
    request.path_info = masked(request.path_info)
    meta = request.META
    for key, value in meta.items():
        if isinstance(value, str):
            meta[key] = masked(value)
    # A cached_property built from META: drop it so it is rebuilt from the masked one.
    request.__dict__.pop("headers", None)
    scope = getattr(request, "scope", None)
    if isinstance(scope, dict):
        if isinstance(scope.get("path"), str):
            scope["path"] = masked(scope["path"])
        if isinstance(scope.get("raw_path"), bytes):
            scope["raw_path"] = masked(scope["raw_path"].decode("latin-1")).encode("latin-1")
    match = request.resolver_match
    if match is not None:
        # captured_kwargs: the values the converters gave (Django >= 4.1).
        captured = getattr(match, "captured_kwargs", None) or {}
        kwargs_dicts = (match.kwargs, captured, *kwargs_dicts)
    for kwargs in kwargs_dicts:
        for key, value in kwargs.items():
            if isinstance(value, str) and value == secret:
                kwargs[key] = SECRET_PLACEHOLDER


# Fyno cannot log in: exempt from CSRF and from LoginRequiredMiddleware.
@method_decorator([csrf_exempt, login_not_required], name="dispatch")
class FynoWebhookView(View):
    """Base of Fyno's webhook views: the secret first, then Fyno's verification GET.

    The secret comes from the URL (a ``secret`` keyword argument, a
    :class:`WebhookSecret` or a string) or, on the route without it, the
    ``X-Fyno-Webhook-Secret`` header. Subclasses implement ``post``. A
    :class:`~django_fyno.webhooks.FynoWebhookRejected` raised anywhere becomes
    a short plain-text 400/403, logged at WARNING on
    ``django.security.<class name>`` without a traceback or the path. Any other
    exception goes to Django's handling (``got_request_exception``, the 500
    page, the ``django.request`` log, ADMINS mail) with the secret masked out
    of the request first. Exempt from CSRF and from ``LoginRequiredMiddleware``.
    """

    http_method_names = ("get", "post")

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        # A WebhookSecret on django-fyno's route: never unwrap it into a local
        # variable here, since tracebacks (HTML error mail, error trackers) show them.
        in_path = kwargs.pop("secret", None)
        try:
            webhooks.check_secret(_given_secret(request, in_path))
            return super().dispatch(request, *args, **kwargs)
        except webhooks.FynoWebhookRejected as rejection:
            return self.rejected(rejection)
        except Exception:
            # A bug or a database error: Django's handler reports it as for any
            # view, but everything it reports shows the request's path.
            _mask_secret(request, _given_secret(request, in_path), getattr(self, "kwargs", {}))
            raise

    def rejected(self, rejection: webhooks.FynoWebhookRejected) -> HttpResponse:
        """The response to a refused request (no secret, no traceback in it)."""
        security_logger = logging.getLogger(f"django.security.{type(rejection).__name__}")
        security_logger.warning("Fyno webhook refused a request: %s", rejection)
        status = rejection.status_code
        # A 403 does not say why (missing, wrong or unset secret); a 400 helps the sender.
        text = "Forbidden" if status == 403 else f"Bad request: {rejection}"
        return _unlogged(HttpResponse(text, status=status, content_type="text/plain"))

    def http_method_not_allowed(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        logger.warning("Fyno webhook: method %s not allowed", request.method)
        allowed = [name.upper() for name in self.http_method_names if hasattr(self, name)]
        return _unlogged(HttpResponseNotAllowed(allowed, content_type="text/plain"))

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Fyno's verification of the URL: echo ``fyno_token``."""
        token = webhooks.verification_token(request.GET)
        response = HttpResponse(token, content_type="text/plain; charset=utf-8")
        # The body is caller-supplied text: never let a browser sniff it as HTML.
        response["X-Content-Type-Options"] = "nosniff"
        return response


class DeliveryReportWebhookView(FynoWebhookView):
    """Register this view's URL in Fyno as the Allowlist URL for delivery reports."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            body = request.body
        except RequestDataTooBig:
            # Over DATA_UPLOAD_MAX_MEMORY_SIZE: refused like any other bad body.
            raise webhooks.FynoWebhookBadRequest("body is too large") from None
        received = webhooks.receive_reports(body)
        created = sum(item.created for item in received)
        return JsonResponse({"received": len(received), "created": created})
