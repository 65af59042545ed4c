from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, StripeObject


class Subscription(StripeObject, Base):
    __tablename__ = "subscriptions"
    references = {
        "customer_id": "customers",
    }

    customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    status: Mapped[str | None] = mapped_column(index=True)
    currency: Mapped[str | None]
    collection_method: Mapped[str | None]
    cancel_at_period_end: Mapped[bool | None]
    # API versions before 2025-03-31 carry the period on the subscription, later ones on each item
    current_period_start: Mapped[datetime | None]
    current_period_end: Mapped[datetime | None]
    start_date: Mapped[datetime | None]
    canceled_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    trial_start: Mapped[datetime | None]
    trial_end: Mapped[datetime | None]
    # no foreign keys: these objects load after subscriptions
    default_payment_method_id: Mapped[str | None]
    latest_invoice_id: Mapped[str | None]


class SubscriptionItem(StripeObject, Base):
    """One line of a subscription, from `subscription.items.data`."""

    __tablename__ = "subscription_items"
    references = {
        "subscription_id": ("subscriptions", "CASCADE"),
        "price_id": "prices",
    }

    subscription_id: Mapped[str] = mapped_column(String(255), index=True)
    price_id: Mapped[str | None] = mapped_column(String(255), index=True)
    quantity: Mapped[int | None]
    current_period_start: Mapped[datetime | None]
    current_period_end: Mapped[datetime | None]
    plan: Mapped[dict[str, Any] | None]
