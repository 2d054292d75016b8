"""The demo's users: Django's own, with a phone number and a timezone."""

import zoneinfo

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models


def validate_timezone(name: str) -> None:
    # Checked against this machine's tz database, not stored as choices: the list
    # differs between machines and would make migrations flap.
    if name not in zoneinfo.available_timezones():
        raise ValidationError(f"{name!r} is not a time zone name such as Europe/Paris.")


class User(AbstractUser):
    phone = models.CharField(
        "phone number",
        max_length=16,
        blank=True,
        validators=[RegexValidator(r"^\+[1-9]\d{6,14}$", "Use the E.164 form, e.g. +14155550123.")],
        help_text="E.164, e.g. +14155550123: SMS and WhatsApp go there.",
    )
    timezone = models.CharField(
        max_length=64, default="UTC", validators=[validate_timezone], help_text="e.g. Europe/Paris"
    )
