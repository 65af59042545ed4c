"""A real PostgreSQL (stripe_db_test) for every test that touches a database.

The schema is rebuilt once per session (drop_all → create_all); each test runs inside a
transaction that is rolled back, so code under test may commit (its commits become savepoints).

Every test is marked with what it needs, so the Makefile's tiers select by marker (`make test`:
all but `shared`; `make test-fast`; `make test-shared`): `db`, `sandbox` and `shared` are set here
from the fixtures a test uses, `e2e`, `slow` and `tools(…)` are written on the tests.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, create_engine, pool
from sqlalchemy.orm import Session

import app.models  # noqa: F401
from app.core.config import PROJECT_ROOT, load_settings
from app.db.base import Base
from app.db.session import sqlalchemy_url
from app.schema import alembic_config, create_database

FIXTURES3 = Path(
    os.environ.get("STRIPE_FIXTURES", PROJECT_ROOT.parent / "shared" / "stripe" / "fixtures3.json")
)

_plugins = (
    ["tests.sandbox_plugin"] if (Path(__file__).parent / "sandbox_plugin.py").exists() else []
)
pytest_plugins = _plugins


# a test that uses any of these fixtures, directly or through another, gets the marker
NEEDS = {
    "shared": {"fixtures3", "stripe_examples"},
    "db": {"test_database_url", "engine", "conn", "session"},
    "sandbox": {"sandbox_server", "sandbox", "stripe_sdk", "sandbox_factory"},
}


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("ENV", "DEV").upper() == "PROD":
        raise pytest.UsageError(
            "refusing to run the tests under ENV=PROD: they reset their database"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in NEEDS.items():
            if used & fixtures:
                item.add_marker(marker)
        if item.path.name.startswith("test_sandbox_"):  # the sandbox's own, some start their own
            item.add_marker("sandbox")


def pytest_runtest_setup(item: pytest.Item) -> None:
    # a command the README asks for that is missing fails the tests that run it, naming it: a
    # skip would pass the run without the paths that need it
    for mark in item.iter_markers("tools"):
        missing = [name for name in mark.args if shutil.which(name) is None]
        if missing:
            pytest.fail(f"{' and '.join(missing)} not found on PATH: install it", pytrace=False)


@pytest.fixture(scope="session")
def test_database_url() -> str:
    url = load_settings().test_database_url
    if not url:
        pytest.fail("TEST_DATABASE_URL is not set (see .env.dev)")
    if "test" not in url.rsplit("/", 1)[-1]:
        pytest.fail(f"TEST_DATABASE_URL must name a test database, got {url.rsplit('/', 1)[-1]!r}")
    return url


@pytest.fixture(scope="session")
def engine(test_database_url: str) -> Iterator[Engine]:
    create_database(test_database_url)
    engine = create_engine(sqlalchemy_url(test_database_url), poolclass=pool.NullPool)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    # the schema is the models' (test_schema proves the migrations build the same): tell Alembic
    # so, or a later `make init-db` would try to create these tables again
    command.stamp(alembic_config(test_database_url), "head", purge=True)
    yield engine
    engine.dispose()


@pytest.fixture()
def conn(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as connection:
        outer = connection.begin()
        try:
            yield connection
        finally:
            outer.rollback()


@pytest.fixture()
def session(conn: Connection) -> Iterator[Session]:
    with Session(bind=conn, join_transaction_mode="create_savepoint") as s:
        yield s


@pytest.fixture(scope="session")
def fixtures3() -> dict[str, Any]:
    """Stripe's example objects. Only `make test-shared` runs the tests that use them (`shared`),
    so a missing file is a failure that says where to put it, never a skip."""
    if not FIXTURES3.is_file():
        pytest.fail(
            f"Stripe's example objects not found at {FIXTURES3}: put fixtures3.json there or set "
            "STRIPE_FIXTURES to its path (`make test` leaves these tests out)",
            pytrace=False,
        )
    return dict(json.loads(FIXTURES3.read_text())["resources"])
