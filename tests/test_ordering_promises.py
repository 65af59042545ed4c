"""Two ordering promises of staying current, each over the real paths, each able to fail.

(a) A full load whose listing began before a webhook applied a newer state keeps that state:
    the bulk upsert writes a listed object only over a row whose `state_at` is not newer than
    the listing's start, and the delete sweep spares a row whose state is newer than that start.
(b) `make sync` re-reads the events created a little before its last listing began (Stripe's
    event list is eventually consistent): an event that shows up late, behind the cursor, is
    still applied, and an event applied once is never applied twice.

Real PostgreSQL (committed to: sync and the receiver commit as they go; emptied after each
test), the sandbox over HTTP, its webhook deliveries to the real receiver. The sandbox serves
the changes that race at chosen Stripe times (whole seconds), so which came first is certain
rather than a matter of timing.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import uvicorn
from sqlalchemy import Engine, text

import app.live.webhook as webhook
import app.load.api_source as sources
import app.load.runner
from app.core.clock import stripe_now
from app.core.config import Settings, load_settings
from app.live.events import drain
from app.live.sync import StripeApi, read_cursor, sync_customers, sync_events, write_cursor
from app.sandbox import resources
from app.sandbox.context import Context
from app.sandbox.server import SandboxHandle
from tests.sandbox_plugin import TEST_KEY

MIRROR_TABLES = "customers, payment_methods, stripe_events, sync_state"


@pytest.fixture()
def db(engine: Engine) -> Iterator[Engine]:
    """The test database, committed to: sync and the receiver write in their own transactions."""
    yield engine
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {MIRROR_TABLES} CASCADE")


@pytest.fixture()
def settings(
    sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch, test_database_url: str, tmp_path: Any
) -> Settings:
    monkeypatch.setenv("FETCH_RATE", "0")  # the sandbox here has no rate limit
    return dataclasses.replace(
        load_settings("DEV"),
        stripe_api_base=sandbox.url,
        stripe_secret_key=TEST_KEY,
        database_url=test_database_url,
        rejects_dir=tmp_path / "rejects",
    )


def served_at(
    sandbox: SandboxHandle, when: int, method: str, path: str, **params: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A request the sandbox serves as if its clock read `when`: the object it answers, and the
    events the change recorded (taking that time, as Stripe's events take their change's)."""
    found = resources.match(method, path)
    assert found is not None, f"the sandbox has no {method} {path}"
    route, ids = found
    store = sandbox.store
    with store.lock:
        before = set(store.table("event").by_id)
        answer = route.handler(Context(store, when), params, *ids)
        events = [e for i, e in store.table("event").by_id.items() if i not in before]
        sandbox.sandbox.generation += 1
    return dict(answer), events


