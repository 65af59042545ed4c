"""The curl fetchers end to end against the local sandbox (bash, curl and jq as users run them)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from app.client.stripe_api import MAX_RATE_LIMIT_RETRIES
from app.core.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL
from app.registry import BY_NAME, RESOURCES
from app.sandbox.resources.account import SANDBOX_ACCOUNT
from tests.fetch_helpers import (
    FETCH,
    FETCH_PMS,
    TEST_KEY,
    assert_files_match_sandbox,
    create_long_lists,
    objects_in,
    processes_of,
    run_fetch,
    start_fetch,
)

pytestmark = [pytest.mark.e2e, pytest.mark.tools("curl", "jq", "flock")]


def digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.json"))
    }


def test_fetch_writes_every_sandbox_object_exactly_once(sandbox, tmp_path):
    sandbox.seed(customers=25)
    result = run_fetch(sandbox.url, tmp_path, FETCH_PAGE_LIMIT="7")
    assert result.returncode == 0, result.stderr
    assert_files_match_sandbox(tmp_path, sandbox.store)
    # every answer of every round was read: none taken for a network error and sent again
    assert "(429: 0, 5xx: 0, network errors: 0)" in result.stderr
    for resource in RESOURCES:
        meta = json.loads((tmp_path / f"{resource.name}.meta.json").read_text())
        assert meta["stripe_version"] == "2026-10-28.endive"
        assert meta["account"] == SANDBOX_ACCOUNT  # the key's account, for the ingest
        assert meta["objects"] == len(objects_in(tmp_path, resource.name))
        assert f"{resource.name}:" in result.stderr  # the closing line
    customers = objects_in(tmp_path, "customers")
    # the registry's expand[] reached the API: default payment methods come expanded
    assert any(
        isinstance((c.get("invoice_settings") or {}).get("default_payment_method"), dict)
        for c in customers
    )
    assert json.loads((tmp_path / "customers.meta.json").read_text())["pages"] >= 4
    assert not (tmp_path / ".partial" / "customers").exists()


def test_embedded_lists_are_fetched_whole(sandbox, tmp_path):
    made = create_long_lists(sandbox.url, invoice_lines=25, items=12)
    result = run_fetch(
        sandbox.url, tmp_path, FETCH_PAGE_LIMIT="7", RESOURCES="subscriptions invoices"
    )
    assert result.returncode == 0, result.stderr
    invoices = {i["id"]: i for i in objects_in(tmp_path, "invoices")}
    subscriptions = {s["id"]: s for s in objects_in(tmp_path, "subscriptions")}
    stored_lines = sandbox.store.tables["invoice"].by_id[made["invoice"]]["lines"]["data"]
    lines = invoices[made["invoice"]]["lines"]
    assert [line["id"] for line in lines["data"]] == [line["id"] for line in stored_lines]
    assert len(lines["data"]) == 25 and lines["has_more"] is False
    items = subscriptions[made["subscription"]]["items"]
    assert sorted(i["id"] for i in items["data"]) == sorted(
        sandbox.store.tables["subscription_item"].ids_where("subscription", made["subscription"])
    )
    assert len(items["data"]) == 12 and items["has_more"] is False
    # the subscription's first invoice bills its 12 items: also past the first page
    assert all(not i["lines"]["has_more"] for i in invoices.values())
    assert sorted(len(i["lines"]["data"]) for i in invoices.values()) == [12, 25]
    assert "invoices: completed 2 embedded lists" in result.stderr
    assert not (tmp_path / ".partial" / "invoices").exists()


def test_resources_variable_limits_the_run(sandbox, tmp_path):
    sandbox.seed(customers=5)
    result = run_fetch(sandbox.url, tmp_path, RESOURCES="customers charges")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("*.json") if ".meta" not in p.name) == [
        "charges.json",
        "customers.json",
    ]
    assert_files_match_sandbox(tmp_path, sandbox.store, (BY_NAME["customers"], BY_NAME["charges"]))


def test_unknown_resource_is_a_usage_error(sandbox, tmp_path):
    result = run_fetch(sandbox.url, tmp_path, RESOURCES="customers refunds")
    assert result.returncode == EXIT_FAILED
    assert "unknown resource(s): refunds" in result.stderr


def test_the_fetchers_exit_codes_are_the_python_commands_table():
    # one table for both languages: the bash side sources what app/commands/cli.py reads
    script = 'source "$1"; echo "$EXIT_OK $EXIT_PARTIAL $EXIT_FAILED $EXIT_INTERRUPTED"'
    shown = subprocess.run(
        ["bash", "-c", script, "bash", str(FETCH.parent / "fetch_lib.sh")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.split() == [str(c) for c in (EXIT_OK, EXIT_PARTIAL, EXIT_FAILED, 130)]
    assert EXIT_INTERRUPTED == 130
    unknown = subprocess.run([str(FETCH), "--frobnicate"], capture_output=True, text=True)
    assert unknown.returncode == EXIT_FAILED
    assert "unknown argument '--frobnicate' (try --help)" in unknown.stderr


def test_the_fetchers_retry_by_the_python_sides_rules():
    # one retry policy: the curl fetch draws its backoffs from app.client.stripe_api's ceilings
    from app.client.stripe_api import backoff_ceiling

    script = (
        'source "$1"; cd "$2"; eval "$("$PYTHON" scripts/list_resources.py --shell)"; '
        'echo "$RETRIES_DEFAULT"; for a in $(seq 1 12); do backoff_seconds "$a"; echo; done'
    )
    shown = subprocess.run(
        ["bash", "-c", script, "bash", str(FETCH.parent / "fetch_lib.sh"), str(FETCH.parents[1])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert int(shown[0]) == MAX_RATE_LIMIT_RETRIES
    for attempt, waited in enumerate(map(float, shown[1:]), start=1):
        ceiling = backoff_ceiling(attempt)
        assert ceiling / 2 - 0.001 <= waited <= ceiling, (attempt, waited)


def test_the_budget_is_the_python_sides_rule(sandbox, tmp_path, monkeypatch):
    # one rule for both paths: defaults, the endpoint budget that follows FETCH_RATE, refusals
    from app.client.budget import budget_rates
    from app.core.errors import ConfigError

    for rate, endpoint, expected in (("", "", (25, 25)), ("100", "", (100, 25)), ("0", "", (0, 0))):
        monkeypatch.setenv("FETCH_RATE", rate)
        monkeypatch.setenv("FETCH_ENDPOINT_RATE", endpoint)
        assert budget_rates() == expected
    monkeypatch.setenv("FETCH_RATE", "fast")
    with pytest.raises(ConfigError, match="FETCH_RATE must be a number"):
        budget_rates()
    refused = run_fetch(sandbox.url, tmp_path, FETCH_RATE="fast", RESOURCES="products")
    assert refused.returncode == EXIT_FAILED
    assert "FETCH_RATE must be a number of requests per second (0: no budget), not 'fast'" in (
        refused.stderr
    )


def test_missing_endpoint_is_an_error_naming_it(sandbox, tmp_path):
    result = run_fetch(sandbox.url + "/nowhere", tmp_path, RESOURCES="products")
    assert result.returncode == EXIT_FAILED
    assert "/nowhere has no endpoint GET /v1/account (404" in result.stderr
    assert not (tmp_path / "products.json").exists()


def test_wrong_key_stops_clearly_and_leaves_earlier_files(sandbox, tmp_path):
    sandbox.seed(customers=5)
    assert run_fetch(sandbox.url, tmp_path).returncode == 0
    before = digest(tmp_path)
    wrong = "sk_wrong_0123456789abcdefWXYZ"
    result = run_fetch(sandbox.url, tmp_path, STRIPE_SECRET_KEY=wrong)
    assert result.returncode == EXIT_FAILED  # the API failed: 2, as every command says it
    assert "authentication failed (401)" in result.stderr
    assert wrong not in result.stderr and "WXYZ" in result.stderr  # masked, still recognisable
    assert digest(tmp_path) == before


def test_429s_and_500s_are_retried_to_the_same_files(sandbox_factory, tmp_path):
    # a bucket of 4 is less than the 7 lists that start at once: 429s even on a slow machine
    flaky = sandbox_factory(rate_limit=True, test_rate=4, error_rate=0.1, fault_seed=7)
    flaky.seed(customers=6)
    # one chain a list: at 4 requests/s the probes of created ranges would take half a minute
    result = run_fetch(flaky.url, tmp_path / "flaky", FETCH_PAGE_LIMIT="5", FETCH_RANGES="1")
    assert result.returncode == 0, result.stderr
    tally = result.stderr.strip().splitlines()[-1]
    assert "429: 0," not in tally and "5xx: 0," not in tally, tally  # both kinds were met
    # the same server without faults or limits: the files must come out identical
    flaky.sandbox.faults = None
    flaky.sandbox.limiter = None
    clean = run_fetch(flaky.url, tmp_path / "clean", FETCH_PAGE_LIMIT="5")
    assert clean.returncode == 0, clean.stderr
    for resource in RESOURCES:
        assert objects_in(tmp_path / "flaky", resource.name) == objects_in(
            tmp_path / "clean", resource.name
        ), resource.name


def test_budget_keeps_the_fetch_under_the_rate_limit(sandbox_factory, tmp_path):
    limited = sandbox_factory(rate_limit=True, test_rate=20)
    limited.seed(customers=12)
    result = run_fetch(
        limited.url,
        tmp_path,
        FETCH_RATE="20",
        FETCH_PAGE_LIMIT="10",
        RESOURCES="customers payment_methods invoices",
    )
    assert result.returncode == 0, result.stderr
    assert "(429: 0," in result.stderr
    stamps = sorted(
        float(line.split()[1])
        for line in (tmp_path / ".partial" / "requests.log").read_text().splitlines()
    )
    assert len(stamps) >= 15
    # 20 requests/s: 50 ms apart, except a burst of at most FETCH_BURST (3) banked slots
    assert stamps[-1] - stamps[0] >= (len(stamps) - 1 - 3) * 0.05 * 0.95


def chain_pages(state: Path) -> int:
    """The pages a chain of a stopped fetch has on disk (its state's first field)."""
    return int(state.read_text().split()[0]) if state.exists() else 0


def test_interrupted_fetch_resumes_where_it_stopped(sandbox, tmp_path):
    sandbox.seed(customers=30)
    settings = {"FETCH_PAGE_LIMIT": "2", "FETCH_RANGES": "1", "RESOURCES": "customers"}
    process = start_fetch(sandbox.url, tmp_path, FETCH_RATE="40", **settings)
    state = tmp_path / ".partial" / "customers" / "c0000" / "state"
    wait_for(lambda: chain_pages(state) >= 4)
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode != 0
    assert not (tmp_path / "customers.json").exists()
    done_pages = chain_pages(state)
    assert 4 <= done_pages < 15

    result = run_fetch(sandbox.url, tmp_path, **settings)
    assert result.returncode == 0, result.stderr
    assert f"customers: resuming after {done_pages} pages" in result.stderr
    requests = int(result.stderr.split("requests: ")[1].split()[0])
    # 30 customers, 2 a page: only the missing pages, and the one asking for the account
    assert requests == 15 - done_pages + 1
    assert_files_match_sandbox(tmp_path, sandbox.store, (BY_NAME["customers"],))


def create_customers_at_once(url: str, count: int) -> None:
    """Customers created within a second or so: ties on `created`, which ranges must not split."""
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {TEST_KEY}"
        for n in range(count):
            response = session.post(
                url + "/v1/customers", data={"email": f"tie{n}@example.com"}, timeout=10
            )
            assert response.status_code == 200, response.text


def test_ranges_write_the_files_one_sequential_listing_writes(sandbox, tmp_path):
    sandbox.seed(customers=40)
    create_long_lists(sandbox.url, invoice_lines=25, items=12)  # embedded lists to complete
    create_customers_at_once(sandbox.url, 5)  # the first page ends inside a second
    lists = ("customers", "subscriptions", "invoices")  # invoices, subscriptions: embedded lists
    settings = {"FETCH_PAGE_LIMIT": "3", "RESOURCES": " ".join(lists)}
    ranged = run_fetch(sandbox.url, tmp_path / "ranged", FETCH_RANGES="3", **settings)
    assert ranged.returncode == 0, ranged.stderr
    sequential = run_fetch(sandbox.url, tmp_path / "sequential", FETCH_RANGES="1", **settings)
    assert sequential.returncode == 0, sequential.stderr
    for name in lists:
        assert f"{name}: first page read; the rest in " in ranged.stderr, name
    assert "created ranges" not in sequential.stderr
    assert "invoices: completed 2 embedded lists" in ranged.stderr
    assert_files_match_sandbox(tmp_path / "ranged", sandbox.store, tuple(BY_NAME[n] for n in lists))
    for name in lists:
        ranged_bytes = (tmp_path / "ranged" / f"{name}.json").read_bytes()
        assert ranged_bytes == (tmp_path / "sequential" / f"{name}.json").read_bytes(), name
    # the ranges end with partial pages: more pages, the same objects
    meta = {
        run: json.loads((tmp_path / run / "customers.meta.json").read_text())
        for run in ("ranged", "sequential")
    }
    assert meta["ranged"]["objects"] == meta["sequential"]["objects"] == 46
    assert meta["ranged"]["pages"] > meta["sequential"]["pages"] == 16
    assert not (tmp_path / "ranged" / ".partial" / "customers").exists()


def test_interrupted_ranged_fetch_resumes_to_the_same_file(sandbox, tmp_path):
    sandbox.seed(customers=60)
    settings = {"FETCH_PAGE_LIMIT": "2", "RESOURCES": "customers"}
    process = start_fetch(
        sandbox.url, tmp_path / "ranged", FETCH_RATE="40", FETCH_RANGES="3", **settings
    )
    partial = tmp_path / "ranged" / ".partial" / "customers"
    wait_for(lambda: sum(chain_pages(s) for s in partial.glob("c*/state")) >= 8)
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == EXIT_INTERRUPTED, stderr
    plan = (partial / "ranges").read_text().splitlines()
    assert len(plan) > 3  # chain 0 and its ranges, more than run at once
    done_pages = sum(chain_pages(s) for s in partial.glob("c*/state"))
    assert 8 <= done_pages < 30

    result = run_fetch(sandbox.url, tmp_path / "ranged", FETCH_RANGES="3", **settings)
    assert result.returncode == 0, result.stderr
    assert f"customers: resuming after {done_pages} pages" in result.stderr
    assert "probe" not in result.stderr and "first page read" not in result.stderr
    requests = int(result.stderr.split("requests: ")[1].split()[0])
    # 60 customers are 30 pages in one chain; each range may end with one more, partial page
    assert requests <= 30 + len(plan) - done_pages
    sequential = run_fetch(sandbox.url, tmp_path / "sequential", FETCH_RANGES="1", **settings)
    assert sequential.returncode == 0, sequential.stderr
    assert (tmp_path / "ranged" / "customers.json").read_bytes() == (
        tmp_path / "sequential" / "customers.json"
    ).read_bytes()


def sent_at(json_dir: Path) -> dict[str, list[float]]:
    """requests.log of a fetch: when each request was sent, per endpoint (and "*": all)."""
    stamps: dict[str, list[float]] = {"*": []}
    for line in (json_dir / ".partial" / "requests.log").read_text().splitlines():
        _, stamp, endpoint = line.split()
        stamps.setdefault(endpoint, []).append(float(stamp))
        stamps["*"].append(float(stamp))
    return {endpoint: sorted(times) for endpoint, times in stamps.items()}


def test_endpoint_budget_keeps_every_endpoint_under_its_limit(sandbox_factory, tmp_path):
    # the sandbox answers 429 above 40 requests/s in all or 8/s to one endpoint
    limited = sandbox_factory(rate_limit=True, test_rate=40, endpoint_rate=8)
    limited.seed(customers=16)
    result = run_fetch(
        limited.url,
        tmp_path,
        FETCH_RATE="40",
        FETCH_ENDPOINT_RATE="8",
        FETCH_PAGE_LIMIT="5",
        RESOURCES="customers payment_methods invoices charges",
    )
    assert result.returncode == 0, result.stderr
    assert "budget 40 req/s, 8 per endpoint" in result.stderr
    assert "(429: 0," in result.stderr
    stamps = sent_at(tmp_path)
    methods = stamps["/v1/customers/{customer}/payment_methods"]
    assert len(methods) == 16  # one endpoint for every customer
    # the payment methods started with the customers' first page, not once all were listed
    assert methods[0] < stamps["/v1/customers"][-1]
    for endpoint, times in stamps.items():
        gap = 1 / 40 if endpoint == "*" else 1 / 8
        # never closer than the budget allows, but for FETCH_BURST (3) banked slots
        assert times[-1] - times[0] >= (len(times) - 1 - 3) * gap * 0.95, endpoint
    # several endpoints at once: the fetch as a whole ran faster than one endpoint may
    assert len(stamps["*"]) / (stamps["*"][-1] - stamps["*"][0]) > 1.5 * 8


def test_endpoint_budget_follows_fetch_rate_unless_set(sandbox, tmp_path):
    for extra, said in (
        ({"FETCH_RATE": "0"}, "budget 0 req/s, 0 per endpoint"),
        ({"FETCH_RATE": "50"}, "budget 50 req/s, 25 per endpoint"),
        ({"FETCH_RATE": "0", "FETCH_ENDPOINT_RATE": "7"}, "budget 0 req/s, 7 per endpoint"),
    ):
        result = run_fetch(sandbox.url, tmp_path, RESOURCES="products", **extra)
        assert result.returncode == 0, result.stderr
        assert said in result.stderr, result.stderr


def test_payment_methods_script_merges_every_customer(sandbox, tmp_path):
    sandbox.seed(customers=15)
    result = run_fetch(sandbox.url, tmp_path, script=FETCH_PMS, FETCH_CONCURRENCY="4")
    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.glob("*.json") if ".meta" not in p.name] == [
        "payment_methods.json"
    ]
    assert_files_match_sandbox(tmp_path, sandbox.store, (BY_NAME["payment_methods"],))


