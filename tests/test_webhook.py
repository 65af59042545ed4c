"""The webhook receiver over real HTTP: uvicorn on a free port, the private test database.

Deliveries are signed here the way Stripe signs them (`t=…,v1=HMAC-SHA256(secret, "t.body")`).
The database is committed to (the receiver answers only after its commit), so the tables are
emptied after each test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
import requests
import uvicorn
from sqlalchemy import Engine, text
from starlette.applications import Starlette

import app.live.webhook as webhook
from app.core.config import PROJECT_ROOT, Settings, load_settings, parse_database_url
from app.live.events import drain
from app.synthetic import customer

SECRET = "whsec_" + "k3y" * 11
PATH = "/webhooks/stripe"
NOW = int(time.time())


# ---------------------------------------------------------------- helpers


def sign(body: bytes, secret: str = SECRET, t: int | None = None) -> str:
    t = int(time.time()) if t is None else t
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(number: int, email: str, created: int = NOW, customer_n: int = 1) -> dict[str, Any]:
    obj = customer(customer_n)
    obj["email"] = email
    return {
        "id": f"evt_wh{number}",
        "object": "event",
        "type": "customer.updated",
        "created": created,
        "livemode": False,
        "api_version": "2026-10-28.endive",
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "data": {"object": obj, "previous_attributes": {"email": "before@example.com"}},
    }


def body_of(evt: dict[str, Any]) -> bytes:
    return json.dumps(evt, indent=2).encode()  # Stripe sends pretty-printed JSON


def post(base: str, body: bytes, headers: dict[str, str] | None = None) -> requests.Response:
    if headers is None:
        headers = {"Stripe-Signature": sign(body)}
    headers = {"Content-Type": "application/json; charset=utf-8", **headers}
    return requests.post(base + PATH, data=body, headers=headers, timeout=10)


def deliver(base: str, evt: dict[str, Any]) -> requests.Response:
    return post(base, body_of(evt))


def wait_for(what: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = what()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what.__doc__ or what}")
        time.sleep(0.02)


def one(db: Engine, sql: str, **params: Any) -> dict[str, Any] | None:
    with db.connect() as conn:
        found = conn.execute(text(sql), params).mappings().first()
        return dict(found) if found else None


def inbox(db: Engine) -> list[dict[str, Any]]:
    with db.connect() as conn:
        rows = conn.execute(text("SELECT * FROM stripe_events ORDER BY id")).mappings()
        return [dict(r) for r in rows]


def email_of(db: Engine, customer_id: str) -> str | None:
    found = one(db, "SELECT email FROM customers WHERE id = :id", id=customer_id)
    return found["email"] if found else None


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port: int = probe.getsockname()[1]
        return port


class Served:
    """An ASGI app served by uvicorn in a thread, on a socket bound beforehand."""

    def __init__(self, asgi: Starlette) -> None:
        sock = socket.create_server(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(asgi, lifespan="on", log_config=None, access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        assert not self.thread.is_alive(), "the server (or its worker) did not stop"


class TcpProxy:
    """A port that forwards to PostgreSQL while it is up: the database "goes down" for the
    receiver without touching the shared server."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", port))
        self.listener.settimeout(0.05)
        self.sockets: list[socket.socket] = []
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.closing = True
        self.listener.close()
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


# ---------------------------------------------------------------- fixtures


@pytest.fixture()
def db(engine: Engine) -> Iterator[Engine]:
    """The private test database, committed to by the receiver: emptied after each test."""
    yield engine
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE customers, stripe_events CASCADE")


ACCOUNT = "acct_1WebhookTests0000"


def receiver_settings(database_url: str) -> Settings:
    return dataclasses.replace(
        load_settings("DEV"),
        database_url=database_url,
        stripe_webhook_secret=SECRET,
        # the worker's API (same-second ties) is never needed here: nothing listens there
        stripe_secret_key="sk_test_webhook",
        stripe_api_base="http://127.0.0.1:9",
        # so the receiver need not ask the API for its account at start
        stripe_account=ACCOUNT,
    )


@pytest.fixture()
def receiver(engine: Engine, test_database_url: str) -> Iterator[str]:
    """The receiver with its worker, draining every 0.2 s at the latest (one per test: no
    worker outlives its test to drain another test's inbox)."""
    served = Served(webhook.create_app(receiver_settings(test_database_url), drain_interval=0.2))
    yield served.base
    served.stop()


# ---------------------------------------------------------------- tests


def test_an_event_is_stored_before_the_answer_then_applied(receiver, db):
    evt = event(1, "first@example.com")
    answer = deliver(receiver, evt)
    assert answer.status_code == 200
    assert answer.json() == {"received": True, "duplicate": False}
    # committed before the 200: visible to anyone the moment the answer arrived
    stored = one(db, "SELECT * FROM stripe_events WHERE id = 'evt_wh1'")
    assert stored is not None
    assert stored["source"] == "webhook" and stored["type"] == "customer.updated"
    assert stored["raw"] == evt  # the JSON Stripe sent, whole
    cus = evt["data"]["object"]["id"]
    wait_for(lambda: email_of(db, cus) == "first@example.com")
    applied = one(db, "SELECT applied_at, outcome FROM stripe_events WHERE id = 'evt_wh1'")
    assert applied and applied["applied_at"] is not None and applied["outcome"] == "applied"
    health = requests.get(receiver + "/healthz", timeout=5)
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "pending": 0, "worker": "running"}


