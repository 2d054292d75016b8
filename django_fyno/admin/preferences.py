"""The Fyno admin: a user's subscriptions, seen and changed by staff.

:class:`PreferencesAdminMixin` adds the page to an admin (the profile admin uses
it): ``admin:django_fyno_fynoprofile_preferences`` with the profile's pk. It shows
the user's preference matrix as Fyno has it, with the partial the end-user page
uses (``django_fyno/partials/preference_matrix.html``), and lets staff change it
through :mod:`django_fyno.preferences`:

- seeing the page needs the view (or change) permission on Fyno profiles;
- changing anything (saving the matrix, a whole topic) needs
  ``django_fyno.edit_preferences``: without it the matrix is shown disabled and
  a POST is refused with 403;
- a ``required`` channel cannot be opted out, whatever is posted;
- Fyno's errors and timeouts become admin messages; when Fyno's answer is
  missing, no matrix is shown (nothing the page cannot vouch for).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin import display
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from django_fyno import preferences
from django_fyno.admin.common import fyno_errors_as_messages, has_fyno_permission
from django_fyno.models import FynoProfile
from django_fyno.preferences import ChangeSet, PreferenceMatrix

__all__ = ["PreferencesAdminMixin", "preferences_page", "preferences_url"]

TEMPLATE = "admin/django_fyno/preferences/page.html"
# Refusals listed in one message; the rest are counted.
_MAX_LISTED = 5


def preferences_url(profile: FynoProfile, site_name: str = "admin") -> str:
    """The staff page of ``profile``'s subscriptions."""
    return reverse(f"{site_name}:django_fyno_fynoprofile_preferences", args=[quote(profile.pk)])


def _profile_or_404(modeladmin: Any, request: HttpRequest, object_id: str) -> FynoProfile:
    """The profile in the URL, if the admin's queryset has it and it still has a user."""
    profile: FynoProfile | None = modeladmin.get_object(request, unquote(object_id))
    if profile is None or profile.user_id is None:
        raise Http404(_("No Fyno profile with a user has this id."))
    return profile


def _load(request: HttpRequest, profile: FynoProfile) -> PreferenceMatrix | None:
    """The matrix as Fyno has it now; None (and an error message) without Fyno's answer."""
    matrix = None
    with fyno_errors_as_messages(request, _("The subscriptions could not be read from Fyno")):
        matrix = preferences.load_matrix(profile)
    return matrix


def _refused(request: HttpRequest, changes: ChangeSet) -> None:
    listed = [str(refusal.message) for refusal in changes.refused[:_MAX_LISTED]]
    more = len(changes.refused) - len(listed)
    text = "; ".join(listed) + (_(" (and %(count)d more)") % {"count": more} if more else "")
    messages.error(request, _("Nothing was changed: %(problems)s.") % {"problems": text})


def _saved(modeladmin: Any, request: HttpRequest, profile: FynoProfile, changes: ChangeSet) -> None:
    """Record a change in the admin's history of the profile."""
    modeladmin.log_change(
        request, profile, _("Changed Fyno subscriptions: %s") % changes.describe()
    )


def _save(
    modeladmin: Any, request: HttpRequest, profile: FynoProfile, matrix: PreferenceMatrix
) -> PreferenceMatrix | None:
    """Save the submitted matrix: one PUT with what changed, then Fyno's answer."""
    wanted, shown = preferences.form_choices(request.POST)
    changes = preferences.plan_changes(matrix, wanted, shown=shown)
    if changes.refused:
        _refused(request, changes)
        return matrix.with_choices(wanted)
    if not changes.changes:
        messages.info(request, _("Nothing was changed: the subscriptions are as submitted."))
        return matrix
    saved = None
    failed = _(
        "Saving to Fyno failed, so the subscriptions may be unchanged; your choices are "
        "kept below, save again to retry"
    )
    with fyno_errors_as_messages(request, failed):
        try:
            saved = preferences.save_changes(matrix, changes)
        except preferences.PreferencesNotReloaded as error:
            _saved(modeladmin, request, profile, changes)
            messages.warning(request, str(error))
            return None
    if saved is None:
        return matrix.with_choices(wanted)
    _saved(modeladmin, request, profile, changes)
    messages.success(
        request,
        _("The subscriptions were saved in Fyno (%(count)d change(s)).")
        % {"count": changes.count()},
    )
    return saved


