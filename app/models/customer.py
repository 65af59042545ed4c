from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, StripeObject


class Customer(StripeObject, Base):
    __tablename__ = "customers"

    email: Mapped[str | None] = mapped_column(index=True)
    name: Mapped[str | None]
    phone: Mapped[str | None]
    description: Mapped[str | None]
    currency: Mapped[str | None]
    balance: Mapped[int | None]
    delinquent: Mapped[bool | None]
    tax_exempt: Mapped[str | None]
    # no foreign key: payment methods load after customers and point back at them
    default_payment_method_id: Mapped[str | None]
    address: Mapped[dict[str, Any] | None]
    shipping: Mapped[dict[str, Any] | None]
    invoice_settings: Mapped[dict[str, Any] | None]