def test_a_duplicate_delivery_is_acknowledged_and_changes_nothing(receiver, db):
    evt = event(2, "dup@example.com")
    assert deliver(receiver, evt).json()["duplicate"] is False
    cus = evt["data"]["object"]["id"]
    wait_for(lambda: email_of(db, cus) == "dup@example.com")
    before = (inbox(db), one(db, "SELECT * FROM customers WHERE id = :id", id=cus))

    again = deliver(receiver, evt)
    assert again.status_code == 200
    assert again.json() == {"received": True, "duplicate": True}
    time.sleep(0.3)  # a drain interval: the worker had its chance to change something
    assert (inbox(db), one(db, "SELECT * FROM customers WHERE id = :id", id=cus)) == before


GOOD = body_of(event(3, "never@example.com"))
REJECTED = {
    "bad signature": (GOOD, {"Stripe-Signature": f"t={int(time.time())},v1={'0' * 64}"}),
    "missing header": (GOOD, {}),
    "garbled header": (GOOD, {"Stripe-Signature": "garbage"}),
    "wrong secret": (GOOD, {"Stripe-Signature": sign(GOOD, "whsec_" + "x" * 32)}),
    "replayed (older than 300 s)": (
        GOOD,
        {"Stripe-Signature": sign(GOOD, t=int(time.time()) - 301)},
    ),
    "tampered body": (
        GOOD.replace(b"never@", b"stolen@"),
        {"Stripe-Signature": sign(GOOD)},
    ),
    "body not JSON": (b"{not json", {"Stripe-Signature": sign(b"{not json")}),
    "body not UTF-8": (b'{"id": "\xff"}', {"Stripe-Signature": sign(b'{"id": "\xff"}')}),
    "JSON array": (b"[1, 2]", {"Stripe-Signature": sign(b"[1, 2]")}),
    "JSON not an event": (b'{"object": "customer", "id": "cus_1"}', None),
    "event without data.object": (
        json.dumps({**event(4, "x@example.com"), "data": {}}).encode(),
        None,
    ),
    "number beyond 64 bits": (
        body_of(event(5, "x@example.com")).replace(b'"balance": 0', b'"balance": 1' + b"0" * 25),
        None,
    ),
}


@pytest.mark.parametrize("case", REJECTED)
def test_a_delivery_that_fails_verification_is_refused_and_not_stored(receiver, db, case):
    body, headers = REJECTED[case]
    if headers is None:  # correctly signed: what is wrong is the body
        headers = {"Stripe-Signature": sign(body)}
    answer = post(receiver, body, headers)
    assert answer.status_code == 400, answer.text
    assert set(answer.json()) == {"error"} and answer.json()["error"]
    assert inbox(db) == []


def test_the_errors_say_what_was_wrong(receiver, db):
    def error(body: bytes, headers: dict[str, str]) -> str:
        message: str = post(receiver, body, headers).json()["error"]
        return message

    assert "no Stripe-Signature" in error(GOOD, {})
    assert "300 s old" in error(GOOD, {"Stripe-Signature": sign(GOOD, t=int(time.time()) - 400)})
    assert "signature" in error(GOOD, {"Stripe-Signature": sign(GOOD, "whsec_other")})
    assert "not a Stripe event" in error(b"{}", {"Stripe-Signature": sign(b"{}")})


def test_an_oversized_body_is_refused_before_it_is_read_whole(receiver, db, monkeypatch):
    monkeypatch.setattr(webhook, "MAX_BODY", 1000)  # the server thread reads it per request
    big = body_of(event(6, "big@example.com" + " " * 2000))
    assert post(receiver, big).status_code == 413
    assert inbox(db) == []


def test_out_of_order_deliveries_keep_the_newer_state(receiver, db):
    newer = event(11, "newer@example.com", created=NOW + 60)
    older = event(10, "older@example.com", created=NOW)
    cus = newer["data"]["object"]["id"]
    assert deliver(receiver, newer).status_code == 200
    wait_for(lambda: email_of(db, cus) == "newer@example.com")
    assert deliver(receiver, older).json() == {"received": True, "duplicate": False}

    def older_applied() -> dict[str, Any] | None:
        """the older event applied"""
        return one(
            db, "SELECT outcome FROM stripe_events WHERE id = 'evt_wh10' AND applied_at IS NOT NULL"
        )

    assert wait_for(older_applied)["outcome"] == "stale"
    assert email_of(db, cus) == "newer@example.com"


