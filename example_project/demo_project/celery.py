"""The demo's Celery app: every CELERY_* setting configures it.

Without CELERY_BROKER_URL the settings make it eager (tasks run in the process
that sends them); with a broker, run a worker beside the server:

    celery -A demo_project worker -B -l info
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_project.settings")

app = Celery("demo_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
