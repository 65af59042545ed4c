"""A mirror made before rows knew their account migrates: its rows are kept, tagged with the
documented account, under the new keys, and check-db agrees with the export they came from."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from alembic import command
from sqlalchemy import Engine, MetaData, create_engine, inspect, pool, text

from app import schema
from app.check.reconcile import check
from app.core.config import DEFAULT_ACCOUNT, PROJECT_ROOT, load_settings
from app.db.session import sqlalchemy_url
from app.load.json_files import read_json_objects
from app.load.rows import embedded_rows
from app.load.runner import json_account, only_account
from app.registry import RESOURCES, load_order

BEFORE_ACCOUNTS = "78fac6b51b6e"  # the head of a mirror made before this revision
SAMPLE = PROJECT_ROOT / "data" / "sample"
MIGRATION = next((PROJECT_ROOT / "alembic" / "versions").glob("*_account_in_every_key.py"))


@pytest.fixture()
def old_url(test_database_url: str) -> Iterator[str]:
    url = str(
        sqlalchemy_url(test_database_url)
        .set(database="stripe_db_test_account_migration")
        .render_as_string(hide_password=False)
    )
    schema.drop_database(url)
    schema.create_database(url)
    yield url
    schema.drop_database(url)


def _engine(url: str) -> Engine:
    return create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)


def fill_as_before(url: str) -> dict[str, int]:
    """The sample export written into the old schema as the ingest of that time wrote it:
    each object's row (its transformer's columns, the whole object, the API version), its
    embedded items, and placeholder rows for references to objects never exported. The rows
    per table, returned."""
    engine = _engine(url)
    counts: dict[str, int] = {}
    try:
        with engine.begin() as conn:
            tables = MetaData()
            tables.reflect(conn)
            for resource in load_order():
                objects = list(read_json_objects(SAMPLE / resource.file_name))
                parents = [_row(resource.transform(obj)) for obj in objects]
                children: dict[str, list[dict[str, Any]]] = {}
                for obj_row in parents:
                    for name, items in embedded_rows(resource, obj_row).items():
                        children.setdefault(name, []).extend(_row(item) for item in items)
                for name, batch in [(resource.name, parents), *children.items()]:
                    table = tables.tables[name]
                    _placeholders(conn, table, batch)
                    for r in batch:  # one at a time: each row has the columns it has
                        conn.execute(table.insert(), {k: v for k, v in r.items() if k in table.c})
                    counts[name] = counts.get(name, 0) + len(batch)
    finally:
        engine.dispose()
    return counts


def _row(values: dict[str, Any]) -> dict[str, Any]:
    # COPY wrote SQL NULL for None; an INSERT of None into a jsonb column would write JSON null
    kept = {k: v for k, v in values.items() if v is not None}
    return {**kept, "api_version": "2026-10-28.endive"}


def _placeholders(conn: Any, table: Any, batch: list[dict[str, Any]]) -> None:
    for fk in table.foreign_keys:
        column, target = fk.parent.name, fk.column.table.name
        for value in {r[column] for r in batch if r.get(column) is not None}:
            conn.execute(
                text(
                    f"INSERT INTO {target} (id, is_placeholder, referenced_by) "
                    "VALUES (:id, true, 'migration test') ON CONFLICT (id) DO NOTHING"
                ),
                {"id": value},
            )


def upgrade(url: str, revision: str = "head", account: str | None = None) -> None:
    config = schema.alembic_config(url)
    if account is not None:
        config.cmd_opts = _XArgs([f"account={account}"])  # type: ignore[assignment]
    command.upgrade(config, revision)


class _XArgs:
    """What `alembic -x account=…` hands the migration's context."""

    def __init__(self, x: list[str]) -> None:
        self.x = x


