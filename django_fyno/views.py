"""Views of django-fyno. Thin: the decisions live in the domain modules.

- the delivery-report webhook (:class:`DeliveryReportWebhookView`), over
  :mod:`django_fyno.webhooks`;
- the end-user preference center, over :mod:`django_fyno.forms` (and through it
  :mod:`django_fyno.preferences`): the signed-in user's page
  (:class:`PreferencesView`), the same page behind a signed link
  (:class:`SignedPreferencesView`), the unsubscribe link with RFC 8058 one-click
  (:class:`UnsubscribeView`) and the JSON API (:class:`PreferencesAPIView`).

Whose preferences a view shows is decided by the session's user or by a signed
token checked with :mod:`django_fyno.links`, never by anything else the request
carries.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from django.contrib.auth.decorators import login_not_required, login_required
from django.core.exceptions import RequestDataTooBig
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotAllowed,
    JsonResponse,
)
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from django_fyno import links, webhooks
from django_fyno.clients import Workspace
from django_fyno.conf import fyno_settings
from django_fyno.forms import (
    InvalidChanges,
    PreferenceForm,
    UnsubscribeForm,
    matrix_as_json,
    read_json_changes,
)
from django_fyno.models import FynoProfile

__all__ = [
    "LINK_ERROR_TEMPLATE",
    "PREFERENCES_TEMPLATE",
    "SECRET_PLACEHOLDER",
    "UNSUBSCRIBE_TEMPLATE",
    "DeliveryReportWebhookView",
    "FynoWebhookView",
    "PreferencesAPIView",
    "PreferencesView",
    "SignedPreferencesView",
    "UnsubscribeView",
    "WebhookSecret",
]

logger = logging.getLogger(__name__)

# What Django's error handling sees in place of the webhook secret.
SECRET_PLACEHOLDER = "<secret>"  # noqa: S105 - a placeholder, not a secret


class WebhookSecret:
    """A webhook secret from the URL path, shown as ``<secret>`` by ``repr`` and ``str``.

    The ``fyno_secret`` path converter of :mod:`django_fyno.urls` hands the
    secret to the view as one of these, so the keyword arguments that every
    frame of a traceback holds (which Django's HTML error mail and error
    trackers show) do not reveal it. ``value`` is the secret itself.
    """

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return SECRET_PLACEHOLDER

    __str__ = __repr__


def _unlogged(response: HttpResponse) -> HttpResponse:
    # The request path may carry the webhook secret: stop Django's request logger
    # from writing "<status>: <path>" for this response (it was logged without the path).
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def _given_secret(request: HttpRequest, in_path: object) -> str | None:
    """The secret the request carries: in the path (``secret`` argument), else the header."""
    if isinstance(in_path, WebhookSecret):
        return in_path.value
    if in_path is not None:
        return str(in_path)  # a route of the project's own, with a plain converter
    return request.headers.get(webhooks.SECRET_HEADER)


def _mask_secret(request: HttpRequest, secret: str | None, *kwargs_dicts: Any) -> None:
    """Replace ``secret`` with ``<secret>`` in what Django's error handling reads of ``request``.

    That is ``path``, ``path_info``, every text of ``META`` (``PATH_INFO``, the
    server's ``REQUEST_URI``/``RAW_URI``, the secret header), ``headers``, the
    ASGI scope's path, and the URL keyword arguments (in ``resolver_match`` and
    ``kwargs_dicts``), so the ``django.request`` log line, the ADMINS mail,
    ``got_request_exception`` receivers and error trackers never see it.
    """
    if not secret:
        return
    forms = sorted({secret, quote(secret, safe="")}, key=len, reverse=True)

    def masked(text: str) -> str:
        for form in forms:
            text = text.replace(form, SECRET_PLACEHOLDER)
        return text

    request.path = masked(request.path)
    request.path_info = masked(request.path_info)
    meta = request.META
    for key, value in meta.items():
        if isinstance(value, str):
            meta[key] = masked(value)
    # A cached_property built from META: drop it so it is rebuilt from the masked one.
    request.__dict__.pop("headers", None)
    scope = getattr(request, "scope", None)
    if isinstance(scope, dict):
        if isinstance(scope.get("path"), str):
            scope["path"] = masked(scope["path"])
        if isinstance(scope.get("raw_path"), bytes):
            scope["raw_path"] = masked(scope["raw_path"].decode("latin-1")).encode("latin-1")
    match = request.resolver_match
    if match is not None:
        # captured_kwargs: the values the converters gave (Django >= 4.1).
        captured = getattr(match, "captured_kwargs", None) or {}
        kwargs_dicts = (match.kwargs, captured, *kwargs_dicts)
    for kwargs in kwargs_dicts:
        for key, value in kwargs.items():
            if isinstance(value, str) and value == secret:
                kwargs[key] = SECRET_PLACEHOLDER


# Fyno cannot log in: exempt from CSRF and from LoginRequiredMiddleware.
@method_decorator([csrf_exempt, login_not_required], name="dispatch")
class FynoWebhookView(View):
    """Base of Fyno's webhook views: the secret first, then Fyno's verification GET.

    The secret comes from the URL (a ``secret`` keyword argument, a
    :class:`WebhookSecret` or a string) or, on the route without it, the
    ``X-Fyno-Webhook-Secret`` header. Subclasses implement ``post``. A
    :class:`~django_fyno.webhooks.FynoWebhookRejected` raised anywhere becomes
    a short plain-text 400/403, logged at WARNING on
    ``django.security.<class name>`` without a traceback or the path. Any other
    exception goes to Django's handling (``got_request_exception``, the 500
    page, the ``django.request`` log, ADMINS mail) with the secret masked out
    of the request first. Exempt from CSRF and from ``LoginRequiredMiddleware``.
    """

    http_method_names = ("get", "post")

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        # A WebhookSecret on django-fyno's route: never unwrap it into a local
        # variable here, since tracebacks (HTML error mail, error trackers) show them.
        in_path = kwargs.pop("secret", None)
        try:
            webhooks.check_secret(_given_secret(request, in_path))
            return super().dispatch(request, *args, **kwargs)
        except webhooks.FynoWebhookRejected as rejection:
            return self.rejected(rejection)
        except Exception:
            # A bug or a database error: Django's handler reports it as for any
            # view, but everything it reports shows the request's path.
            _mask_secret(request, _given_secret(request, in_path), getattr(self, "kwargs", {}))
            raise

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


# -- the preference center -------------------------------------------------------------

PREFERENCES_TEMPLATE = "django_fyno/preferences.html"
UNSUBSCRIBE_TEMPLATE = "django_fyno/unsubscribe.html"
LINK_ERROR_TEMPLATE = "django_fyno/link_error.html"

# RFC 8058: the body of a mail client's one-click unsubscribe POST.
ONE_CLICK_FIELD, ONE_CLICK_VALUE = "List-Unsubscribe", "One-Click"
# The confirmation page's own button.
CONFIRM_FIELD = "confirm"


def _page(
    request: HttpRequest, template: str, context: dict[str, Any], status: int = 200
) -> TemplateResponse:
    """A preference-center page, inside the project's base template."""
    context = {"base_template": fyno_settings.PREFERENCE_BASE_TEMPLATE, **context}
    return TemplateResponse(request, template, context, status=status)


