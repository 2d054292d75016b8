"""Views of django-fyno. Thin: the decisions live in :mod:`django_fyno.webhooks`."""

from __future__ import annotations

import logging
from typing import Any

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

__all__ = ["DeliveryReportWebhookView", "FynoWebhookView"]

logger = logging.getLogger(__name__)


def _unlogged(response: HttpResponse) -> HttpResponse:
    # The request path may carry the webhook secret: stop Django's request logger
    # from writing "<status>: <path>" for this response (it was logged without the path).
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


@method_decorator(csrf_exempt, name="dispatch")
class FynoWebhookView(View):
    """Base of Fyno's webhook views: the secret first, then Fyno's verification GET.

    The secret comes from the URL (a ``secret`` keyword argument) or, on the
    route without it, the ``X-Fyno-Webhook-Secret`` header. Subclasses implement
    ``post``. A :class:`~django_fyno.webhooks.FynoWebhookRejected` raised
    anywhere becomes a short plain-text 400/403, logged at WARNING on
    ``django.security.<class name>`` without a traceback or the path.
    """

    http_method_names = ("get", "post")

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        secret = kwargs.pop("secret", None)
        try:
            webhooks.check_secret(
                secret if secret is not None else request.headers.get(webhooks.SECRET_HEADER)
            )
            return super().dispatch(request, *args, **kwargs)
        except webhooks.FynoWebhookRejected as rejection:
            return self.rejected(rejection)
        except Exception:
            # Not Django's handler: it would log the path, and with it the secret.
            logger.exception("Fyno webhook %s failed", type(self).__name__)
            return _unlogged(HttpResponse("Internal error", status=500, content_type="text/plain"))

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
