"""Settings for django-fyno's own test suite.

SQLite by default; PostgreSQL (or any database) when DATABASE_URL is set.
"""

import os

import environ

SECRET_KEY = "django-fyno-tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django_fyno",
    "tests.testapp",
]

DATABASES = {
    "default": environ.Env.db_url_config(
        os.environ.get("DATABASE_URL", "sqlite:///:memory:"),
    )
}

LOGGING_CONFIG = None

# The emulator's default credentials: the suite never talks to the real Fyno.
FYNO = {
    "WSID": "FYTEST",
    "API_KEY": "test-api-key",
    "VERSION": "test",
    # Sync runs in-process after commit unless a test overrides it.
    "TASK_MODE": "on_commit",
}

# Celery: a real broker for the end-to-end tests that use the celery_worker_on_redis
# fixture. Nothing connects to it unless a test sends a task or starts that worker.
# No result backend: django-fyno's tasks ignore results; tests check their effects.
CELERY_BROKER_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
CELERY_TASK_ALWAYS_EAGER = False
# Fail fast when Redis is down instead of retrying for minutes.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = False
CELERY_BROKER_CONNECTION_TIMEOUT = 2
# pytest owns logging in the test process.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
