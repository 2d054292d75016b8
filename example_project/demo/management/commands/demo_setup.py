"""Set the demo up, as often as you like: the database, its users, and Fyno's side.

On the bundled emulator it also creates the events and the subscription topics the
pages show, and points the emulator's delivery reports at this site's webhook.
"""

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.urls import reverse

ADMIN = ("admin", "admin-demo-password")
PEOPLE = [
    # username, password, first name, email, phone, timezone
    ("ada", "ada-demo-password", "Ada", "ada@example.com", "+14155550101", "Europe/London"),
    (
        "grace",
        "grace-demo-password",
        "Grace",
        "grace@example.com",
        "+14155550102",
        "America/New_York",
    ),
    ("linus", "linus-demo-password", "Linus", "linus@example.com", "", "Europe/Helsinki"),
]
EVENTS = ["demo_test", "order_shipped", "newsletter", "login_otp"]
CHANNELS = (
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


def channels(**on):
    return {channel: on.get(channel, "off") for channel in CHANNELS}


TOPICS = {
    "Your orders": [
        {
            "subscription_id": "SDEMOORDERS",
            "name": "Order updates",
            "description": "Shipping and delivery of your orders.",
            "channel_config": channels(email="on", sms="on", whatsapp="on"),
            "notification_events": ["order_shipped", "demo_test"],
        }
    ],
    "News": [
        {
            "subscription_id": "SDEMONEWS",
            "name": "Newsletter",
            "description": "What is new in the shop, once a month.",
            "channel_config": channels(email="on", whatsapp="on"),
            "notification_events": ["newsletter"],
        }
    ],
    "Your account": [
        {
            "subscription_id": "SDEMOSECURITY",
            "name": "Security alerts",
            "description": "Sign-in codes and new sign-ins. Email cannot be turned off.",
            "channel_config": channels(email="required", sms="on"),
            "notification_events": ["login_otp"],
        }
    ],
}


class Command(BaseCommand):
    help = "Migrate, create the demo's users, and set Fyno (or the emulator) up for them."

    def handle(self, *args, **options):
        call_command("migrate", interactive=False, verbosity=0)
        if settings.USES_EMULATOR:
            self.configure_emulator()
        self.create_users()
        # The emulator forgets everything when it stops: send every profile again.
        call_command("fyno_sync", force=True, no_progress=True, stdout=self.stdout)

    def configure_emulator(self):
        control = settings.FYNO["ENDPOINT"].removesuffix("/v1") + "/_emulator"
        webhook = settings.SITE_URL + reverse(
            "django_fyno:webhook", kwargs={"secret": settings.FYNO["WEBHOOK_SECRET"]}
        )
        for name, body in (
            ("events", {"events": EVENTS}),
            ("preferences", {"sections": TOPICS}),
            ("webhook", {"url": webhook}),
        ):
            answer = requests.post(f"{control}/{name}", json=body, timeout=10)
            answer.raise_for_status()
        self.stdout.write(f"emulator: {len(EVENTS)} events, 3 topics, reports to the webhook")

    def create_users(self):
        User = get_user_model()
        admin, _ = User.objects.get_or_create(
            username=ADMIN[0], defaults={"email": "admin@example.com"}
        )
        admin.is_staff = admin.is_superuser = True
        admin.set_password(ADMIN[1])
        admin.save()
        for username, password, first_name, email, phone, timezone in PEOPLE:
            user, _ = User.objects.get_or_create(username=username)
            user.first_name, user.email, user.phone, user.timezone = (
                first_name,
                email,
                phone,
                timezone,
            )
            user.set_password(password)
            user.save()
        self.stdout.write("logins (username / password):")
        for username, password, *_ in [ADMIN, *PEOPLE]:
            self.stdout.write(f"  {username} / {password}")
