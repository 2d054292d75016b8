"""Signals django-fyno sends around profile sync, and the exception that vetoes one.

Every signal is sent with ``sender=FynoProfile`` (the mirror model). The
``post``-style signals (``profile_synced``, ``profile_sync_failed``,
``profile_deleted``) are sent after the mirror row is written and the
surrounding transaction, if any, commits.

``pre_profile_sync(sender, user, profile, payload)``
    Before a changed payload is sent. ``user`` is the fresh user instance,
    ``profile`` the :class:`~django_fyno.models.FynoProfile` row, ``payload``
    the :class:`~django_fyno.adapter.ProfilePayload` about to be sent. A
    receiver may raise :class:`SyncVetoed` to skip this one sync: nothing is
    sent, the row is left as it was (apart from its dirty mark) and the next
    save of the user tries again.

``profile_synced(sender, user, profile, payload, created)``
    Fyno accepted the payload. ``created`` is True when the profile was created.

``profile_sync_failed(sender, user, profile, error)``
    Fyno (or local validation) rejected the payload for good; ``error`` is the
    :class:`~django_fyno.client.FynoError`. The row is in state ``failed`` with
    the message in ``last_error``. Not sent for transient errors, which are retried.

``profile_deleted(sender, distinct_ids)``
    Fyno deleted these profiles (or never had them); their mirror rows are gone.
    Sent once per delete batch.

``delivery_report_received(sender, report, outbox, created, replayed)``
    Sent with ``sender=FynoDeliveryReport`` for each delivery report the
    webhook accepted, after the transaction that stored it commits.
    ``report`` is the stored :class:`~django_fyno.models.FynoDeliveryReport`,
    ``outbox`` the :class:`~django_fyno.models.FynoOutbox` row it updated (None
    for a report without a ``custom_id``), ``created`` False when the same
    report had already been stored (Fyno delivered it again): act only when it
    is True to act once per report. ``replayed`` is True when staff replayed a
    stored report from the admin (for a receiver that failed; ``created`` is
    then False): act when ``created or replayed``. Receivers run through
    ``send_robust``: an exception is logged and does not fail the webhook's answer.
"""

from __future__ import annotations

from django.dispatch import Signal

from django_fyno.exceptions import SyncVetoed

__all__ = [
    "SyncVetoed",
    "delivery_report_received",
    "pre_profile_sync",
    "profile_deleted",
    "profile_sync_failed",
    "profile_synced",
]


pre_profile_sync = Signal()
profile_synced = Signal()
profile_sync_failed = Signal()
profile_deleted = Signal()
delivery_report_received = Signal()
