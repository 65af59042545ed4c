#!/usr/bin/env python
"""Benchmark staying current: the lag from a change in Stripe to its row in PostgreSQL.

In a scratch database, against a sandbox of its own (separate processes, as in production):
  1. seed CUSTOMERS customers and load everything (SOURCE=api with the delete sweep: the cursor
     starts there);
  2. webhooks: the receiver (scripts/webhook.py) runs while the churn driver changes the sandbox
     at RATE mutations/s for SECONDS, with deliveries shuffled and some duplicated;
  3. polling: `scripts/sync.py --follow --interval INTERVAL` runs during a second churn;
  4. one more sync pass over the now unchanged account: the requests it costs;
  5. check-db against the API: the differences left.
The lag of a mutation is from the API's answer to the commit of the last event it caused (the
events carry its request id): p50, p95, p99, per mode. Targets (issue 11): webhook p99 ≤ 1 s;
polling at 2 s p99 ≤ 5 s; an unchanged account's pass costs one request; zero differences.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import text

from app import schema
from app.check.reconcile import check
from app.commands.cli import run_command
from app.commands.ingest import start_sync_cursor
from app.core.config import PROJECT_ROOT, load_settings
from app.db.session import get_engine
from app.live.sync import sync_events
from app.load.api_source import read_api_objects
from app.load.runner import run as ingest_run
from app.registry import load_order

KEY = "sk_test_bench_sync"
PY = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check_ready: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check_ready():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code < 500
    except requests.RequestException:
        return False


def percentiles(values: list[float]) -> str:
    if not values:
        return "no mutations measured"
    ordered = sorted(values)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    return (
        f"p50 {at(0.50):.2f}s  p95 {at(0.95):.2f}s  p99 {at(0.99):.2f}s  "
        f"max {ordered[-1]:.2f}s  ({len(values)} mutations)"
    )


def lags(engine: Any, log: Path) -> tuple[list[float], int]:
    """Seconds from each logged mutation to the commit of the last event it caused; and how
    many mutations are still waiting. Mutations whose events concern no mirrored object (an
    invoice item: `invoiceitem.created`, counted `ignored`) have no row to wait for."""
    mutations = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    with engine.connect() as conn:
        events = {
            request: (bool(all_applied), float(last or 0), bool(mirrored))
            for request, all_applied, last, mirrored in conn.execute(
                text(
                    "SELECT raw->'request'->>'id', bool_and(applied_at IS NOT NULL), "
                    "extract(epoch FROM max(applied_at)), "
                    "bool_or(outcome IS DISTINCT FROM 'ignored') "
                    "FROM stripe_events GROUP BY 1"
                )
            ).all()
        }
    found, waiting = [], 0
    for mutation in mutations:
        all_applied, last, mirrored = events.get(mutation.get("request_id"), (False, 0.0, True))
        if not all_applied:
            waiting += 1
        elif mirrored:
            found.append(max(0.0, last - mutation["at"]))
    return found, waiting


def pending(engine: Any) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM stripe_events WHERE applied_at IS NULL")
            ).scalar_one()
        )


def churn(base: str, args: argparse.Namespace, log: Path) -> str:
    result = subprocess.run(
        [PY, "-m", "app.sandbox", "churn", "--url", base, "--rate", str(args.rate),
         "--seconds", str(args.seconds), "--seed", "1", "--log", str(log)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=args.seconds + 120, check=False,
    )  # fmt: skip
    return (result.stdout + result.stderr).strip().splitlines()[-1] if result else ""


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=10_000, help="seed size (default 10000)")
    parser.add_argument("--rate", type=float, default=50, help="mutations/s (default 50)")
    parser.add_argument("--seconds", type=float, default=60, help="churn length (default 60)")
    parser.add_argument("--interval", type=float, default=2, help="polling interval (default 2)")
    parser.add_argument(
        "--database-url",
        default=None,
        help="scratch database, emptied first (default: stripe_db_bench_sync on the dev server)",
    )
    args = parser.parse_args()
    settings = load_settings()
    url = args.database_url or settings.database_url.rsplit("/", 1)[0] + "/stripe_db_bench_sync"
    schema.create_database(url)
    engine = get_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    schema.upgrade(url)

    port, hook_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "ENV": "DEV",
        "DATABASE_URL": url,
        "STRIPE_API_BASE": base,
        "STRIPE_SECRET_KEY": KEY,
        "FETCH_RATE": "0",
    }
    os.environ.update({k: env[k] for k in ("FETCH_RATE",)})
    settings = replace(settings, database_url=url, stripe_api_base=base, stripe_secret_key=KEY)
    work = Path(tempfile.mkdtemp(prefix="bench_sync_"))
    sandbox = subprocess.Popen(
        [PY, "-m", "app.sandbox", "serve", "--port", str(port), "--webhook-shuffle",
         "--webhook-duplicate-rate", "0.1", "--fault-seed", "1", "--webhook-retry-base", "0.2",
         # Stripe delivers to an endpoint over many connections at once; the sandbox's default
         # of 2 is for tests, and at 100 events/s the deliveries would queue behind it
         "--webhook-connections", "8"],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    processes = [sandbox]
    try:
        wait_until(lambda: answers(f"{base}/_sandbox/health"), 30, "the sandbox")
        started = time.monotonic()
        seeded = requests.post(
            f"{base}/_sandbox/seed", data={"customers": args.customers}, auth=(KEY, ""), timeout=600
        ).json()
        print(f"seeded {args.customers:,} customers: {seeded.get('objects', '?')} objects "
              f"in {time.monotonic() - started:.1f}s", file=sys.stderr)  # fmt: skip
        started = time.monotonic()
        results = ingest_run(
            url, load_order(), settings, source="api", json_dir=work, single_file=None,
            mode="upsert", rejects_dir=work / "rejects", sweep=True,
            on_whole_listing=lambda at, account: start_sync_cursor(
                get_engine(url), settings, at, account),
        )  # fmt: skip
        rows = sum(s.read for r in results for s in r.stats.values())
        load_seconds = time.monotonic() - started
        print(f"full load: {rows:,} rows in {load_seconds:.1f}s", file=sys.stderr)

        # 2. webhooks
        endpoint = requests.post(
            f"{base}/v1/webhook_endpoints",
            data={"url": f"http://127.0.0.1:{hook_port}/webhooks/stripe", "enabled_events[]": "*"},
            auth=(KEY, ""),
            timeout=10,
        ).json()
        hook_env = {**env, "STRIPE_WEBHOOK_SECRET": endpoint["secret"]}
        receiver = subprocess.Popen(
            [PY, "scripts/webhook.py", "--port", str(hook_port), "-q"],
            cwd=PROJECT_ROOT, env=hook_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        processes.append(receiver)
        wait_until(lambda: answers(f"http://127.0.0.1:{hook_port}/healthz"), 30, "the receiver")
        print(f"webhooks: churn at {args.rate:g}/s for {args.seconds:g}s …", file=sys.stderr)
        hook_log = work / "webhook.jsonl"
        hook_churn = churn(base, args, hook_log)
        wait_until(lambda: pending(engine) == 0 and lags(engine, hook_log)[1] == 0, 120,
                   "the receiver to apply every delivered event")  # fmt: skip
        hook_lags, _ = lags(engine, hook_log)
        stop(receiver)
        requests.post(
            f"{base}/v1/webhook_endpoints/{endpoint['id']}",
            data={"disabled": "true"},
            auth=(KEY, ""),
            timeout=10,
        )

        # 3. polling
        poller = subprocess.Popen(
            [PY, "scripts/sync.py", "--follow", "--interval", str(args.interval), "-q"],
            cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        processes.append(poller)
        print(f"polling every {args.interval:g}s: churn at {args.rate:g}/s for "
              f"{args.seconds:g}s …", file=sys.stderr)  # fmt: skip
        poll_log = work / "polling.jsonl"
        poll_churn = churn(base, args, poll_log)
        poll_ended = time.monotonic()
        wait_until(lambda: lags(engine, poll_log)[1] == 0 and pending(engine) == 0, 120,
                   "the poller to apply every event")  # fmt: skip
        poll_lags, _ = lags(engine, poll_log)
        stop(poller)

        # 4. an unchanged account: nothing new, and the overlap re-read behind the cursor (60 s)
        # holds no events either
        overlap = 61 - (time.monotonic() - poll_ended)
        if overlap > 0:
            print(f"waiting {overlap:.0f}s for the sync overlap to pass …", file=sys.stderr)
            time.sleep(overlap)
        sync_events(engine, settings)  # re-reads what may have shown late since the poller's last
        quiet = sync_events(engine, settings)  # …then the steady state of a quiet account
        # 5. check-db against the API
        with engine.connect() as conn:
            report = check(conn, load_order(), lambda r: read_api_objects(r, settings))
            conn.rollback()
        differences = sum(t.failures for t in report.tables)
    finally:
        for process in reversed(processes):
            stop(process)
        engine.dispose()

    print()
    print(f"full load: {rows:,} rows in {load_seconds:.1f}s ({rows / load_seconds:,.0f} rows/s)")
    print(f"webhook (shuffled, 10% duplicated): {percentiles(hook_lags)}")
    print(f"  churn: {hook_churn}")
    print(f"polling every {args.interval:g}s: {percentiles(poll_lags)}")
    print(f"  churn: {poll_churn}")
    print(
        f"a sync pass over the unchanged account: {quiet.requests} request(s) "
        f"({quiet.listed} event(s) re-read, {quiet.stored} new, {quiet.applied.rereads} object(s) read)"
    )
    print(f"check-db against the API after the churn: {differences} difference(s)")
    if differences:
        for table in report.tables:
            if not table.ok:
                print(f"  {table.table}: {table.to_dict()['findings']}")
    return 0 if not differences else 1


if __name__ == "__main__":
    run_command(main)
