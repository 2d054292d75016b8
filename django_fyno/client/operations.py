"""The 23 Fyno operations the client calls: method, path template and retry class.

The names and templates mirror ``django_fyno.emulator.contract.OPERATIONS`` (a
test keeps them equal); they are repeated here because the client must not
import the emulator, which needs YAML and a schema validator.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OPERATIONS", "OperationSpec"]


@dataclass(frozen=True)
class OperationSpec:
    """One API operation as the client sees it."""

    method: str
    template: str
    # Safe to send twice: a retry after an ambiguous failure cannot double an effect.
    idempotent: bool


_V = "/{WSID}/{version}"

OPERATIONS: dict[str, OperationSpec] = {
    # Each event is a notification: sending it twice notifies twice.
    "send_event": OperationSpec("POST", f"{_V}/event", idempotent=False),
    "send_bulk": OperationSpec("POST", f"{_V}/event/bulk", idempotent=False),
    # A repeated create fails with "already exists" instead of creating twice.
    "create_profile": OperationSpec("POST", f"{_V}/profiles", idempotent=True),
    "get_profile": OperationSpec("GET", f"{_V}/profiles/{{distinct_id}}", idempotent=True),
    "update_profile": OperationSpec("PUT", f"{_V}/profiles/{{distinct_id}}", idempotent=True),
    "merge_profiles": OperationSpec(
        "PATCH",
        f"{_V}/profiles/{{source_distinct_id}}/merge/{{target_distinct_id}}",
        idempotent=True,
    ),
    "delete_profiles": OperationSpec("POST", f"{_V}/profiles/delete", idempotent=True),
    # PATCH adds push/inapp tokens, but tokens are unique so a repeat adds nothing.
    "update_channels": OperationSpec(
        "PATCH", f"{_V}/profiles/{{distinct_id}}/channel", idempotent=True
    ),
    "delete_channels": OperationSpec(
        "POST", f"{_V}/profiles/{{distinct_id}}/channel/delete", idempotent=True
    ),
    "get_preferences": OperationSpec("GET", f"{_V}/subscriptions/preference", idempotent=True),
    "set_preferences": OperationSpec("PUT", f"{_V}/subscriptions/preference", idempotent=True),
    "set_subscription": OperationSpec(
        "POST", f"{_V}/subscriptions/list/{{subscription_id}}/user", idempotent=True
    ),
    # A validated OTP is consumed: a blind resend would answer "wrong OTP".
    "verify_otp": OperationSpec("POST", f"{_V}/verify/validate", idempotent=False),
    "set_properties": OperationSpec("POST", f"{_V}/profiles/properties/set", idempotent=True),
    "set_properties_once": OperationSpec(
        "POST", f"{_V}/profiles/properties/set-once", idempotent=True
    ),
    "increment_properties": OperationSpec(
        "POST", f"{_V}/profiles/properties/numerical-add", idempotent=False
    ),
    # Lists are unique, but append-then-remove-then-replayed-append is not a no-op.
    "append_to_lists": OperationSpec(
        "POST", f"{_V}/profiles/properties/list-append", idempotent=False
    ),
    "remove_from_lists": OperationSpec(
        "POST", f"{_V}/profiles/properties/list-remove", idempotent=False
    ),
    "unset_properties": OperationSpec("POST", f"{_V}/profiles/properties/unset", idempotent=True),
    # A batch may hold $add/$append/$remove actions.
    "batch_properties": OperationSpec("POST", f"{_V}/profiles/properties/batch", idempotent=False),
    "list_suppressions": OperationSpec("GET", "/{WSID}/suppressions", idempotent=True),
    "add_suppression": OperationSpec("POST", "/{WSID}/suppressions", idempotent=True),
    "delete_suppression": OperationSpec("DELETE", "/{WSID}/suppressions", idempotent=True),
}
