"""URLs of django-fyno. Include them under a prefix of your choice::

    path("fyno/", include("django_fyno.urls")),

Both webhook routes are named ``django_fyno:webhook``: reverse it with
``kwargs={"secret": ...}`` for the URL to register in Fyno, or without for the
route that reads the secret from the ``X-Fyno-Webhook-Secret`` header.
"""

from __future__ import annotations

from django.urls import path

from django_fyno.views import DeliveryReportWebhookView

app_name = "django_fyno"

urlpatterns = [
    path("webhooks/<str:secret>/", DeliveryReportWebhookView.as_view(), name="webhook"),
    path("webhooks/", DeliveryReportWebhookView.as_view(), name="webhook"),
]
