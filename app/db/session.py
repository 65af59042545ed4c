"""Engines and sessions, one per database URL."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import URL, Connection, Engine, create_engine

from app.core.config import load_settings, parse_database_url

DRIVER = "postgresql+psycopg2"


def sqlalchemy_url(url: str) -> URL:
    """The URL as SQLAlchemy wants it, whatever form the user pasted (see parse_database_url).

    Built from its parts rather than from the string, so a password holding `@`, `:`, `/` or
    `%` reaches the server as written. Every form runs on psycopg2, the driver we ship
    (SQLAlchemy 2.1 would pick psycopg 3 for a plain `postgresql://`).
    """
    parts = parse_database_url(url)
    query: dict[str, list[str]] = {}
    for key, value in parts.query:
        query.setdefault(key, []).append(value)
    return URL.create(
        DRIVER,
        username=parts.user,
        password=parts.password,
        host=parts.host,
        port=parts.port,
        database=parts.database,
        query={k: v[0] if len(v) == 1 else tuple(v) for k, v in query.items()},
    )


@lru_cache(maxsize=8)
def get_engine(url: str | None = None) -> Engine:
    return create_engine(sqlalchemy_url(url or load_settings().database_url), pool_pre_ping=True)


def raw_cursor(conn: Connection) -> Any:
    """A psycopg2 cursor on the connection's own transaction, for COPY and bulk statements."""
    return conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
