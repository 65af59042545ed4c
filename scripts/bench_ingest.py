#!/usr/bin/env python3
"""Benchmark: the real ingest path against a raw PostgreSQL COPY of the same rows.

Generates N Stripe-shaped objects (half customers of about 1 KB, half charges of about 3 KB)
as list-envelope JSON files under data/bench/, then in one scratch database:
  1. COPY: the same rows, already formatted, loaded with COPY into a copy of each table;
  2. ingest: the files through read → transform → bulk upsert, as `make ingest-all` does.
Prints rows/s of both, their ratio (goal: ingest ≥ 0.5 × COPY) and the ingest's peak memory.
With --memory-sizes it also runs the ingest alone at two sizes to show that memory stays flat
(goal: peak at the larger size ≤ 1.5 × peak at the smaller).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import orjson
from sqlalchemy import create_engine, pool, text

from app.commands.cli import run_command
from app.core.config import PROJECT_ROOT, load_settings, refuse_in_prod
from app.db.session import sqlalchemy_url
from app.load.json_files import read_json_objects
from app.load.runner import ingest_file
from app.load.table_loader import TableLoader
from app.registry import BY_NAME
from app.schema import drop_database, recreate_database
from app.synthetic import charge, customer

BENCH_DIR = PROJECT_ROOT / "data" / "bench"
BENCH_DB = "stripe_bench"


def bench_customer(n: int) -> dict:
    obj = customer(n, default_payment_method=f"pm_{n:014d}")
    obj["metadata"].update(
        crm_id=f"crm-{n:010d}",
        plan_tier=("gold", "silver", "bronze")[n % 3],
        signup_campaign=f"campaign-{n % 97:03d}",
    )
    return obj


def bench_charge(n: int) -> dict:
    obj = charge(n, n, 1000 + n % 5000, payment_intent_n=None)
    obj["metadata"].update(
        order_id=f"order-{n:012d}",
        warehouse=f"wh-{n % 13}",
        cart=",".join(f"sku-{(n + i) % 1000:04d}" for i in range(40)),
    )
    return obj


def write_files(n: int) -> dict[str, Path]:
    """Write customers.json and charges.json (list envelopes, streamed), unless already there."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    half = n // 2
    made = {"customers": (bench_customer, half), "charges": (bench_charge, n - half)}
    paths = {}
    for name, (factory, count) in made.items():
        path = BENCH_DIR / f"{name}-{count}.json"
        paths[name] = path
        if path.exists():
            continue
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as out:
            out.write(
                b'{"object": "list", "url": "/v1/'
                + name.encode()
                + b'", "has_more": false, "data": [\n'
            )
            for i in range(1, count + 1):
                out.write(orjson.dumps(factory(i)))
                out.write(b",\n" if i < count else b"\n")
            out.write(b"]}\n")
        tmp.rename(path)
    return paths


def bench_url(settings) -> str:
    return str(
        sqlalchemy_url(settings.database_url)
        .set(database=BENCH_DB)
        .render_as_string(hide_password=False)
    )


def copy_baseline(url: str, paths: dict[str, Path]) -> dict:
    """Rows/s of COPY alone: the rows are transformed and formatted before the clock starts."""
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    rows_total, seconds = 0, 0.0
    with engine.connect() as conn:
        for name, path in paths.items():
            res = BY_NAME[name]
            loader = TableLoader(conn, res.table)
            formatted = path.with_suffix(".copy")
            with formatted.open("w") as out:
                for obj in read_json_objects(path):
                    row = res.transform(obj)
                    row["api_version"] = "bench"
                    out.write(loader.format.copy_line(row, name))
                    rows_total += 1
            conn.execute(text(f"CREATE TABLE copy_{name} (LIKE {name} INCLUDING ALL)"))
            conn.commit()
            cursor = conn.connection.dbapi_connection.cursor()
            with formatted.open() as handle:
                started = time.perf_counter()
                cursor.copy_expert(
                    f"COPY copy_{name} ({', '.join(loader.columns)}) FROM STDIN", handle
                )
                conn.commit()
                seconds += time.perf_counter() - started
            formatted.unlink()
    engine.dispose()
    return {"rows": rows_total, "seconds": seconds}


def run_ingest(url: str, paths: dict[str, Path]) -> dict:
    """The real path, in this process: read → transform → bulk upsert."""
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    rows, started = 0, time.perf_counter()
    with engine.connect() as conn:
        for name in ("customers", "charges"):
            result = ingest_file(conn, BY_NAME[name], paths[name], api_version="bench")
            stats = result.stats[name]
            if stats.inserted != stats.read:
                raise SystemExit(f"bench ingest lost rows: {stats}")
            rows += stats.read
    seconds = time.perf_counter() - started
    engine.dispose()
    return {
        "rows": rows,
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def in_child(mode: str, n: int) -> dict:
    """Run one measurement in a fresh process, so that its peak memory is its own."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--n", str(n)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200_000, help="objects in all (default 200000)")
    parser.add_argument(
        "--memory-sizes",
        default="",
        help="two sizes to compare peak memory at, e.g. 100000,1000000",
    )
    parser.add_argument("--child", choices=["copy", "ingest"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    settings = load_settings()
    refuse_in_prod(settings, "run a benchmark (it drops its scratch database)")
    url = bench_url(settings)
    if args.child:
        paths = write_files(args.n)
        recreate_database(url)
        measure = copy_baseline if args.child == "copy" else run_ingest
        print(json.dumps(measure(url, paths)))
        return 0

    print(f"generating {args.n:,} objects in {BENCH_DIR} …", file=sys.stderr)
    paths = write_files(args.n)
    size_mb = sum(p.stat().st_size for p in paths.values()) / 1e6
    baseline = in_child("copy", args.n)
    measured = in_child("ingest", args.n)
    drop_database(url)
    copy_rows, copy_seconds = baseline["rows"], baseline["seconds"]
    copy_rate = copy_rows / copy_seconds
    ingest_rate = measured["rows"] / measured["seconds"]
    print(
        f"objects: {measured['rows']:,} ({size_mb:,.0f} MB of JSON: customers ~1 KB, charges ~3 KB)"
    )
    print(f"raw COPY:  {copy_rate:>10,.0f} rows/s  ({copy_seconds:.1f} s, rows pre-formatted)")
    print(
        f"ingest:    {ingest_rate:>10,.0f} rows/s  ({measured['seconds']:.1f} s, parse + transform + upsert)"
    )
    print(f"ratio ingest/COPY: {ingest_rate / copy_rate:.2f}  (goal ≥ 0.50)")
    print(f"ingest peak memory: {measured['peak_rss_mb']:,.0f} MB")
    if args.memory_sizes:
        small, large = (int(x) for x in args.memory_sizes.split(","))
        peaks = {}
        for n in (small, large):
            print(f"memory run at {n:,} objects …", file=sys.stderr)
            write_files(n)
            peaks[n] = in_child("ingest", n)["peak_rss_mb"]
            drop_database(url)
        print(
            f"peak memory: {peaks[small]:,.0f} MB at {small:,}, {peaks[large]:,.0f} MB at {large:,}; "
            f"ratio {peaks[large] / peaks[small]:.2f}  (goal ≤ 1.50)"
        )
    return 0


if __name__ == "__main__":
    run_command(main)
