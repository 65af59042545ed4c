from __future__ import annotations

from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, StripeObject


class PaymentMethod(StripeObject, Base):
    __tablename__ = "payment_methods"
    references = {
        "customer_id": "customers",
    }

    customer_id: Mapped[str | None] = mapped_column(String(255), index=True)
    type: Mapped[str | None]
    card_brand: Mapped[str | None]
    card_last4: Mapped[str | None]
    card_exp_month: Mapped[int | None]
    card_exp_year: Mapped[int | None]
    card_fingerprint: Mapped[str | None]
    billing_details: Mapped[dict[str, Any] | None]
