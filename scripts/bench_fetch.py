#!/usr/bin/env python
"""Benchmark the backfill of a seeded sandbox: Stripe → PostgreSQL, both paths, two budgets.

For each budget — (1) the sandbox limited to RATE requests/s in all and ENDPOINT_RATE per
endpoint (default 100 and 25: Stripe's live-mode limit and its default per-endpoint limit),
the fetch told the same; (2) no limit, no budget — and each path:

  api   `ingest_all.py --source api`: the API read concurrently, streamed into the bulk load;
  curl  `fetch_stripe_data.sh`, and `ingest_all.py` on its files started alongside (it loads
        each file once the fetch has written it; large lists paged in `created` ranges;
        FETCH_RATE and FETCH_ENDPOINT_RATE as for the api path);

prints objects/s for the whole backfill, requests/s (overall, and the busiest second) against
the budget, the share of 429s, and the peak memory of the backfill's processes. The sandbox
runs in a process of its own (as `make sandbox` does), counting every request it answers.
Each backfill loads a fresh scratch database (`stripe_db_bench_fetch` beside DATABASE_URL's;
BENCH_DB names another, so two benchmarks never share one).

BENCH_CUSTOMERS=20000 is the issue's size (~239,000 objects; at 25 payment-method requests/s
the limited run needs ~15 minutes per path). The default is small enough for a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.commands.cli import run_command  # noqa: E402
from app.core.config import PROJECT_ROOT, load_settings, refuse_in_prod  # noqa: E402

FETCH = PROJECT_ROOT / "scripts" / "fetch_stripe_data.sh"
INGEST = PROJECT_ROOT / "scripts" / "ingest_all.py"
KEY = "sk_test_bench_fetch"
BENCH_DB = "stripe_db_bench_fetch"


class Sandbox:
    """A seeded sandbox in a child process; `tally()` returns the requests answered since the
    last call, as (seconds since the epoch, status, endpoint)."""

    def __init__(self, customers: int, rate: float, endpoint_rate: float) -> None:
        command = [sys.executable, __file__, "--serve", "--customers", str(customers)]
        command += ["--rate", str(rate), "--endpoint-rate", str(endpoint_rate)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        ready = json.loads(self.process.stdout.readline())
        self.url: str = ready["url"]
        self.objects: int = ready["objects"]

    def tally(self) -> list[tuple[float, int, str]]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("tally\n")
        self.process.stdin.flush()
        return [tuple(r) for r in json.loads(self.process.stdout.readline())]  # type: ignore[misc]

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


def serve(customers: int, rate: float, endpoint_rate: float) -> int:
    """The child: serve, seed, then answer `tally` lines on stdin until stdin closes."""
    from app.sandbox.server import run_in_thread

    limited = rate > 0
    handle = run_in_thread(
        0,
        rate_limit=limited,
        test_rate=rate if limited else 25.0,
        endpoint_rate=endpoint_rate if limited and endpoint_rate > 0 else None,
    )
    report = handle.seed(customers=customers)
    records: list[tuple[float, int, str]] = []
    sandbox = handle.sandbox
    answer = sandbox.handle

    def counted(method: str, target: str, headers: dict[str, str], body: bytes) -> Any:
        response = answer(method, target, headers, body)
        records.append((time.time(), response.status, _endpoint(target)))
        return response

    sandbox.handle = counted  # type: ignore[method-assign]
    print(json.dumps({"url": handle.url, "objects": report.get("objects", 0)}), flush=True)
    for line in sys.stdin:
        if line.strip() == "tally":
            taken, records[:] = list(records), []
            print(json.dumps(taken), flush=True)
    handle.stop()
    return 0


def _endpoint(target: str) -> str:
    """`/v1/customers/cus_1/payment_methods?limit=100` → `/v1/customers/*/payment_methods`."""
    parts = target.split("?", 1)[0].split("/")
    return "/".join("*" if re.fullmatch(r"[a-z]{2,5}_\w{8,}", p) else p for p in parts)


def bench_url() -> str:
    from app.db.session import sqlalchemy_url

    settings = load_settings()
    refuse_in_prod(settings, "run a benchmark (it drops its scratch database)")
    url = sqlalchemy_url(settings.database_url).set(database=os.environ.get("BENCH_DB") or BENCH_DB)
    return url.render_as_string(hide_password=False)


def reap(
    process: subprocess.Popen[bytes], command: list[str], err: IO[str], started: float, block: bool
) -> tuple[float, float] | None:
    """The seconds since `started` and the peak memory in MB (the largest process: itself, or
    the largest of its children) of `process` once it ended (None: it still runs and `block` is
    false); the benchmark stops with its stderr if it failed."""
    pid, status, usage = os.wait4(process.pid, 0 if block else os.WNOHANG)
    if pid == 0:
        return None
    if (code := os.waitstatus_to_exitcode(status)) not in (0, 1):
        err.seek(0)
        sys.exit(f"{' '.join(command)} failed ({code}):\n{err.read()[-3000:]}")
    return time.monotonic() - started, usage.ru_maxrss / 1024


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run `command`; its seconds, its peak memory in MB (as `reap`) and its stderr."""
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err)
        ended = reap(process, command, err, started, block=True)
        assert ended is not None
        err.seek(0)
        return *ended, err.read()


