"""the account in every key: account_id on every Stripe table, keys (account_id, id)

Every row of a Stripe table records the account it was mirrored from, and keys and foreign keys
include it, so ids an account chooses (products, prices, coupons) never collide with another
account's. Existing rows, made when a mirror held one account, get the account given by
`alembic -x account=acct_…`, else STRIPE_ACCOUNT (the environment, .env files), else
`acct_default` (app.core.config.DEFAULT_ACCOUNT: the account of rows and exports that recorded
none). The inbox's events take the account they name (`event.account`) instead; the sync
cursor of the key's own account (`self`) becomes that same account's.

Revision ID: 5c1d2e3f4a5b
Revises: 78fac6b51b6e
Create Date: 2026-12-03 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "5c1d2e3f4a5b"
down_revision: str | None = "78fac6b51b6e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# frozen here (a migration must not change when the code does); app.core.config.DEFAULT_ACCOUNT
# holds the same value, which tests/test_migrations.py checks
DEFAULT_ACCOUNT = "acct_default"

TABLES = (
    "products",
    "prices",
    "customers",
    "payment_methods",
    "subscriptions",
    "subscription_items",
    "invoices",
    "invoice_lines",
    "payment_intents",
    "charges",
)
# (table, column, parent table, ON DELETE)
FOREIGN_KEYS = (
    ("prices", "product_id", "products", None),
    ("payment_methods", "customer_id", "customers", None),
    ("subscriptions", "customer_id", "customers", None),
    ("subscription_items", "subscription_id", "subscriptions", "CASCADE"),
    ("subscription_items", "price_id", "prices", None),
    ("invoices", "customer_id", "customers", None),
    ("invoices", "subscription_id", "subscriptions", None),
    ("invoice_lines", "invoice_id", "invoices", "CASCADE"),
    ("payment_intents", "customer_id", "customers", None),
    ("payment_intents", "invoice_id", "invoices", None),
    ("charges", "customer_id", "customers", None),
    ("charges", "payment_intent_id", "payment_intents", None),
    ("charges", "invoice_id", "invoices", None),
)


def existing_rows_account() -> str:
    """The account the rows already mirrored belong to (see the module's docstring)."""
    given = context.get_x_argument(as_dictionary=True).get("account")
    if given:
        return given
    try:
        from app.core.config import load_settings

        configured = load_settings().stripe_account
    except Exception:  # noqa: BLE001 — no settings to read: the documented default
        configured = ""
    return configured or DEFAULT_ACCOUNT


def _add_account_column(table: str, account: str) -> None:
    """account_id, NOT NULL: the default fills the rows there are, then goes (every writer
    names the account)."""
    literal = "'" + account.replace("'", "''") + "'"
    op.add_column(
        table,
        sa.Column("account_id", sa.String(255), nullable=False, server_default=sa.text(literal)),
    )
    op.alter_column(table, "account_id", server_default=None)


def _drop_keys(tables: Sequence[str]) -> None:
    for table, column, parent, _ondelete in FOREIGN_KEYS:
        op.drop_constraint(f"fk_{table}_{column}_{parent}", table, type_="foreignkey")
    for table in tables:
        op.drop_constraint(f"pk_{table}", table, type_="primary")


def upgrade() -> None:
    account = existing_rows_account()
    for table in TABLES:
        _add_account_column(table, account)
    _drop_keys(TABLES)
    for table in TABLES:
        op.create_primary_key(f"pk_{table}", table, ["account_id", "id"])
    for table, column, parent, ondelete in FOREIGN_KEYS:
        op.create_foreign_key(
            f"fk_{table}_{column}_{parent}",
            table,
            parent,
            ["account_id", column],
            ["account_id", "id"],
            ondelete=ondelete,
        )

    _add_account_column("stripe_events", account)
    # a connected account's event names its account
    op.execute(
        "UPDATE stripe_events SET account_id = raw ->> 'account' "
        "WHERE jsonb_typeof(raw -> 'account') = 'string' AND raw ->> 'account' <> ''"
    )
    op.drop_constraint("pk_stripe_events", "stripe_events", type_="primary")
    op.create_primary_key("pk_stripe_events", "stripe_events", ["account_id", "id"])

    op.alter_column(
        "sync_state",
        "account",
        new_column_name="account_id",
        type_=sa.String(255),
        existing_type=sa.Text(),
        existing_nullable=False,
    )
    # `self` was the key's own account, whose rows now carry `account`
    op.execute(
        sa.text("UPDATE sync_state SET account_id = :account WHERE account_id = 'self'").bindparams(
            account=account
        )
    )


def downgrade() -> None:
    # back to one account per database: refused when the mirror holds more than one
    bind = op.get_bind()
    accounts = {
        found
        for table in (*TABLES, "stripe_events")
        for (found,) in bind.execute(sa.text(f"SELECT DISTINCT account_id FROM {table}"))
    }
    if len(accounts) > 1:
        raise RuntimeError(
            f"the mirror holds {len(accounts)} accounts ({', '.join(sorted(accounts))}): "
            "a schema without the account in its keys holds one"
        )
    op.alter_column(
        "sync_state",
        "account_id",
        new_column_name="account",
        type_=sa.Text(),
        existing_type=sa.String(255),
        existing_nullable=False,
    )
    op.drop_constraint("pk_stripe_events", "stripe_events", type_="primary")
    op.create_primary_key("pk_stripe_events", "stripe_events", ["id"])
    op.drop_column("stripe_events", "account_id")
    _drop_keys(TABLES)
    for table in TABLES:
        op.create_primary_key(f"pk_{table}", table, ["id"])
    for table, column, parent, ondelete in FOREIGN_KEYS:
        op.create_foreign_key(
            f"fk_{table}_{column}_{parent}", table, parent, [column], ["id"], ondelete=ondelete
        )
    for table in TABLES:
        op.drop_column(table, "account_id")
