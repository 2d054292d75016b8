"""Signed links for end users: their preference page, and unsubscribe, with no login.

A link carries a token made with Django's signing framework (``SECRET_KEY``, a salt of
its own per kind of link, a timestamp). The token names the Fyno profile it is for
by its distinct id **and** its workspace (WSID and version), so a link made for one
tenant's profile is worthless in another's, and it expires after
``PREFERENCE_LINK_MAX_AGE`` seconds. It holds no personal data beyond the distinct id.

- :func:`preferences_url` / :func:`unsubscribe_url` build absolute URLs for a user
  (from a ``request``, or from ``SITE_URL`` without one);
- :func:`list_unsubscribe_headers` gives the RFC 2369 / RFC 8058 headers of an email;
- :func:`links_for` gives both URLs for a distinct id and workspace already known
  (``notify()`` uses it: no query);
- :func:`read_preferences_token` / :func:`read_unsubscribe_token` check a token
  and return its :class:`LinkTarget`, or raise :class:`InvalidLink`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core import signing
from django.http import HttpRequest
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from django_fyno.adapter import get_adapter
from django_fyno.client import validation as check
from django_fyno.clients import Workspace, workspace_for
from django_fyno.conf import fyno_settings
from django_fyno.exceptions import FynoConfigurationError, FynoError

__all__ = [
    "PREFERENCES_SALT",
    "UNSUBSCRIBE_SALT",
    "ExpiredLink",
    "InvalidLink",
    "LinkTarget",
    "absolute_url",
    "links_for",
    "list_unsubscribe_headers",
    "preferences_token",
    "preferences_url",
    "read_preferences_token",
    "read_unsubscribe_token",
    "unsubscribe_token",
    "unsubscribe_url",
]

# One salt per kind of link: a preference token is no unsubscribe token, and neither
# is valid anywhere else SECRET_KEY signs.
PREFERENCES_SALT = "django_fyno.links.preferences"
UNSUBSCRIBE_SALT = "django_fyno.links.unsubscribe"


class InvalidLink(FynoError):
    """A token that is tampered with, truncated, of another kind, or otherwise unusable.

    Its message is safe to show: it says nothing about whose link it was.
    """


class ExpiredLink(InvalidLink):
    """A genuine token older than ``PREFERENCE_LINK_MAX_AGE``."""


@dataclass(frozen=True)
class LinkTarget:
    """Whose preferences a valid token opens, in which workspace, and for what.

    ``topic`` is the subscription id of a one-topic unsubscribe link; ``None`` for a
    preference link, or an unsubscribe link for everything.
    """

    distinct_id: str
    wsid: str
    version: str
    topic: str | None = None

    def matches(self, row: Any) -> bool:
        """Whether a row (a FynoProfile) is this profile in this workspace."""
        return bool(
            row.distinct_id == self.distinct_id
            and row.wsid == self.wsid
            and row.version == self.version
        )


def _dumps(target: LinkTarget, salt: str) -> str:
    body: dict[str, str] = {
        "d": target.distinct_id,
        "w": target.wsid,
        "v": target.version,
    }
    if target.topic is not None:
        body["t"] = target.topic
    return signing.dumps(body, salt=salt, compress=True)


def _loads(token: Any, salt: str) -> LinkTarget:
    if not isinstance(token, str) or not token or len(token) > 2048:
        raise InvalidLink(str(_("This link is not valid.")))
    try:
        body = signing.loads(token, salt=salt, max_age=fyno_settings.PREFERENCE_LINK_MAX_AGE)
    except signing.SignatureExpired:
        raise ExpiredLink(str(_("This link has expired."))) from None
    except (signing.BadSignature, ValueError, UnicodeError):
        raise InvalidLink(str(_("This link is not valid."))) from None
    # Signed by us, so well formed; checked all the same (an old or foreign format).
    if not isinstance(body, dict):
        raise InvalidLink(str(_("This link is not valid.")))
    distinct_id, wsid, version, topic = (body.get(name) for name in ("d", "w", "v", "t"))
    if not (
        isinstance(distinct_id, str)
        and distinct_id
        and isinstance(wsid, str)
        and wsid
        and isinstance(version, str)
        and version
        and (topic is None or (isinstance(topic, str) and topic))
    ):
        raise InvalidLink(str(_("This link is not valid.")))
    return LinkTarget(distinct_id, wsid, version, topic)


def _target(distinct_id: str, workspace: Workspace, topic: str | None = None) -> LinkTarget:
    distinct_id = check.check_distinct_id(distinct_id)
    if topic is not None:
        topic = check.check_text(topic, "topic")
        if not topic:
            raise FynoConfigurationError("topic must be a subscription id, or None")
    return LinkTarget(distinct_id, workspace.wsid, workspace.version, topic)


def preferences_token(distinct_id: str, workspace: Workspace) -> str:
    """A signed token for the preference page of ``distinct_id`` in ``workspace``."""
    return _dumps(_target(distinct_id, workspace), PREFERENCES_SALT)


def unsubscribe_token(distinct_id: str, workspace: Workspace, topic: str | None = None) -> str:
    """A signed token unsubscribing ``distinct_id`` from ``topic`` (None: everything)."""
    return _dumps(_target(distinct_id, workspace, topic), UNSUBSCRIBE_SALT)


def read_preferences_token(token: Any) -> LinkTarget:
    """The target of a preference-page token; raises :class:`InvalidLink` otherwise."""
    return _loads(token, PREFERENCES_SALT)


def read_unsubscribe_token(token: Any) -> LinkTarget:
    """The target of an unsubscribe token; raises :class:`InvalidLink` otherwise."""
    return _loads(token, UNSUBSCRIBE_SALT)


def absolute_url(path: str, request: HttpRequest | None = None) -> str:
    """``path`` made absolute: on the request's host, else on ``SITE_URL``.

    Raises :class:`FynoConfigurationError` when there is neither.
    """
    if request is not None:
        return request.build_absolute_uri(path)
    site = fyno_settings.SITE_URL
    if not site:
        raise FynoConfigurationError(
            "FYNO['SITE_URL'] is needed for links made without a request "
            "(set it to your site's base URL, e.g. 'https://example.com')"
        )
    return site + path


def _user_target(user: Any) -> tuple[str, Workspace]:
    return get_adapter().checked_distinct_id(user), workspace_for(user)


def links_for(
    distinct_id: str, workspace: Workspace, *, request: HttpRequest | None = None
) -> dict[str, str]:
    """``unsubscribe_url`` (everything) and ``preferences_url`` for a known profile."""
    unsubscribe = reverse(
        "django_fyno:unsubscribe", kwargs={"token": unsubscribe_token(distinct_id, workspace)}
    )
    preferences = reverse(
        "django_fyno:preferences_signed",
        kwargs={"token": preferences_token(distinct_id, workspace)},
    )
    return {
        "unsubscribe_url": absolute_url(unsubscribe, request),
        "preferences_url": absolute_url(preferences, request),
    }


def preferences_url(user: Any, *, request: HttpRequest | None = None) -> str:
    """The absolute, signed URL of ``user``'s preference page (no login needed)."""
    distinct_id, workspace = _user_target(user)
    token = preferences_token(distinct_id, workspace)
    return absolute_url(reverse("django_fyno:preferences_signed", kwargs={"token": token}), request)


def unsubscribe_url(
    user: Any, topic: str | None = None, *, request: HttpRequest | None = None
) -> str:
    """The absolute, signed URL unsubscribing ``user`` from ``topic`` (None: everything).

    ``topic`` is a Fyno subscription (topic) id. Following the link shows a
    confirmation page; only the POST (the page's button, or an RFC 8058 one-click
    POST from a mail client) unsubscribes.
    """
    distinct_id, workspace = _user_target(user)
    token = unsubscribe_token(distinct_id, workspace, topic)
    return absolute_url(reverse("django_fyno:unsubscribe", kwargs={"token": token}), request)


def list_unsubscribe_headers(
    user: Any, topic: str | None = None, *, request: HttpRequest | None = None
) -> dict[str, str]:
    """The ``List-Unsubscribe`` and ``List-Unsubscribe-Post`` headers of an email.

    RFC 8058: a mail client's one-click unsubscribe POSTs
    ``List-Unsubscribe=One-Click`` to the URL, which unsubscribes at once.
    """
    return {
        "List-Unsubscribe": f"<{unsubscribe_url(user, topic, request=request)}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
