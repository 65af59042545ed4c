from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, StripeObject


class PaymentIntent(StripeObject, Base):
    __tablename__ = "payment_intents"
    references = {
        "customer_id": "customers",
        "invoice_id": "invoices",
    }

    customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    # only API versions before 2025-03-31 send `payment_intent.invoice`
    invoice_id: Mapped[str | None] = mapped_column(String(255), index=True)
    amount: Mapped[int | None]
    amount_received: Mapped[int | None]
    currency: Mapped[str | None]
    status: Mapped[str | None] = mapped_column(index=True)
    description: Mapped[str | None]
    payment_method_id: Mapped[str | None]
    latest_charge_id: Mapped[str | None]
    canceled_at: Mapped[datetime | None]
