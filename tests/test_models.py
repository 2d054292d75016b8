"""The profile mirror and its migrations."""

from __future__ import annotations

from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import override_settings

from django_fyno.models import FynoProfile


@pytest.mark.django_db
def test_migrations_match_the_models() -> None:
    out = StringIO()
    # --check exits non-zero (SystemExit) when a migration is missing.
    call_command("makemigrations", "django_fyno", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db
def test_profile_row_outlives_its_user() -> None:
    # TASK_MODE "off": the row is queued for deletion, nothing is sent.
    with override_settings(FYNO={**settings.FYNO, "TASK_MODE": "off"}):
        user = get_user_model().objects.create(username="ada")
        distinct_id = str(user.pk)
        FynoProfile.objects.filter(user=user).update(distinct_id=distinct_id)
        user.delete()
    profile = FynoProfile.objects.get()
    assert profile.user is None
    assert profile.distinct_id == distinct_id
    assert profile.state == FynoProfile.State.DELETING
    assert str(profile) == f"{profile.distinct_id} (deleting)"
