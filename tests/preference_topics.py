"""Preference topics for the tests of the preference pages, staff and end user alike.

Fyno's topics name every channel in their ``channel_config``; :func:`config` writes
one that way, with the channels not given ``off``.
"""

from __future__ import annotations

from typing import Any

OUT, IN = "opted-out", "opted-in"
EVERY = (
    "sms",
    "whatsapp",
    "email",
    "push",
    "inapp",
    "webpush",
    "slack",
    "discord",
    "teams",
    "voice",
)


def config(**channels: str) -> dict[str, str]:
    """A channel_config naming every channel: the given ones, the others off."""
    return {channel: channels.get(channel, "off") for channel in EVERY}


# Two sections: a newsletter (email and SMS on) and security alerts (email required).
SECTIONS: dict[str, list[dict[str, Any]]] = {
    "Marketing": [
        {
            "subscription_id": "SNEWS",
            "name": "Newsletter",
            "description": "Monthly news.",
            "channel_config": config(email="on", sms="on"),
            "notification_events": [{"event_id": "ENEWS", "event_name": "newsletter"}],
        }
    ],
    "Account": [
        {
            "subscription_id": "SSECURITY",
            "name": "Security",
            "description": "Sign-in alerts.",
            "channel_config": config(email="required", sms="on", push="on"),
            "notification_events": ["login_otp"],
        }
    ],
}
