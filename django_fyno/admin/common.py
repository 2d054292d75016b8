"""What every part of the Fyno admin shares: permissions, and Fyno's errors as messages."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.contrib import messages
from django.http import HttpRequest
from django.utils.functional import Promise

from django_fyno.exceptions import FynoError, error_text

__all__ = ["PERMISSIONS", "fyno_errors_as_messages", "has_fyno_permission"]

#: django-fyno's own permissions (codenames of app ``django_fyno``).
PERMISSIONS = (
    "sync_profiles",
    "manage_suppressions",
    "edit_preferences",
    "manage_outbox",
    "view_health",
)


def has_fyno_permission(request: HttpRequest, codename: str) -> bool:
    """Whether the request's user holds ``django_fyno.<codename>``."""
    if codename not in PERMISSIONS:
        raise ValueError(f"django-fyno has no permission {codename!r}")
    user: Any = request.user
    return bool(user.is_active and user.has_perm(f"django_fyno.{codename}"))


@contextmanager
def fyno_errors_as_messages(request: HttpRequest, what: str | Promise) -> Iterator[None]:
    """Turn a FynoError inside the block into an admin error message ("<what>: <Fyno's
    answer>") instead of a 500. Never shows the API key (FynoError messages hold none)."""
    try:
        yield
    except FynoError as error:
        messages.error(request, f"{what}: {error_text(error)}")