def _unreferred(response: HttpResponseBase) -> HttpResponseBase:
    # The URL of a signed page is a credential: no Referer header may carry it to
    # another site the host's base template links to. Not "no-referrer": browsers
    # then send "Origin: null" with the page's own form, which CSRF refuses.
    response["Referrer-Policy"] = "same-origin"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _preferences_page(
    request: HttpRequest, form: PreferenceForm, form_action: str | None
) -> TemplateResponse:
    """Show the form (GET) or save it and show Fyno's answer (POST): always a page,
    never a redirect, so nothing in the request can send the user elsewhere."""
    if request.method == "POST":
        form.save(request.POST)
    else:
        form.load()
    return _page(request, PREFERENCES_TEMPLATE, {"form": form, "form_action": form_action})


@method_decorator([never_cache, csrf_protect, login_required], name="dispatch")
class PreferencesView(View):
    """The signed-in user's own preferences (``django_fyno:preferences``).

    Anonymous users are sent to ``LOGIN_URL``. GET shows the matrix Fyno has;
    POST saves what changed and shows the page again.
    """

    http_method_names = ("get", "head", "post")

    def get(self, request: HttpRequest) -> HttpResponse:
        form = PreferenceForm.for_user(request.user)
        return _preferences_page(request, form, reverse("django_fyno:preferences"))

    post = get


