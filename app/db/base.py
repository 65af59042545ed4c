"""Declarative base and the columns every Stripe table shares."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKeyConstraint,
    MetaData,
    String,
    Text,
    func,
)
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

    Every row belongs to the Stripe account it was mirrored from (`account_id`, see
    app.core.config.DEFAULT_ACCOUNT): ids an account chooses (products, prices, coupons) may
    repeat in another account, so the key is (account_id, id), and every foreign key stays
    inside the account: (account_id, x_id) → parent (account_id, id). `references` declares
    them: column → parent table, or (parent table, ON DELETE action).
    """

    references: ClassVar[dict[str, str | tuple[str, str]]] = {}

    account_id: Mapped[str] = mapped_column(String(255), primary_key=True, sort_order=-11)
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
        foreign_keys = []
        for column, target in cls.references.items():
            parent, ondelete = (target, None) if isinstance(target, str) else target
            foreign_keys.append(
                ForeignKeyConstraint(
                    ["account_id", column],
                    [f"{parent}.account_id", f"{parent}.id"],
                    ondelete=ondelete,
                    # named after the column, as the single-column keys were
                    name=f"fk_{cls.__tablename__}_{column}_{parent}",  # type: ignore[attr-defined]
                )
            )
        return (
            CheckConstraint("is_placeholder OR raw IS NOT NULL", name="raw_unless_placeholder"),
            *foreign_keys,
        )


def references_of(table: Any) -> list[tuple[str, str]]:
    """A Stripe table's references: (column, parent table), the account left out (every one
    stays inside the row's account)."""
    found = []
    for constraint in table.foreign_key_constraints:
        column = next(c for c in constraint.column_keys if c != "account_id")
        found.append((column, constraint.referred_table.name))
    return sorted(found)
