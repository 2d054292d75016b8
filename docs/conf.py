"""Sphinx configuration of django-fyno's documentation.

Build it with warnings as errors, as CI does::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# autodoc imports django_fyno's modules, some of which need Django set up. Minimal
# settings are enough: nothing here touches a database or the network.
import django  # noqa: E402
from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "django_fyno"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        SECRET_KEY="django-fyno-documentation-build",  # noqa: S106 - signs nothing
        USE_TZ=True,
        FYNO={"ENABLED": False},
    )
django.setup()

import django_fyno  # noqa: E402

project = "django-fyno"
author = "django-fyno contributors"
copyright = "django-fyno contributors"
release = django_fyno.__version__
version = release

extensions = ["myst_parser", "sphinx.ext.autodoc"]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# Links such as settings.md#client_resolver: an anchor for every heading down to ###.
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}
# Type hints name Django and requests classes; without intersphinx (the build is
# offline) they cannot be links, and that is not worth a warning each.
nitpicky = False

html_theme = "furo"
html_title = f"django-fyno {release}"
html_static_path = ["_static"]
