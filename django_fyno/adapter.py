"""ProfileAdapter: how a project's user model maps to a Fyno profile.

Subclass it and name the subclass in ``FYNO["PROFILE_ADAPTER"]`` (like
django-allauth's adapters); :func:`get_adapter` resolves it when used.

(Interface first; normalisation of invalid values lands next.)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.utils.module_loading import import_string

from django_fyno.conf import fyno_settings

__all__ = ["ProfileAdapter", "ProfilePayload", "get_adapter"]


@dataclass(frozen=True)
class ProfilePayload:
    """Everything we tell Fyno about one user, already normalised.

    ``channels`` holds single-destination channels only (email, sms, whatsapp,
    voice, slack, teams, discord): push/inapp tokens belong to Fyno's SDKs.
    """

    distinct_id: str
    name: str | None = None
    timezone: str | None = None
    status: int = 1
    channels: dict[str, str] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)

    def digest(self) -> str:
        """sha256 of the canonical JSON: equal payloads, equal digests."""
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()


class ProfileAdapter:
    """The default mapping; override any method in a subclass."""

    def get_distinct_id(self, user: Any) -> str:
        return str(user.pk)

    def should_sync(self, user: Any) -> bool:
        return True

    def get_name(self, user: Any) -> str | None:
        full_name = getattr(user, "get_full_name", None)
        name = full_name() if callable(full_name) else ""
        return name.strip() or None

    def get_channels(self, user: Any) -> dict[str, str]:
        channels: dict[str, str] = {}
        email = getattr(user, user.get_email_field_name(), "") or ""
        if email:
            channels["email"] = email
        phone_attribute = fyno_settings.PHONE_ATTRIBUTE
        phone = getattr(user, phone_attribute, "") if phone_attribute else ""
        if phone:
            channels.update(sms=phone, whatsapp=phone, voice=phone)
        return channels

    def get_timezone(self, user: Any) -> str | None:
        return None

    def get_status(self, user: Any) -> int:
        return 1 if getattr(user, "is_active", True) else 0

    def get_properties(self, user: Any) -> dict[str, Any]:
        return {}

    def get_sync_fields(self) -> frozenset[str]:
        """Model fields whose change matters; a save touching none of them is ignored."""
        user_model = get_user_model()
        names = {user_model.get_email_field_name(), "first_name", "last_name", "is_active"}
        if fyno_settings.PHONE_ATTRIBUTE:
            names.add(fyno_settings.PHONE_ATTRIBUTE)
        return frozenset(names)

    def build_payload(self, user: Any) -> ProfilePayload:
        return ProfilePayload(
            distinct_id=self.get_distinct_id(user),
            name=self.get_name(user),
            timezone=self.get_timezone(user),
            status=self.get_status(user),
            channels=self.get_channels(user),
            properties=self.get_properties(user),
        )


def get_adapter() -> ProfileAdapter:
    """An instance of the adapter named in ``FYNO["PROFILE_ADAPTER"]``."""
    adapter_class = import_string(fyno_settings.PROFILE_ADAPTER)
    adapter: ProfileAdapter = adapter_class()
    return adapter
