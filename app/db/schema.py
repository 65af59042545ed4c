"""Create the databases and bring their schema to Alembic's head."""

from __future__ import annotations

import logging

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, pool, text
from sqlalchemy.exc import OperationalError

from app.config import PROJECT_ROOT, mask_secrets
from app.db.session import sqlalchemy_url
from app.errors import ConfigError

log = logging.getLogger(__name__)


def alembic_config(url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["url"] = url
    return config


def create_database(url: str) -> bool:
    """Create the URL's database if missing; True when it was created."""
    target = sqlalchemy_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT",
                          poolclass=pool.NullPool)
    try:
        with admin.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                  {"name": target.database}).scalar()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{target.database}"'))
            return not exists
    except OperationalError as exc:
        raise ConfigError(
            f"cannot reach PostgreSQL at {mask_secrets(url)}: {str(exc.orig).strip()} — "
            "start it with `make db-up`"
        ) from exc
    finally:
        admin.dispose()


def upgrade(url: str) -> None:
    command.upgrade(alembic_config(url), "head")


def pending_changes(url: str) -> list[object]:
    """What autogenerate would write: empty when the models and the migrations agree.

    The database must be at head first (it is migrated here), as `alembic check` requires.
    """
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import app.models  # noqa: F401
    from app.db.base import Base

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
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT",
                          poolclass=pool.NullPool)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
    finally:
        admin.dispose()
