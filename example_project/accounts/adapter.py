"""How a demo user becomes a Fyno profile: the default mapping, plus phone and timezone."""

from typing import Any

from django_fyno.adapter import ProfileAdapter


class DemoProfileAdapter(ProfileAdapter):
    # The fields whose change resyncs the profile (a save touching only
    # last_login, say, sends nothing).
    sync_fields = ("email", "first_name", "last_name", "is_active", "phone", "timezone")

    def get_channels(self, user: Any) -> dict[str, str]:
        channels = super().get_channels(user)
        if user.phone:
            channels.update(sms=user.phone, whatsapp=user.phone)
        return channels

    def get_timezone(self, user: Any) -> str | None:
        return user.timezone or None
