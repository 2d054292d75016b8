"""The admin in a real browser: Chromium, driven by Playwright, against ``live_server``
and the emulator over HTTP.

A staff user logs in through the admin's own login form, then opens the profile list,
compares two profiles with Fyno, refreshes the suppression list from Fyno and opens
the health page. Each page is checked for what it must show, and screenshotted.

The screenshots go to a temporary folder; to refresh the committed ones that the docs
show (``docs/_static/admin-*.png``), run::

    FYNO_SCREENSHOTS=docs/_static .venv/bin/python -m pytest tests/test_admin_screenshots.py

The browser and the emulator come from tests/fixtures_browser.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from django_fyno import sync
from django_fyno.clients import get_client
from django_fyno.models import FynoOutbox, FynoProfile, FynoSuppression
from django_fyno.receivers import skip_sync
from django_fyno.testing import FynoEmulatorHandle
from tests.conftest import here, make_user

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a-staff-password-for-the-browser"
SHOTS = ("admin-profiles.png", "admin-compare.png", "admin-suppressions.png", "admin-health.png")


def person(first: str, last: str) -> Any:
    user = make_user(first.lower(), save=False)
    for field, value in (("first_name", first), ("last_name", last)):
        if hasattr(user, field):
            setattr(user, field, value)
    setattr(user, user.get_email_field_name(), f"{first.lower()}@example.com")
    with skip_sync(user):
        user.save()
    return user


def a_small_project() -> dict[str, Any]:
    """Four synced people, one of them edited in Fyno, one failing; a few outbox rows."""
    ada, grace, linus, margaret = (
        person("Ada", "Lovelace"),
        person("Grace", "Hopper"),
        person("Linus", "Torvalds"),
        person("Margaret", "Hamilton"),
    )
    for user in (ada, grace, linus, margaret):
        sync.sync_profile(user.pk)
    # Someone changed Grace's email in Fyno's dashboard: compare shows it.
    get_client().update_channels(str(grace.pk), {"email": "g.hopper@navy.example"})
    FynoProfile.objects.filter(user_id=margaret.pk).update(
        state=FynoProfile.State.FAILED,
        last_error="Fyno answered 503 (PUT /{WSID}/{version}/profiles/{distinct_id}): "
        "Service Unavailable",
    )
    now = timezone.now()
    for state, count in (("sent", 5), ("pending", 2), ("failed", 1)):
        for _ in range(count):
            FynoOutbox.objects.create(
                kind="event",
                event="order_shipped",
                distinct_id=str(ada.pk),
                state=state,
                last_error="Event not found" if state == "failed" else "",
                next_attempt_at=now,
                **here(),
            )
    # Fyno's suppression list, not yet mirrored here.
    client = get_client()
    client.add_suppression("email", destination="bounced@example.com", description="hard bounce")
    client.add_suppression("sms", distinct_id=str(linus.pk), description="asked by phone")
    return {"ada": ada, "grace": grace}


def test_the_admin_in_a_real_browser(
    fyno_live: FynoEmulatorHandle, live_server: Any, chromium: str, shots: Path
) -> None:
    from playwright.sync_api import sync_playwright

    User = get_user_model()
    if not hasattr(User, "is_staff"):
        pytest.skip("the user model cannot log into the admin")
    people = a_small_project()
    User.objects.create_superuser(  # type: ignore[attr-defined]
        **{User.USERNAME_FIELD: "operator"}, email="ops@example.com", password=PASSWORD
    )
    pks = {name: FynoProfile.objects.get(user_id=user.pk).pk for name, user in people.items()}
    profiles_url = live_server.url + reverse("admin:django_fyno_fynoprofile_changelist")
    suppressions_url = live_server.url + reverse("admin:django_fyno_fynosuppression_changelist")
    health_url = live_server.url + reverse("admin:django_fyno_health")
    # Playwright's sync API runs an event loop in this thread: no ORM calls in this
    # block (Django refuses them in an async context).
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(live_server.url + reverse("admin:login") + "?next=" + profiles_url)
        page.fill("#id_username", "operator")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(profiles_url)

        # The profile list: every person, the failure shown with Fyno's message.
        table = page.locator("#result_list")
        for name in ("ada@example.com", "grace@example.com", "margaret@example.com"):
            assert table.get_by_text(name, exact=False).count() >= 1, name
        assert "Fyno answered 503" in table.inner_text()
        page.screenshot(path=shots / "admin-profiles.png", full_page=True)

        # Compare Ada and Grace with Fyno: Grace's email is highlighted.
        for pk in pks.values():
            page.check(f"input.action-select[value='{pk}']")
        page.select_option("select[name=action]", "compare_with_fyno")
        page.click("button[name=index]")
        page.wait_for_selector("mark")
        compare = page.locator("#content").inner_text()
        assert "g.hopper@navy.example" in compare
        assert "changed in Fyno" in compare
        assert page.locator("mark", has_text="g.hopper@navy.example").count() == 1
        page.screenshot(path=shots / "admin-compare.png", full_page=True)

        # The suppressions: refresh the mirror from Fyno.
        page.goto(suppressions_url)
        page.click("form.fyno-refresh input[type=submit]")
        page.wait_for_selector("ul.messagelist")
        assert "2 entries came back" in page.locator("ul.messagelist").inner_text()
        listed = page.locator("#result_list").inner_text()
        assert "bounced@example.com" in listed
        assert "asked by phone" in listed
        page.screenshot(path=shots / "admin-suppressions.png", full_page=True)

        # The health page: the workspace, its outbox counts and working credentials.
        page.goto(health_url)
        health = page.locator("#content").inner_text()
        assert "FYTEST" in health
        assert "working" in health
        assert "Event not found" in health
        html = page.content()
        page.screenshot(path=shots / "admin-health.png", full_page=True)
        browser.close()

    assert "test-api-key" not in html
    assert FynoSuppression.objects.count() == 2
    for name in SHOTS:
        image = (shots / name).read_bytes()
        assert image.startswith(b"\x89PNG\r\n\x1a\n"), name
        assert len(image) > 10_000, name
