from __future__ import annotations

from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, StripeObject


class Price(StripeObject, Base):
    __tablename__ = "prices"
    references = {
        "product_id": "products",
    }

    product_id: Mapped[str | None] = mapped_column(String(255), index=True)
    active: Mapped[bool | None]
    currency: Mapped[str | None]
    unit_amount: Mapped[int | None]
    unit_amount_decimal: Mapped[str | None]
    type: Mapped[str | None]
    billing_scheme: Mapped[str | None]
    recurring_interval: Mapped[str | None]
    recurring_interval_count: Mapped[int | None]
    recurring: Mapped[dict[str, Any] | None]
    lookup_key: Mapped[str | None]
    nickname: Mapped[str | None]
    tax_behavior: Mapped[str | None]