def _link_error(request: HttpRequest, message: str, status: int) -> HttpResponseBase:
    """The page of a link that cannot be used: the same for every user and reason
    (but expiry), naming no one."""
    context = {"message": message}
    return _unreferred(_page(request, LINK_ERROR_TEMPLATE, context, status=status))


# A profile Fyno is deleting, or has deleted: its links open nothing any more.
_GONE = frozenset({str(FynoProfile.State.DELETING), str(FynoProfile.State.DELETED)})


def _linked_profile(target: links.LinkTarget) -> FynoProfile | None:
    """The profile a token names, if it still exists with a user, in the token's
    workspace."""
    profile: FynoProfile | None = FynoProfile.objects.filter(distinct_id=target.distinct_id).first()
    if profile is None or profile.user_id is None or profile.state in _GONE:
        return None
    return profile if target.matches(profile) else None


class _SignedLinkView(View):
    """Base of the views a signed token opens: the token is checked, and the profile
    it names found, before any handler runs (which get them as ``target`` and
    ``profile``)."""

    read_token = staticmethod(links.read_preferences_token)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            target = self.read_token(kwargs.pop("token", None))
        except links.ExpiredLink:
            message = _("This link has expired. Use the link in a more recent message.")
            return _link_error(request, message, 400)
        except links.InvalidLink:
            return _link_error(request, _("This link is not valid."), 400)
        profile = _linked_profile(target)
        if profile is None:
            return _link_error(request, _("This link is not valid."), 404)
        return _unreferred(super().dispatch(request, target=target, profile=profile))


@method_decorator([never_cache, csrf_protect, login_not_required], name="dispatch")
class SignedPreferencesView(_SignedLinkView):
    """The preferences of the profile a signed link names (``django_fyno:preferences_signed``),
    with no login. The form keeps Django's CSRF protection."""

    http_method_names = ("get", "head", "post")

    def get(
        self, request: HttpRequest, target: links.LinkTarget, profile: FynoProfile
    ) -> HttpResponse:
        # No action: the form posts back to this same signed URL.
        return _preferences_page(request, PreferenceForm(profile), None)

    post = get


def _signed_preferences_url(target: links.LinkTarget, profile: FynoProfile) -> str:
    token = links.preferences_token(target.distinct_id, Workspace.of(profile))
    return reverse("django_fyno:preferences_signed", kwargs={"token": token})