@pytest.mark.parametrize("account", [None, "acct_1MigratedAccount0"])
def test_a_mirror_made_before_accounts_migrates_and_check_db_agrees(old_url, account):
    upgrade(old_url, BEFORE_ACCOUNTS)
    counts = fill_as_before(old_url)
    assert counts["charges"] > 0 and counts["invoice_lines"] > 0
    upgrade(old_url, account=account)  # what `make init-db` runs on an existing mirror
    expected = account or DEFAULT_ACCOUNT
    engine = _engine(old_url)
    try:
        with engine.connect() as conn:
            for resource in RESOURCES:
                found = conn.execute(
                    text(f"SELECT account_id, count(*) FROM {resource.name} GROUP BY 1")
                ).all()
                assert [a for a, _n in found] == [expected], resource.name
            keys = inspect(conn).get_pk_constraint("charges")["constrained_columns"]
            assert keys == ["account_id", "id"]
            report = check(
                conn,
                load_order(),
                lambda r: read_json_objects(SAMPLE / r.file_name),
                account=expected,
            )
            assert report.ok, orjson.dumps(report.to_dict()).decode()[:2000]
            # every row kept (placeholders of objects the export never held included)
            for name, n in counts.items():
                rows = conn.execute(
                    text(f"SELECT count(*) FROM {name} WHERE NOT is_placeholder")
                ).scalar()
                assert rows == n, name
            conn.rollback()
        # and the migrated schema is the models' (`alembic check`)
        assert schema.pending_changes(old_url) == []
    finally:
        engine.dispose()


def test_the_sync_cursor_of_the_keys_own_account_moves_with_its_rows(old_url):
    upgrade(old_url, BEFORE_ACCOUNTS)
    engine = _engine(old_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO sync_state (account, livemode, cursor) VALUES "
                    "('self', false, now()), ('acct_1Connected000000', false, now())"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO stripe_events (id, type, created, raw, source) VALUES "
                    "('evt_own', 'customer.updated', now(), '{\"id\": \"evt_own\"}', 'sync'), "
                    "('evt_connect', 'customer.updated', now(), "
                    '\'{"id": "evt_connect", "account": "acct_1Connected000000"}\', \'webhook\')'
                )
            )
        upgrade(old_url)
        with engine.connect() as conn:
            assert sorted(conn.execute(text("SELECT account_id FROM sync_state")).scalars()) == [
                "acct_1Connected000000",
                DEFAULT_ACCOUNT,
            ]
            assert dict(conn.execute(text("SELECT id, account_id FROM stripe_events")).all()) == {
                "evt_own": DEFAULT_ACCOUNT,
                "evt_connect": "acct_1Connected000000",
            }
    finally:
        engine.dispose()


def test_the_migration_tags_old_rows_with_the_documented_default():
    spec = importlib.util.spec_from_file_location("account_migration", MIGRATION)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    assert migration.DEFAULT_ACCOUNT == DEFAULT_ACCOUNT
    assert Path(MIGRATION).name.startswith("20261203_")


@pytest.mark.e2e
@pytest.mark.parametrize("api", ["answers", "unreachable"])
def test_init_db_gives_an_old_mirrors_rows_the_keys_account(old_url, sandbox, api):
    # `make init-db` on a mirror made before accounts: the rows get the account GET /v1/account
    # names, so the next SOURCE=api load or sync updates them instead of adding the account
    # beside them; with no API to ask, the migration's own rule (acct_default) and a note
    import os
    import subprocess
    import sys

    from app.sandbox.resources.account import SANDBOX_ACCOUNT

    upgrade(old_url, BEFORE_ACCOUNTS)
    fill_as_before(old_url)
    base = sandbox.url if api == "answers" else "http://127.0.0.1:9"
    env = {
        **os.environ,
        "ENV": "DEV",
        "DATABASE_URL": old_url,
        "STRIPE_API_BASE": base,
        "STRIPE_SECRET_KEY": "sk_test_init_db_account",
        "STRIPE_ACCOUNT": "",
    }
    done = subprocess.run(
        [sys.executable, "scripts/init_db.py", "--only", "dev"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    expected = SANDBOX_ACCOUNT if api == "answers" else DEFAULT_ACCOUNT
    engine = _engine(old_url)
    try:
        with engine.connect() as conn:
            found = conn.execute(text("SELECT DISTINCT account_id FROM customers")).scalars()
            assert list(found) == [expected]
            # the old export names no account: it is the mirror's one account's, and agrees
            settings = load_settings("DEV")
            names = [r.name for r in load_order()]
            assert only_account(conn) == expected
            account = json_account(SAMPLE, names, settings, only_account(conn))
            report = check(
                conn,
                load_order(),
                lambda r: read_json_objects(SAMPLE / r.file_name),
                account=account,
            )
            assert account == expected and report.ok
    finally:
        engine.dispose()
    if api == "answers":
        assert f"given the key's account, {SANDBOX_ACCOUNT}" in done.stdout
    else:
        assert f"its rows get {DEFAULT_ACCOUNT}" in done.stderr and "-x account=" in done.stderr
