"""The account in every key: two Stripe accounts mirrored into one database keep apart, though
ids an account chooses (a product `prod_basic`, a price `price_basic`) repeat between them —
through the JSON ingest (each export's .meta.json names its account), the events path, the
delete sweep and check-db; and a run learns its account from STRIPE_ACCOUNT or GET /v1/account.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from app.check.reconcile import check
from app.client.stripe_api import mirrored_account
from app.commands import check_db as check_command
from app.core.config import DEFAULT_ACCOUNT, load_settings
from app.live.events import drain, store_events
from app.load.ingest import ingest
from app.load.runner import file_account, run
from app.registry import BY_NAME, load_order
from app.sandbox.resources.account import SANDBOX_ACCOUNT
from app.synthetic import price, product
from tests.fetch_helpers import TEST_KEY

ACCOUNT_A = "acct_1AaaaaaaaaaaaaaA"
ACCOUNT_B = "acct_1BbbbbbbbbbbbbbB"
MIRROR_TABLES = (
    "products, prices, customers, payment_methods, subscriptions, subscription_items, "
    "invoices, invoice_lines, payment_intents, charges, stripe_events, sync_state"
)


def chosen_product(name: str, product_id: str = "prod_basic") -> dict[str, Any]:
    """A product whose id its account chose (Stripe accepts `id` on create)."""
    return {**product(1), "id": product_id, "name": name}


def chosen_price(amount: int, price_id: str = "price_basic", product_id: str = "prod_basic"):
    return {**price(1, amount=amount), "id": price_id, "product": product_id}


def rows(conn, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(text(sql), params)]


@pytest.fixture()
def db(engine):
    """The test database, committed to: the runner and the drain write in transactions of
    their own."""
    yield engine
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {MIRROR_TABLES} CASCADE")


@pytest.fixture()
def settings(test_database_url, tmp_path):
    return dataclasses.replace(
        load_settings("DEV"),
        database_url=test_database_url,
        rejects_dir=tmp_path / "rejects",
        stripe_account="",
    )


def write_export(
    folder: Path,
    account: str | None,
    export: dict[str, list[Any]],
    started_at: str = "2026-12-01T10:00:00Z",
) -> Path:
    """A folder as `make fetch` writes it: list envelopes, each with its .meta.json."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, objects in export.items():
        envelope = {"object": "list", "url": f"/v1/{name}", "has_more": False, "data": objects}
        (folder / f"{name}.json").write_text(json.dumps(envelope))
        meta: dict[str, Any] = {"resource": name, "started_at": started_at}
        if account is not None:
            meta["account"] = account
        (folder / f"{name}.meta.json").write_text(json.dumps(meta))
    return folder


def ingest_folder(settings, folder: Path, names: list[str], *, sweep: bool = False):
    results = run(
        settings.database_url,
        load_order(names),
        settings,
        source="json",
        json_dir=folder,
        single_file=None,
        mode="upsert",
        rejects_dir=settings.rejects_dir,
        sweep=sweep,
    )
    assert not [r.error for r in results if r.error]
    return results


def test_the_same_chosen_ids_in_two_accounts_meet_in_one_database_through_json(
    db, settings, tmp_path
):
    a = write_export(
        tmp_path / "a",
        ACCOUNT_A,
        {"products": [chosen_product("Basic (A)")], "prices": [chosen_price(1000)]},
    )
    b = write_export(
        tmp_path / "b",
        ACCOUNT_B,
        {"products": [chosen_product("Basic (B)")], "prices": [chosen_price(2500)]},
    )
    ingest_folder(settings, a, ["products", "prices"])
    ingest_folder(settings, b, ["products", "prices"])
    with db.connect() as conn:
        assert rows(conn, "SELECT account_id, id, name FROM products ORDER BY account_id") == [
            (ACCOUNT_A, "prod_basic", "Basic (A)"),
            (ACCOUNT_B, "prod_basic", "Basic (B)"),
        ]
        # each price points at its own account's product (the foreign key includes the account)
        assert rows(
            conn,
            "SELECT p.account_id, p.unit_amount, pr.name FROM prices p JOIN products pr "
            "ON pr.account_id = p.account_id AND pr.id = p.product_id ORDER BY p.account_id",
        ) == [(ACCOUNT_A, 1000, "Basic (A)"), (ACCOUNT_B, 2500, "Basic (B)")]
    # a second run of one account changes nothing of either
    again = ingest_folder(settings, a, ["products", "prices"])
    assert [r.stats[r.resource].unchanged for r in again] == [1, 1]


