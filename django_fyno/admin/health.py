"""The Fyno admin: the health page, per workspace (``admin:django_fyno_health``).

:class:`HealthAdminMixin` adds the page to an admin (the outbox admin uses it);
the app index links to it (templates/admin/django_fyno/app_index.html). What the
page shows comes from :func:`django_fyno.health.health`; it needs the
``django_fyno.view_health`` permission.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.translation import gettext_lazy as _

from django_fyno import health
from django_fyno.admin.common import fyno_errors_as_messages, has_fyno_permission

__all__ = ["HealthAdminMixin", "health_page"]

TEMPLATE = "admin/django_fyno/health/page.html"


def health_page(modeladmin: Any, request: HttpRequest) -> HttpResponse:
    """The health page: per workspace, what the outbox, the profiles and the pause say."""
    if not has_fyno_permission(request, "view_health"):
        raise PermissionDenied
    report = None
    with fyno_errors_as_messages(request, str(_("Fyno health"))):
        report = health.health()
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": _("Fyno health"),
        "app_label": modeladmin.model._meta.app_label,
        "opts": modeladmin.model._meta,
        "health": report,
        "failure_window_hours": int(health.FAILURE_WINDOW.total_seconds() // 3600),
        "credentials_cache_seconds": health.CREDENTIALS_CACHE_SECONDS,
    }
    request.current_app = modeladmin.admin_site.name
    return TemplateResponse(request, TEMPLATE, context)


class HealthAdminMixin:
    """Adds ``health/`` (named ``django_fyno_health``) to a ModelAdmin."""

    def get_urls(self) -> list[URLPattern]:
        admin: Any = self
        own = [
            path(
                "health/",
                admin.admin_site.admin_view(self.health_view),
                name="django_fyno_health",
            )
        ]
        urls: list[URLPattern] = own + super().get_urls()  # type: ignore[misc]
        return urls

    def health_view(self, request: HttpRequest) -> HttpResponse:
        return health_page(self, request)