def test_payment_methods_in_batches_following_the_customers_miss_none(sandbox, tmp_path):
    # a budget in all only: each worker's batch holds half a second of requests (50), more than
    # the customers listed so far (pages of 2); a batch larger than the queue once skipped the
    # customers still to come
    sandbox.seed(customers=40)
    result = run_fetch(
        sandbox.url,
        tmp_path,
        FETCH_RATE="100",
        FETCH_ENDPOINT_RATE="0",
        FETCH_PAGE_LIMIT="2",
        RESOURCES="customers payment_methods",
    )
    assert result.returncode == 0, result.stderr
    assert "following the customers as they are listed" in result.stderr
    assert_files_match_sandbox(
        tmp_path, sandbox.store, (BY_NAME["customers"], BY_NAME["payment_methods"])
    )


def test_a_customer_with_more_payment_methods_than_a_page_gets_them_all(sandbox, tmp_path):
    sandbox.seed(customers=3)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TEST_KEY}"
    buyer = session.post(sandbox.url + "/v1/customers", data={"email": "m@x.io"}).json()
    for _ in range(5):
        attached = session.post(
            sandbox.url + "/v1/payment_methods/pm_card_visa/attach", data={"customer": buyer["id"]}
        )
        assert attached.status_code == 200, attached.text
    # pages of 2: three requests for this customer, the next two going on from a cursor
    result = run_fetch(
        sandbox.url, tmp_path, FETCH_PAGE_LIMIT="2", RESOURCES="customers payment_methods"
    )
    assert result.returncode == 0, result.stderr
    assert_files_match_sandbox(
        tmp_path, sandbox.store, (BY_NAME["customers"], BY_NAME["payment_methods"])
    )
    listed = session.get(
        f"{sandbox.url}/v1/customers/{buyer['id']}/payment_methods", params={"limit": 100}
    ).json()["data"]
    mine = [
        m["id"] for m in objects_in(tmp_path, "payment_methods") if m["customer"] == buyer["id"]
    ]
    assert mine == [m["id"] for m in listed] and len(mine) == 5  # in the API's order


