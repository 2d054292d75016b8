"""The Fyno admin: suppression lists, mirrored per workspace, written through to Fyno.

- The changelist searches destinations, distinct ids, channels and reasons, and has a
  "Refresh from Fyno" form (``admin:django_fyno_fynosuppression_refresh``): one
  select of the known workspaces, one button.
- Adding (by user or by destination) asks Fyno while the form is validated, so
  Fyno's refusal is an error on the form and nothing is saved.
- Deleting (one entry, or the selected ones) deletes in Fyno first.

Every write needs ``django_fyno.manage_suppressions``; rows are never edited here
(Fyno's list is the truth). The work is done by :mod:`django_fyno.suppressions`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as confirm_deletion
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django_fyno.admin.common import fyno_errors_as_messages, has_fyno_permission
from django_fyno.client import Suppression
from django_fyno.clients import Workspace
from django_fyno.exceptions import (
    FynoBadRequestError,
    FynoError,
    FynoValidationError,
    error_text,
)
from django_fyno.models import FynoSuppression
from django_fyno.suppressions import (
    CHANNELS,
    AddPlan,
    RemoveOutcome,
    known_workspaces,
    plan_add,
    record_add,
    refresh,
    remove_suppression,
    send_add,
)

__all__ = ["FynoSuppressionAdmin", "SuppressionAddForm"]

PERMISSION = "manage_suppressions"
# At most this many failed entries are named, one message each, after a bulk deletion.
MAX_FAILURES_SHOWN = 10


def workspace_choices(workspaces: list[Workspace]) -> list[tuple[str, str]]:
    """``(Workspace.key, label)`` per workspace: its id, plus its endpoint when two
    known workspaces share an id."""
    ids = [workspace.wsid for workspace in workspaces]
    return [
        (
            workspace.key,
            workspace.wsid
            if ids.count(workspace.wsid) == 1
            else f"{workspace.wsid} ({workspace.endpoint})",
        )
        for workspace in workspaces
    ]


def _username(request: HttpRequest) -> str:
    user: Any = request.user
    return str(user.get_username())


class SuppressionAddForm(forms.ModelForm):  # type: ignore[type-arg]
    """Add a suppression by user or by destination; valid only once Fyno accepted it.

    Fyno is asked in :meth:`_post_clean`, after every local check passed: its
    refusal (``Invalid destination for channel sms``), an outage or a timeout is a
    form error, and nothing is saved. The admin's ``save_model`` then writes the
    mirror row with :func:`~django_fyno.suppressions.record_add`.
    """

    channel = forms.ChoiceField(label=_("Channel"), choices=[(name, name) for name in CHANNELS])
    user = forms.CharField(label=_("User"), required=False, max_length=255)
    workspace = forms.ChoiceField(
        label=_("Workspace"),
        required=False,
        help_text=_(
            "For a destination only; empty: the project's default workspace. A user's "
            "suppression always goes to the user's workspace."
        ),
    )

    class Meta:
        model = FynoSuppression
        fields = ("channel", "user", "destination", "workspace", "reason")
        help_texts = {  # noqa: RUF012 - Django reads it, never mutates it
            "destination": _(
                "Or suppress the channel for this destination (phone number, email…)."
            ),
            "reason": _("Sent to Fyno as the entry's description."),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.workspaces = {workspace.key: workspace for workspace in known_workspaces()}
        workspace_field: Any = self.fields["workspace"]
        workspace_field.choices = [
            ("", _("default (a user's: the user's)")),
            *workspace_choices([*self.workspaces.values()]),
        ]
        user_model = get_user_model()
        username = user_model._meta.get_field(user_model.USERNAME_FIELD)
        self.fields["user"].help_text = _(
            "Suppress the channel for this user, given by %(field)s (their distinct id, "
            "in their workspace)."
        ) % {"field": getattr(username, "verbose_name", user_model.USERNAME_FIELD)}
        self.plan: AddPlan | None = None
        self.entry: Suppression | None = None

    def clean_user(self) -> Any:
        value = self.cleaned_data.get("user", "").strip()
        if not value:
            return None
        user_model = get_user_model()
        try:
            return user_model._default_manager.get_by_natural_key(value)
        except user_model.DoesNotExist:
            raise ValidationError(_("There is no such user."), code="unknown_user") from None

    def clean_workspace(self) -> Workspace | None:
        key = self.cleaned_data.get("workspace") or ""
        return self.workspaces.get(key) if key else None

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        if "user" in self.errors:
            return cleaned
        if (cleaned.get("user") is None) == (not cleaned.get("destination")):
            raise ValidationError(
                _("Give either a user or a destination (exactly one)."), code="user_or_destination"
            )
        return cleaned

    def _post_clean(self) -> None:
        # After the model's own validation, so Fyno is asked only about a valid entry.
        super()._post_clean()  # type: ignore[misc]  # BaseModelForm's, absent from the stubs
        if self.errors:
            return
        data = self.cleaned_data
        try:
            plan = plan_add(
                data["channel"],
                user=data.get("user"),
                destination=data.get("destination") or None,
                reason=data.get("reason") or "",
                workspace=data.get("workspace"),
            )
        except FynoValidationError as error:
            self.add_error(error.field if error.field in self.fields else None, error.message)
            return
        except FynoError as error:  # no workspace can be had for it
            self.add_error(None, _("No Fyno workspace: %s") % error_text(error))
            return
        try:
            self.entry = send_add(plan)
        except FynoBadRequestError as error:
            self.add_error(None, _("Fyno refused the suppression: %s") % error.message)
            return
        except FynoError as error:
            self.add_error(None, _("Fyno did not add the suppression: %s") % error_text(error))
            return
        self.plan = plan


@admin.register(FynoSuppression)
class FynoSuppressionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Fyno's suppression lists: see and search them, refresh, add and delete entries."""

    list_display = (
        "channel",
        "destination",
        "distinct_id",
        "reason_excerpt",
        "wsid",
        "fyno_id",
        "added_by",
        "created_at",
        "refreshed_at",
    )
    list_filter = ("channel", "wsid")
    search_fields = ("destination", "distinct_id", "channel", "reason")
    ordering = ("-created_at", "-pk")
    actions = ("delete_selected",)
    fieldsets = (
        (None, {"fields": ("channel", "destination", "distinct_id", "reason")}),
        (
            _("In Fyno"),
            {"fields": ("wsid", "version", "endpoint", "fyno_id", "fyno_created_at", "expires")},
        ),
        (_("Fyno's record"), {"fields": ("raw",)}),
        (_("Here"), {"fields": ("added_by", "created_at", "refreshed_at")}),
    )
    add_form = SuppressionAddForm
    add_fieldsets = ((None, {"fields": ("channel", "user", "destination", "workspace", "reason")}),)
    change_list_template = "admin/django_fyno/fynosuppression/change_list.html"

    # -- permissions: every write needs manage_suppressions; rows are never edited -----

    def has_add_permission(self, request: HttpRequest) -> bool:
        return has_fyno_permission(request, PERMISSION)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return has_fyno_permission(request, PERMISSION)

    def has_refresh_permission(self, request: HttpRequest) -> bool:
        return has_fyno_permission(request, PERMISSION)

    # -- the list -------------------------------------------------------------------------

    @admin.display(description=_("reason"), ordering="reason")
    def reason_excerpt(self, row: FynoSuppression) -> str:
        return Truncator(row.reason).chars(60)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = dict(extra_context or {})
        if self.has_refresh_permission(request):
            context["refresh_workspaces"] = workspace_choices(known_workspaces())
        return super().changelist_view(request, context)

    def get_urls(self) -> list[URLPattern]:
        info = (self.opts.app_label, self.opts.model_name)
        own = [
            path(
                "refresh/",
                self.admin_site.admin_view(self.refresh_view),
                name="{}_{}_refresh".format(*info),
            )
        ]
        return own + super().get_urls()

    def _changelist_url(self) -> str:
        return reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist",
            current_app=self.admin_site.name,
        )

    def refresh_view(self, request: HttpRequest) -> HttpResponse:
        """POST ``workspace`` (a known workspace's key): replace its mirror with Fyno's list."""
        if not self.has_refresh_permission(request):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        choices = dict(workspace_choices(workspaces := known_workspaces()))
        key = request.POST.get("workspace", "")
        workspace = next((known for known in workspaces if known.key == key), None)
        if workspace is None:
            self.message_user(
                request, _("Choose one of the workspaces listed to refresh."), messages.ERROR
            )
            return HttpResponseRedirect(self._changelist_url())
        label = choices[key]
        with fyno_errors_as_messages(
            request, _("The suppressions of %(ws)s were not refreshed") % {"ws": label}
        ):
            outcome = refresh(workspace)
            summary = ngettext(
                "Refreshed the suppressions of %(ws)s from Fyno: %(count)d entry came back "
                "(%(added)d new, %(removed)d removed).",
                "Refreshed the suppressions of %(ws)s from Fyno: %(count)d entries came back "
                "(%(added)d new, %(removed)d removed).",
                outcome.entries,
            ) % {
                "ws": label,
                "count": outcome.entries,
                "added": outcome.added,
                "removed": outcome.removed,
            }
            LogEntry.objects.create(
                user_id=getattr(request.user, "pk", None),
                content_type=ContentType.objects.get_for_model(FynoSuppression),
                object_id=None,
                object_repr=Truncator(_("Suppressions of %(ws)s") % {"ws": label}).chars(200),
                action_flag=CHANGE,
                change_message=summary,
            )
            self.message_user(request, summary, messages.SUCCESS)
        return HttpResponseRedirect(self._changelist_url())

    # -- add ------------------------------------------------------------------------------

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.add_fieldsets if obj is None else super().get_fieldsets(request, obj)

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, change=change, **kwargs)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change or not isinstance(form, SuppressionAddForm) or form.plan is None:
            raise PermissionDenied  # rows are never edited; an add goes through Fyno first
        record_add(form.plan, form.entry, added_by=_username(request), row=obj)
        if not obj.fyno_id:
            self.message_user(
                request,
                _(
                    "Fyno accepted the suppression but did not list it back; its Fyno id "
                    "will be filled in by the next refresh."
                ),
                messages.WARNING,
            )

    # -- delete ---------------------------------------------------------------------------

    def _log_deletions(self, request: HttpRequest, rows: Sequence[FynoSuppression]) -> None:
        # Rows already deleted (by a queryset: their pks are kept). Django's own views
        # pass a list too; the stubs only name QuerySet.
        self.log_deletions(request, cast("QuerySet[FynoSuppression]", list(rows)))

    def _report_removal(
        self, request: HttpRequest, row: FynoSuppression, outcome: RemoveOutcome
    ) -> None:
        others = [other for other in outcome.removed if other.pk != row.pk]
        if others:
            self._log_deletions(request, others)
            self.message_user(
                request,
                ngettext(
                    "Fyno deleted every entry of %(who)s: %(count)d more entry was removed.",
                    "Fyno deleted every entry of %(who)s: %(count)d more entries were removed.",
                    len(others),
                )
                % {"who": row.distinct_id or row.destination, "count": len(others)},
                messages.WARNING,
            )
        if outcome.already_gone:
            self.message_user(
                request,
                _("Fyno no longer had “%(row)s”; it was removed from the mirror.") % {"row": row},
                messages.WARNING,
            )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        # A FynoError leaves delete_view's transaction (and its log entry) rolled back.
        self._report_removal(request, obj, remove_suppression(obj))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for row in queryset:
            self.delete_model(request, row)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except FynoError as error:  # raised by delete_model: nothing was deleted
            self.message_user(
                request,
                _("The suppression was not deleted: %s") % error_text(error),
                messages.ERROR,
            )
            return HttpResponseRedirect(
                reverse(
                    f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
                    args=(quote(object_id),),
                    current_app=self.admin_site.name,
                )
            )

    def response_delete(self, request: HttpRequest, obj_display: str, obj_id: int) -> HttpResponse:
        response = super().response_delete(request, obj_display, obj_id)
        # Django goes back to the list only for staff who may change rows; nobody may
        # change these, so back to the list for those who may see it.
        if isinstance(response, HttpResponseRedirect) and self.has_view_permission(request):
            context: dict[str, Any] = {
                "preserved_filters": self.get_preserved_filters(request),
                "opts": self.opts,
            }
            return HttpResponseRedirect(add_preserved_filters(context, self._changelist_url()))
        return response

    @admin.action(
        permissions=["delete"],
        description=_("Delete selected %(verbose_name_plural)s (in Fyno first)"),
    )
    def delete_selected(
        self, request: HttpRequest, queryset: QuerySet[FynoSuppression]
    ) -> TemplateResponse | None:
        """Replaces the admin's own action: after the same confirmation page, each entry
        is deleted in Fyno, then from the mirror; one that Fyno refuses stays."""
        if not request.POST.get("post"):
            confirmation: TemplateResponse | None = confirm_deletion(self, request, queryset)
            return confirmation
        deleted, not_tried = 0, 0
        failures: list[str] = []
        done: set[Any] = set()
        rows = list(queryset.order_by("pk"))
        for index, row in enumerate(rows):
            if row.pk in done:
                continue
            try:
                with transaction.atomic():
                    outcome = remove_suppression(row)
                    if outcome.removed:
                        self._log_deletions(request, outcome.removed)
            except FynoBadRequestError as error:  # Fyno refused this one entry
                failures.append(f"{row}: {error.message}")
                continue
            except FynoError as error:  # Fyno is out of reach: do not try the others
                failures.append(f"{row}: {error_text(error)}")
                not_tried = len([other for other in rows[index + 1 :] if other.pk not in done])
                break
            done.update(other.pk for other in outcome.removed)
            deleted += len(outcome.removed)
        if deleted:
            self.message_user(
                request,
                ngettext(
                    "Deleted %(count)d suppression in Fyno and here.",
                    "Deleted %(count)d suppressions in Fyno and here.",
                    deleted,
                )
                % {"count": deleted},
                messages.SUCCESS,
            )
        for failure in failures[:MAX_FAILURES_SHOWN]:
            self.message_user(request, _("Not deleted: %s") % failure, messages.ERROR)
        if len(failures) > MAX_FAILURES_SHOWN:
            self.message_user(
                request,
                _("%(count)d more were not deleted.")
                % {"count": len(failures) - MAX_FAILURES_SHOWN},
                messages.ERROR,
            )
        if not_tried:
            self.message_user(
                request,
                ngettext(
                    "%(count)d more suppression was not tried; nothing changed for it.",
                    "%(count)d more suppressions were not tried; nothing changed for them.",
                    not_tried,
                )
                % {"count": not_tried},
                messages.ERROR,
            )
        return None