def test_store_only_leaves_applying_to_the_drain(engine, db, test_database_url):
    served = Served(webhook.create_app(receiver_settings(test_database_url), worker=False))
    try:
        evt = event(20, "later@example.com")
        assert deliver(served.base, evt).status_code == 200
        health = requests.get(served.base + "/healthz", timeout=5).json()
        assert health == {"status": "ok", "pending": 1, "worker": "off"}
    finally:
        served.stop()
    assert email_of(db, evt["data"]["object"]["id"]) is None
    assert drain(db, None).outcomes["applied"] == 1  # what `make sync` does with the inbox
    assert email_of(db, evt["data"]["object"]["id"]) == "later@example.com"


def test_database_down_answers_503_and_the_retry_is_stored(engine, db, test_database_url):
    parts = parse_database_url(test_database_url)
    port = free_port()  # nothing listens here until the "database" comes back
    userinfo = quote(parts.user or "", safe="")
    if parts.password is not None:
        userinfo += ":" + quote(parts.password, safe="")
    down_url = f"postgresql://{userinfo}@127.0.0.1:{port}/{quote(parts.database or '')}"
    served = Served(
        webhook.create_app(receiver_settings(down_url), drain_interval=0.2, max_backoff=0.3)
    )
    proxy = None
    try:
        evt = event(30, "patient@example.com")
        answer = deliver(served.base, evt)
        assert answer.status_code == 503
        assert "again later" in answer.json()["error"]
        assert requests.get(served.base + "/healthz", timeout=5).status_code == 503
        assert inbox(db) == []

        proxy = TcpProxy(port, (parts.host or "127.0.0.1", parts.port or 5432))
        retry = deliver(served.base, evt)  # Stripe's next attempt
        assert retry.status_code == 200
        assert retry.json() == {"received": True, "duplicate": False}
        assert [e["id"] for e in inbox(db)] == ["evt_wh30"]
        # the worker, backing off through the outage, applies it once the database is back
        wait_for(lambda: email_of(db, evt["data"]["object"]["id"]) == "patient@example.com")
        assert requests.get(served.base + "/healthz", timeout=5).json()["pending"] == 0
    finally:
        served.stop()
        if proxy is not None:
            proxy.close()


SCRIPT = [sys.executable, str(PROJECT_ROOT / "scripts" / "webhook.py")]


def script_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "STRIPE_MIRROR_DEBUG"}
    return {**env, "ENV": "DEV", **values}


@pytest.mark.e2e
def test_the_command_refuses_to_start_without_a_secret(test_database_url):
    env = script_env(DATABASE_URL=test_database_url, STRIPE_WEBHOOK_SECRET="")
    done = subprocess.run(
        [*SCRIPT, "--port", str(free_port())], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "STRIPE_WEBHOOK_SECRET is not set" in lines[0]
    assert "stripe listen" in lines[0]


@pytest.mark.e2e
def test_the_command_receives_applies_and_stops_cleanly(db, test_database_url):
    port = free_port()
    env = script_env(
        DATABASE_URL=test_database_url,
        STRIPE_WEBHOOK_SECRET=SECRET,
        STRIPE_SECRET_KEY="sk_test_webhook",
        STRIPE_API_BASE="http://127.0.0.1:9",
        STRIPE_ACCOUNT=ACCOUNT,
    )
    process = subprocess.Popen(
        [*SCRIPT, "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            """the command to answer /healthz"""
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                return requests.get(base + "/healthz", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(healthy, timeout=10)
        evt = event(40, "command@example.com")
        assert deliver(base, evt).json() == {"received": True, "duplicate": False}
        wait_for(lambda: email_of(db, evt["data"]["object"]["id"]) == "command@example.com")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert "evt_wh40 customer.updated stored" in stderr
    assert SECRET not in stderr


@pytest.mark.e2e
def test_help_explains_the_flow():
    done = subprocess.run([*SCRIPT, "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    for words in ("Stripe-Signature", "503", "stripe listen", "--no-worker", "webhook_endpoints"):
        assert words in done.stdout


def test_a_connected_accounts_event_applies_to_that_accounts_rows(receiver, db):
    own = event(50, "own@example.com")
    connected = {**event(51, "connected@example.com"), "account": "acct_1Connected000000"}
    for evt in (own, connected):
        assert deliver(receiver, evt).status_code == 200
    customer_id = own["data"]["object"]["id"]  # the same id in both accounts
    wait_for(
        lambda: (
            one(db, "SELECT count(*) AS n FROM customers WHERE id = :id", id=customer_id)["n"] == 2
        )
    )
    with db.connect() as conn:
        found = conn.execute(
            text("SELECT account_id, email FROM customers WHERE id = :id ORDER BY email"),
            {"id": customer_id},
        ).all()
    assert [tuple(r) for r in found] == [
        ("acct_1Connected000000", "connected@example.com"),
        (ACCOUNT, "own@example.com"),  # no `account`: the receiver's own
    ]
