#!/usr/bin/env python
"""Benchmark the curl fetchers against a seeded local sandbox (bounded: well under 3 minutes).

(a) sandbox rate limit on at RATE requests/s, fetch budget RATE: achieved requests/s over the
    limit (target >= 90 %) and the share of requests answered 429 (target < 1 %);
(b) rate limit off, no budget: objects/s fetched, i.e. the fetchers' own cost; and the same for
    SOURCE=api (the stripe SDK path), reading every resource without a database.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.cli import run_command  # noqa: E402
from app.config import PROJECT_ROOT, load_settings  # noqa: E402
from app.resources import RESOURCES  # noqa: E402
from app.sandbox.server import run_in_thread  # noqa: E402

FETCH = PROJECT_ROOT / "scripts" / "fetch_stripe_data.sh"
KEY = "sk_test_bench_fetch"


def fetch(url: str, out: Path, rate: float) -> tuple[float, list[tuple[str, float]], str]:
    env = {
        **os.environ,
        "ENV": "DEV",
        "STRIPE_API_BASE": url,
        "STRIPE_SECRET_KEY": KEY,
        "JSON_DIR": str(out),
        "FETCH_RATE": str(rate),
        "RESOURCES": "",
    }
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(FETCH)], env=env, capture_output=True, text=True, check=False, timeout=170
    )
    seconds = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"fetch failed ({result.returncode}):\n{result.stderr[-2000:]}")
    log = (out / ".partial" / "requests.log").read_text().split("\n")
    requests = [(status, float(stamp)) for status, stamp in (ln.split() for ln in log if ln)]
    return seconds, requests, result.stderr


def objects_in(out: Path) -> int:
    return sum(json.loads((out / f"{r.name}.meta.json").read_text())["objects"] for r in RESOURCES)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=500, help="seed size (default 500)")
    parser.add_argument(
        "--rate",
        type=float,
        default=25.0,
        help="the sandbox's rate limit and the fetch budget (default 25)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_fetch_") as tmp:
        limited = run_in_thread(0, rate_limit=True, test_rate=args.rate)
        try:
            report = limited.seed(customers=args.customers)
            print(
                f"seeded {args.customers} customers: {report.get('objects', '?')} objects",
                file=sys.stderr,
            )
            seconds, requests, _ = fetch(limited.url, Path(tmp) / "limited", args.rate)
        finally:
            limited.stop()
        total = len(requests)
        r429 = sum(1 for status, _ in requests if status == "429")
        stamps = sorted(stamp for _, stamp in requests)
        sustained = (total - 1) / (stamps[-1] - stamps[0])
        overall = total / seconds
        print(
            f"(a) rate limit {args.rate:g} req/s: {total} requests in {seconds:.1f} s; "
            f"sustained {sustained:.1f} req/s = {sustained / args.rate:.0%} of the limit "
            f"(whole run incl. start-up and merge: {overall:.1f} req/s = "
            f"{overall / args.rate:.0%}); 429s: {r429} = {r429 / total:.2%}"
        )

        free = run_in_thread(0)
        try:
            free.seed(customers=args.customers)
            out = Path(tmp) / "free"
            seconds, requests, _ = fetch(free.url, out, 0)
            objects = objects_in(out)
            print(
                f"(b) no rate limit, no budget: {objects} objects, {len(requests)} requests in "
                f"{seconds:.1f} s = {objects / seconds:,.0f} objects/s "
                f"({len(requests) / seconds:.0f} requests/s)"
            )
            os.environ["FETCH_RATE"] = "0"
            from app.sources import read_api_objects

            settings = load_settings("DEV")
            settings = type(settings)(
                **{**settings.__dict__, "stripe_api_base": free.url, "stripe_secret_key": KEY}
            )
            started = time.monotonic()
            count = sum(1 for r in RESOURCES for _ in read_api_objects(r, settings))
            seconds = time.monotonic() - started
            print(
                f"    SOURCE=api (stripe SDK, no database): {count} objects in {seconds:.1f} s "
                f"= {count / seconds:,.0f} objects/s"
            )
        finally:
            free.stop()
    return 0


if __name__ == "__main__":
    run_command(main)