@contextmanager
def webhook_receiver(settings: Settings, stripe: Any) -> Iterator[None]:
    """The receiver on a free port, storing what the sandbox delivers to it (the test drains
    the inbox itself, as the receiver's worker would), and the sandbox endpoint pointing at it."""
    sock = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}{webhook.DEFAULT_PATH}"
    endpoint = stripe.WebhookEndpoint.create(url=url, enabled_events=["*"])
    receiving = dataclasses.replace(settings, stripe_webhook_secret=endpoint.secret)
    asgi = webhook.create_app(receiving, worker=False)
    server = uvicorn.Server(uvicorn.Config(asgi, lifespan="on", log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        thread.join(10)


def row(db: Engine, table: str, object_id: str) -> dict[str, Any] | None:
    with db.connect() as conn:
        found = conn.execute(text(f"SELECT * FROM {table} WHERE id = :id"), {"id": object_id})
        mapping = found.mappings().first()
        return dict(mapping) if mapping else None


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# ---------------------------------------------------------------- (a) a listing racing a webhook


@pytest.mark.parametrize("second", ["a_later_second", "the_listings_own_second"])
def test_a_full_load_listed_before_a_webhook_keeps_the_webhooks_newer_state(
    db, settings, sandbox, stripe_sdk, monkeypatch, second
):
    stripe = stripe_sdk
    kept = stripe.Customer.create(email="old@example.com")
    assert sync_customers(db, settings).error is None  # the mirror holds the old state
    real_listing = sources.read_api_objects
    raced: dict[str, Any] = {}
    if second == "the_listings_own_second":
        # the change comes in the second the listing began, after its read: the listing's rows
        # and the event's state then have the same time, and the row must keep the event's
        # (the listing's start is held to one second, so the tie is certain)
        began = stripe_now()
        monkeypatch.setattr(app.load.runner, "stripe_now", lambda: began)

    def listing_raced_by_a_webhook(resource, listing_settings):
        # the listing began (its start is the state its rows record) and read every page…
        listed = list(real_listing(resource, listing_settings))
        raced["listed"] = {obj["id"]: obj for obj in listed}
        # …then, in a later second than it began (within its second the order is unknown to
        # the mirror), the customer changed and another was created, and their webhooks were
        # delivered, stored and applied before the load wrote a row
        if second == "the_listings_own_second":
            when = int(began.timestamp())
        else:
            when = int(stripe_now().timestamp()) + 1
        raced["when"] = when
        served_at(sandbox, when, "POST", f"/v1/customers/{kept.id}", email="new@example.com")
        born, _ = served_at(sandbox, when, "POST", "/v1/customers", email="born@example.com")
        raced["born"] = born["id"]
        assert sandbox.wait_for_webhooks(10), "the sandbox's deliveries did not finish"
        raced["applied"] = drain(db, StripeApi(settings)).outcomes
        yield from listed

    monkeypatch.setattr(sources, "read_api_objects", listing_raced_by_a_webhook)
    with webhook_receiver(settings, stripe):
        result = sync_customers(db, settings)

    assert result.error is None
    assert raced["applied"] == {"applied": 2}  # both webhooks reached the mirror first
    assert raced["listed"][kept.id]["email"] == "old@example.com"  # the listing's older state
    assert raced["born"] not in raced["listed"]  # created after the listing read its pages
    customer = row(db, "customers", kept.id)
    assert customer["email"] == "new@example.com", "a full load overwrote a newer state"
    assert customer["state_at"] == at(raced["when"])
    assert result.stats["customers"].updated == 0
    born = row(db, "customers", raced["born"])
    assert born is not None and born["email"] == "born@example.com"
    assert born["deleted"] is False, "the delete sweep removed an object created after its listing"
    assert result.stats["customers"].deleted == 0


# ---------------------------------------------------------------- (b) an event that shows up late


def test_an_event_that_shows_up_late_behind_the_cursor_is_applied_once(db, settings, sandbox):
    now = int(stripe_now().timestamp())
    # the mirror was current a minute ago: the last pass's cursor, and when its listing began
    write_cursor(db, settings, at(now - 60), None, listed_at=at(now - 60))
    kept, _ = served_at(sandbox, now - 30, "POST", "/v1/customers", email="first@example.com")
    # changed a second before the newest event, both before the next listing begins: the cursor
    # alone would skip it, the overlap (10 s before that listing began) reaches it
    _, (late,) = served_at(
        sandbox, now - 2, "POST", f"/v1/customers/{kept['id']}", email="late@example.com"
    )
    other, (newest,) = served_at(sandbox, now - 1, "POST", "/v1/customers", email="o@example.com")
    with sandbox.store.lock:  # not in Stripe's event list yet: it is eventually consistent
        sandbox.store.table("event").delete(late["id"])

    first = sync_events(db, settings)
    assert first.refresh_reason is None and first.stored == 2
    assert read_cursor(db, settings) == at(now - 1)  # the cursor is past the late event
    assert row(db, "customers", kept["id"])["email"] == "first@example.com"
    assert row(db, "customers", other["id"]) is not None

    with sandbox.store.lock:  # the late event shows up, behind the cursor
        sandbox.store.record_event(late)
    with db.connect() as conn:
        applied_before = conn.execute(
            text("SELECT applied_at FROM stripe_events WHERE id = :id"), {"id": newest["id"]}
        ).scalar_one()

    second = sync_events(db, settings)
    customer = row(db, "customers", kept["id"])
    assert customer["email"] == "late@example.com", "an event behind the cursor was never applied"
    assert customer["state_at"] == at(now - 2)
    # the overlap re-read the newest event too: stored once, applied once
    assert second.listed == 2 and second.stored == 1
    assert second.applied.outcomes == {"applied": 1}
    with db.connect() as conn:
        inbox = dict(conn.execute(text("SELECT id, applied_at FROM stripe_events")).all())
    assert set(inbox) == {e["id"] for e in sandbox.store.table("event").by_id.values()}
    assert inbox[newest["id"]] == applied_before  # not applied a second time

    third = sync_events(db, settings)  # everything re-read now is known and applied
    assert third.stored == 0 and third.applied.events == 0
    assert third.cursor == at(now - 1)
