"""Local state: profile mirrors, the outbox and delivery reports."""

from __future__ import annotations

import hashlib
import json

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

# Why the hot tables declare their indexes in Meta: for a CharField with
# ``db_index=True`` or ``unique=True`` PostgreSQL's schema editor adds a second,
# ``varchar_pattern_ops`` index (for LIKE 'prefix%'), which nothing here queries.
# Every write of a row then updates it too: a dirty mark, a claim, an outcome.
# ``Meta.indexes`` and ``Meta.constraints`` create only the index asked for.


class WorkspaceFields(models.Model):
    """The Fyno workspace a row belongs to, fixed when the row is written.

    Every later call for the row goes to this workspace, with the credentials
    ``CLIENT_RESOLVER`` (or the settings) give for it; never the API key here.
    """

    # Indexed by each model's Meta (``Index``, not ``db_index``: see above).
    wsid = models.CharField(_("workspace"), max_length=64, blank=True)
    version = models.CharField(_("version"), max_length=8, blank=True)
    endpoint = models.CharField(_("endpoint"), max_length=255, blank=True)

    class Meta:
        abstract = True


class FynoProfile(WorkspaceFields):
    """What we last told Fyno about one user, and whether it is up to date.

    The row outlives its user (``user`` becomes NULL) until Fyno has deleted
    the profile, so a deletion that fails is retried rather than forgotten.
    """

    class State(models.TextChoices):
        PENDING = "pending", _("pending")
        SYNCED = "synced", _("synced")
        FAILED = "failed", _("failed")
        DELETING = "deleting", _("deleting")
        DELETED = "deleted", _("deleted")
        # should_sync() is False: the profile (if any) has status 0, Fyno sends nothing.
        EXCLUDED = "excluded", _("excluded")

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="fyno_profile",
    )
    # The id Fyno knows this profile by; NULL until the first successful sync
    # (so the request-path upsert never has to compute it, and NULLs never clash).
    distinct_id = models.CharField(  # noqa: DJ001 - unique (Meta.constraints) where set
        _("distinct id"), max_length=255, null=True, blank=True
    )
    state = models.CharField(
        _("state"), max_length=16, choices=State.choices, default=State.PENDING
    )
    # sha256 of the last payload Fyno accepted: an unchanged payload sends nothing.
    payload_hash = models.CharField(_("payload hash"), max_length=64, blank=True)
    # The single-destination channels we last sent, so a cleared one can be deleted.
    channels = models.JSONField(_("channels"), default=dict, blank=True)
    # The last payload Fyno accepted (JSON form), so a sync sends only what changed.
    payload = models.JSONField(_("payload"), default=dict, blank=True, encoder=DjangoJSONEncoder)
    # Set when the row needs a sync; the sweeper re-enqueues rows dirty for too long.
    dirty_since = models.DateTimeField(_("dirty since"), null=True, blank=True, db_index=True)
    synced_at = models.DateTimeField(_("synced at"), null=True, blank=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    last_error = models.TextField(_("last error"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("Fyno profile")
        verbose_name_plural = _("Fyno profiles")
        constraints = (
            models.UniqueConstraint(fields=["distinct_id"], name="fyno_profile_distinct_id"),
        )
        indexes = (
            models.Index(fields=["state"], name="fyno_profile_state"),
            models.Index(fields=["wsid"], name="fyno_profile_wsid"),
        )
        # django-fyno's own permissions (django_fyno.<codename>), checked by the admin.
        permissions = (
            ("sync_profiles", _("Can sync, compare and delete profiles in Fyno")),
            ("edit_preferences", _("Can change users' Fyno subscriptions")),
            ("view_health", _("Can view the Fyno health page")),
        )

    def __str__(self) -> str:
        return f"{self.distinct_id or f'user {self.user_id}'} ({self.state})"


class FynoOutbox(WorkspaceFields):
    """One message for Fyno (an event, or a non-idempotent property operation),
    written in the caller's transaction and delivered after commit.

    States::

        pending -> sending (leased to one drainer) -> sent
                                                   -> failed   (Fyno refused it: 400)
                                                   -> dead     (max attempts reached)
                                                   -> unknown  (ambiguous: 5xx or read
                                                                timeout after sending)
        unknown -> pending  (UNKNOWN_POLICY "retry": at-least-once)
        unknown -> sent     (a delivery report for the row arrives, or staff decide)

    The row's id is sent as ``callback.custom_id``, so Fyno's delivery reports
    find their row; their per-channel statuses accumulate in ``delivery``.
    """

    class Kind(models.TextChoices):
        EVENT = "event", _("event")
        PROPERTY = "property", _("property operation")

    class State(models.TextChoices):
        PENDING = "pending", _("pending")
        SENDING = "sending", _("sending")
        SENT = "sent", _("sent")
        FAILED = "failed", _("failed")
        DEAD = "dead", _("dead")
        UNKNOWN = "unknown", _("unknown")
        # Withdrawn by staff before it was sent: never sent.
        CANCELLED = "cancelled", _("cancelled")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    # The event name (kind "event") or the operation, e.g. "$add" (kind "property").
    event = models.CharField(_("event or operation"), max_length=255)
    # Recipient profile; empty when the message goes to explicit destinations only.
    distinct_id = models.CharField(_("distinct id"), max_length=255, blank=True)
    # Explicit destinations ({"email": ..., "sms": ...}); merged over the profile's.
    to = models.JSONField(_("destinations"), default=dict, blank=True)
    # Event data, or the property operation's values.
    payload = models.JSONField(_("payload"), default=dict, blank=True)
    # Extra callback fields (custom1..3, allowlist_url); custom_id is always the row id.
    callback = models.JSONField(_("callback"), default=dict, blank=True)
    # The caller's dedupe key, as given to notify(); unique only within its scope.
    # NULL: no key (an empty key is refused), as in the rows written before 0005.
    dedupe_key = models.CharField(  # noqa: DJ001
        _("dedupe key"), max_length=255, null=True, blank=True
    )
    # The key's scope, hashed (see dedupe_hash_for()): what the database keeps unique.
    dedupe_hash = models.CharField(  # noqa: DJ001 - unique (Meta.constraints) where set
        _("dedupe hash"), max_length=64, null=True, blank=True, editable=False
    )
    state = models.CharField(
        _("state"), max_length=16, choices=State.choices, default=State.PENDING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), default=timezone.now)
    # A drainer owns a "sending" row until then; after it, the sweeper takes it back.
    lease_expires_at = models.DateTimeField(_("lease expires at"), null=True, blank=True)
    request_id = models.CharField(_("Fyno request id"), max_length=64, blank=True)
    # Fyno's per-channel answer to the send ({channel: {destination, msg_id, status}}).
    result = models.JSONField(_("result"), default=dict, blank=True)
    # Per-channel delivery status from delivery reports ({channel: status}).
    delivery = models.JSONField(_("delivery"), default=dict, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)

    class Meta:
        verbose_name = _("Fyno outbox message")
        verbose_name_plural = _("Fyno outbox")
        permissions = (("manage_outbox", _("Can retry and cancel Fyno outbox messages")),)
        constraints = (
            models.UniqueConstraint(fields=["dedupe_hash"], name="fyno_outbox_dedupe_hash"),
        )
        indexes = (
            models.Index(fields=["distinct_id"], name="fyno_outbox_distinct_id"),
            models.Index(fields=["request_id"], name="fyno_outbox_request_id"),
            models.Index(fields=["wsid"], name="fyno_outbox_wsid"),
            # The drain query: pending rows due now, oldest first.
            models.Index(
                fields=["state", "wsid", "next_attempt_at", "id"], name="fyno_outbox_drain"
            ),
            # The sweeper: "sending" rows whose lease has expired.
            models.Index(fields=["state", "lease_expires_at"], name="fyno_outbox_lease"),
        )

    def __str__(self) -> str:
        return f"{self.kind} {self.event} #{self.pk} ({self.state})"

    @property
    def custom_id(self) -> str:
        """What Fyno echoes back in delivery reports for this row."""
        return str(self.pk)

    @staticmethod
    def dedupe_hash_for(event: str, dedupe_key: str, distinct_id: str | None = None) -> str:
        """The ``dedupe_hash`` of a dedupe key: sha256 of its scope.

        The scope is the event name and the key, plus the recipient's distinct
        id for one recipient of many (``distinct_id``). The parts are kept apart
        by JSON, so no ``:`` in a key or an id can make two scopes equal, and the
        column has a fixed width whatever the lengths of the parts.
        """
        scope = [event, dedupe_key] if distinct_id is None else [event, dedupe_key, distinct_id]
        return hashlib.sha256(json.dumps(scope).encode()).hexdigest()


class FynoDeliveryReport(models.Model):
    """A delivery report Fyno posted to our webhook, stored once (keyed on its content)."""

    outbox = models.ForeignKey(
        FynoOutbox,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="delivery_reports",
    )
    custom_id = models.CharField(_("custom id"), max_length=255, blank=True, db_index=True)
    request_id = models.CharField(_("Fyno request id"), max_length=64, blank=True)
    channel = models.CharField(_("channel"), max_length=32, blank=True)
    status = models.CharField(_("status"), max_length=64, blank=True)
    msg_id = models.CharField(_("message id"), max_length=255, blank=True)
    # sha256 of the report's canonical JSON: the same report twice is stored once.
    fingerprint = models.CharField(_("fingerprint"), max_length=64, unique=True)
    raw = models.JSONField(_("report"), default=dict)
    received_at = models.DateTimeField(_("received at"), auto_now_add=True)

    class Meta:
        verbose_name = _("Fyno delivery report")
        verbose_name_plural = _("Fyno delivery reports")

    def __str__(self) -> str:
        return f"{self.channel} {self.status} for #{self.custom_id}"


class FynoSuppression(WorkspaceFields):
    """One entry of a workspace's suppression list in Fyno, mirrored.

    Fyno is the source of truth: an entry is added or removed there first, and the
    mirror changes only once Fyno accepted; "Refresh from Fyno" replaces a
    workspace's mirror with Fyno's list.
    """

    # Fyno's record id ("_id"); empty until the entry came back from Fyno's list.
    fyno_id = models.CharField(_("Fyno id"), max_length=64, blank=True, db_index=True)
    channel = models.CharField(_("channel"), max_length=32)
    destination = models.CharField(_("destination"), max_length=255, blank=True, db_index=True)
    # The profile the entry is about (its user is found through FynoProfile): no
    # foreign key to the user model, so deleting a user costs no extra query.
    distinct_id = models.CharField(_("distinct id"), max_length=255, blank=True, db_index=True)
    reason = models.TextField(_("reason"), blank=True)
    # As Fyno reports them (its own timestamps, as text).
    fyno_created_at = models.CharField(_("created in Fyno"), max_length=64, blank=True)
    expires = models.CharField(_("expires"), max_length=64, blank=True)
    raw = models.JSONField(_("Fyno's record"), default=dict, blank=True)
    # Who added it here (blank: it came from Fyno's list), kept as text so the record
    # outlives the staff account; when it was added and last refreshed here.
    added_by = models.CharField(_("added by"), max_length=150, blank=True)
    created_at = models.DateTimeField(_("added"), auto_now_add=True)
    refreshed_at = models.DateTimeField(_("refreshed"), null=True, blank=True)

    class Meta:
        verbose_name = _("Fyno suppression")
        verbose_name_plural = _("Fyno suppressions")
        permissions = (("manage_suppressions", _("Can add and remove Fyno suppressions")),)
        indexes = (models.Index(fields=["wsid"], name="fyno_suppression_wsid"),)

    def __str__(self) -> str:
        return f"{self.channel}: {self.destination or self.distinct_id}"