def test_an_export_without_an_account_belongs_to_the_configured_or_default_account(settings):
    assert file_account({"account": ACCOUNT_A}, settings) == ACCOUNT_A
    assert file_account({}, settings) == DEFAULT_ACCOUNT
    configured = dataclasses.replace(settings, stripe_account=ACCOUNT_B)
    assert file_account({}, configured) == ACCOUNT_B
    # what the file records wins: it says where its objects came from
    assert file_account({"account": ACCOUNT_A}, configured) == ACCOUNT_A
    # a file naming none in a mirror of one account is that account's; STRIPE_ACCOUNT still wins
    assert file_account({}, settings, ACCOUNT_A) == ACCOUNT_A
    assert file_account({}, configured, ACCOUNT_A) == ACCOUNT_B


def test_the_sweep_of_one_account_never_touches_another_accounts_rows(db, settings, tmp_path):
    both = {"products": [chosen_product("Basic"), chosen_product("Extra", "prod_extra")]}
    ingest_folder(settings, write_export(tmp_path / "a1", ACCOUNT_A, both), ["products"])
    ingest_folder(settings, write_export(tmp_path / "b1", ACCOUNT_B, both), ["products"])
    # account A no longer lists prod_extra; B's prod_extra is not A's listing to judge
    only_basic = write_export(
        tmp_path / "a2", ACCOUNT_A, {"products": [chosen_product("Basic")]}, "2026-12-02T10:00:00Z"
    )
    (result,) = ingest_folder(settings, only_basic, ["products"], sweep=True)
    assert result.stats["products"].deleted == 1
    with db.connect() as conn:
        assert rows(
            conn, "SELECT account_id, id, deleted FROM products ORDER BY account_id, id"
        ) == [
            (ACCOUNT_A, "prod_basic", False),
            (ACCOUNT_A, "prod_extra", True),
            (ACCOUNT_B, "prod_basic", False),
            (ACCOUNT_B, "prod_extra", False),
        ]


def event(number: int, created: int, obj: dict[str, Any], account: str | None = None):
    found = {
        "id": f"evt_{number}",
        "object": "event",
        "type": f"{obj['object']}.updated",
        "created": created,
        "livemode": False,
        "api_version": "2026-10-28.endive",
        "data": {"object": obj},
    }
    if account is not None:
        found["account"] = account  # a connected account's event, as Connect webhooks send it
    return found


def test_events_apply_to_their_own_accounts_rows(db):
    with db.begin() as conn:
        stored = store_events(
            conn,
            [
                event(1, 1_000, chosen_product("Basic (A)"), ACCOUNT_A),
                event(2, 1_000, chosen_product("Basic (B)"), ACCOUNT_B),
                # no `account`: the receiver's own account
                event(3, 1_000, chosen_price(700), None),
            ],
            "webhook",
            ACCOUNT_A,
        )
    assert stored == 3
    assert drain(db, None).outcomes == {"applied": 3}
    # a later event of B's product changes B's row only
    with db.begin() as conn:
        store_events(conn, [event(4, 2_000, chosen_product("Renamed (B)"), ACCOUNT_B)], "sync")
    assert drain(db, None).outcomes == {"applied": 1}
    with db.connect() as conn:
        assert rows(conn, "SELECT account_id, name FROM products ORDER BY account_id") == [
            (ACCOUNT_A, "Basic (A)"),
            (ACCOUNT_B, "Renamed (B)"),
        ]
        assert rows(conn, "SELECT account_id, product_id FROM prices") == [
            (ACCOUNT_A, "prod_basic")
        ]
        assert rows(conn, "SELECT id, account_id FROM stripe_events ORDER BY id") == [
            ("evt_1", ACCOUNT_A),
            ("evt_2", ACCOUNT_B),
            ("evt_3", ACCOUNT_A),
            ("evt_4", ACCOUNT_B),
        ]


