"""Settings of the demo project, read from the environment or from ``.env``.

``.env.example`` lists every variable. With none set, the demo runs offline: the
bundled Fyno emulator (started by ``demo.py``), SQLite, and Celery in eager mode.
Set ``FYNO_API_KEY`` (with ``FYNO_WSID``) to talk to your real Fyno workspace, and
``CELERY_BROKER_URL`` to send the work to real Celery workers.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")  # if present; the environment wins

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env("SECRET_KEY", default="demo-only-not-secret-change-me")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
# Where the demo is served: signed links in emails and events start with it.
SITE_URL = env("SITE_URL", default="http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_fyno",
    "accounts",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo_project.urls"
WSGI_APPLICATION = "demo_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "demo.context.fyno_target",
            ]
        },
    }
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]

# -- Fyno ------------------------------------------------------------------------------
# No API key: the bundled emulator, which demo.py starts on EMULATOR_PORT.
EMULATOR_PORT = env.int("EMULATOR_PORT", default=8765)
USES_EMULATOR = not env("FYNO_API_KEY", default="")

EMULATOR_ENDPOINT = f"http://127.0.0.1:{EMULATOR_PORT}/v1"

FYNO = {
    # An empty variable counts as unset.
    "WSID": env("FYNO_WSID", default="") or "FYDEMO",
    "API_KEY": env("FYNO_API_KEY", default="") or "demo-api-key",
    "VERSION": env("FYNO_VERSION", default="") or "test",
    "ENDPOINT": env("FYNO_ENDPOINT", default="")
    or (EMULATOR_ENDPOINT if USES_EMULATOR else "https://api.fyno.io/v1"),
    # The demo's ProfileAdapter: phone number and timezone go to Fyno too.
    "PROFILE_ADAPTER": "accounts.adapter.DemoProfileAdapter",
    # The delivery-report webhook is /fyno/webhooks/<secret>/ (demo.py registers it).
    "WEBHOOK_SECRET": env("FYNO_WEBHOOK_SECRET", default="demo-webhook-secret-change-me"),
    # The preference center sits inside the demo's own layout.
    "PREFERENCE_BASE_TEMPLATE": "base.html",
    "SITE_URL": SITE_URL,
    # Each event's data carries the recipient's unsubscribe and preference links.
    "ADD_LINKS_TO_EVENTS": True,
}

# -- Celery ----------------------------------------------------------------------------
# No broker: eager mode, the tasks run in the process that sends them (after the
# commit). With one: `celery -A demo_project worker -B -l info` runs them.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_BEAT_SCHEDULE = {
    "django-fyno-sweep": {"task": "django_fyno.sweep", "schedule": 60.0},
    "django-fyno-sweep-outbox": {"task": "django_fyno.sweep_outbox", "schedule": 60.0},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_fyno": {"handlers": ["console"], "level": "INFO"}},
}
