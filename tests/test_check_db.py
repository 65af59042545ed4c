"""The integrity check (app/check/reconcile.py, scripts/check_db_integrity.py) on a real PostgreSQL:
each kind of damage is found and named, and a clean mirror reports nothing."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Connection, create_engine, pool, text

from app.check.reconcile import CheckReport, check
from app.commands import check_db as reconcile_command
from app.core.config import load_settings
from app.core.strict_json import Unreadable
from app.db.base import Base
from app.db.session import sqlalchemy_url
from app.load.api_source import read_api_objects
from app.load.ingest import ingest
from app.registry import BY_NAME, RESOURCES, load_order
from app.sandbox.server import run_in_thread
from app.schema import create_database, drop_database
from app.synthetic import deleted_customer, list_envelope, sample_export

Export = dict[str, list[Any]]


def load(conn: Connection, export: Export) -> None:
    for resource in load_order(export):
        ingest(conn, resource, export[resource.name])


def run_check(conn: Connection, export: Export) -> CheckReport:
    return check(conn, load_order(export), lambda r: export[r.name])


def table(report: CheckReport, name: str):
    return next(t for t in report.tables if t.table == name)


def failures(report: CheckReport) -> dict[str, dict[str, int]]:
    """{table: {kind: count}} of every failing finding: what a damage test expects, exactly."""
    return {
        t.table: {k: f.count for k, f in t.findings.items() if f.failure}
        for t in report.tables
        if t.failures
    }


@pytest.fixture()
def sample() -> Export:
    return sample_export()


@pytest.fixture()
def loaded(conn: Connection, sample: Export) -> Export:
    load(conn, sample)
    return sample


# --- a clean mirror -------------------------------------------------------------------------


def test_clean_sample_reports_zero_differences(conn, loaded):
    report = run_check(conn, loaded)
    assert failures(report) == {}
    assert report.ok
    assert [t.table for t in report.tables] == [
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
    ]
    charges = table(report, "charges")
    assert (charges.source_count, charges.db_count) == (13, 13)
    assert table(report, "invoice_lines").source_count == 12


def test_clean_ingest_of_stripes_example_objects_reports_zero_differences(conn, fixtures3):
    export = {r.name: [fixtures3[r.object_name]] for r in RESOURCES}
    load(conn, export)
    report = run_check(conn, export)
    assert failures(report) == {}
    assert all(t.source_count == 1 for t in report.tables if t.parent is None)


def test_a_placeholder_never_filled_is_named_but_not_a_failure(conn, loaded):
    # the sample's one-off charge belongs to a customer Stripe no longer lists
    report = run_check(conn, loaded)
    placeholders = table(report, "customers").findings["placeholders"]
    assert placeholders.count == 1
    assert placeholders.samples == [
        {"id": "cus_00000000000013", "referenced_by": "ch_00000000000013"}
    ]
    assert report.ok


# --- damage in the database -----------------------------------------------------------------


def test_a_deleted_row_is_reported_missing(conn, loaded):
    conn.exec_driver_sql("DELETE FROM charges WHERE id = 'ch_00000000000004'")
    report = run_check(conn, loaded)
    assert failures(report) == {"charges": {"missing": 1}}
    assert table(report, "charges").findings["missing"].samples == [{"id": "ch_00000000000004"}]
    assert not report.ok


def test_an_added_row_is_reported_extra(conn, loaded):
    conn.exec_driver_sql(
        "INSERT INTO products (account_id, id, raw, livemode) "
        "VALUES ('acct_default', 'prod_added', '{\"id\": \"prod_added\"}', false)"
    )
    report = run_check(conn, loaded)
    assert failures(report) == {"products": {"extra": 1}}
    assert table(report, "products").findings["extra"].samples == [{"id": "prod_added"}]


def test_a_field_changed_in_the_stored_object_is_named(conn, loaded):
    conn.exec_driver_sql(
        "UPDATE customers SET raw = jsonb_set(raw, '{address,city}', '\"Paris\"') "
        "WHERE id = 'cus_00000000000002'"
    )
    report = run_check(conn, loaded)
    assert failures(report) == {"customers": {"differs": 1}}
    sample = table(report, "customers").findings["differs"].samples[0]
    assert sample == {"id": "cus_00000000000002", "columns": [], "fields": ["address.city"]}


def test_a_typed_column_edited_while_the_stored_object_is_intact_is_caught(conn, loaded):
    conn.exec_driver_sql("UPDATE charges SET amount = 1 WHERE id = 'ch_00000000000005'")
    report = run_check(conn, loaded)
    assert failures(report) == {"charges": {"differs": 1}}
    sample = table(report, "charges").findings["differs"].samples[0]
    assert sample == {"id": "ch_00000000000005", "columns": ["amount"], "fields": []}


def test_a_child_row_edited_in_the_database_is_caught(conn, loaded):
    conn.exec_driver_sql(
        "UPDATE invoice_lines SET amount = amount + 1 WHERE id = 'il_00000000000003'"
    )
    report = run_check(conn, loaded)
    assert failures(report) == {"invoice_lines": {"differs": 1}}
    assert table(report, "invoice_lines").findings["differs"].samples[0]["columns"] == ["amount"]


def test_an_orphaned_foreign_key_is_reported_dangling(conn, loaded):
    # constraints can be bypassed (replication role, disabled triggers): the check looks anyway
    conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
    conn.exec_driver_sql("DELETE FROM customers WHERE id = 'cus_00000000000013'")
    conn.exec_driver_sql("SET LOCAL session_replication_role = origin")
    report = run_check(conn, loaded)
    assert failures(report) == {"charges": {"dangling": 1}}
    assert table(report, "charges").findings["dangling"].samples == [
        {
            "id": "ch_00000000000013",
            "column": "customer_id",
            "points_to": "cus_00000000000013",
            "target": "customers",
        }
    ]


def test_a_row_marked_deleted_in_the_database_only_is_reported(conn, loaded):
    conn.exec_driver_sql("UPDATE prices SET deleted = true WHERE id = 'price_00000000000002'")
    report = run_check(conn, loaded)
    assert failures(report) == {"prices": {"deletion_differs": 1}}
    sample = table(report, "prices").findings["deletion_differs"].samples[0]
    assert sample == {"id": "price_00000000000002", "deleted_in": "database"}


# --- damage in the source -------------------------------------------------------------------


def test_a_field_changed_in_the_json_is_named_down_to_the_embedded_item(conn, loaded):
    changed = copy.deepcopy(loaded)
    sub = next(s for s in changed["subscriptions"] if s["id"] == "sub_00000000000007")
    sub["items"]["data"][0]["quantity"] = 3
    report = run_check(conn, changed)
    assert failures(report) == {
        "subscriptions": {"differs": 1},
        "subscription_items": {"differs": 1},
    }
    assert table(report, "subscriptions").findings["differs"].samples == [
        {"id": "sub_00000000000007", "columns": [], "fields": ["items.data[0].quantity"]}
    ]
    assert table(report, "subscription_items").findings["differs"].samples == [
        {"id": "si_00000000000007", "columns": ["quantity"], "fields": ["quantity"]}
    ]


def test_an_object_only_in_the_json_is_missing_and_one_dropped_from_it_is_extra(conn, loaded):
    changed = copy.deepcopy(loaded)
    dropped = changed["payment_intents"].pop()
    changed["payment_intents"].append({**dropped, "id": "pi_new"})
    report = run_check(conn, changed)
    assert failures(report) == {"payment_intents": {"missing": 1, "extra": 1}}
    found = table(report, "payment_intents").findings
    assert found["missing"].samples == [{"id": "pi_new"}]
    assert found["extra"].samples == [{"id": dropped["id"]}]


def test_an_object_the_database_holds_only_as_a_placeholder_is_not_replaced(conn, loaded):
    changed = copy.deepcopy(loaded)
    changed["customers"].append(sample_export(customers=13)["customers"][0])  # cus 13 returns
    report = run_check(conn, changed)
    assert failures(report) == {"customers": {"not_replaced": 1}}
    assert table(report, "customers").findings["not_replaced"].samples == [
        {"id": "cus_00000000000013"}
    ]


def test_an_object_deleted_in_stripe_is_listed_apart_once_the_database_says_so(conn, loaded):
    changed = copy.deepcopy(loaded)
    changed["customers"].append(deleted_customer(4))
    before = run_check(conn, changed)
    assert failures(before) == {"customers": {"deletion_differs": 1}}
    assert (
        table(before, "customers").findings["deletion_differs"].samples[0]["deleted_in"] == "source"
    )
    ingest(conn, BY_NAME["customers"], changed["customers"])
    after = run_check(conn, changed)
    assert failures(after) == {}
    assert table(after, "customers").findings["soft_deleted"].samples == [
        {"id": "cus_00000000000004"}
    ]


def test_an_object_the_transformer_refuses_is_reported_unreadable(conn, loaded):
    changed = copy.deepcopy(loaded)
    changed["products"].append({"object": "product", "name": "no id"})
    changed["products"].append(Unreadable(7, "line 7 is not JSON", "{oops"))
    report = run_check(conn, changed)
    assert failures(report) == {"products": {"unreadable": 2}}
    reasons = [s["reason"] for s in table(report, "products").findings["unreadable"].samples]
    assert reasons == ["the object has no string `id`", "line 7 is not JSON"]


def test_an_embedded_item_of_the_wrong_type_is_reported_unreadable(conn, loaded):
    changed = copy.deepcopy(loaded)
    changed["subscriptions"][0]["items"]["data"][0]["quantity"] = "two"
    report = run_check(conn, changed)
    # unreadable in the source, so the stored row and its item have nothing to match: extra too
    assert failures(report) == {
        "subscriptions": {"unreadable": 1, "extra": 1},
        "subscription_items": {"extra": 1},
    }
    sample = table(report, "subscriptions").findings["unreadable"].samples[0]
    assert sample["id"] == changed["subscriptions"][0]["id"]
    assert "expected an integer" in sample["reason"]


def test_an_object_postgresql_cannot_hold_is_named_and_the_rest_of_its_table_checked(conn, loaded):
    changed = copy.deepcopy(loaded)
    refused = changed["customers"][0]
    refused["email"] = "a\u0000b@example.com"
    changed["customers"][1]["name"] = "Changed after the load"
    report = run_check(conn, changed)
    customers = table(report, "customers")
    assert customers.error is None
    assert failures(report) == {"customers": {"unreadable": 1, "extra": 1, "differs": 1}}
    sample = customers.findings["unreadable"].samples[0]
    assert sample["id"] == refused["id"] and "NUL" in sample["reason"]
    assert customers.findings["extra"].samples[0]["id"] == refused["id"]


def test_an_id_listed_twice_counts_its_last_version_as_the_ingest_does(conn, loaded):
    changed = copy.deepcopy(loaded)
    newer = copy.deepcopy(changed["products"][0])
    newer["name"] = "Renamed"
    changed["products"].append(newer)
    ingest(conn, BY_NAME["products"], changed["products"])
    report = run_check(conn, changed)
    assert failures(report) == {}
    assert table(report, "products").source_count == 3


def test_the_check_leaves_no_temporary_tables_behind(conn, loaded):
    run_check(conn, loaded)
    left = conn.execute(
        text(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'expected_%' AND relpersistence = 't'"
        )
    ).scalar_one()
    assert left == 0


# --- the command ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch_url(test_database_url: str) -> Iterator[str]:
    """The command opens its own connections, so it needs committed data: a scratch database."""
    url = test_database_url.rsplit("/", 1)[0] + "/stripe_db_test_check_cli"
    drop_database(url)
    create_database(url)
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        load(conn, sample_export())
    engine.dispose()
    yield url
    drop_database(url)


@pytest.fixture()
def json_dir(tmp_path: Path) -> Path:
    for name, objects in sample_export().items():
        (tmp_path / f"{name}.json").write_bytes(orjson.dumps(list_envelope(objects, f"/v1/{name}")))
    return tmp_path


def test_command_exits_0_and_writes_a_clean_report(scratch_url, json_dir, tmp_path, capsys):
    report_path = tmp_path / "report.json"
    code = reconcile_command.main(
        [
            "--json-dir",
            str(json_dir),
            "--database-url",
            scratch_url,
            "--json",
            str(report_path),
            "-q",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "OK: the database agrees" in out
    report = orjson.loads(report_path.read_bytes())
    assert report["ok"] is True and report["failures"] == 0
    assert "postgres:***@" in report["database"]
    customers = next(t for t in report["tables"] if t["table"] == "customers")
    assert customers["findings"]["placeholders"]["count"] == 1
    assert customers["findings"]["placeholders"]["failure"] is False


def test_command_names_a_changed_object_and_exits_1(scratch_url, json_dir, tmp_path, capsys):
    path = json_dir / "charges.json"
    envelope = orjson.loads(path.read_bytes())
    envelope["data"][0]["amount"] += 1
    path.write_bytes(orjson.dumps(envelope))
    report_path = tmp_path / "report.json"
    code = reconcile_command.main(
        [
            "--json-dir",
            str(json_dir),
            "--database-url",
            scratch_url,
            "--resources",
            "charges",
            "--json",
            str(report_path),
            "-q",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert f"{envelope['data'][0]['id']}  columns: amount; object fields: amount" in out
    report = orjson.loads(report_path.read_bytes())
    assert report["ok"] is False
    assert report["tables"][0]["findings"]["differs"]["count"] == 1


def test_command_exits_2_when_a_source_file_is_missing(scratch_url, tmp_path, capsys):
    code = reconcile_command.main(
        [
            "--json-dir",
            str(tmp_path / "nowhere"),
            "--database-url",
            scratch_url,
            "--resources",
            "products",
            "-q",
        ]
    )
    assert code == 2
    assert "NOT CHECKED" in capsys.readouterr().out


def test_command_exits_2_on_an_unknown_resource(capsys):
    assert reconcile_command.main(["--resources", "refunds", "-q"]) == 2
    assert "unknown resource" in capsys.readouterr().err


# --- against the API (the local sandbox, over HTTP, through the stripe SDK) -----------------


@pytest.fixture(scope="module")
def sandbox_settings() -> Iterator[Any]:
    with run_in_thread() as handle:
        handle.seed(customers=3)
        yield replace(
            load_settings(), stripe_api_base=handle.url, stripe_secret_key="sk_test_check_db"
        )


@pytest.mark.sandbox
def test_source_api_reconciles_against_the_sandbox(conn, sandbox_settings):
    for resource in load_order():
        ingest(conn, resource, read_api_objects(resource, sandbox_settings))
    clean = check(conn, load_order(), lambda r: read_api_objects(r, sandbox_settings), source="api")
    assert failures(clean) == {}
    assert table(clean, "charges").source_count > 0
    conn.exec_driver_sql(
        "UPDATE customers SET email = 'edited@example.com' "
        "WHERE id = (SELECT min(id) FROM customers WHERE NOT is_placeholder)"
    )
    damaged = check(
        conn, load_order(), lambda r: read_api_objects(r, sandbox_settings), source="api"
    )
    assert failures(damaged) == {"customers": {"differs": 1}}
    assert table(damaged, "customers").findings["differs"].samples[0]["columns"] == ["email"]


def test_embedded_copies_of_other_objects_count_by_id_and_the_rest_still_counts(conn, loaded):
    """What events leave behind (Stripe sends none to the embedding object) is no difference:
    an expansion the listing asked for, a subscription item's copy of a price since archived.
    Anything else in the same objects still is."""
    source = copy.deepcopy(loaded)
    for obj in source["customers"]:
        settings_ = obj.get("invoice_settings") or {}
        if isinstance(settings_.get("default_payment_method"), str):
            settings_["default_payment_method"] = {
                "id": settings_["default_payment_method"],
                "object": "payment_method",
                "type": "card",
            }
    for obj in source["subscriptions"]:
        for item in obj["items"]["data"]:
            if isinstance(item.get("price"), dict):
                item["price"]["active"] = False
    assert failures(run_check(conn, source)) == {}
    source["customers"][0]["name"] = "Renamed"
    source["subscriptions"][0]["items"]["data"][0]["quantity"] = 99
    found = failures(run_check(conn, source))
    assert found == {
        "customers": {"differs": 1},
        "subscriptions": {"differs": 1},
        "subscription_items": {"differs": 1},
    }


def test_payment_methods_of_a_deleted_customer_count_as_detached(conn, loaded):
    """Stripe lists payment methods only under a live customer: once the customer is deleted
    (soft-deleted in the mirror) its cards are listed nowhere, which is no difference."""
    source = copy.deepcopy(loaded)
    gone = source["payment_methods"].pop(0)
    owner = gone["customer"]
    source["customers"] = [c for c in source["customers"] if c["id"] != owner]
    ingest(conn, BY_NAME["customers"], [{"id": owner, "object": "customer", "deleted": True}])
    report = run_check(conn, source)
    assert failures(report) == {}
    assert table(report, "payment_methods").count("detached") == 1
