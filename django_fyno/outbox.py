"""Delivering the transactional outbox (interface first; the drainer lands next).

``schedule_delivery()`` is the seam callers use after writing outbox rows.
"""

from __future__ import annotations

__all__ = ["schedule_delivery"]


def schedule_delivery(using: str = "default") -> None:
    """Have the outbox drained after the current transaction commits (once per transaction)."""
