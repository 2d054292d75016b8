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
}
