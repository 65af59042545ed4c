"""Declarative base and the columns every Stripe table shares."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, DateTime, MetaData, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

NAMING_CONVENTION = {
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSONB,
        list[Any]: JSONB,
        int: BigInteger,
        str: Text,
    }


class StripeObject:
    """The fields every mirrored Stripe object has, plus the bookkeeping of the mirror.

    Placeholder rows stand for objects that are referenced but were never fetched (a deleted
    customer a charge still points at): only `id`, `is_placeholder` and `referenced_by` are set,
    until the real object arrives and replaces them.
    """

    id: Mapped[str] = mapped_column(String(255), primary_key=True, sort_order=-10)
    livemode: Mapped[bool | None] = mapped_column(sort_order=-9)
    created: Mapped[datetime | None] = mapped_column(sort_order=-8)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", sort_order=-7)
    # the whole object as Stripe sent it, so no field is ever lost
    raw: Mapped[dict[str, Any] | None] = mapped_column(sort_order=90)
    api_version: Mapped[str | None] = mapped_column(sort_order=91)
    deleted: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default="false", sort_order=92
    )
    is_placeholder: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default="false", sort_order=93
    )
    referenced_by: Mapped[str | None] = mapped_column(sort_order=94)
    synced_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), sort_order=95
    )
    # the Stripe time of the state the row holds: its event's `created`, or the start of the
    # full load that read it; an older state never overwrites a newer one (null: unknown)
    state_at: Mapped[datetime | None] = mapped_column(sort_order=96)
    # when the mirror learned of the deletion (a `*.deleted` event or the delete sweep)
    deleted_at: Mapped[datetime | None] = mapped_column(sort_order=97)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        return (
            CheckConstraint("is_placeholder OR raw IS NOT NULL", name="raw_unless_placeholder"),
        )
