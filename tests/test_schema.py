"""Alembic owns the schema: the migrations must build exactly what the models describe."""

import pytest
from sqlalchemy import create_engine, inspect, pool

from app import schema
from app.db.session import sqlalchemy_url


@pytest.fixture()
def scratch_url(test_database_url):
    url = str(
        sqlalchemy_url(test_database_url)
        .set(database="stripe_db_test_migrations")
        .render_as_string(hide_password=False)
    )
    schema.drop_database(url)
    schema.create_database(url)
    yield url
    schema.drop_database(url)


def test_models_and_migrations_agree(scratch_url):
    # the equivalent of `alembic check`: upgrade to head, then autogenerate finds nothing
    assert schema.pending_changes(scratch_url) == []
    engine = create_engine(sqlalchemy_url(scratch_url), poolclass=pool.NullPool)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"customers", "charges", "subscription_items", "invoice_lines"} <= tables


def test_create_database_is_idempotent(scratch_url):
    assert schema.create_database(scratch_url) is False
