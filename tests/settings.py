"""Settings for django-fyno's own test suite.

SQLite by default; PostgreSQL (or any database) when DATABASE_URL is set.

Two runs of the suite at once on one machine (a developer's and CI's) must not
share a test database or Redis keys: each run has an id, ``FYNO_TEST_RUN_ID``
(random unless set; the processes a run starts inherit it), in the name of its
test database and in the prefix of its Celery broker's keys.
"""

import os
import secrets

import environ

SECRET_KEY = "django-fyno-tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # The admin's CSS in live_server (tests/test_admin_screenshots.py).
    "django.contrib.staticfiles",
    "django_fyno",
    "tests.testapp",
]

# The admin's needs (tests of the staff face use the URLconf tests.admin_urls).
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "/static/"

# Set in the environment, so this run's subprocesses (they import these settings) share
# it. A test that starts another run of the suite on PostgreSQL leaves it out of that
# run's environment (tests/test_isolation.py does), or both would use one database.
TEST_RUN_ID = os.environ.setdefault("FYNO_TEST_RUN_ID", secrets.token_hex(4))

DATABASES = {
    "default": environ.Env.db_url_config(
        os.environ.get("DATABASE_URL", "sqlite:///:memory:"),
    )
}
if "sqlite" not in DATABASES["default"]["ENGINE"]:
    # pytest-django creates it and drops it at the end of the run (unless --reuse-db).
    # PostgreSQL keeps 63 characters of a name: shorten the base, never the run id.
    _base = DATABASES["default"]["NAME"][:40]
    DATABASES["default"]["TEST"] = {"NAME": f"test_{_base}_{TEST_RUN_ID}"}
# SQLite tests run on an in-memory database of their own process: nothing to share.

LOGGING_CONFIG = None

# The emulator's default credentials: the suite never talks to the real Fyno.
FYNO = {
    "WSID": "FYTEST",
    "API_KEY": "test-api-key",
    "VERSION": "test",
    # Sync runs in-process after commit unless a test overrides it.
    "TASK_MODE": "inline",
}

# Celery: a real broker for the end-to-end tests that use the celery_worker_on_redis
# fixture. Nothing connects to it unless a test sends a task or starts that worker.
# No result backend: django-fyno's tasks ignore results; tests check their effects.
CELERY_BROKER_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
# Every key (queues, bindings, fan-out channels) under this run's prefix: another
# run on the same Redis database neither takes this run's tasks nor purges them.
CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": f"fyno-test-{TEST_RUN_ID}:"}
CELERY_TASK_ALWAYS_EAGER = False
# Fail fast when Redis is down instead of retrying for minutes.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = False
CELERY_BROKER_CONNECTION_TIMEOUT = 2
# pytest owns logging in the test process.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
