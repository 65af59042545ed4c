"""The commands a user runs: scripts/ingest_all.py and the per-table wrappers."""

import os
import socket
import subprocess
import sys

import orjson
import pytest

from app.core.config import PROJECT_ROOT
from app.synthetic import customer

PYTHON = sys.executable
# the commands as a user runs them: scripts and make in processes of their own
pytestmark = pytest.mark.e2e


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


@pytest.mark.tools("make")
def test_make_ingest_of_one_table_runs_its_script(cli_db, tmp_path):
    result = subprocess.run(
        # -o: never reinstall the venv from a test, whatever pyproject.toml's time stamp says
        ["make", "-o", ".venv/.installed", "ingest-products", "FILE=data/sample/products.json"],
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


@pytest.mark.tools("make")
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


# --- exit codes: a crash is 2 (never 1, which means "objects set aside"), Ctrl-C is 130 ---

# runs a command with its `target` replaced by one that fails on `resource`, as a bug would
FAULTY = """
import sys
import {module} as command
from app.commands.cli import run_command
from {command} import main

real = command.{target}

def faulty(conn, resources, *args, **kwargs):
    name = getattr(resources, "name", None) or resources[0].name
    if name == {resource!r}:
        raise {exc}
    return real(conn, resources, *args, **kwargs)

command.{target} = faulty
run_command(lambda: main(sys.argv[1:]))
"""


def run_faulty(module, target, resource, exc, args, env_extra, tmp_path):
    # the ingest command's loads run in app.load.runner: its faults are planted there
    command = "app.commands.ingest" if module == "app.load.runner" else module
    code = FAULTY.format(module=module, command=command, target=target, resource=resource, exc=exc)
    return run(["-c", code, *args], env_extra, tmp_path)


SAMPLE_ARGS = ["--json-dir", "data/sample", "-q", "--resources", "products,prices,customers"]


def test_a_crash_during_ingest_exits_2_with_one_line_and_what_was_done(cli_db, tmp_path):
    result = run_faulty(
        "app.load.runner",
        "ingest",
        "prices",
        'RuntimeError("boom with sk_test_4eC39HqLyjWDarjtT1zdp7dc\\nsecond line")',
        SAMPLE_ARGS,
        cli_db,
        tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "second line" not in result.stderr
    assert "error: unexpected RuntimeError: boom" in result.stderr and "--debug" in result.stderr
    assert "4eC39Hq" not in result.stderr + result.stdout
    # the summary: the resource done before the crash, then the one that crashed; no later one
    lines = result.stdout.splitlines()
    assert any(line.startswith("products ") and line.split()[2] == "3" for line in lines)
    assert any(
        line.startswith("prices") and "FAILED: unexpected RuntimeError" in line for line in lines
    )
    assert not any(line.startswith("customers") for line in lines)


def test_debug_asks_for_the_traceback(cli_db, tmp_path):
    for how, env in ((["--debug"], {}), ([], {"STRIPE_MIRROR_DEBUG": "1"})):
        result = run_faulty(
            "app.load.runner",
            "ingest",
            "products",
            'RuntimeError("boom")',
            [*SAMPLE_ARGS, *how],
            {**cli_db, **env},
            tmp_path,
        )
        assert result.returncode == 2
        assert "Traceback" in result.stderr and "RuntimeError: boom" in result.stderr


def test_ctrl_c_during_ingest_exits_130_with_the_partial_summary(cli_db, tmp_path):
    result = run_faulty(
        "app.load.runner",
        "ingest",
        "customers",
        "KeyboardInterrupt",
        SAMPLE_ARGS,
        cli_db,
        tmp_path,
    )
    assert result.returncode == 130
    assert result.stderr.strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in result.stderr
    assert (
        "prices" in result.stdout
        and "customers                 FAILED: interrupted" in result.stdout
    )


def test_a_crash_during_check_db_exits_2_not_1(cli_db, tmp_path):
    result = run_faulty(
        "app.commands.check_db",
        "check",
        "products",
        'ValueError("unexpected shape")',
        ["--json-dir", "data/sample", "-q", "--resources", "products"],
        cli_db,
        tmp_path,
    )
    assert result.returncode == 2
    assert "error: unexpected ValueError: unexpected shape" in result.stderr
    assert "Traceback" not in result.stderr


def test_ctrl_c_during_check_db_exits_130(cli_db, tmp_path):
    result = run_faulty(
        "app.commands.check_db",
        "check",
        "products",
        "KeyboardInterrupt",
        ["--json-dir", "data/sample", "-q", "--resources", "products"],
        cli_db,
        tmp_path,
    )
    assert result.returncode == 130 and "interrupted" in result.stderr


def test_run_command_turns_a_message_exit_into_2(capsys):
    from app.commands.cli import run_command

    def main():
        raise SystemExit("fetch failed (sk_test_4eC39HqLyjWDarjtT1zdp7dc)")

    with pytest.raises(SystemExit) as caught:
        run_command(main)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: fetch failed") and "4eC39Hq" not in err


@pytest.mark.parametrize(
    "script",
    [
        "scripts/ingest_all.py",
        "scripts/ingest/ingest_charges.py",
        "scripts/check_db_integrity.py",
        "scripts/populate.py",
        "scripts/init_db.py",
        "scripts/init_migration.py",
        "scripts/db_servers.py",
        "scripts/list_resources.py",
    ],
)
def test_every_command_offers_debug(script, tmp_path):
    result = run([script, "--help"], {}, tmp_path)
    assert result.returncode == 0 and "--debug" in result.stdout


# --- database URLs as people paste them ---


def test_a_postgres_scheme_url_loads(cli_db, tmp_path):
    url = cli_db["DATABASE_URL"].replace("postgresql://", "postgres://", 1)
    result = run(
        ["scripts/ingest/ingest_products.py", "--file", "data/sample/products.json", "-q"],
        {"DATABASE_URL": url},
        tmp_path,
    )
    assert result.returncode == 0, result.stderr


def test_a_refused_password_with_an_at_sign_is_masked_whole(test_database_url, tmp_path):
    host_and_db = test_database_url.rsplit("@", 1)[1]
    url = f"postgres://postgres:Pa@ss:w/rd@{host_and_db}"
    result = run(
        ["scripts/ingest_all.py", "--json-dir", "data/sample"], {"DATABASE_URL": url}, tmp_path
    )
    assert result.returncode == 2
    assert "postgres://postgres:***@" in result.stderr
    assert "Pa@" not in result.stderr and "ss:w" not in result.stderr and "rd@" not in result.stderr
    assert "password" in result.stderr and "Traceback" not in result.stderr


def test_a_url_that_is_not_postgresql_is_refused_in_one_line(tmp_path):
    result = run(
        ["scripts/check_db_integrity.py", "-q"],
        {"DATABASE_URL": "mysql://u:hunter2@h/db"},
        tmp_path,
    )
    assert result.returncode == 2
    assert "not a PostgreSQL URL" in result.stderr and "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr


# --- db_servers.py up: use what answers, refuse what only holds the port ---


def test_db_up_uses_the_servers_already_answering(test_database_url, tmp_path):
    result = run(
        ["scripts/db_servers.py", "up"],
        {"TEST_DATABASE_URL": test_database_url, "STRIPE_OLTP_NO_DOCKER": "1"},
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "test: PostgreSQL already answering" in result.stdout and "using it" in result.stdout


def test_db_up_refuses_a_port_held_by_something_else(test_database_url, tmp_path):
    with socket.socket() as listener:  # accepts connections, never speaks PostgreSQL
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = run(
            ["scripts/db_servers.py", "up"],
            {
                "DATABASE_URL": f"postgresql://postgres:postgres@127.0.0.1:{port}/stripe_db_dev",
                "TEST_DATABASE_URL": test_database_url,
                "STRIPE_OLTP_NO_DOCKER": "1",
            },
            tmp_path,
        )
    assert result.returncode == 2
    assert f"127.0.0.1:{port} is taken by something that does not answer as PostgreSQL" in (
        result.stderr
    )
    assert "point DATABASE_URL at a free port" in result.stderr and "Traceback" not in result.stderr


def test_db_up_refuses_a_server_that_rejects_the_credentials(test_database_url, tmp_path):
    wrong = test_database_url.replace("postgres:postgres@", "postgres:not-the-password@", 1)
    result = run(
        ["scripts/db_servers.py", "up"],
        {"TEST_DATABASE_URL": wrong, "STRIPE_OLTP_NO_DOCKER": "1"},
        tmp_path,
    )
    assert result.returncode == 2
    assert "password authentication failed" in result.stderr
    assert "not-the-password" not in result.stderr
