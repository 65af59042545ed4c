"""The commands a user runs: scripts/ingest_all.py and the per-table wrappers."""

import os
import subprocess
import sys

import orjson
import pytest

from app.config import PROJECT_ROOT
from app.synthetic import customer

PYTHON = sys.executable


@pytest.fixture()
def cli_db(engine, test_database_url):
    """The command-line tools commit: give them the test database, emptied afterwards."""
    yield {"DATABASE_URL": test_database_url}
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "TRUNCATE products, prices, customers, payment_methods, subscriptions, "
            "subscription_items, invoices, invoice_lines, payment_intents, charges CASCADE"
        )


def run(args, env_extra, tmp_path):
    env = {**os.environ, "REJECTS_DIR": str(tmp_path / "rejects"), **env_extra}
    return subprocess.run(
        [PYTHON, *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_ingest_all_of_the_sample_then_again_reports_unchanged(cli_db, tmp_path):
    first = run(["scripts/ingest_all.py", "--json-dir", "data/sample", "-q"], cli_db, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "charges" in first.stdout and "placeholders" in first.stdout
    second = run(["scripts/ingest_all.py", "--json-dir", "data/sample", "-q"], cli_db, tmp_path)
    assert second.returncode == 0, second.stderr
    customers_line = next(
        line for line in second.stdout.splitlines() if line.startswith("customers")
    )
    read, inserted, updated, unchanged = (
        int(x.replace(",", "")) for x in customers_line.split()[1:5]
    )
    assert (read, inserted, updated, unchanged) == (12, 0, 0, 12)


def test_rejected_objects_give_exit_code_1_and_a_rejects_file(cli_db, tmp_path):
    bad = customer(2)
    bad["balance"] = "lots"
    path = tmp_path / "customers.json"
    path.write_bytes(orjson.dumps({"object": "list", "data": [customer(1), bad]}))
    result = run(
        ["scripts/ingest/ingest_customers.py", "--file", str(path), "-q"], cli_db, tmp_path
    )
    assert result.returncode == 1
    assert "1 object(s) set aside" in result.stderr
    rejects = (tmp_path / "rejects" / "customers.rejects.jsonl").read_text()
    assert "cus_00000000000002" in rejects and "integer amount" in rejects


def test_file_that_is_not_json_gives_exit_code_2_naming_it(cli_db, tmp_path):
    path = tmp_path / "charges.json"
    path.write_text("<html>502 Bad Gateway</html>")
    result = run(["scripts/ingest/ingest_charges.py", "--file", str(path)], cli_db, tmp_path)
    assert result.returncode == 2
    assert str(path) in result.stderr and "not JSON" in result.stderr
    assert "FAILED" in result.stdout


def test_missing_json_dir_says_what_to_do(cli_db, tmp_path):
    result = run(
        [
            "scripts/ingest_all.py",
            "--json-dir",
            str(tmp_path / "nowhere"),
            "--resources",
            "products",
        ],
        cli_db,
        tmp_path,
    )
    assert result.returncode == 2
    assert "file not found" in result.stderr and "make fetch" in result.stderr


def test_unknown_resource_is_named(cli_db, tmp_path):
    result = run(["scripts/ingest_all.py", "--resources", "refunds"], cli_db, tmp_path)
    assert result.returncode == 2
    assert "unknown resource(s): refunds" in result.stderr


def test_unreachable_database_says_to_start_it(tmp_path):
    result = run(
        ["scripts/ingest_all.py", "--json-dir", "data/sample"],
        {"DATABASE_URL": "postgresql://postgres:secret@127.0.0.1:1/none"},
        tmp_path,
    )
    assert result.returncode == 2
    assert "make db-up" in result.stderr and "secret" not in result.stderr


def test_help_explains_the_options(tmp_path):
    result = run(["scripts/ingest_all.py", "--help"], {}, tmp_path)
    assert result.returncode == 0
    for word in ("--source", "--json-dir", "--mode", "--resources", "Exit codes"):
        assert word in result.stdout


def test_make_ingest_of_one_table_runs_its_script(cli_db, tmp_path):
    result = subprocess.run(
        ["make", "ingest-products", "FILE=data/sample/products.json"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "REJECTS_DIR": str(tmp_path), **cli_db},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "scripts/ingest/ingest_products.py" in result.stdout
    products_line = next(line for line in result.stdout.splitlines() if line.startswith("products"))
    assert products_line.split()[1:3] == ["3", "3"]  # read, inserted


def test_make_ingest_of_an_unknown_table_names_the_tables():
    result = subprocess.run(
        ["make", "ingest-refunds"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "no table 'refunds'" in result.stderr and "charges" in result.stderr


def test_a_file_that_breaks_off_keeps_and_reports_the_batches_before_the_break(cli_db, tmp_path):
    lines = [orjson.dumps(customer(n)).decode() for n in range(1, 12001)]
    path = tmp_path / "customers.json"
    path.write_text('{"object": "list", "data": [\n' + ",\n".join(lines) + ',\n{"id": "cus_tru')
    result = run(
        ["scripts/ingest/ingest_customers.py", "--file", str(path), "-q"], cli_db, tmp_path
    )
    assert result.returncode == 2
    assert "not valid JSON after 12000 objects" in result.stderr
    customers_line = next(
        line for line in result.stdout.splitlines() if line.startswith("customers ")
    )
    read, inserted = (int(x.replace(",", "")) for x in customers_line.split()[1:3])
    assert read == 12000 and 0 < inserted < 12000  # whole batches landed, the last ones not
    assert "customers                 FAILED" in result.stdout
