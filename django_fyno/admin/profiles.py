"""The Fyno admin: profile mirrors, and their actions (sync, compare, delete, retry).

The rows are the domain's (:mod:`django_fyno.sync`): staff see them, never edit
them; every action calls the domain (:mod:`django_fyno.reconcile`) and needs
``django_fyno.sync_profiles``. Each Fyno call for a row goes to the row's own
workspace.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, ClassVar

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.text import Truncator
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from django_fyno import reconcile
from django_fyno.admin.common import fyno_errors_as_messages, has_fyno_permission
from django_fyno.admin.preferences import PreferencesAdminMixin
from django_fyno.clients import Workspace
from django_fyno.models import FynoProfile

__all__ = ["FynoProfileAdmin", "WorkspaceListFilter"]

#: Profiles compared on one page at most (one request to Fyno each).
COMPARE_LIMIT = 50
# Failed rows named one by one in an action's message, at most.
_NAMED_FAILURES = 5

_State = FynoProfile.State


class WorkspaceListFilter(admin.SimpleListFilter):
    """The workspaces rows recorded: WSID and version (never a key)."""

    title = _("workspace")
    parameter_name = "workspace"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        pairs = (
            model_admin.get_queryset(request)
            .order_by("wsid", "version")
            .values_list("wsid", "version")
            .distinct()
        )
        return [
            (f"{wsid}|{version}", f"{wsid} ({version})" if wsid else gettext("(none yet)"))
            for wsid, version in pairs
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value:
            return queryset
        wsid, _, version = str(value).partition("|")
        filtered: QuerySet[Any] = queryset.filter(wsid=wsid, version=version)
        return filtered


def _user_search_fields() -> list[str]:
    """The user model's login and email fields (any user model), as ``user__<field>``."""
    user_model = get_user_model()
    names = [user_model.USERNAME_FIELD, user_model.get_email_field_name()]
    found: list[str] = []
    for name in names:
        try:
            model_field = user_model._meta.get_field(name)
        except FieldDoesNotExist:
            continue
        if model_field.get_internal_type() in ("CharField", "EmailField", "TextField", "SlugField"):
            lookup = f"user__{name}"
            if lookup not in found:
                found.append(lookup)
    return found


def _report(
    modeladmin: admin.ModelAdmin,  # type: ignore[type-arg]
    request: HttpRequest,
    results: list[reconcile.RowResult],
    done: str,
) -> None:
    """One message for a bulk action: "3 synced, 1 failed: <Fyno's message>"."""
    ok = sum(1 for result in results if result.ok)
    skipped = [result for result in results if result.outcome == "skipped"]
    failed = [result for result in results if not result.ok and result.outcome != "skipped"]
    parts = [f"{ok} {done}"]
    if skipped:
        parts.append(_grouped(skipped, gettext("skipped")))
    if failed:
        parts.append(_grouped(failed, gettext("failed")))
    level = messages.ERROR if failed else messages.WARNING if skipped else messages.SUCCESS
    modeladmin.message_user(request, ", ".join(parts), level)


def _grouped(results: list[reconcile.RowResult], what: str) -> str:
    """ "2 failed: <error>" when they share one, else each error with the rows it hit."""
    by_error: dict[str, list[str]] = defaultdict(list)
    for result in results:
        by_error[result.error].append(result.label)
    if len(by_error) == 1:
        return f"{len(results)} {what}: {next(iter(by_error))}"
    shown = []
    for error, labels in list(by_error.items())[:_NAMED_FAILURES]:
        named = ", ".join(labels[:_NAMED_FAILURES])
        more = len(labels) - _NAMED_FAILURES
        if more > 0:
            named += f" +{more}"
        shown.append(f"{error} ({named})")
    if len(by_error) > _NAMED_FAILURES:
        shown.append(gettext("%d more errors") % (len(by_error) - _NAMED_FAILURES))
    return f"{len(results)} {what}: " + "; ".join(shown)


