"""Engines and sessions, one per database URL."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import URL, Connection, Engine, create_engine, make_url

from app.config import load_settings


def sqlalchemy_url(url: str) -> URL:
    """Plain `postgresql://` URLs (as psql takes them) use psycopg2, the driver we ship;
    SQLAlchemy 2.1 would otherwise pick psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed


@lru_cache(maxsize=8)
def get_engine(url: str | None = None) -> Engine:
    return create_engine(sqlalchemy_url(url or load_settings().database_url), pool_pre_ping=True)


def raw_cursor(conn: Connection) -> Any:
    """A psycopg2 cursor on the connection's own transaction, for COPY and bulk statements."""
    return conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
