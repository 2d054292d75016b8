"""Every exception django-fyno raises, importable from one place."""

from django_fyno.client.exceptions import *  # noqa: F403
from django_fyno.client.exceptions import __all__  # noqa: F401
