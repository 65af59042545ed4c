"""populate against the local sandbox: idempotent, --force, guards, failures reported."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.commands.populate import load_fixtures, populate
from app.core.config import PROJECT_ROOT, load_settings
from app.core.errors import LiveKeyError, ProdGuardError

FIXTURES = PROJECT_ROOT / "data" / "fixtures"
SCRIPT = PROJECT_ROOT / "scripts" / "populate.py"


@pytest.fixture()
def settings(sandbox):
    return dataclasses.replace(
        load_settings("DEV"),
        stripe_api_base=sandbox.url,
        stripe_secret_key="sk_test_populate_tests",
    )


def counts(sandbox) -> dict[str, int]:
    return sandbox.store.counts()


def live_subscriptions(sandbox) -> list[dict]:
    return [
        s for s in sandbox.store.tables["subscription"].by_id.values() if s["status"] == "active"
    ]


def test_second_run_creates_nothing(sandbox, settings):
    fixtures = load_fixtures(FIXTURES)
    first = populate(settings, fixtures)
    assert first.failed == 0, first.failures
    assert first.counts["products"]["created"] == len(fixtures.products)
    assert first.counts["prices"]["created"] == len(fixtures.prices)
    assert first.counts["customers"]["created"] == len(fixtures.customers)
    with_plan = sum(1 for c in fixtures.customers if c.get("plan"))
    assert first.counts["subscriptions"]["created"] == with_plan
    after_first = counts(sandbox)

    second = populate(settings, fixtures)
    assert second.failed == 0 and second.created() == 0
    assert second.counts["customers"]["found"] == len(fixtures.customers)
    assert second.counts["subscriptions"]["skipped"] == with_plan
    assert {k: v for k, v in counts(sandbox).items() if k != "event"} == {
        k: v for k, v in after_first.items() if k != "event"
    }

    # each subscription was paid from the customer's default card made from tok_visa
    assert len(live_subscriptions(sandbox)) == with_plan
    customers = sandbox.store.tables["customer"].by_id.values()
    paying = [c for c in customers if c["invoice_settings"]["default_payment_method"]]
    assert len(paying) == with_plan
    assert all(ch["paid"] for ch in sandbox.store.tables["charge"].by_id.values())


def test_force_cancels_and_recreates_subscriptions(sandbox, settings):
    fixtures = load_fixtures(FIXTURES)
    populate(settings, fixtures)
    before = {s["id"] for s in live_subscriptions(sandbox)}
    forced = populate(settings, fixtures, force=True)
    assert forced.failed == 0
    assert forced.counts["subscriptions"]["canceled"] == len(before)
    assert forced.counts["subscriptions"]["created"] == len(before)
    after = {s["id"] for s in live_subscriptions(sandbox)}
    assert len(after) == len(before) and not (after & before)
    assert counts(sandbox)["customer"] == len(fixtures.customers)


def test_refused_under_prod_and_for_live_keys(sandbox, settings):
    fixtures = load_fixtures(FIXTURES)
    with pytest.raises(ProdGuardError):
        populate(dataclasses.replace(settings, env="PROD"), fixtures)
    with pytest.raises(LiveKeyError) as caught:
        populate(
            dataclasses.replace(settings, stripe_secret_key="sk_live_" + "0123456789abcdef"),
            fixtures,
        )
    assert "0123456789" not in str(caught.value)
    assert counts(sandbox)["customer"] == 0


def run_script(
    sandbox_url: str, *args: str, key: str = "sk_test_populate_tests", env_name: str = "DEV"
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "ENV": env_name,
        "STRIPE_API_BASE": sandbox_url,
        "STRIPE_SECRET_KEY": key,
        "DATABASE_URL": "postgresql://unused/none",
    }
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.e2e
def test_script_reports_stripe_errors_and_exits_non_zero(sandbox, tmp_path: Path):
    for name in ("products.json", "customers.json"):
        (tmp_path / name).write_text((FIXTURES / name).read_text())
    prices = json.loads((FIXTURES / "prices.json").read_text())
    prices[0]["interval"] = "fortnight"  # not an interval: Stripe (and the sandbox) refuse it
    (tmp_path / "prices.json").write_text(json.dumps(prices))
    result = run_script(sandbox.url, "--fixtures", str(tmp_path), "-q")
    assert result.returncode == 1
    assert "FAILED prices starter-monthly:" in result.stdout
    assert "recurring[interval]" in result.stdout  # Stripe's own message
    # customers on the other plans still got theirs
    assert len(live_subscriptions(sandbox)) == 4


@pytest.mark.e2e
def test_script_refuses_live_key_even_in_dev(sandbox):
    result = run_script(sandbox.url, key="sk_live_" + "abcdefghijklmnop")
    assert result.returncode == 2
    assert "live Stripe key" in result.stderr and "abcdefghijkl" not in result.stderr
    result = run_script(sandbox.url, env_name="PROD")
    assert result.returncode == 2 and "ENV=PROD" in result.stderr


@pytest.mark.e2e
def test_script_refuses_a_restricted_live_key(sandbox):
    result = run_script(sandbox.url, key="rk_live_" + "abcdefghijklmnop")
    assert result.returncode == 2
    assert "refusing to use a live Stripe key (rk_live_…mnop)" in result.stderr
    assert "abcdefghijkl" not in result.stderr + result.stdout
    assert counts(sandbox)["customer"] == 0  # refused before anything was sent


@pytest.mark.e2e
@pytest.mark.parametrize(
    "key",
    ["sk_tset_" + "4eC39HqLyjWDarjtT1zdp7dc", "sk_tset_local", "pasted-the-wrong-thing-0123456789"],
)
def test_script_never_prints_a_mistyped_key(sandbox, key):
    result = run_script(sandbox.url, key=key)
    assert result.returncode == 2  # the sandbox refuses the key: nothing can be done
    output = result.stdout + result.stderr
    assert key not in output and key[:-4] not in output
    assert "Traceback" not in output


@pytest.mark.e2e
def test_script_help():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "--force" in result.stdout


def test_populate_fills_the_configured_connected_account(sandbox, settings, monkeypatch):
    # the one client of every path: STRIPE_ACCOUNT goes with every request, as in the fetch
    accounts: list[str | None] = []
    answer = sandbox.sandbox.handle

    def recording(method: str, target: str, headers: dict[str, str], body: bytes):
        accounts.append({k.lower(): v for k, v in headers.items()}.get("stripe-account"))
        return answer(method, target, headers, body)

    monkeypatch.setattr(sandbox.sandbox, "handle", recording)
    connected = dataclasses.replace(settings, stripe_account="acct_1Connected")
    report = populate(connected, load_fixtures(FIXTURES))
    assert report.failed == 0, report.failures
    assert len(accounts) > 10 and set(accounts) == {"acct_1Connected"}
