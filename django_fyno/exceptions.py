"""Every exception django-fyno raises, importable from one place.

The client's hierarchy (pure Python) plus the errors of the Django layer: a
vetoed sync and rejected webhook requests.
"""

from django.core.exceptions import SuspiciousOperation

from django_fyno.client.exceptions import *  # noqa: F403
from django_fyno.client.exceptions import FynoError
from django_fyno.client.exceptions import __all__ as _client_all

__all__ = [
    *_client_all,
    "FynoWebhookBadRequest",
    "FynoWebhookForbidden",
    "FynoWebhookRejected",
    "SyncVetoed",
    "error_text",
]

#: Longest error message stored on a row (``last_error``).
MAX_ERROR_LENGTH = 2000


def error_text(error: BaseException, prefix: str = "") -> str:
    """An error as stored on a row. FynoError messages carry Fyno's answer and the
    path template, never the API key."""
    text = f"{prefix}{error}"[:MAX_ERROR_LENGTH]
    # Fyno's words, stored in a text column: PostgreSQL refuses NUL, and a lone
    # surrogate is not UTF-8.
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


class SyncVetoed(FynoError):
    """Raised by a ``pre_profile_sync`` receiver to skip one sync."""


class FynoWebhookRejected(FynoError, SuspiciousOperation):
    """A webhook request we refuse. Never carries the secret in its message."""

    status_code = 400


class FynoWebhookForbidden(FynoWebhookRejected):
    """The secret is missing or wrong, or none is configured: HTTP 403."""

    status_code = 403


class FynoWebhookBadRequest(FynoWebhookRejected):
    """The request is authenticated but unusable (bad JSON, unknown custom_id…): HTTP 400."""

    status_code = 400