# A mail client's one-click POST carries no CSRF token: the signed token authorises it.
@method_decorator([never_cache, csrf_exempt, login_not_required], name="dispatch")
class UnsubscribeView(_SignedLinkView):
    """A signed unsubscribe link, for one topic or everything (``django_fyno:unsubscribe``).

    GET (and HEAD) shows a confirmation page and changes nothing: mail scanners
    follow links. POST unsubscribes: the page's button (``confirm``) or a mail
    client's RFC 8058 one-click POST (``List-Unsubscribe=One-Click``). Answers 200
    once unsubscribed (again and again), 400 to any other POST, 503 when Fyno
    cannot be reached.
    """

    http_method_names = ("get", "head", "post")
    read_token = staticmethod(links.read_unsubscribe_token)

    def _render(
        self,
        request: HttpRequest,
        form: UnsubscribeForm,
        target: links.LinkTarget,
        profile: FynoProfile,
        *,
        step: str,
        status: int = 200,
    ) -> HttpResponse:
        context = {
            "form": form,
            "step": step,
            "preferences_url": _signed_preferences_url(target, profile),
        }
        return _page(request, UNSUBSCRIBE_TEMPLATE, context, status=status)

    def get(
        self, request: HttpRequest, target: links.LinkTarget, profile: FynoProfile
    ) -> HttpResponse:
        form = UnsubscribeForm(profile, target.topic)
        form.load()  # only to name the topic: a read, never a change
        return self._render(request, form, target, profile, step="confirm")

    def post(
        self, request: HttpRequest, target: links.LinkTarget, profile: FynoProfile
    ) -> HttpResponse:
        form = UnsubscribeForm(profile, target.topic)
        one_click = request.POST.get(ONE_CLICK_FIELD) == ONE_CLICK_VALUE
        if not (one_click or request.POST.get(CONFIRM_FIELD)):
            form.load()
            return self._render(request, form, target, profile, step="invalid", status=400)
        if form.save():
            return self._render(request, form, target, profile, step="done")
        return self._render(request, form, target, profile, step="failed", status=503)


def _json_error(message: str, status: int, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


@method_decorator([never_cache, csrf_protect, login_not_required], name="dispatch")
class PreferencesAPIView(View):
    """The signed-in user's preferences as JSON (``django_fyno:preferences_api``).

    GET answers the matrix; PUT (or POST) a JSON body of changes saves only what
    changed and answers the new matrix. Session-authenticated (anonymous: 403),
    CSRF-protected (send ``X-CSRFToken``). Errors are JSON ``{"error": ...}``:
    400 for a body that is not a valid change, 404 while the user has no
    preferences in Fyno, 415 for a body that is not JSON, 502/503 when Fyno fails.
    """

    http_method_names = ("get", "head", "put", "post")

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_authenticated:
            return _json_error(_("Sign in to manage your notification preferences."), 403)
        return super().dispatch(request, *args, **kwargs)

    def http_method_not_allowed(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        response = _json_error(_("This method is not allowed."), 405)
        response["Allow"] = "GET, HEAD, PUT, POST"
        return response

    def get(self, request: HttpRequest) -> HttpResponse:
        form = PreferenceForm.for_user(request.user)
        form.load()
        return self._answer(form, saving=False)

    def put(self, request: HttpRequest) -> HttpResponse:
        if request.content_type != "application/json":
            return _json_error(_("Send the changes as application/json."), 415)
        try:
            wanted = read_json_changes(request.body)
        except RequestDataTooBig:
            return _json_error(_("The body is too large."), 413)
        except InvalidChanges as error:
            return _json_error(str(error), 400)
        form = PreferenceForm.for_user(request.user)
        form.save_wanted(wanted, None)
        return self._answer(form, saving=True)

    post = put

    def _answer(self, form: PreferenceForm, *, saving: bool) -> HttpResponse:
        if form.fyno_failed:
            status = 503 if form.fyno_transient else 502
            if not saving:
                message = _(
                    "Your notification preferences cannot be loaded right now. "
                    "Please try again in a few minutes."
                )
                return _json_error(message, status)
            if form.saved:
                message = _("Your changes were saved, but they cannot be read back right now.")
            else:
                # After a timeout Fyno may have applied the change: "may not".
                message = _(
                    "Your notification preferences cannot be reached right now, so your "
                    "changes may not have been saved. Please try again in a few minutes."
                )
            return _json_error(message, status, saved=form.saved)
        if form.problems:
            problems = [problem.text for problem in form.problems]
            return _json_error(_("Nothing was saved."), 400, problems=problems)
        if form.matrix is None:
            return _json_error(form.unavailable, 404)
        return JsonResponse(matrix_as_json(form.matrix))
