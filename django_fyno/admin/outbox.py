"""The Fyno admin: outbox messages (retry, cancel) and their delivery reports.

Both are logs, read-only for their data: rows are written by ``notify()`` and
by the webhook, never by hand (no add, no change, no delete; old sent rows go
with ``fyno_outbox --purge-sent``). What staff may do is act on them, each
action needing ``django_fyno.manage_outbox``:

- **retry** (:func:`django_fyno.outbox.retry`): ``failed``, ``dead`` and
  ``unknown`` messages back to ``pending``, a drain of their workspaces after
  commit; confirmed first when the selection holds ``unknown`` or ``dead`` ones
  (they may have reached Fyno already: a retry may deliver them twice);
- **cancel** (:func:`django_fyno.outbox.operations.cancel`): messages not sent
  yet nor being sent become ``cancelled``, never sent; always confirmed first;
- **replay** (:func:`django_fyno.webhooks.replay_report`): a stored delivery
  report sent again to ``delivery_report_received`` receivers, with
  ``replayed=True``; confirmed first.

Each action reports per row what it did and why it skipped the others
("3 retried, 1 skipped: already sent"), and records what it changed in the
rows' history. None of them calls Fyno from the request: a retry's drain runs
after commit (``TASK_MODE``), each workspace's with its own credentials.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Mapping
from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import PermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from django_fyno.admin.common import fyno_errors_as_messages, has_fyno_permission
from django_fyno.admin.health import HealthAdminMixin
from django_fyno.clients import Workspace
from django_fyno.models import FynoDeliveryReport, FynoOutbox
from django_fyno.outbox import operations
from django_fyno.webhooks import replay_report

__all__ = ["AgeFilter", "FynoDeliveryReportAdmin", "FynoOutboxAdmin", "WorkspaceFilter"]

_State = FynoOutbox.State
# The states, as the strings rows hold (the mypy plugin types TextChoices members
# as tuples, so comparisons go through these).
PENDING, SENDING, SENT = "pending", "sending", "sent"
FAILED, DEAD, UNKNOWN, CANCELLED = "failed", "dead", "unknown", "cancelled"

#: Why an action left a row as it was, by the row's state.
RETRY_SKIPS: Mapping[str, Any] = {
    PENDING: _("already waiting to be sent"),
    SENDING: _("being sent"),
    SENT: _("already sent"),
    CANCELLED: _("cancelled"),
}
CANCEL_SKIPS: Mapping[str, Any] = {
    SENDING: _("being sent"),
    SENT: _("already sent"),
    CANCELLED: _("already cancelled"),
}
#: A row the action could take when the page was shown, but not when it ran.
CHANGED_MEANWHILE = _("changed state meanwhile")
#: Rows of a selection listed by name on a confirmation page (the rest are counted).
CONFIRMATION_LIST_LIMIT = 100


# -- presentation helpers ------------------------------------------------------------


def json_block(value: Any) -> str:
    """``value`` as indented JSON in a ``<pre>``, escaped (it holds user data)."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, cls=DjangoJSONEncoder)
    return format_html('<pre class="fyno-json">{}</pre>', text)


def delivery_summary(delivery: Any) -> str:
    """A row's per-channel delivery state ("email: delivered", one per line), escaped."""
    if not isinstance(delivery, Mapping) or not delivery:
        return "-"
    return format_html_join(
        "",
        '<div class="fyno-delivery">{}: {}</div>',
        ((str(channel), str(status)) for channel, status in sorted(delivery.items())),
    )


def states_of(rows: QuerySet[FynoOutbox]) -> Counter[str]:
    """How many of ``rows`` are in each state (one GROUP BY query)."""
    found: Counter[str] = Counter()
    for state, number in rows.values_list("state").annotate(number=Count("id")).order_by():
        found[str(state)] = int(number)
    return found


