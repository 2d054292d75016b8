"""The Fyno admin: a user's Fyno state on the project's own user admin.

Nothing here registers or replaces the project's ``UserAdmin``; the project opts in,
in one of two ways:

- :class:`FynoProfileInline`, a read-only inline it adds to its own user admin's
  ``inlines``: the mirror row (state, distinct id, workspace, last sync and error),
  a link to the user's subscriptions, and the user's most recent outbox messages;
- :class:`FynoUserAdminMixin`, mixed into its user admin: adds that inline to the
  change page, and a ``fyno_state`` column for ``list_display``.

Nothing is editable from them. Outbox rows are not tied to a user by a foreign key:
they are found by the user's distinct id (the adapter's ``checked_distinct_id()``,
and the one the mirror row last synced).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, ClassVar

from django.contrib import admin
from django.contrib.admin.options import InlineModelAdmin
from django.db.models import Model
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from django_fyno.adapter import get_adapter
from django_fyno.clients import Workspace
from django_fyno.exceptions import FynoError
from django_fyno.models import FynoOutbox, FynoProfile

__all__ = ["FynoProfileInline", "FynoUserAdminMixin", "recent_outbox_rows"]

RECENT_TEMPLATE = "admin/django_fyno/users/recent_outbox.html"


def _distinct_ids(profile: FynoProfile) -> list[str]:
    """The ids a user's messages may carry: the adapter's now, and the last one synced."""
    found = {profile.distinct_id} if profile.distinct_id else set()
    if profile.user_id is not None:
        # A broken adapter: the synced id is all there is.
        with contextlib.suppress(FynoError):
            found.add(get_adapter().checked_distinct_id(profile.user))
    return sorted(found)


def recent_outbox_rows(profile: FynoProfile, limit: int = 10) -> list[FynoOutbox]:
    """The ``limit`` newest outbox rows addressed to the profile's user, newest first."""
    ids = _distinct_ids(profile)
    if not ids:
        return []
    return list(
        FynoOutbox.objects.filter(distinct_id__in=ids).order_by("-created_at", "-id")[:limit]
    )


def _admin_url(name: str, args: Sequence[Any], site_name: str) -> str | None:
    """The URL of an admin view on this admin site, else on the default one, else None."""
    for current_app in (site_name, None):
        try:
            return reverse(f"admin:{name}", args=args, current_app=current_app)
        except NoReverseMatch:
            continue
    return None


def _may_view(request: HttpRequest, model: type[Model]) -> bool:
    user: Any = request.user
    opts = model._meta
    return bool(
        user.has_perm(f"{opts.app_label}.view_{opts.model_name}")
        or user.has_perm(f"{opts.app_label}.change_{opts.model_name}")
    )


class FynoProfileInline(admin.StackedInline):  # type: ignore[type-arg]
    """The user's Fyno mirror row, its subscriptions link and recent messages; read-only.

    Shown to staff who may view Fyno profiles; the recent messages to those who may
    also view the outbox.
    """

    model = FynoProfile
    fk_name = "user"
    verbose_name = _("Fyno profile")
    verbose_name_plural = _("Fyno")
    can_delete = False
    extra = 0
    show_change_link = True
    fields = (
        "state",
        "distinct_id",
        "workspace",
        "synced_at",
        "dirty_since",
        "attempts",
        "last_error",
        "subscriptions",
        "recent_messages",
    )
    readonly_fields = fields
    #: How many of the user's newest outbox messages are shown.
    recent_limit: ClassVar[int] = 10

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_fields(request, obj))
        if not _may_view(request, FynoOutbox):
            fields.remove("recent_messages")
        return fields

    @admin.display(description=_("workspace"))
    def workspace(self, profile: FynoProfile) -> str:
        return str(Workspace.of(profile)) if profile.wsid else "—"

    @admin.display(description=_("subscriptions"))
    def subscriptions(self, profile: FynoProfile) -> str:
        if profile.pk is None or not profile.distinct_id:
            return str(_("— (not in Fyno yet)"))
        url = _admin_url("django_fyno_fynoprofile_preferences", [profile.pk], self.admin_site.name)
        if url is None:
            return "—"
        return format_html('<a href="{}">{}</a>', url, _("Subscriptions in Fyno"))

    @admin.display(description=_("recent messages"))
    def recent_messages(self, profile: FynoProfile) -> str:
        if profile.pk is None:
            return "—"
        rows = [
            {
                "row": row,
                "url": _admin_url("django_fyno_fynooutbox_change", [row.pk], self.admin_site.name),
            }
            for row in recent_outbox_rows(profile, self.recent_limit)
        ]
        return render_to_string(RECENT_TEMPLATE, {"rows": rows, "limit": self.recent_limit})


class FynoUserAdminMixin:
    """Mix into the project's own user admin (before its base class)::

        @admin.register(User)
        class UserAdmin(FynoUserAdminMixin, django.contrib.auth.admin.UserAdmin):
            list_display = (*BaseUserAdmin.list_display, "fyno_state")
            list_select_related = ("fyno_profile",)

    Adds :attr:`fyno_inline` to the change page (not the add page), and offers a
    ``fyno_state`` column.
    """

    fyno_inline: ClassVar[type[InlineModelAdmin[Any, Any]]] = FynoProfileInline

    def get_inlines(self, request: HttpRequest, obj: Any) -> list[type[InlineModelAdmin[Any, Any]]]:
        inlines = list(super().get_inlines(request, obj))  # type: ignore[misc]
        if obj is not None and self.fyno_inline not in inlines:
            inlines.append(self.fyno_inline)
        return inlines

    @admin.display(description=_("Fyno"), ordering="fyno_profile__state")
    def fyno_state(self, user: Any) -> str:
        try:
            profile: FynoProfile = user.fyno_profile
        except FynoProfile.DoesNotExist:
            return "—"
        return str(profile.get_state_display())
