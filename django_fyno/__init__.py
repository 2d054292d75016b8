"""django-fyno: connect a Django project to Fyno.

The public API is importable from here (``from django_fyno import notify``).
It is loaded on first use, so importing ``django_fyno`` (as settings files,
the pytest plugin and the pure-Python client do) never imports Django models.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

# Public name -> the module defining it. The module is not called "notify": a
# submodule of that name would replace the function as the package's attribute.
_LAZY = {
    "notify": "django_fyno.notifications",
    "properties": "django_fyno.notifications",
    "verify_otp": "django_fyno.notifications",
    "PropertyUpdates": "django_fyno.notifications",
    "list_unsubscribe_headers": "django_fyno.links",
    "preferences_url": "django_fyno.links",
    "unsubscribe_url": "django_fyno.links",
}

__all__ = [
    "PropertyUpdates",
    "__version__",
    "list_unsubscribe_headers",
    "notify",
    "preferences_url",
    "properties",
    "unsubscribe_url",
    "verify_otp",
]

if TYPE_CHECKING:
    from django_fyno.links import list_unsubscribe_headers, preferences_url, unsubscribe_url
    from django_fyno.notifications import PropertyUpdates, notify, properties, verify_otp


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
