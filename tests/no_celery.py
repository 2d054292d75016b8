"""A pytest plugin that makes Celery impossible to import (``-p tests.no_celery``).

It stands in for an environment where django-fyno was installed without its
``celery`` extra: tests/test_without_celery.py runs part of the suite under it,
and tox's ``nocelery`` env runs the suite with Celery really uninstalled.
"""

from __future__ import annotations

import sys

for _name in [name for name in sys.modules if name == "celery" or name.startswith("celery.")]:
    del sys.modules[_name]
# A None entry makes `import celery` raise ModuleNotFoundError and
# importlib.util.find_spec("celery") answer None, as if it were not installed.
sys.modules["celery"] = None  # type: ignore[assignment]
