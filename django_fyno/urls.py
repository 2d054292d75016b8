"""URLs of django-fyno. Include them under a prefix of your choice::

    path("fyno/", include("django_fyno.urls")),

Both webhook routes are named ``django_fyno:webhook``: reverse it with
``kwargs={"secret": ...}`` for the URL to register in Fyno, or without for the
route that reads the secret from the ``X-Fyno-Webhook-Secret`` header.
"""

from __future__ import annotations

from django.urls import path, register_converter
from django.urls.converters import StringConverter

from django_fyno.views import DeliveryReportWebhookView, WebhookSecret


class WebhookSecretConverter(StringConverter):
    """A path segment, handed to the view as a :class:`~django_fyno.views.WebhookSecret`.

    Registered as ``fyno_secret``. The view unwraps it; everywhere else (the
    frames of a traceback, ``resolver_match``) it reads ``<secret>``.
    """

    def to_python(self, value: str) -> WebhookSecret:  # type: ignore[override]
        return WebhookSecret(value)

    def to_url(self, value: str | WebhookSecret) -> str:
        return value.value if isinstance(value, WebhookSecret) else str(value)


register_converter(WebhookSecretConverter, "fyno_secret")

app_name = "django_fyno"

urlpatterns = [
    path("webhooks/<fyno_secret:secret>/", DeliveryReportWebhookView.as_view(), name="webhook"),
    path("webhooks/", DeliveryReportWebhookView.as_view(), name="webhook"),
]
