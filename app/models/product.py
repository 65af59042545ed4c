from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Mapped

from app.db.base import Base, StripeObject


class Product(StripeObject, Base):
    __tablename__ = "products"

    name: Mapped[str | None]
    description: Mapped[str | None]
    active: Mapped[bool | None]
    type: Mapped[str | None]
    default_price_id: Mapped[str | None]
    unit_label: Mapped[str | None]
    tax_code: Mapped[str | None]
    images: Mapped[list[Any] | None]
    updated: Mapped[datetime | None]
