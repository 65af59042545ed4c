"""Create the databases and bring their schema to Alembic's head."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, inspect, pool, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError

import app.models  # noqa: F401  (every model's table, for create_all and autogenerate)
from app.core.config import PROJECT_ROOT, mask_secrets
from app.core.errors import ConfigError, first_line
from app.db.base import Base
from app.db.session import sqlalchemy_url

log = logging.getLogger(__name__)


def alembic_config(url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["url"] = url
    return config


def create_database(url: str) -> bool:
    """Create the URL's database if missing; True when it was created."""
    target = sqlalchemy_url(url)
    admin = create_engine(
        target.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=pool.NullPool
    )
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": target.database}
            ).scalar()
            if not exists:
                quoted = conn.dialect.identifier_preparer.quote(target.database or "")
                conn.execute(text(f"CREATE DATABASE {quoted}"))
            return not exists
    except OperationalError as exc:
        raise ConfigError(
            f"cannot reach PostgreSQL at {mask_secrets(url)}: {_reason(exc)} — "
            "start it with `make db-up`"
        ) from exc
    except SQLAlchemyError as exc:  # e.g. the user may not create databases
        raise ConfigError(
            f"cannot create the database of {mask_secrets(url)}: {_reason(exc)}"
        ) from exc
    finally:
        admin.dispose()


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's first line, secrets masked: libpq's messages run on with context."""
    return mask_secrets(first_line(getattr(exc, "orig", None) or exc))


def upgrade(url: str, account: str | None = None) -> None:
    """Bring the schema to head; `account`: the account the rows of a mirror made before rows
    recorded theirs are given (the migration's `-x account=…`)."""
    config = alembic_config(url)
    if account:
        config.cmd_opts = argparse.Namespace(x=[f"account={account}"])
    command.upgrade(config, "head")


def rows_without_account(url: str) -> bool:
    """Whether the database holds a mirror made before rows recorded their account: Stripe
    tables without `account_id`, with rows in them."""
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            found = inspect(conn)
            for table in Base.metadata.sorted_tables:
                if "account_id" not in table.c or not found.has_table(table.name):
                    continue
                if any(c["name"] == "account_id" for c in found.get_columns(table.name)):
                    return False  # the mirror already records its account
                if conn.execute(text(f"SELECT EXISTS (SELECT FROM {table.name})")).scalar():
                    return True
        return False
    finally:
        engine.dispose()


def pending_changes(url: str) -> list[object]:
    """What autogenerate would write: empty when the models and the migrations agree.

    The database must be at head first (it is migrated here), as `alembic check` requires.
    """
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    upgrade(url)
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def drop_database(url: str) -> None:
    target = sqlalchemy_url(url)
    admin = create_engine(
        target.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=pool.NullPool
    )
    try:
        with admin.connect() as conn:
            quoted = conn.dialect.identifier_preparer.quote(target.database or "")
            conn.execute(text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
    except OperationalError as exc:
        raise unreachable(url, exc) from exc
    finally:
        admin.dispose()


def recreate_database(url: str) -> None:
    """An empty database at `url` with the models' tables (a benchmark's scratch database):
    dropped if it exists, created, its tables made from the models."""

    drop_database(url)
    create_database(url)
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        Base.metadata.create_all(engine)
    finally:
        engine.dispose()


def require_tables(conn: Connection, resources: list[Any]) -> None:
    """Fail with what to do when a resource's table, or a child table, is not there."""
    tables = [r.name for r in resources] + [c.name for r in resources for c in r.children]
    inspector = inspect(conn)
    missing = [t for t in tables if not inspector.has_table(t)]
    if missing:
        raise ConfigError(f"table(s) {', '.join(missing)} do not exist: run `make init-db` first")


def unreachable(url: str, exc: OperationalError) -> ConfigError:
    """The error to raise when the database does not answer, password masked."""
    reason = _reason(exc)
    hint = (
        "check the user and password in the URL"
        if "authentication failed" in reason or "role" in reason
        else "start it with `make db-up`"
    )
    return ConfigError(f"cannot reach the database ({mask_secrets(url)}): {reason} — {hint}")
