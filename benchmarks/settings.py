"""Django settings for the benchmarks (not the test suite's).

DATABASE_URL picks the database (default: SQLite in memory for notify_path,
and the outbox throughput benchmark requires PostgreSQL). FYNO_* environment
variables point the app at an emulator.
"""

import os

import environ

SECRET_KEY = "django-fyno-benchmarks-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "django_fyno"]
DATABASES = {
    "default": environ.Env.db_url_config(os.environ.get("DATABASE_URL", "sqlite:///:memory:"))
}
FYNO = {
    "WSID": os.environ.get("FYNO_WSID", "FYBENCH"),
    "API_KEY": os.environ.get("FYNO_API_KEY", "bench-key"),
    "VERSION": "test",
    "ENDPOINT": os.environ.get("FYNO_ENDPOINT", "http://127.0.0.1:9/v1"),
    "TASK_MODE": os.environ.get("FYNO_TASK_MODE", "celery"),
    "OUTBOX_BULK_SIZE": int(os.environ.get("FYNO_OUTBOX_BULK_SIZE", "100")),
    "OUTBOX_CONCURRENCY": int(os.environ.get("FYNO_OUTBOX_CONCURRENCY", "1")),
    "CELERY_QUEUE": os.environ.get("FYNO_CELERY_QUEUE") or None,
    # Leave retries to the outbox, as docs/outbox.md recommends.
    "RETRY": {"MAX_ATTEMPTS": 1},
}
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "memory://")
CELERY_TASK_IGNORE_RESULT = True
# One drain request per worker at a time: a worker must not hold another's.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
LOGGING_CONFIG = None
