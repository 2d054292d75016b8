"""URLs of django-fyno. Include them under a prefix of your choice::

    path("notifications/", include("django_fyno.urls")),

Both webhook routes are named ``django_fyno:webhook``: reverse it with
``kwargs={"secret": ...}`` for the URL to register in Fyno, or without for the
route that reads the secret from the ``X-Fyno-Webhook-Secret`` header.

The preference center: ``django_fyno:preferences`` (the signed-in user's page),
``django_fyno:preferences_api`` (the same as JSON), and the signed links
:mod:`django_fyno.links` makes, ``django_fyno:preferences_signed`` and
``django_fyno:unsubscribe`` (``kwargs={"token": ...}``).
"""

from __future__ import annotations

from django.urls import path, register_converter
from django.urls.converters import StringConverter

from django_fyno.views import (
    DeliveryReportWebhookView,
    PreferencesAPIView,
    PreferencesView,
    SignedPreferencesView,
    UnsubscribeView,
    WebhookSecret,
)


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


class SignedTokenConverter(StringConverter):
    """A signed token of :mod:`django_fyno.links` (Django's signing alphabet: URL-safe
    base64, ``:`` between its parts, a leading ``.`` when compressed), never a ``/``.

    Registered as ``fyno_token``.
    """

    regex = r"[A-Za-z0-9_.:\-]{1,2048}"


register_converter(SignedTokenConverter, "fyno_token")

app_name = "django_fyno"

urlpatterns = [
    path("webhooks/<fyno_secret:secret>/", DeliveryReportWebhookView.as_view(), name="webhook"),
    path("webhooks/", DeliveryReportWebhookView.as_view(), name="webhook"),
    path("preferences/", PreferencesView.as_view(), name="preferences"),
    path("preferences/api/", PreferencesAPIView.as_view(), name="preferences_api"),
    path(
        "preferences/<fyno_token:token>/",
        SignedPreferencesView.as_view(),
        name="preferences_signed",
    ),
    path("unsubscribe/<fyno_token:token>/", UnsubscribeView.as_view(), name="unsubscribe"),
]