def outcome(
    done: int,
    verb: str,
    states: Mapping[str, int],
    allowed: Collection[str],
    reasons: Mapping[str, Any],
) -> tuple[int, str]:
    """The level and text of an action's message: "3 retried, 1 skipped: already sent".

    ``states`` counts the selected rows by state before the action; rows in an
    ``allowed`` state the action did not change (``done`` is fewer) changed
    state meanwhile (a drainer claimed them, a report arrived).
    """
    skipped: Counter[str] = Counter()
    for state, number in states.items():
        if state not in allowed and number:
            skipped[str(reasons.get(state, state))] += number
    missed = sum(number for state, number in states.items() if state in allowed) - done
    if missed > 0:
        skipped[str(CHANGED_MEANWHILE)] += missed
    text = gettext("%(count)d %(verb)s") % {"count": done, "verb": verb}
    total = sum(skipped.values())
    if not total:
        return messages.SUCCESS, text
    if len(skipped) == 1:
        detail = next(iter(skipped))
    else:
        detail = ", ".join(f"{number} {reason}" for reason, number in sorted(skipped.items()))
    skipped_text = gettext("%(count)d skipped: %(why)s") % {"count": total, "why": detail}
    return messages.WARNING, f"{text}, {skipped_text}"


# -- filters -------------------------------------------------------------------------


class WorkspaceFilter(admin.SimpleListFilter):
    """The workspaces rows recorded (WSID and version; the endpoint when two differ by it)."""

    title = _("workspace")
    parameter_name = "workspace"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        rows: QuerySet[Any] = model_admin.get_queryset(request)
        found = [
            Workspace(*fields)
            for fields in rows.values_list("wsid", "version", "endpoint").distinct().order_by()
        ]
        named = Counter(str(workspace) for workspace in found)
        choices = []
        for workspace in sorted(found, key=lambda space: space.key):
            label = str(workspace)
            if named[label] > 1:
                label = f"{label} {workspace.endpoint}"
            choices.append((workspace.key, label))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        key = self.value()
        if not key:
            return None
        try:
            workspace = Workspace.from_key(key)
        except ValueError:
            nothing: QuerySet[Any] = queryset.none()
            return nothing
        rows: QuerySet[Any] = queryset.filter(**workspace.fields())
        return rows