def timed_alongside(
    fetch: list[str], ingest: list[str], env: dict[str, str], json_dir: Path
) -> tuple[float, float, float]:
    """Run the fetch, and the ingest of its folder once the fetch holds the folder's lock (so
    the ingest follows it, loading each file once it is written); the seconds until both ended,
    the fetch's seconds, and the peak memory in MB of the larger (as `reap`)."""
    from app.load.fetch_watch import RunningFetch

    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as err:
        fetching = subprocess.Popen(fetch, env=env, stdout=subprocess.DEVNULL, stderr=err)
        fetched = None
        while (holder := RunningFetch.find(json_dir)) is None or holder.pid != fetching.pid:
            fetched = reap(fetching, fetch, err, started, block=False)
            if fetched is not None:
                break  # done already: the ingest reads its files as they are
            time.sleep(0.02)
        loading = subprocess.Popen(ingest, env=env, stdout=subprocess.DEVNULL, stderr=err)
        fetched = fetched or reap(fetching, fetch, err, started, block=True)
        loaded = reap(loading, ingest, err, started, block=True)
    assert fetched is not None and loaded is not None
    return time.monotonic() - started, fetched[0], max(fetched[1], loaded[1])


def backfill(
    path: str,
    sandbox: Sandbox,
    url: str,
    rate: float,
    endpoint_rate: float,
    timeline: Path | None = None,
) -> tuple[str, dict[str, tuple[int, str]]]:
    """One backfill into a fresh database: its line of figures, and the rows it loaded
    (`rows_digest`); with `timeline`, the requests of each second by endpoint as CSV there."""
    from app.schema import recreate_database

    recreate_database(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FETCH_", "STRIPE_"))}
    env.update(
        ENV="DEV",
        STRIPE_API_BASE=sandbox.url,
        STRIPE_SECRET_KEY=KEY,
        DATABASE_URL=url,
        FETCH_RATE=str(rate),
        FETCH_ENDPOINT_RATE=str(endpoint_rate),
        RESOURCES="",
        PYTHON=sys.executable,
    )
    sandbox.tally()
    ingest = [sys.executable, str(INGEST), "-q", "--database-url", url]
    if path == "api":
        seconds, peak, _ = timed([*ingest, "--source", "api"], env)
        fetch_seconds = None
    else:
        with tempfile.TemporaryDirectory(prefix="bench_fetch_") as tmp:
            env["JSON_DIR"] = tmp
            seconds, fetch_seconds, peak = timed_alongside(
                ["bash", str(FETCH)], [*ingest, "--json-dir", tmp], env, Path(tmp)
            )
    requests = sandbox.tally()
    if timeline is not None:
        write_timeline(timeline, requests)
    line = describe(
        path, sandbox.objects, seconds, fetch_seconds, peak, requests, rate, endpoint_rate
    )
    return line, rows_digest(url)


def write_timeline(path: Path, requests: list[tuple[float, int, str]]) -> None:
    """`second,endpoint,requests,429s` rows, seconds counted from the first request."""
    start = min((stamp for stamp, _, _ in requests), default=0.0)
    counts: Counter[tuple[int, str, bool]] = Counter(
        (int(stamp - start), endpoint, status == 429) for stamp, status, endpoint in requests
    )
    rows = sorted({(second, endpoint) for second, endpoint, _ in counts})
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        out.write("second,endpoint,requests,429s\n")
        for second, endpoint in rows:
            limited = counts[(second, endpoint, True)]
            out.write(
                f"{second},{endpoint},{counts[(second, endpoint, False)] + limited},{limited}\n"
            )
    print(f"  timeline: {path}", file=sys.stderr, flush=True)


# bookkeeping of the load, not data from Stripe: when the row was written, and the Stripe time
# its state was read at (the start of the API listing, or of the fetch that wrote the file)
BOOKKEEPING = {"synced_at", "state_at"}


def rows_digest(url: str) -> dict[str, tuple[int, str]]:
    """Each table's row count and an md5 of its rows in id order, bookkeeping left out: two
    backfills that loaded the same rows have the same digests."""
    from sqlalchemy import create_engine, pool, text

    import app.registry  # noqa: F401  (the models)
    from app.db.base import Base
    from app.db.session import sqlalchemy_url

    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    digests = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if "id" not in table.columns or table.name in ("stripe_events", "sync_state"):
                continue
            columns = ", ".join(f'"{c.name}"' for c in table.columns if c.name not in BOOKKEEPING)
            count, digest = conn.execute(
                text(
                    f"SELECT count(*), md5(coalesce(string_agg(row_text, E'\\n' ORDER BY id), '')) "
                    f'FROM (SELECT id, ({columns})::text AS row_text FROM "{table.name}") AS r'
                )
            ).one()
            digests[table.name] = (count, digest)
    engine.dispose()
    return digests


def compare_rows(loaded: dict[str, dict[str, tuple[int, str]]]) -> str:
    """`rows: identical …` when every path loaded the same rows, else which tables differ."""
    first, *others = loaded
    differ = sorted(
        table
        for other in others
        for table in loaded[first]
        if loaded[other].get(table) != loaded[first][table]
    )
    rows = sum(count for count, _ in loaded[first].values())
    if differ:
        return f"  rows: DIFFERENT between {' and '.join(loaded)} in {', '.join(differ)}"
    return f"  rows: identical from {' and '.join(loaded)} ({len(loaded[first])} tables, {rows:,} rows)"


def describe(
    path: str,
    objects: int,
    seconds: float,
    fetch_seconds: float | None,
    peak: float,
    requests: list[tuple[float, int, str]],
    rate: float,
    endpoint_rate: float = 0.0,
) -> str:
    total = len(requests)
    r429 = sum(1 for _, status, _ in requests if status == 429)
    per_second = Counter(int(stamp) for stamp, _, _ in requests)
    busiest = max(per_second.values(), default=0)
    span = (max(s for s, _, _ in requests) - min(s for s, _, _ in requests)) if requests else 0
    endpoints = Counter(endpoint for _, _, endpoint in requests)
    top, top_count = endpoints.most_common(1)[0] if endpoints else ("-", 0)
    budget = f" = {total / span / rate:.0%} of {rate:g}" if rate and span else ""
    split = f" (fetch {fetch_seconds:.1f} s)" if fetch_seconds is not None else ""
    if rate and endpoint_rate and requests:
        overall, worst = achievable_share(requests, rate, endpoint_rate)
        budget += (
            f"; {overall:.0%} of the achievable rate (worst {WINDOW} s: {worst:.0%})"
            if overall is not None
            else ""
        )
    return (
        f"  {path:<5} {objects:>9,} objects in {seconds:6.1f} s{split} = "
        f"{objects / seconds:>7,.0f} objects/s | {total:,} requests, "
        f"{total / span if span else 0:,.0f}/s while fetching{budget}, busiest second {busiest}, "
        f"most on {top} ({top_count:,}) | 429s {r429 / total if total else 0:.2%} | "
        f"peak memory {peak:,.0f} MB"
    )


WINDOW = 5  # seconds: the "at every moment" of the achievable-rate share


def achievable_share(
    requests: list[tuple[float, int, str]], rate: float, endpoint_rate: float
) -> tuple[float | None, float]:
    """The share of the achievable rate the requests used, overall and in the worst WINDOW
    seconds. Achievable, each second: the lesser of `rate` and `endpoint_rate` × the endpoints
    that still have work (a request to send after that second). The last, partial second of
    the run is left out."""
    start = min(stamp for stamp, _, _ in requests)
    last: dict[str, float] = {}
    sent: Counter[int] = Counter()
    for stamp, _, endpoint in requests:
        last[endpoint] = max(last.get(endpoint, 0.0), stamp)
        sent[int(stamp - start)] += 1
    seconds = int(max(last.values()) - start)
    if seconds < 1:
        return None, 1.0
    possible = [
        min(rate, endpoint_rate * sum(1 for t in last.values() if t >= start + i + 1))
        for i in range(seconds)
    ]
    used = [min(sent[i], possible[i]) for i in range(seconds)]
    windows = [
        sum(used[i : i + WINDOW]) / sum(possible[i : i + WINDOW])
        for i in range(0, max(1, seconds - WINDOW + 1))
    ]
    return sum(used) / sum(possible), min(windows)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--customers", type=int, default=1000, help="seed size (default 1000; the issue's: 20000)"
    )
    parser.add_argument("--rate", type=float, default=100.0, help="limited run: requests/s in all")
    parser.add_argument(
        "--endpoint-rate", type=float, default=25.0, help="limited run: requests/s per endpoint"
    )
    parser.add_argument(
        "--paths", default="api,curl", help="which backfills: api, curl or both (default)"
    )
    parser.add_argument(
        "--budgets", default="limited,unlimited", help="limited, unlimited or both (default)"
    )
    parser.add_argument(
        "--timeline",
        type=Path,
        metavar="DIR",
        help="write each backfill's requests per second and endpoint to DIR/<budget>-<path>.csv",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.customers, args.rate, args.endpoint_rate)
    url = bench_url()
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    budgets = [b.strip() for b in args.budgets.split(",") if b.strip()]
    for budget in budgets:
        rate, endpoint_rate = (args.rate, args.endpoint_rate) if budget == "limited" else (0.0, 0.0)
        print(f"seeding {args.customers:,} customers …", file=sys.stderr, flush=True)
        sandbox = Sandbox(args.customers, rate, endpoint_rate)
        try:
            title = (
                f"limited: {rate:g} requests/s, {endpoint_rate:g} per endpoint"
                if rate
                else "unlimited: no rate limit, no budget"
            )
            print(f"{title} ({sandbox.objects:,} objects)", flush=True)
            loaded = {}
            for path in paths:
                timeline = args.timeline / f"{budget}-{path}.csv" if args.timeline else None
                line, loaded[path] = backfill(path, sandbox, url, rate, endpoint_rate, timeline)
                print(line, flush=True)
            if len(loaded) > 1:
                print(compare_rows(loaded), flush=True)
        finally:
            sandbox.stop()
    from app.schema import drop_database

    drop_database(url)
    return 0


if __name__ == "__main__":
    run_command(main)
