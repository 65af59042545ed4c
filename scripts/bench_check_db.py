#!/usr/bin/env python3
"""Benchmark the integrity check against the ingest: is verifying no slower than loading, and
does memory stay flat as the data grows?

For each size (N/5, then N objects): write N synthetic Stripe objects (app/synthetic.py) as
list envelopes under data/bench/, ingest them into a scratch database (stripe_bench_check on
the test server, created and dropped here), then run the check against the same files. Ingest
and check each run in their own process, so their peak memory (ru_maxrss) is their own.

    .venv/bin/python scripts/bench_check_db.py            # N=200,000: about a minute
    .venv/bin/python scripts/bench_check_db.py --n 1000000
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy import create_engine, pool

from app import synthetic
from app.commands.cli import run_command
from app.core.config import PROJECT_ROOT, load_settings, mask_secrets, refuse_in_prod
from app.core.errors import PipelineError
from app.db.session import sqlalchemy_url
from app.registry import RESOURCES, load_order
from app.schema import drop_database, recreate_database

BENCH_DIR = PROJECT_ROOT / "data" / "bench" / "check_db"
PLANS = 100
OBJECTS_PER_CUSTOMER = 6  # customer, payment method, subscription, invoice, payment intent, charge


def generate(n: int, directory: Path) -> int:
    """Write about n objects, one at a time (memory stays flat); return how many were written."""
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, IO[bytes]] = {}
    first: dict[str, bool] = {}
    for r in RESOURCES:
        handle = (directory / r.file_name).open("wb")
        handle.write(
            b'{"object": "list", "has_more": false, "url": "/v1/'
            + r.name.encode()
            + b'", "data": [\n'
        )
        files[r.name], first[r.name] = handle, True
    written = 0

    def put(name: str, obj: dict[str, Any]) -> None:
        nonlocal written
        handle = files[name]
        if not first[name]:
            handle.write(b",\n")
        first[name] = False
        handle.write(orjson.dumps(obj))
        written += 1

    for p in range(1, PLANS + 1):
        put("products", synthetic.product(p))
        put("prices", synthetic.price(p))
    for c in range(1, max(1, (n - 2 * PLANS) // OBJECTS_PER_CUSTOMER) + 1):
        plan = c % PLANS + 1
        amount = 1000 + 500 * (plan % 5)
        legacy = c % 3 == 0  # both API shapes, as real exports have
        put("customers", synthetic.customer(c, default_payment_method=f"pm_{c:014d}"))
        put("payment_methods", synthetic.payment_method(c, c))
        put("subscriptions", synthetic.subscription(c, c, plan, legacy=legacy))
        put("invoices", synthetic.invoice(c, c, c, plan, amount, legacy=legacy))
        put(
            "payment_intents",
            synthetic.payment_intent(c, c, amount, invoice_n=c if legacy else None),
        )
        put(
            "charges",
            synthetic.charge(c, c, amount, payment_intent_n=c, invoice_n=c if legacy else None),
        )
    for handle in files.values():
        handle.write(b"\n]}\n")
        handle.close()
    return written


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def phase_ingest(url: str, directory: Path) -> dict[str, Any]:
    from app.load.runner import ingest_file

    recreate_database(url)
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    started = time.monotonic()
    rows = 0
    with engine.connect() as conn:
        for r in load_order():
            result = ingest_file(conn, r, directory / r.file_name)
            rows += result.stats[r.name].read
    seconds = time.monotonic() - started
    engine.dispose()
    return {"seconds": seconds, "objects": rows, "peak_mb": peak_mb()}


def phase_check(url: str, directory: Path) -> dict[str, Any]:
    from app.commands.check_db import run

    started = time.monotonic()
    report = run(url, load_order(), load_settings(), source="json", json_dir=directory)
    seconds = time.monotonic() - started
    return {
        "seconds": seconds,
        "ok": report.ok,
        "failures": sum(t.failures for t in report.tables),
        "peak_mb": peak_mb(),
    }


def run_phase(phase: str, url: str, directory: Path) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--phase",
            phase,
            "--database-url",
            url,
            "--dir",
            str(directory),
        ],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
    )
    if out.returncode != 0:
        raise SystemExit(f"{phase} failed:\n{out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--n",
        type=int,
        default=200_000,
        help="objects at the larger size (the smaller is N/5); default 200,000",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="scratch database, dropped and recreated "
        "(default: stripe_bench_check beside TEST_DATABASE_URL)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the scratch database and the JSON files"
    )
    parser.add_argument("--phase", choices=["ingest", "check"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    try:
        settings = load_settings()
        url = (
            args.database_url
            or settings.test_database_url.rsplit("/", 1)[0] + "/stripe_bench_check"
        )
        if args.phase:
            result = (phase_ingest if args.phase == "ingest" else phase_check)(url, args.dir)
            print(json.dumps(result))
            return 0
        refuse_in_prod(settings, "create and drop a benchmark database")
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    print(f"scratch database: {mask_secrets(url)}; files under {BENCH_DIR}")
    header = (
        f"{'objects':>10}{'ingest s':>10}{'check s':>10}{'check/ingest':>14}"
        f"{'ingest MB':>11}{'check MB':>10}  check result"
    )
    lines = [header, "-" * len(header)]
    status = 0
    try:
        for n in (max(args.n // 5, 1000), args.n):
            directory = BENCH_DIR / str(n)
            started = time.monotonic()
            objects = generate(n, directory)
            print(
                f"generated {objects:,} objects in {time.monotonic() - started:.1f}s",
                file=sys.stderr,
            )
            loaded = run_phase("ingest", url, directory)
            checked = run_phase("check", url, directory)
            ratio = checked["seconds"] / loaded["seconds"]
            verdict = "agrees" if checked["ok"] else f"{checked['failures']} differences"
            if not checked["ok"]:
                status = 1
            lines.append(
                f"{objects:>10,}{loaded['seconds']:>10.1f}{checked['seconds']:>10.1f}"
                f"{ratio:>14.2f}{loaded['peak_mb']:>11.0f}{checked['peak_mb']:>10.0f}"
                f"  {verdict}"
            )
            print(lines[-1], file=sys.stderr)
            if not args.keep:
                for path in directory.glob("*.json"):
                    path.unlink()
                directory.rmdir()
    finally:
        if not args.keep:
            drop_database(url)
    print("\n".join(lines))
    print("target: check/ingest <= 1.00, and peak memory about the same at both sizes")
    return status


if __name__ == "__main__":
    run_command(main)