def test_an_older_event_of_one_account_is_stale_only_against_its_own_row(db):
    with db.begin() as conn:
        store_events(conn, [event(1, 2_000, chosen_product("New (A)"), ACCOUNT_A)], "webhook")
    drain(db, None)
    # B's state of the same id is older than A's row: it is B's first, so it applies
    with db.begin() as conn:
        store_events(conn, [event(2, 1_000, chosen_product("Old (B)"), ACCOUNT_B)], "webhook")
    assert drain(db, None).outcomes == {"applied": 1}


def test_check_db_of_one_account_ignores_another_accounts_rows(conn):
    products, prices = BY_NAME["products"], BY_NAME["prices"]
    export_a = {"products": [chosen_product("Basic (A)")], "prices": [chosen_price(1000)]}
    export_b = {
        "products": [chosen_product("Basic (B)"), chosen_product("Only B", "prod_b")],
        "prices": [chosen_price(2500)],
    }
    for account, export in ((ACCOUNT_A, export_a), (ACCOUNT_B, export_b)):
        for resource in (products, prices):
            ingest(conn, resource, export[resource.name], account=account)
    for account, export in ((ACCOUNT_A, export_a), (ACCOUNT_B, export_b)):
        report = check(conn, [products, prices], lambda r, e=export: e[r.name], account=account)
        assert report.ok, report.to_dict()
        assert [t.db_count for t in report.tables] == [len(export["products"]), 1]
    # A's export is not B's mirror: the check of B against it says so
    report = check(conn, [products], lambda r: export_a[r.name], account=ACCOUNT_B)
    found = report.tables[0]
    assert found.count("differs") == 1 and found.count("extra") == 1


def test_check_db_reads_the_account_from_the_exports_meta(db, settings, tmp_path):
    export = {"products": [chosen_product("Basic (A)")]}
    a = write_export(tmp_path / "a", ACCOUNT_A, export)
    ingest_folder(settings, a, ["products"])
    ingest_folder(
        settings,
        write_export(tmp_path / "b", ACCOUNT_B, {"products": [chosen_product("Basic (B)")]}),
        ["products"],
    )
    report = check_command.run(
        settings.database_url, [BY_NAME["products"]], settings, source="json", json_dir=a
    )
    assert report.ok, report.to_dict()


def test_the_run_learns_its_account_from_stripe_account_or_the_api(sandbox, settings):
    api = dataclasses.replace(settings, stripe_api_base=sandbox.url, stripe_secret_key=TEST_KEY)
    assert mirrored_account(api) == SANDBOX_ACCOUNT
    connected = dataclasses.replace(api, stripe_account=ACCOUNT_B)
    assert mirrored_account(connected) == ACCOUNT_B


def test_source_api_rows_carry_the_keys_account(db, sandbox, settings, stripe_sdk, monkeypatch):
    monkeypatch.setenv("FETCH_RATE", "0")
    stripe_sdk.Product.create(name="Listed")
    api = dataclasses.replace(settings, stripe_api_base=sandbox.url, stripe_secret_key=TEST_KEY)
    run(
        settings.database_url,
        [BY_NAME["products"]],
        api,
        source="api",
        json_dir=settings.json_dir,
        single_file=None,
        mode="upsert",
        rejects_dir=settings.rejects_dir,
    )
    with db.connect() as conn:
        assert rows(conn, "SELECT DISTINCT account_id FROM products") == [(SANDBOX_ACCOUNT,)]
