"""Local state: the mirror of each user's Fyno profile."""

from __future__ import annotations

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils.translation import gettext_lazy as _


class FynoProfile(models.Model):
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

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="fyno_profile",
    )
    # The id Fyno knows this profile by; NULL until the first successful sync
    # (so the request-path upsert never has to compute it, and NULLs never clash).
    distinct_id = models.CharField(
        _("distinct id"), max_length=255, unique=True, null=True, blank=True
    )
    state = models.CharField(
        _("state"), max_length=16, choices=State.choices, default=State.PENDING, db_index=True
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

    def __str__(self) -> str:
        return f"{self.distinct_id or f'user {self.user_id}'} ({self.state})"
