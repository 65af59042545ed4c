"""Running the curl fetchers against a sandbox from tests, and reading what they wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import requests

from app.core.config import PROJECT_ROOT
from app.registry import RESOURCES, Resource

FETCH = PROJECT_ROOT / "scripts" / "fetch_stripe_data.sh"
FETCH_PMS = PROJECT_ROOT / "scripts" / "fetch_payment_methods.sh"
TEST_KEY = "sk_test_fetch_tests_0001"


def fetch_env(url: str, json_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FETCH_", "STRIPE_"))}
    env.update(
        ENV="DEV",
        STRIPE_API_BASE=url,
        STRIPE_SECRET_KEY=TEST_KEY,
        JSON_DIR=str(json_dir),
        FETCH_RATE="0",
        RESOURCES="",
    )
    env.update(extra)
    return env


def run_fetch(
    url: str, json_dir: Path, *, script: Path = FETCH, timeout: float = 60, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script)],
        env=fetch_env(url, json_dir, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# A shell started in the background without job control ignores SIGINT, and so does everything
# it starts, pytest and its children included; bash then cannot trap it. Reset SIGINT and SIGTERM
# to their defaults before bash starts, so no test depends on how pytest itself was started.
DEFAULT_SIGNALS = (
    "import os, signal, sys\n"
    "for s in (signal.SIGINT, signal.SIGTERM): signal.signal(s, signal.SIG_DFL)\n"
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


def start_fetch(
    url: str, json_dir: Path, *, script: Path = FETCH, **extra: str
) -> subprocess.Popen[str]:
    """A fetch in the background, in a process group of its own (the pid is bash's: exec)."""
    return subprocess.Popen(
        [sys.executable, "-c", DEFAULT_SIGNALS, "bash", str(script)],
        env=fetch_env(url, json_dir, **extra),
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def processes_of(json_dir: Path) -> list[str]:
    """The running processes (zombies aside) of a fetch into json_dir: its JSON_DIR in their
    environment (bash and its subshells) or json_dir on their command line (curl, jq)."""
    marker = f"JSON_DIR={json_dir}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours
            continue
        if state != "Z" and (marker in environ.split(b"\0") or str(json_dir).encode() in cmdline):
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{proc.name} {command}")
    return found


def objects_in(json_dir: Path, name: str) -> list[dict[str, Any]]:
    envelope = json.loads((json_dir / f"{name}.json").read_text())
    assert envelope["object"] == "list" and envelope["has_more"] is False
    return envelope["data"]


def sandbox_ids(store: Any, resource: Resource) -> set[str]:
    """What the sandbox holds of a resource, as a fetch should list it."""
    objects = store.tables[resource.object_name].by_id.values()
    if resource.per_customer:  # listed per customer: only methods attached to one
        return {o["id"] for o in objects if o.get("customer")}
    return {o["id"] for o in objects}


def assert_files_match_sandbox(
    json_dir: Path, store: Any, resources: tuple[Resource, ...] = RESOURCES
) -> None:
    for resource in resources:
        ids = [o["id"] for o in objects_in(json_dir, resource.name)]
        assert len(ids) == len(set(ids)), f"{resource.name}: duplicated objects in the file"
        assert set(ids) == sandbox_ids(store, resource), resource.name


def create_long_lists(url: str, *, invoice_lines: int = 25, items: int = 12) -> dict[str, str]:
    """Through the API, as a user would: a subscription with more items, and an invoice with more
    lines, than the first page (10) Stripe embeds in an object."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TEST_KEY}"

    def post(path: str, data: dict[str, str]) -> dict[str, Any]:
        response = session.post(url + path, data=data, timeout=10)
        assert response.status_code == 200, response.text
        return dict(response.json())

    customer = post(
        "/v1/customers", {"email": "long@example.com", "payment_method": "pm_card_visa"}
    )
    for n in range(invoice_lines):
        post(
            "/v1/invoiceitems",
            {"customer": customer["id"], "amount": str(100 + n), "currency": "usd"},
        )
    invoice = post("/v1/invoices", {"customer": customer["id"]})
    product = post("/v1/products", {"name": "Many add-ons"})
    prices = [
        post(
            "/v1/prices",
            {
                "product": product["id"],
                "currency": "usd",
                "unit_amount": str(500 + n),
                "recurring[interval]": "month",
            },
        )
        for n in range(items)
    ]
    sub = post(
        "/v1/subscriptions",
        {
            "customer": customer["id"],
            **{f"items[{n}][price]": price["id"] for n, price in enumerate(prices)},
        },
    )
    return {"invoice": invoice["id"], "subscription": sub["id"]}


def serve_body(body: bytes) -> Any:
    """An HTTP server on a free port answering every GET with `body` (200, JSON)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 — http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # a short poll: shutdown() returns within 50 ms rather than half a second
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server