class AgeFilter(admin.SimpleListFilter):
    """Rows created more than an hour, a day or a week ago (stuck, or due for a purge)."""

    title = _("age")
    parameter_name = "age"
    AGES: Mapping[str, timedelta] = {
        "1h": timedelta(hours=1),
        "1d": timedelta(days=1),
        "7d": timedelta(days=7),
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            ("1h", _("older than 1 hour")),
            ("1d", _("older than 1 day")),
            ("7d", _("older than 7 days")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        age = self.AGES.get(self.value() or "")
        if age is None:
            return None
        rows: QuerySet[Any] = queryset.filter(created_at__lt=timezone.now() - age)
        return rows


# -- what both admins share ----------------------------------------------------------


class _FynoLogAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """A read-only log: viewable with the model's view permission, never edited here;
    its actions need ``django_fyno.manage_outbox``."""

    #: ``{model_name}`` is filled in: the confirmation page of this admin's actions.
    confirmation_templates = (
        "admin/django_fyno/{model_name}/action_confirmation.html",
        "admin/django_fyno/fynooutbox/action_confirmation.html",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_manage_outbox_permission(self, request: HttpRequest) -> bool:
        """What ``@admin.action(permissions=["manage_outbox"])`` asks."""
        return has_fyno_permission(request, "manage_outbox")

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Django ignores a POSTed action the user may not run; this refuses it, so a
        # forged request (a form kept from before a permission was withdrawn, a
        # hand-made POST) is a 403, not a silent no-op.
        if request.method == "POST":
            asked = {name for name in request.POST.getlist("action") if name}
            if asked - set(self.get_actions(request)):
                raise PermissionDenied
        return super().changelist_view(request, extra_context)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Everything shown is read-only, computed displays included.
        return list(flatten_fieldsets(self.get_fieldsets(request, obj)))

    def require_manage_outbox(self, request: HttpRequest) -> None:
        """Refuse an action to a user without the permission, however it was reached."""
        if not self.has_manage_outbox_permission(request):
            raise PermissionDenied

    def confirm(
        self,
        request: HttpRequest,
        queryset: QuerySet[Any],
        *,
        action: str,
        title: str,
        question: str,
        warning: str = "",
        button: str,
    ) -> TemplateResponse:
        """The page asking to confirm ``action`` on the selected rows; it posts them back."""
        opts = self.model._meta
        pks = list(queryset.order_by("pk").values_list("pk", flat=True))
        shown = list(queryset.order_by("pk")[:CONFIRMATION_LIST_LIMIT])
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": None,
            "question": question,
            "warning": warning,
            "button": button,
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "pks": pks,
            "rows": shown,
            "more": len(pks) - len(shown),
            "opts": opts,
            "app_label": opts.app_label,
            "preserved_filters": self.get_preserved_filters(request),
            "changelist_url": reverse(
                f"admin:{opts.app_label}_{opts.model_name}_changelist",
                current_app=self.admin_site.name,
            ),
        }
        request.current_app = self.admin_site.name
        templates = [
            name.format(model_name=opts.model_name) for name in self.confirmation_templates
        ]
        return TemplateResponse(request, templates, context)

    def log_changed(self, request: HttpRequest, rows: QuerySet[Any], message: str) -> None:
        """One history entry per row an action changed."""
        user: Any = request.user
        LogEntry.objects.log_actions(user.pk, rows, CHANGE, change_message=message)


# -- the outbox ----------------------------------------------------------------------


@admin.register(FynoOutbox)
class FynoOutboxAdmin(HealthAdminMixin, _FynoLogAdmin):
    """The outbox: every message for Fyno, its state, Fyno's answer and its delivery."""

    list_display = (
        "id",
        "event",
        "kind",
        "distinct_id",
        "state",
        "workspace",
        "attempts",
        "created_at",
        "sent_at",
        "delivery_state",
    )
    list_display_links = ("id", "event")
    list_filter = ("state", "kind", "event", WorkspaceFilter, AgeFilter)
    search_fields = ("=id", "distinct_id", "event", "=request_id", "=dedupe_key")
    ordering = ("-id",)
    show_full_result_count = False
    actions = ("retry_messages", "cancel_messages")
    fieldsets = (
        (
            _("Message"),
            {"fields": ("id", "kind", "event", "distinct_id", "state", "dedupe_key")},
        ),
        (_("Workspace"), {"fields": ("wsid", "version", "endpoint")}),
        (_("Content"), {"fields": ("to_json", "payload_json", "callback_json")}),
        (
            _("Delivery"),
            {
                "fields": (
                    "attempts",
                    "created_at",
                    "next_attempt_at",
                    "lease_expires_at",
                    "sent_at",
                    "delivered_at",
                    "last_error",
                )
            },
        ),
        (
            _("Fyno's answer"),
            {"fields": ("request_id", "result_json", "delivery_json", "delivery_reports")},
        ),
    )

    # -- displays --------------------------------------------------------------------

    @admin.display(description=_("workspace"), ordering="wsid")
    def workspace(self, obj: FynoOutbox) -> str:
        return str(Workspace.of(obj))

    @admin.display(description=_("delivery"))
    def delivery_state(self, obj: FynoOutbox) -> str:
        return delivery_summary(obj.delivery)

    @admin.display(description=_("destinations"))
    def to_json(self, obj: FynoOutbox) -> str:
        return json_block(obj.to)

    @admin.display(description=_("payload"))
    def payload_json(self, obj: FynoOutbox) -> str:
        return json_block(obj.payload)

    @admin.display(description=_("callback"))
    def callback_json(self, obj: FynoOutbox) -> str:
        return json_block(obj.callback)

    @admin.display(description=_("Fyno's reply"))
    def result_json(self, obj: FynoOutbox) -> str:
        return json_block(obj.result)

    @admin.display(description=_("delivery, per channel"))
    def delivery_json(self, obj: FynoOutbox) -> str:
        return json_block(obj.delivery)

    @admin.display(description=_("delivery reports"))
    def delivery_reports(self, obj: FynoOutbox) -> str:
        count = obj.delivery_reports.count()
        url = reverse(
            "admin:django_fyno_fynodeliveryreport_changelist", current_app=self.admin_site.name
        )
        return format_html(
            '<a href="{}?outbox__id__exact={}">{}</a>', url, obj.pk, _report_count(count)
        )

    # -- actions ---------------------------------------------------------------------

    @admin.action(description=_("Retry the selected messages"), permissions=["manage_outbox"])
    def retry_messages(
        self, request: HttpRequest, queryset: QuerySet[FynoOutbox]
    ) -> HttpResponseBase | None:
        self.require_manage_outbox(request)
        before = states_of(queryset)
        allowed = {str(state) for state in operations.RETRYABLE}
        if (before[UNKNOWN] or before[DEAD]) and request.POST.get("post") != "yes":
            return self.confirm(
                request,
                queryset,
                action="retry_messages",
                title=gettext("Retry messages"),
                question=_retry_question(before, allowed),
                warning=gettext(
                    "Some of these messages are unknown or dead: their last send may have "
                    "reached Fyno, whose answer was lost. Retrying them may deliver them twice."
                ),
                button=gettext("Yes, retry them"),
            )
        taken = list(queryset.filter(state__in=allowed).values_list("pk", flat=True))
        with fyno_errors_as_messages(request, gettext("Retry")):
            done = operations.retry(queryset)
            if done:
                self.log_changed(
                    request, FynoOutbox.objects.filter(pk__in=taken), gettext("Retried.")
                )
            level, text = outcome(done, gettext("retried"), before, allowed, RETRY_SKIPS)
            self.message_user(request, text, level)
            if done:
                self.report_refusals(request, taken)
        return None

    def report_refusals(self, request: HttpRequest, pks: list[int]) -> None:
        """Fyno's errors for retried rows a drain has already tried, as an error message.

        In ``TASK_MODE`` "inline" the drain ran right after the retry committed, in
        this request: a row it tried and did not get sent has counted an attempt
        again (or is ``failed``/``dead``/``unknown``). With Celery the drain has not
        run yet and this finds nothing. ``last_error`` holds Fyno's message, never
        the API key.
        """
        tried = (
            FynoOutbox.objects.filter(pk__in=pks)
            .exclude(state__in=(SENT, CANCELLED))
            .filter(Q(attempts__gt=0) | Q(state__in=(FAILED, DEAD, UNKNOWN)))
        )
        errors = Counter(tried.values_list("last_error", flat=True))
        if not errors:
            return
        shown = "; ".join(
            error or gettext("no error recorded") for error, _number in errors.most_common(3)
        )
        text = gettext("Fyno did not take %(count)d of them yet: %(errors)s") % {
            "count": sum(errors.values()),
            "errors": shown,
        }
        self.message_user(request, text, messages.ERROR)

    @admin.action(description=_("Cancel the selected messages"), permissions=["manage_outbox"])
    def cancel_messages(
        self, request: HttpRequest, queryset: QuerySet[FynoOutbox]
    ) -> HttpResponseBase | None:
        self.require_manage_outbox(request)
        before = states_of(queryset)
        allowed = {str(state) for state in operations.CANCELLABLE}
        if request.POST.get("post") != "yes":
            return self.confirm(
                request,
                queryset,
                action="cancel_messages",
                title=gettext("Cancel messages"),
                question=_cancel_question(before, allowed),
                warning=gettext(
                    "A cancelled message is never sent, and cannot be retried. Unknown and "
                    "dead messages may have reached Fyno already: cancelling them stops any "
                    "further send, it recalls nothing."
                ),
                button=gettext("Yes, cancel them"),
            )
        taken = list(queryset.filter(state__in=allowed).values_list("pk", flat=True))
        with fyno_errors_as_messages(request, gettext("Cancel")):
            done = operations.cancel(queryset)
            if done:
                changed = FynoOutbox.objects.filter(pk__in=taken, state=CANCELLED)
                self.log_changed(request, changed, gettext("Cancelled."))
            level, text = outcome(done, gettext("cancelled"), before, allowed, CANCEL_SKIPS)
            self.message_user(request, text, level)
        return None


def _report_count(count: int) -> str:
    return ngettext("%(count)d report", "%(count)d reports", count) % {"count": count}


def _will(before: Mapping[str, int], allowed: Collection[str]) -> int:
    return sum(number for state, number in before.items() if state in allowed)


def _retry_question(before: Mapping[str, int], allowed: Collection[str]) -> str:
    will = _will(before, allowed)
    return gettext(
        "%(will)d of the %(selected)d selected messages will be put back in the queue "
        "(the others are left as they are)."
    ) % {"will": will, "selected": sum(before.values())}


def _cancel_question(before: Mapping[str, int], allowed: Collection[str]) -> str:
    will = _will(before, allowed)
    return gettext(
        "%(will)d of the %(selected)d selected messages will be cancelled (the others, "
        "sent, being sent or already cancelled, are left as they are)."
    ) % {"will": will, "selected": sum(before.values())}


# -- delivery reports ----------------------------------------------------------------


@admin.register(FynoDeliveryReport)
class FynoDeliveryReportAdmin(_FynoLogAdmin):
    """Delivery reports as Fyno posted them, each linked to its outbox message."""

    list_display = ("received_at", "custom_id", "channel", "status", "outbox_link", "request_id")
    list_filter = ("status", "channel", "received_at")
    list_select_related = ("outbox",)
    search_fields = ("=custom_id", "=request_id", "=msg_id")
    ordering = ("-received_at", "-id")
    show_full_result_count = False
    actions = ("replay_reports",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "outbox_link",
                    "custom_id",
                    "request_id",
                    "channel",
                    "status",
                    "msg_id",
                    "received_at",
                    "fingerprint",
                )
            },
        ),
        (_("Report"), {"fields": ("raw_json",)}),
    )

    @admin.display(description=_("outbox message"), ordering="outbox")
    def outbox_link(self, obj: FynoDeliveryReport) -> str:
        row = obj.outbox
        if row is None:
            return "-"
        url = reverse(
            "admin:django_fyno_fynooutbox_change", args=[row.pk], current_app=self.admin_site.name
        )
        return format_html('<a href="{}">{}</a>', url, str(row))

    @admin.display(description=_("report"))
    def raw_json(self, obj: FynoDeliveryReport) -> str:
        return json_block(obj.raw)

    @admin.action(
        description=_("Replay the selected reports to delivery_report_received"),
        permissions=["manage_outbox"],
    )
    def replay_reports(
        self, request: HttpRequest, queryset: QuerySet[FynoDeliveryReport]
    ) -> HttpResponseBase | None:
        self.require_manage_outbox(request)
        if request.POST.get("post") != "yes":
            count = queryset.count()
            return self.confirm(
                request,
                queryset,
                action="replay_reports",
                title=gettext("Replay delivery reports"),
                question=ngettext(
                    "%(count)d report will be sent again to the receivers of "
                    "delivery_report_received, with created=False and replayed=True.",
                    "%(count)d reports will be sent again to the receivers of "
                    "delivery_report_received, with created=False and replayed=True.",
                    count,
                )
                % {"count": count},
                warning=gettext(
                    "Every receiver gets them, not only the one that failed: receivers act "
                    "on a replay only if they were written to (created or replayed)."
                ),
                button=gettext("Yes, replay them"),
            )
        replayed = 0
        failed: list[str] = []
        for report in queryset.select_related("outbox").order_by("pk"):
            # send_robust: a receiver's exception comes back here (and is logged), named
            # by the receiver and the exception's class only: its text could hold anything.
            errors = replay_report(report)
            if errors:
                names = ", ".join(
                    f"{_callable_name(receiver)} raised {type(error).__name__}"
                    for receiver, error in errors
                )
                failed.append(f"#{report.pk} ({names})")
            else:
                replayed += 1
        text = gettext("%(count)d replayed") % {"count": replayed}
        if failed:
            problems = gettext("%(count)d failed: %(which)s; see the log") % {
                "count": len(failed),
                "which": "; ".join(failed),
            }
            self.message_user(request, f"{text}, {problems}", messages.ERROR)
        else:
            self.message_user(request, text, messages.SUCCESS)
        return None


def _callable_name(function: Any) -> str:
    """A receiver's dotted name (never its repr, which could show anything)."""
    module = getattr(function, "__module__", None) or ""
    name = getattr(function, "__qualname__", None) or type(function).__qualname__
    return f"{module}.{name}" if module else str(name)
