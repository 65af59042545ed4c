from __future__ import annotations

from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, StripeObject


class Charge(StripeObject, Base):
    __tablename__ = "charges"
    references = {
        "customer_id": "customers",
        "payment_intent_id": "payment_intents",
        "invoice_id": "invoices",
    }

    customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), index=True)
    # only API versions before 2025-03-31 send `charge.invoice`
    invoice_id: Mapped[str | None] = mapped_column(String(255), index=True)
    amount: Mapped[int | None]
    amount_captured: Mapped[int | None]
    amount_refunded: Mapped[int | None]
    currency: Mapped[str | None]
    status: Mapped[str | None] = mapped_column(index=True)
    paid: Mapped[bool | None]
    captured: Mapped[bool | None]
    refunded: Mapped[bool | None]
    disputed: Mapped[bool | None]
    description: Mapped[str | None]
    failure_code: Mapped[str | None]
    failure_message: Mapped[str | None]
    payment_method_id: Mapped[str | None]
    receipt_email: Mapped[str | None]
    billing_details: Mapped[dict[str, Any] | None]
    outcome: Mapped[dict[str, Any] | None]