def test_help_describes_the_environment():
    result = subprocess.run(
        ["bash", str(FETCH), "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "FETCH_RATE" in result.stdout and "RESOURCES" in result.stdout


def test_interrupted_payment_methods_resume_per_customer(sandbox, tmp_path):
    sandbox.seed(customers=30)
    process = start_fetch(
        sandbox.url,
        tmp_path,
        FETCH_RATE="40",
        FETCH_CONCURRENCY="2",
        RESOURCES="customers payment_methods",
    )
    done = tmp_path / ".partial" / "payment_methods" / "done"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (done.exists() and len(list(done.iterdir())) >= 8):
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "run the same command again to resume" in stderr
    finished = len(list(done.iterdir()))
    assert 8 <= finished < 30

    result = run_fetch(sandbox.url, tmp_path, RESOURCES="customers payment_methods")
    assert result.returncode == 0, result.stderr
    assert "customers: already fetched by the interrupted run" in result.stderr
    assert f"payment_methods: resuming ({finished} customers already done)" in result.stderr
    requests = int(result.stderr.split("requests: ")[1].split()[0])
    # neither the customers nor the finished ones again (one request asks for the account)
    assert requests == 30 - finished + 1
    assert_files_match_sandbox(
        tmp_path, sandbox.store, (BY_NAME["customers"], BY_NAME["payment_methods"])
    )
    assert not (tmp_path / ".partial" / "completed").exists()  # the next fetch starts afresh


def wait_for(condition, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_killed_fetch_takes_its_workers_with_it(sandbox, tmp_path):
    sandbox.seed(customers=60)
    settings = {
        "FETCH_RATE": "20",
        "FETCH_CONCURRENCY": "4",
        "FETCH_PAGE_LIMIT": "3",
        "RESOURCES": "customers invoices payment_methods",
    }
    process = start_fetch(sandbox.url, tmp_path, **settings)
    done = tmp_path / ".partial" / "payment_methods" / "done"
    wait_for(lambda: done.exists() and len(list(done.iterdir())) >= 5)
    assert len(processes_of(tmp_path)) > 1  # the fetch and its workers
    process.kill()  # SIGKILL: no trap runs
    # not reaped yet: the fetch is a zombie, which its workers must not take for alive
    deadline = time.monotonic() + 5
    while (left := processes_of(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == [], left
    process.communicate(timeout=10)

    result = run_fetch(sandbox.url, tmp_path, **settings)
    assert result.returncode == 0, result.stderr
    assert f"note: taking over the lock of the fetch (pid {process.pid}, started " in result.stderr
    assert_files_match_sandbox(
        tmp_path, sandbox.store, tuple(BY_NAME[n] for n in settings["RESOURCES"].split())
    )


def test_second_fetch_names_the_one_holding_the_lock(sandbox, tmp_path):
    sandbox.seed(customers=12)
    settings = {
        "FETCH_RATE": "5",
        "FETCH_PAGE_LIMIT": "1",
        "FETCH_RANGES": "1",  # one chain: slow on purpose, without the probes of ranges
        "RESOURCES": "customers",
    }
    first = start_fetch(sandbox.url, tmp_path, **settings)
    lock = tmp_path / ".partial" / "run.lock"
    wait_for(lambda: lock.exists() and lock.read_text().strip())
    second = run_fetch(sandbox.url, tmp_path, **settings)
    assert second.returncode == EXIT_FAILED
    assert f"another fetch (pid {first.pid}, started " in second.stderr
    assert f"`{FETCH}`) is writing {tmp_path}" in second.stderr
    assert f"stop it with `kill {first.pid}`" in second.stderr
    _, stderr = first.communicate(timeout=30)
    assert first.returncode == 0, stderr  # the refused fetch left it alone
    assert lock.read_text() == ""  # a fetch that ends clears its line
    assert_files_match_sandbox(tmp_path, sandbox.store, (BY_NAME["customers"],))


def test_lock_of_a_dead_fetch_is_taken_over_once_its_workers_let_go(sandbox, tmp_path):
    sandbox.seed(customers=3)
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = tmp_path / ".partial" / "run.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(f"{dead.pid} - {int(time.time())} scripts/fetch_stripe_data.sh\n")
    # a worker the dead fetch left behind, still holding the lock for a moment
    fd = os.open(lock, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    process = start_fetch(sandbox.url, tmp_path, RESOURCES="customers")
    assert process.stderr is not None
    first_line = process.stderr.readline()
    os.close(fd)  # the worker stops
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, first_line + stderr
    assert first_line.startswith(f"note: the fetch that holds the lock (pid {dead.pid}, started ")
    assert "is gone; waiting for its workers to stop" in first_line
    assert f"taking over the lock of the fetch (pid {dead.pid}," in stderr
    assert_files_match_sandbox(tmp_path, sandbox.store, (BY_NAME["customers"],))


def test_key_never_appears_on_a_command_line(sandbox, tmp_path):
    sandbox.seed(customers=20)
    process = start_fetch(
        sandbox.url,
        tmp_path,
        FETCH_RATE="30",
        FETCH_CONCURRENCY="2",
        RESOURCES="customers payment_methods",
    )
    seen = []
    while process.poll() is None:
        seen += processes_of(tmp_path)  # "pid command line" of the fetch and everything it runs
        time.sleep(0.01)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert any(" curl " in f" {line} " for line in seen), "no curl was seen running"
    assert not [line for line in seen if TEST_KEY in line]


def test_progress_in_a_pipe_is_plain_lines_with_counts_and_totals(sandbox, tmp_path):
    sandbox.seed(customers=120)
    done = run_fetch(
        sandbox.url, tmp_path, FETCH_PAGE_LIMIT="10", FETCH_RATE="150", PROGRESS_INTERVAL="0.2",
        RESOURCES="customers payment_methods",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert "\x1b[" not in done.stderr  # a pipe gets no terminal escapes
    # a list gives no total: a count and a rate; payment methods count customers of all
    assert any(line.startswith("fetch customers: ") for line in lines), lines
    assert any(" of 120 customers (" in line for line in lines), lines
    assert any(line.startswith("fetch payment_methods: 120 customers in ") for line in lines)
    # the fetch's own lines still come, through the drawer
    assert any(line.startswith("customers:") and "objects" in line for line in lines), lines
    assert done.stderr.rstrip().splitlines()[-1].startswith("requests: ")


def test_no_progress_drawer_leaves_the_log_lines_as_they_are(sandbox, tmp_path):
    sandbox.seed(customers=30)
    done = run_fetch(
        sandbox.url, tmp_path, FETCH_PROGRESS="0", FETCH_PAGE_LIMIT="5", FETCH_RANGES="1",
        PROGRESS_INTERVAL="0.05", RESOURCES="customers",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "customers: page 6, 30 objects" in done.stderr
    assert "fetch customers:" not in done.stderr


def test_a_connected_account_goes_with_every_request(sandbox, tmp_path, monkeypatch):
    sandbox.seed(customers=12)
    accounts: list[str | None] = []
    answer = sandbox.sandbox.handle

    def recording(method: str, target: str, headers: dict[str, str], body: bytes):
        accounts.append({k.lower(): v for k, v in headers.items()}.get("stripe-account"))
        return answer(method, target, headers, body)

    monkeypatch.setattr(sandbox.sandbox, "handle", recording)
    done = run_fetch(
        sandbox.url, tmp_path, STRIPE_ACCOUNT="acct_1Connected", FETCH_PAGE_LIMIT="5",
        RESOURCES="customers payment_methods invoices",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(accounts) > 12 and set(accounts) == {"acct_1Connected"}


def data_files(folder: Path) -> dict[str, str]:
    """The digests of the resource files (their .meta.json say when, so they differ)."""
    return {name: d for name, d in digest(folder).items() if not name.endswith(".meta.json")}


def python_that_logs(
    tmp_path: Path, *, splitter_crashes: bool = False, splitter_starts_late: bool = False
) -> Path:
    """A PYTHON for the fetch that notes each script it runs (and can make the splitter die
    at once, as a crash would, or start a second late, as on a machine whose cores are busy)."""
    import sys

    log = tmp_path / "python.log"
    wrapper = tmp_path / "python"
    crash = ""
    if splitter_crashes:
        crash = 'case "$1" in *split_pages.py) exit 3 ;; esac\n'
    elif splitter_starts_late:
        crash = 'case "$1" in *split_pages.py) sleep 1 ;; esac\n'
    wrapper.write_text(
        f'#!/usr/bin/env bash\nprintf "%s\\n" "$1" >>"{log}"\n{crash}exec "{sys.executable}" "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def test_pages_are_split_by_the_splitter_exactly_as_jq_splits_them(sandbox, tmp_path):
    sandbox.seed(customers=60)
    create_long_lists(sandbox.url, invoice_lines=12, items=3)
    python = python_that_logs(tmp_path)
    split = run_fetch(sandbox.url, tmp_path / "split", FETCH_PAGE_LIMIT="7", PYTHON=str(python))
    with_jq = run_fetch(sandbox.url, tmp_path / "jq", FETCH_PAGE_LIMIT="7", FETCH_SPLITTER="jq")
    assert split.returncode == with_jq.returncode == 0, split.stderr + with_jq.stderr
    assert sum("split_pages.py" in line for line in (tmp_path / "python.log").open()) == 1
    assert data_files(tmp_path / "split") == data_files(tmp_path / "jq")
    assert "splits pages with jq" not in split.stderr


def test_a_splitter_that_dies_leaves_the_pages_to_jq(sandbox, tmp_path):
    sandbox.seed(customers=40)
    python = python_that_logs(tmp_path, splitter_crashes=True)
    crashed = run_fetch(sandbox.url, tmp_path / "a", FETCH_PAGE_LIMIT="9", PYTHON=str(python))
    plain = run_fetch(sandbox.url, tmp_path / "b", FETCH_PAGE_LIMIT="9", FETCH_SPLITTER="jq")
    assert crashed.returncode == plain.returncode == 0, crashed.stderr
    assert "the page splitter stopped answering" in crashed.stderr
    assert data_files(tmp_path / "a") == data_files(tmp_path / "b")


def test_a_fetch_that_fails_before_its_splitter_starts_ends_quietly(sandbox, tmp_path):
    # a wrong key fails the fetch at once; a splitter that only starts afterwards finds its
    # FIFO gone with the fetch and must end without a word, not with a traceback
    sandbox.seed(customers=3)
    python = python_that_logs(tmp_path, splitter_starts_late=True)
    wrong = "sk_wrong_0123456789abcdefWXYZ"
    result = run_fetch(sandbox.url, tmp_path / "out", STRIPE_SECRET_KEY=wrong, PYTHON=str(python))
    assert result.returncode == EXIT_FAILED
    assert "authentication failed (401)" in result.stderr
    assert "Traceback" not in result.stderr and "Error" not in result.stderr, result.stderr
    assert any("split_pages.py" in line for line in (tmp_path / "python.log").open())


def test_a_request_never_answered_is_retried_not_waited_for(sandbox_factory, tmp_path):
    # a fifth of the requests get no answer for two minutes (the sandbox holds them): each is
    # given up after FETCH_STALL_TIMEOUT seconds without a byte and retried, so the fetch
    # completes long before FETCH_TIMEOUT or this test's own timeout
    sandbox = sandbox_factory(slow_rate=0.2, slow_seconds=120, fault_seed=17)
    sandbox.seed(customers=12)
    started = time.monotonic()
    result = run_fetch(
        sandbox.url,
        tmp_path,
        FETCH_STALL_TIMEOUT="1",
        FETCH_PAGE_LIMIT="5",
        RESOURCES="customers payment_methods",
        timeout=50,
    )
    assert result.returncode == EXIT_OK, result.stderr
    assert time.monotonic() - started < 40
    tally = next(line for line in result.stderr.splitlines() if line.startswith("requests:"))
    assert "network errors: 0)" not in tally, tally  # the stalled ones, retried
    assert_files_match_sandbox(
        tmp_path, sandbox.store, (BY_NAME["customers"], BY_NAME["payment_methods"])
    )


def test_a_connected_accounts_fetch_records_that_account(sandbox, tmp_path):
    result = run_fetch(
        sandbox.url, tmp_path, RESOURCES="products", STRIPE_ACCOUNT="acct_1Connected000000"
    )
    assert result.returncode == 0, result.stderr
    meta = json.loads((tmp_path / "products.meta.json").read_text())
    assert meta["account"] == "acct_1Connected000000"
