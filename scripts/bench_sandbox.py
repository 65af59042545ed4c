"""Bench the local Stripe sandbox: full list pages of 100 customers with expand[], from a big store.

Starts a sandbox in a child process, seeds it in-process (`POST /_sandbox/seed`), then client
processes walk `/v1/customers?limit=100&expand[]=data.invoice_settings.default_payment_method`
page by page over keep-alive connections for a fixed time, and the requests/s and objects/s are
printed. Bounded: seeding plus --seconds of load.

    .venv/bin/python scripts/bench_sandbox.py [--customers 100000] [--seconds 15] [--clients 2]
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
AUTH = {"Authorization": "Bearer sk_test_bench"}
EXPANDS = ("data.invoice_settings.default_payment_method",)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/_sandbox/health", timeout=0.5).read()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"sandbox did not come up at {url}")


def client(port: int, seconds: float, results: multiprocessing.Queue) -> None:
    """Walk the customer list page by page (restarting at the end) until time is up."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    expand = "".join(f"&expand[]={e}" for e in EXPANDS)
    requests = objects = errors = 0
    cursor = None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        path = f"/v1/customers?limit=100{expand}" + (f"&starting_after={cursor}" if cursor else "")
        conn.request("GET", path, headers=AUTH)
        response = conn.getresponse()
        body = response.read()
        requests += 1
        if response.status != 200:
            errors += 1
            continue
        # The client finds its cursor without parsing 140 KB of JSON: on this 2-core machine a
        # parsing client would take CPU from the server it is measuring.
        objects += body.count(b'"object":"customer"')
        last = body.rfind(b'"id":"cus_')
        more = body.endswith(b'"has_more":true,"url":"/v1/customers"}')
        cursor = body[last + 6 : body.index(b'"', last + 6)].decode() if more else None
    results.put((requests, objects, errors))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "app.sandbox", "serve", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(url)
        started = time.perf_counter()
        request = urllib.request.Request(
            url + "/_sandbox/seed", data=f"customers={args.customers}".encode(), method="POST"
        )
        report = orjson.loads(urllib.request.urlopen(request, timeout=300).read())
        print(
            f"seeded {report['objects']} objects for {args.customers} customers in "
            f"{time.perf_counter() - started:.1f}s ({report['objects_per_second']} objects/s)"
        )
        results: multiprocessing.Queue = multiprocessing.Queue()
        workers = [
            multiprocessing.Process(target=client, args=(port, args.seconds, results))
            for _ in range(args.clients)
        ]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        totals = [results.get(timeout=args.seconds + 60) for _ in workers]
        elapsed = time.perf_counter() - started
        for worker in workers:
            worker.join()
        requests = sum(t[0] for t in totals)
        objects = sum(t[1] for t in totals)
        errors = sum(t[2] for t in totals)
        print(
            f"{requests} list pages (limit=100, expand[]={','.join(EXPANDS)}) in {elapsed:.1f}s "
            f"with {args.clients} keep-alive clients: {requests / elapsed:.0f} requests/s, "
            f"{objects / elapsed:.0f} objects/s, {errors} errors"
        )
        return 1 if errors else 0
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
