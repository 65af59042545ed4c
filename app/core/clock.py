"""Stripe's time, as the mirror records it."""

from __future__ import annotations

from datetime import UTC, datetime


def stripe_now() -> datetime:
    """Now, to the second below: the resolution of Stripe's times. A state read at 10:00:00.7
    is recorded as of 10:00:00, so an event of that second is a tie to settle, never stale."""
    return datetime.now(UTC).replace(microsecond=0)