@admin.register(FynoProfile)
class FynoProfileAdmin(PreferencesAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    """The profile mirrors: read-only rows, and actions that go through the domain."""

    list_display = (
        "distinct_id",
        "user_display",
        "workspace_display",
        "state",
        "synced_at",
        "last_error_display",
    )
    list_display_links = ("distinct_id",)
    list_filter = ("state", WorkspaceListFilter)
    list_select_related = ("user",)
    ordering = ("-updated_at",)
    actions = ("sync_now", "compare_with_fyno", "delete_from_fyno", "retry_failed")
    readonly_fields = ("preferences_link",)

    class Media:
        css: ClassVar[dict[str, tuple[str, ...]]] = {"all": ("django_fyno/admin.css",)}

    fields = (
        "user",
        "distinct_id",
        "preferences_link",
        "state",
        "wsid",
        "version",
        "endpoint",
        "synced_at",
        "dirty_since",
        "attempts",
        "last_error",
        "payload_hash",
        "payload",
        "channels",
        "created_at",
        "updated_at",
    )

    # -- the list ----------------------------------------------------------------------

    @admin.display(description=_("user"), ordering="user_id")
    def user_display(self, row: FynoProfile) -> str:
        if row.user_id is None:
            return gettext("(deleted)")
        assert row.user is not None
        return str(row.user.get_username())

    @admin.display(description=_("workspace"), ordering="wsid")
    def workspace_display(self, row: FynoProfile) -> str:
        return str(Workspace.of(row)) if row.wsid else "-"

    @admin.display(description=_("last error"))
    def last_error_display(self, row: FynoProfile) -> str:
        return Truncator(row.last_error).chars(80)

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        return ["distinct_id", *_user_search_fields()]

    # -- the rows are the domain's: seen here, changed only through the actions ------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting a mirror row alone would leave its profile in Fyno: "delete_from_fyno".
        return False

    def has_sync_profiles_permission(self, request: HttpRequest) -> bool:
        return has_fyno_permission(request, "sync_profiles")

    # -- actions -----------------------------------------------------------------------

    @admin.action(description=_("Sync now with Fyno"), permissions=["sync_profiles"])
    def sync_now(self, request: HttpRequest, queryset: QuerySet[FynoProfile]) -> None:
        """Resend each profile's full state (puts back edits made in Fyno), as an operator."""
        if not self.has_sync_profiles_permission(request):  # actions are filtered too
            return
        with fyno_errors_as_messages(request, gettext("Sync")):
            results = reconcile.resync(queryset.order_by("pk"), force=True)
            _report(self, request, results, gettext("synced"))

    @admin.action(description=_("Retry the failed ones"), permissions=["sync_profiles"])
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[FynoProfile]) -> None:
        """Sync the selected failed rows again; delete again those of deleted users."""
        if not self.has_sync_profiles_permission(request):
            return
        rows = list(queryset.filter(state=_State.FAILED).order_by("pk"))
        if not rows:
            self.message_user(
                request, gettext("None of the selected profiles has failed."), messages.WARNING
            )
            return
        with fyno_errors_as_messages(request, gettext("Retry")):
            results = reconcile.resync(
                [row for row in rows if row.user_id is not None], force=False
            )
            orphans = [row for row in rows if row.user_id is None]
            results += reconcile.delete_from_fyno(orphans) if orphans else []
            _report(self, request, results, gettext("retried"))

    @admin.action(
        description=_("Compare with Fyno (what we would send, what Fyno has)"),
        permissions=["sync_profiles"],
    )
    def compare_with_fyno(
        self, request: HttpRequest, queryset: QuerySet[FynoProfile]
    ) -> HttpResponse | None:
        """An intermediate page: field by field, what we would send next to what Fyno has."""
        if not self.has_sync_profiles_permission(request):
            return None
        selected = queryset.count()
        rows = list(queryset.select_related("user").order_by("pk")[:COMPARE_LIMIT])
        if selected > COMPARE_LIMIT:
            self.message_user(
                request,
                gettext("Compared the first %(shown)d of the %(selected)d selected profiles.")
                % {"shown": COMPARE_LIMIT, "selected": selected},
                messages.WARNING,
            )
        comparisons: list[reconcile.Comparison] = []
        with fyno_errors_as_messages(request, gettext("Compare")):
            comparisons = reconcile.compare_profiles(rows)
        failed = [c for c in comparisons if c.drift is reconcile.Drift.FAILED]
        if failed:
            results = [reconcile.RowResult(c.row, False, "failed", _error_of(c)) for c in failed]
            self.message_user(
                request,
                f"{len(comparisons) - len(failed)} {gettext('compared')}, "
                + _grouped(results, gettext("failed")),
                messages.ERROR,
            )
        opts = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Compare with Fyno"),
            "subtitle": None,
            "opts": opts,
            "comparisons": [_ComparisonView(c) for c in comparisons],
            "queryset": rows,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "changelist_url": self._changelist_url(request),
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/django_fyno/fynoprofile/compare.html", context)

    @admin.action(
        description=_("Delete from Fyno (the profile and its mirror row)"),
        permissions=["sync_profiles"],
    )
    def delete_from_fyno(
        self, request: HttpRequest, queryset: QuerySet[FynoProfile]
    ) -> HttpResponse | None:
        """Delete the profiles in their workspaces, after a confirmation page."""
        if not self.has_sync_profiles_permission(request):
            return None
        rows = list(queryset.select_related("user").order_by("pk"))
        if request.POST.get("post") == "yes":
            with fyno_errors_as_messages(request, gettext("Delete")):
                results = reconcile.delete_from_fyno(rows)
                _report(self, request, results, gettext("deleted"))
            return None
        opts = self.model._meta
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Delete these profiles from Fyno?"),
            "subtitle": None,
            "opts": opts,
            "rows": [
                {
                    "row": row,
                    "label": reconcile.label(row),
                    "user": self.user_display(row),
                    "workspace": self.workspace_display(row),
                }
                for row in rows
            ],
            "queryset": rows,
            "live_users": sum(1 for row in rows if row.user_id is not None),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "changelist_url": self._changelist_url(request),
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request, "admin/django_fyno/fynoprofile/delete_from_fyno.html", context
        )

    def _changelist_url(self, request: HttpRequest) -> str:
        opts = self.model._meta
        url = reverse(
            f"admin:{opts.app_label}_{opts.model_name}_changelist",
            current_app=self.admin_site.name,
        )
        query = request.GET.urlencode()
        return f"{url}?{query}" if query else url