def _topic(
    modeladmin: Any, request: HttpRequest, profile: FynoProfile, matrix: PreferenceMatrix
) -> PreferenceMatrix | None:
    """Subscribe or unsubscribe the user to one topic (one channel, or all of them)."""
    status = request.POST.get("status", "")
    changes = preferences.plan_topic(
        matrix,
        request.POST.get("subscription_id", ""),
        status,
        channel=request.POST.get("channel", ""),
    )
    if changes.refused:
        _refused(request, changes)
        return matrix
    if not changes.changes:
        messages.info(request, _("Nothing was changed: the topic already is as asked."))
        return matrix
    changed = None
    with fyno_errors_as_messages(request, _("Changing the topic in Fyno failed")):
        try:
            changed = preferences.send_topic(matrix, changes)
        except preferences.PreferencesNotReloaded as error:
            _saved(modeladmin, request, profile, changes)
            messages.warning(request, str(error))
            return None
    if changed is None:
        # Some of its requests may have been accepted: show what Fyno says now.
        return _load(request, profile)
    _saved(modeladmin, request, profile, changes)
    if status == preferences.OPTED_IN:
        done = _("The user was subscribed to the topic (%(count)d channel(s)).")
    else:
        done = _("The user was unsubscribed from the topic (%(count)d channel(s)).")
    messages.success(request, done % {"count": changes.count()})
    return changed


def _post(modeladmin: Any, request: HttpRequest, profile: FynoProfile) -> PreferenceMatrix | None:
    action = request.POST.get("action")
    if action not in ("save", "topic"):
        messages.error(request, _("Nothing was changed: unknown action."))
        return _load(request, profile)
    # Every change is planned against what Fyno has now, not what the page showed.
    matrix = _load(request, profile)
    if matrix is None:
        return None
    if action == "save":
        return _save(modeladmin, request, profile, matrix)
    return _topic(modeladmin, request, profile, matrix)


def preferences_page(modeladmin: Any, request: HttpRequest, object_id: str) -> HttpResponse:
    """The staff page of one profile's subscriptions.

    GET needs the view permission on the profile; POST needs ``edit_preferences``
    too (403 otherwise). 404 when the profile does not exist or has no user.
    """
    profile = _profile_or_404(modeladmin, request, object_id)
    if not modeladmin.has_view_permission(request, profile):
        raise PermissionDenied
    can_edit = has_fyno_permission(request, "edit_preferences")
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied
        matrix = _post(modeladmin, request, profile)
    elif request.method in ("GET", "HEAD"):
        matrix = _load(request, profile)
    else:
        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    opts = modeladmin.model._meta
    request.current_app = modeladmin.admin_site.name
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": _("Subscriptions of %(user)s") % {"user": profile.user},
        "subtitle": None,
        "opts": opts,
        "app_label": opts.app_label,
        "original": profile,
        "profile_user": profile.user,
        "workspace": f"{profile.wsid} ({profile.version})" if profile.wsid else "",
        "matrix": matrix,
        "can_edit": can_edit,
        "readonly": not can_edit,
        "has_view_permission": True,
        "has_change_permission": modeladmin.has_change_permission(request, profile),
    }
    return TemplateResponse(request, TEMPLATE, context)


class PreferencesAdminMixin:
    """Adds ``<pk>/preferences/`` to a ModelAdmin of FynoProfile, and
    :meth:`preferences_link`, a read-only field linking to it."""

    def get_urls(self) -> list[URLPattern]:
        admin: Any = self
        info = (admin.model._meta.app_label, admin.model._meta.model_name)
        own = [
            path(
                "<path:object_id>/preferences/",
                admin.admin_site.admin_view(self.preferences_view),
                name="{}_{}_preferences".format(*info),
            )
        ]
        urls: list[URLPattern] = own + super().get_urls()  # type: ignore[misc]
        return urls

    def preferences_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return preferences_page(self, request, object_id)

    @display(description=gettext_lazy("subscriptions"))
    def preferences_link(self, obj: FynoProfile | None) -> str:
        """A link to the profile's subscriptions page (for ``readonly_fields``)."""
        if obj is None or obj.pk is None or obj.user_id is None:
            return "-"
        admin: Any = self
        return format_html(
            '<a href="{}">{}</a>',
            preferences_url(obj, admin.admin_site.name),
            _("Subscriptions"),
        )
