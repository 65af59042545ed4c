"""The Makefile hands what a user types to the scripts as data: never run by a shell or by make,
paths with spaces kept whole, and the ENV=PROD guard still in front of what destroys data."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from app.core.config import PROJECT_ROOT
from tests.fetch_helpers import TEST_KEY, objects_in

MAKEFILE = PROJECT_ROOT / "Makefile"
# nowhere to connect: a command that got past its arguments would stop here, writing nothing
UNREACHABLE_DB = "postgresql://postgres:postgres@127.0.0.1:1/none"
USER_VARIABLES = (
    "ENV SOURCE JSON_DIR MODE RESOURCES FILE N MSG REPORT SAMPLE_DATABASE_URL FETCH_RATE "
    "BENCH_CUSTOMERS STRIPE_FIXTURES"
).split()

pytestmark = [pytest.mark.e2e, pytest.mark.tools("make")]


def make(
    *args: str, cwd: Path = PROJECT_ROOT, dry_run: bool = False, **env: str
) -> subprocess.CompletedProcess[str]:
    # -o: never reinstall the venv from a test, whatever pyproject.toml's time stamp says
    command = ["make", "--no-print-directory", "-f", str(MAKEFILE), "-o", ".venv/.installed"]
    return subprocess.run(
        [*command, *(["-n"] if dry_run else []), *args],
        cwd=cwd,
        env={**os.environ, "ENV": "DEV", **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def attacks(marker: Path) -> list[str]:
    """Values that run `touch marker` if pasted into a recipe's shell line or expanded by make."""
    return [
        f'x"; touch {marker}; echo "',
        f"x'; touch {marker}; echo '",
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"$$(touch {marker})",
        f"$(shell touch {marker})",
        f"x; touch {marker}",
    ]


def make_targets() -> list[str]:
    return re.findall(r"^([a-z][a-z-]*):.*## ", MAKEFILE.read_text(), flags=re.MULTILINE)


def test_help_is_the_default_goal_and_shows_the_variables():
    result = make()
    assert result.returncode == 0, result.stderr
    assert "ingest-all" in result.stdout and "ingest-<table>" in result.stdout
    assert (
        "Variables: ENV=DEV SOURCE=json JSON_DIR=data/imported_stripe_data MODE=upsert"
        in result.stdout
    )


@pytest.mark.parametrize("env", ["PROD", "prod"])
def test_populate_is_refused_under_prod(env):
    result = make("populate", ENV=env)
    assert result.returncode != 0
    assert "'populate' is refused under ENV=PROD" in result.stderr


@pytest.mark.parametrize(
    ("target", "variable", "extra"),
    [
        ("help", "ENV", {}),
        ("ingest-all", "RESOURCES", {}),
        ("ingest-all", "JSON_DIR", {"RESOURCES": "products"}),
        ("ingest-all", "SOURCE", {}),
        ("ingest-all", "MODE", {}),
        ("ingest-products", "FILE", {}),
        ("check-db", "REPORT", {"RESOURCES": "products"}),
        ("init-migration", "MSG", {}),
        ("fetch", "RESOURCES", {}),
        ("fetch", "FETCH_RATE", {}),
        ("test-shared", "STRIPE_FIXTURES", {}),
    ],
)
def test_hostile_values_are_not_run(target, variable, extra, tmp_path):
    marker = tmp_path / "pwned"
    for value in attacks(marker):
        args = [f"{k}={v}" for k, v in {**extra, variable: value}.items()]
        result = make(
            target, *args, DATABASE_URL=UNREACHABLE_DB, REJECTS_DIR=str(tmp_path / "rejects")
        )
        assert not marker.exists(), (value, result.stdout, result.stderr)
        if target == "help":  # shown as typed
            assert f"ENV={value} " in result.stdout


def test_no_recipe_pastes_a_user_value_into_its_command_line():
    """Each value reaches its script through the environment; `make -n` shows the recipes."""
    values = [f"{name}=user-value-{name.lower()}" for name in USER_VARIABLES]
    for target in make_targets():
        result = make(target, *values, dry_run=True)
        assert "user-value-" not in result.stdout, (target, result.stdout)


def test_goal_names_are_not_run(tmp_path):
    goal = 'ingest-x";touch${IFS}pwned;"'  # no slash: it must match `ingest-%`
    result = make(goal, cwd=tmp_path)
    assert result.returncode == 2
    assert "error: no table 'x\";touch${IFS}pwned;\"'" in result.stderr
    refused = make("populate", 'x";touch${IFS}pwned;"', cwd=tmp_path, ENV="PROD")
    assert refused.returncode != 0
    assert "refused under ENV=PROD" in refused.stderr
    assert not (tmp_path / "pwned").exists()


@pytest.fixture()
def cli_db(engine, test_database_url):
    """make's scripts commit: give them the test database, emptied afterwards."""
    yield {"DATABASE_URL": test_database_url}
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "TRUNCATE products, prices, customers, payment_methods, subscriptions, "
            "subscription_items, invoices, invoice_lines, payment_intents, charges CASCADE"
        )


def test_paths_with_spaces_are_one_path(cli_db, tmp_path):
    json_dir = tmp_path / "a b"
    shutil.copytree(PROJECT_ROOT / "data" / "sample", json_dir)
    report = tmp_path / "r e" / "check db.json"
    env = {**cli_db, "REJECTS_DIR": str(tmp_path / "rejects x")}

    ingest = make("ingest-all", f"JSON_DIR={json_dir}", **env)
    assert ingest.returncode == 0, ingest.stderr
    products = next(line for line in ingest.stdout.splitlines() if line.startswith("products"))
    assert products.split()[1:3] == ["3", "3"]  # read, inserted

    one = make("ingest-products", f"FILE={json_dir / 'products.json'}", **env)
    assert one.returncode == 0, one.stderr
    products = next(line for line in one.stdout.splitlines() if line.startswith("products"))
    assert products.split()[1] == "3"

    check = make("check-db", f"JSON_DIR={json_dir}", f"REPORT={report}", **env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert report.is_file()


def test_fetch_into_a_folder_with_a_space(sandbox, tmp_path):
    sandbox.seed(customers=3)
    json_dir = tmp_path / "fetched data"
    result = make(
        "fetch",
        f"JSON_DIR={json_dir}",
        "RESOURCES=customers products",
        "FETCH_RATE=0",
        STRIPE_API_BASE=sandbox.url,
        STRIPE_SECRET_KEY=TEST_KEY,
    )
    assert result.returncode == 0, result.stderr
    assert "budget 0 req/s" in result.stderr
    assert len(objects_in(json_dir, "customers")) == 3
    assert objects_in(json_dir, "products")
