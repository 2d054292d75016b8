"""Preference topics, and a form read as a browser submits it, for the tests of the
preference pages, staff and end user alike.

Fyno's topics name every channel in their ``channel_config``; :func:`config` writes
one that way, with the channels not given ``off``.
"""

from __future__ import annotations

from html.parser import HTMLParser
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


class Form(HTMLParser):
    """The inputs of one <form id=...> of a page, as a browser would submit them."""

    def __init__(self, html: str, form_id: str = "fyno-pref-form") -> None:
        super().__init__()
        self.form_id = form_id
        self.inside = False
        self.found = False
        self.action: str | None = None
        self.fields: list[tuple[str, str]] = []
        self.checkboxes: dict[str, dict[str, str | None]] = {}
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "form":
            self.inside = attr.get("id") == self.form_id
            if self.inside:
                self.found = True
                self.action = attr.get("action")
        if not self.inside or tag != "input":
            return
        name, value = attr.get("name"), attr.get("value") or ""
        if attr.get("type") == "checkbox":
            self.checkboxes[attr.get("id") or ""] = attr
        # A submit input is sent only when it is the one clicked: leave it out.
        if name is None or "disabled" in attr or attr.get("type") == "submit":
            return
        if attr.get("type") == "checkbox" and "checked" not in attr:
            return
        self.fields.append((name, value))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False

    def data(self, *, untick: tuple[str, ...] = (), tick: tuple[str, ...] = ()) -> dict[str, Any]:
        """The submitted data, with the named checkboxes unticked or ticked first."""
        fields = [
            (name, value) for name, value in self.fields if not (name in untick and value != OUT)
        ]
        fields += [(name, IN if name != "fyno:all" else OUT) for name in tick]
        data: dict[str, Any] = {}
        for name, value in fields:
            data.setdefault(name, []).append(value)
        return data