def _error_of(comparison: reconcile.Comparison) -> str:
    return str(comparison.error) if comparison.error is not None else gettext("unknown error")


_DRIFT_TEXT = {
    reconcile.Drift.IN_SYNC: _("Fyno has what it last accepted from us."),
    reconcile.Drift.DIFFERS: _("Fyno's profile changed since it last accepted ours."),
    reconcile.Drift.MISSING: _("Missing in Fyno: it accepted this profile once, and has none now."),
    reconcile.Drift.EXTRA: _("Fyno still has the profile of a deleted user."),
    reconcile.Drift.NOT_SYNCED: _("Never synced yet."),
    reconcile.Drift.EXCLUDED: _("Kept out of Fyno by the adapter (never sent)."),
    reconcile.Drift.FAILED: _("Could not compare."),
}


class _ComparisonView:
    """A comparison as the compare page shows it."""

    def __init__(self, comparison: reconcile.Comparison) -> None:
        self.comparison = comparison
        self.label = comparison.label
        row = comparison.row
        self.user = str(row.user.get_username()) if row.user_id is not None and row.user else ""
        self.workspace = str(comparison.workspace) if comparison.workspace else "-"
        self.drift = comparison.drift.value
        self.drifted = comparison.drift.drifted
        self.summary = _DRIFT_TEXT[comparison.drift]
        self.error = _error_of(comparison) if comparison.error is not None else ""
        self.pending = comparison.pending
        self.fields = comparison.managed_fields
        self.others = comparison.other_fields
        self.differences = len(comparison.differences)
        self.answered = comparison.answered
