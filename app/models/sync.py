"""The mirror's own bookkeeping for staying current: the events inbox and the sync cursor."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Index, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base


class StripeEvent(Base):
    """Every Stripe event received (webhook) or listed (sync), once: the event id is the key,
    so a duplicate delivery is a no-op. Stored before it is applied; `applied_at` says it was.
    `account_id`: the account whose objects it changes (`event.account` for a connected
    account's event, else the account of the run that stored it)."""

    __tablename__ = "stripe_events"

    account_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    id: Mapped[str] = mapped_column(primary_key=True)
    type: Mapped[str]
    created: Mapped[datetime]
    livemode: Mapped[bool | None]
    api_version: Mapped[str | None]
    raw: Mapped[dict[str, Any]]
    source: Mapped[str]  # "webhook" or "sync"
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    applied_at: Mapped[datetime | None]
    # what applying it did: applied, stale, unchanged, ignored, rejected: <reason>, …
    outcome: Mapped[str | None]

    __table_args__ = (
        # the drain reads the events not yet applied, oldest first
        Index(
            "ix_stripe_events_pending",
            "created",
            "id",
            postgresql_where=text("applied_at IS NULL"),
        ),
    )


class SyncState(Base):
    """Where `make sync` is in the events list, per Stripe account and mode."""

    __tablename__ = "sync_state"

    account_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    livemode: Mapped[bool] = mapped_column(primary_key=True)
    # every event created before this is in the inbox (less the overlap re-read each pass)
    cursor: Mapped[datetime]
    last_event_id: Mapped[str | None]
    # when the last complete listing started: an event that becomes visible late (the list is
    # eventually consistent) was created at most the overlap before that
    listed_at: Mapped[datetime | None]
    # the last full refresh (first sync, or a cursor past Stripe's event retention)
    refreshed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
