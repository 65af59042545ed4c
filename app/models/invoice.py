from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, StripeObject


class Invoice(StripeObject, Base):
    __tablename__ = "invoices"
    references = {
        "customer_id": "customers",
        "subscription_id": "subscriptions",
    }

    customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    # `invoice.subscription` before API 2025-03-31, `parent.subscription_details` after
    subscription_id: Mapped[str | None] = mapped_column(String(255), index=True)
    number: Mapped[str | None]
    status: Mapped[str | None] = mapped_column(index=True)
    billing_reason: Mapped[str | None]
    collection_method: Mapped[str | None]
    currency: Mapped[str | None]
    amount_due: Mapped[int | None]
    amount_paid: Mapped[int | None]
    amount_remaining: Mapped[int | None]
    subtotal: Mapped[int | None]
    total: Mapped[int | None]
    customer_email: Mapped[str | None]
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]
    due_date: Mapped[datetime | None]
    paid_at: Mapped[datetime | None]
    # first payment intent: `invoice.payment_intent` before 2025-03-31, `payments` after
    payment_intent_id: Mapped[str | None]
    hosted_invoice_url: Mapped[str | None]
    status_transitions: Mapped[dict[str, Any] | None]


class InvoiceLine(StripeObject, Base):
    """One line of an invoice, from `invoice.lines.data`."""

    __tablename__ = "invoice_lines"
    references = {
        "invoice_id": ("invoices", "CASCADE"),
    }

    invoice_id: Mapped[str] = mapped_column(String(255), index=True)
    subscription_id: Mapped[str | None]
    subscription_item_id: Mapped[str | None]
    price_id: Mapped[str | None]
    description: Mapped[str | None]
    amount: Mapped[int | None]
    currency: Mapped[str | None]
    quantity: Mapped[int | None]
    proration: Mapped[bool | None]
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]
