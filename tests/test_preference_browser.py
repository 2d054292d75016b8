"""The preference center in a real browser: Chromium, driven by Playwright, against
``live_server`` and the emulator over HTTP, its topics configured through the
emulator's control API.

A user logs in and changes a channel; an anonymous visitor does the same through a
signed link; an unsubscribe link is followed and confirmed. Every page is served
with a strict Content-Security-Policy (no inline script or style), and the browser
must refuse nothing. Each time the emulator's
stored preferences are checked. axe-core scans the pages for accessibility
violations (none serious or critical allowed), and the page is screenshotted on a
desktop and a narrow phone viewport, with the unsubscribe confirmation.

The screenshots go to a temporary folder; to refresh the committed ones
(``docs/_static/preferences-*.png``)::

    FYNO_SCREENSHOTS=docs/_static .venv/bin/python -m pytest tests/test_preference_browser.py

Without Chromium (``FYNO_CHROMIUM``, else ``chromium`` on PATH) or Playwright the test
skips, and fails under ``FYNO_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.contrib.auth import get_user_model
from django.urls import reverse

from django_fyno import links, sync
from django_fyno.clients import reset_clients
from django_fyno.receivers import skip_sync
from django_fyno.testing import FynoEmulatorHandle
from tests.preference_topics import config

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a-password-for-the-browser"
SHOTS = ("preferences-desktop.png", "preferences-mobile.png", "preferences-unsubscribe.png")
ON = "on"
SECTIONS = {
    "Orders": [
        {
            "subscription_id": "SORDERS",
            "name": "Order updates",
            "description": "Shipping and delivery of your orders.",
            "channel_config": config(email=ON, sms=ON, push=ON),
            "notification_events": [{"event_id": "E1", "event_name": "order_shipped"}],
        }
    ],
    "Marketing": [
        {
            "subscription_id": "SNEWS",
            "name": "Newsletter",
            "description": "News and offers, once a month.",
            "channel_config": config(email=ON, whatsapp=ON),
        }
    ],
    "Account": [
        {
            "subscription_id": "SSECURITY",
            "name": "Security alerts",
            "description": "Sign-ins from a new device. Always on.",
            "channel_config": config(email="required", sms=ON),
        }
    ],
}


def stored(handle: FynoEmulatorHandle, distinct_id: str) -> dict[str, Any]:
    """What the emulator holds: {topic: {channel: status}, "all": {channel: status}}."""
    reply = handle.emulator.preferences("test", distinct_id)
    topics = {t["subscription_id"]: t["preference"] for ts in reply["result"].values() for t in ts}
    return {**topics, "all": reply["meta"]["all"]["preference"]}


# What a strict Content-Security-Policy allows: nothing inline, nothing from elsewhere.
STRICT_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:"


def under_strict_csp(context: Any, refusals: list[str]) -> Any:
    """Every page of ``context`` served with STRICT_CSP; what the browser refused is
    collected in ``refusals`` (the pages must need no exception to it)."""

    def add_policy(route: Any) -> None:
        response = route.fetch(max_redirects=0)  # the browser follows them itself
        headers = {**response.headers, "content-security-policy": STRICT_CSP}
        route.fulfill(response=response, headers=headers)

    context.route("**/*", add_policy)
    context.on(
        "console",
        lambda message: (
            refusals.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return context


def topic(page: Any, name: str) -> Any:
    """The fieldset of one topic, found by its legend as a screen reader would."""
    return page.locator(
        "fieldset.fyno-preferences__topic", has=page.locator("legend", has_text=name)
    )


def serious_violations(page: Any) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{violation['id']} ({violation['impact']}): {violation['help']}"
        for violation in results.response["violations"]
        if violation["impact"] in ("serious", "critical")
    ]


def test_the_preference_center_in_a_real_browser(
    fyno_live: FynoEmulatorHandle, live_server: Any, chromium: str, shots: Path, settings: Any
) -> None:
    from playwright.sync_api import sync_playwright

    settings.LOGIN_URL = "admin:login"
    settings.FYNO = {**settings.FYNO, "SITE_URL": live_server.url}
    reset_clients()
    # The topics, as a test or script sets them: over the emulator's control API.
    answer = requests.post(
        f"{fyno_live.url}/_emulator/preferences", json={"sections": SECTIONS}, timeout=5
    )
    assert answer.status_code == 200, answer.text
    User = get_user_model()
    if not hasattr(User, "is_staff"):
        pytest.skip("the user model cannot log in through the admin's form")
    ada = User(**{User.USERNAME_FIELD: "ada"}, email="ada@example.com", is_staff=True)
    ada.set_password(PASSWORD)
    with skip_sync(ada):
        ada.save()
    sync.sync_profile(ada.pk)
    who = str(ada.pk)
    page_url = live_server.url + reverse("django_fyno:preferences")
    signed_url = links.preferences_url(ada)
    unsubscribe_url = links.unsubscribe_url(ada, "SNEWS")
    assert urlsplit(signed_url).netloc == urlsplit(live_server.url).netloc
    assert stored(fyno_live, who)["SORDERS"]["sms"] == "opted-in"

    # Playwright's sync API runs an event loop in this thread: no ORM calls below.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)

        # 1. Logged in: untick "Order updates" by SMS, save.
        refused: list[str] = []
        desktop = under_strict_csp(
            browser.new_context(viewport={"width": 1280, "height": 900}), refused
        )
        page = desktop.new_page()
        page.goto(page_url)  # not logged in: the login form, then back here
        page.fill("#id_username", "ada")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(page_url)
        required = topic(page, "Security alerts").get_by_label("Email")
        assert required.is_checked()
        assert required.is_disabled()
        assert serious_violations(page) == []
        page.screenshot(path=shots / "preferences-desktop.png", full_page=True)
        topic(page, "Order updates").get_by_label("SMS").uncheck()
        page.click("button[type=submit]")
        page.wait_for_selector(".fyno-notice")
        assert "saved" in page.locator(".fyno-notice").inner_text().lower()
        assert not topic(page, "Order updates").get_by_label("SMS").is_checked()
        after_login = stored(fyno_live, who)
        assert after_login["SORDERS"]["sms"] == "opted-out"
        assert after_login["SORDERS"]["email"] == "opted-in"
        desktop.close()

        # 2. A signed link, no login, on a phone: untick the newsletter's WhatsApp.
        phone = under_strict_csp(
            browser.new_context(
                viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
            ),
            refused,
        )
        page = phone.new_page()
        page.goto(signed_url)
        assert "/admin/login/" not in page.url
        assert serious_violations(page) == []
        page.screenshot(path=shots / "preferences-mobile.png", full_page=True)
        topic(page, "Newsletter").get_by_label("WhatsApp").uncheck()
        page.click("button[type=submit]")
        page.wait_for_selector(".fyno-notice")
        assert stored(fyno_live, who)["SNEWS"]["whatsapp"] == "opted-out"
        assert stored(fyno_live, who)["SORDERS"]["sms"] == "opted-out"  # kept
        phone.close()

        # 3. An unsubscribe link: the GET only asks; the button unsubscribes.
        mail = under_strict_csp(
            browser.new_context(viewport={"width": 1280, "height": 720}), refused
        )
        page = mail.new_page()
        page.goto(unsubscribe_url)
        assert stored(fyno_live, who)["SNEWS"]["email"] == "opted-in"
        assert "Newsletter" in page.locator("main, body").first.inner_text()
        assert serious_violations(page) == []
        page.screenshot(path=shots / "preferences-unsubscribe.png", full_page=True)
        page.click("button[name=confirm]")
        page.wait_for_selector("text=You are unsubscribed")
        assert serious_violations(page) == []
        mail.close()
        browser.close()

    assert refused == []  # the pages work under a strict Content-Security-Policy
    final = stored(fyno_live, who)
    assert final["SNEWS"]["email"] == "opted-out"  # the unsubscribe link
    assert final["SNEWS"]["whatsapp"] == "opted-out"  # the signed page
    assert final["SSECURITY"]["email"] == "opted-in"  # required: untouched
    for name in (
        "preferences-desktop.png",
        "preferences-mobile.png",
        "preferences-unsubscribe.png",
    ):
        image = (shots / name).read_bytes()
        assert image.startswith(b"\x89PNG\r\n\x1a\n"), name
