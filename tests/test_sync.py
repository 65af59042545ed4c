"""Staying current: events applied through the one path, the sync pass, the delete sweep.

Real PostgreSQL (committed, emptied after each test: sync commits as it goes) and the sandbox
over HTTP.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app.check.reconcile import check
from app.core.config import load_settings
from app.core.errors import FetchError
from app.live import sync as sync_module
from app.live.events import apply_events, drain, store_events
from app.live.sync import StripeApi, refresh, sync_customers, sync_events
from app.load.api_source import read_api_objects
from app.load.ingest import ingest
from app.registry import BY_NAME, load_order
from app.sandbox.resources.account import SANDBOX_ACCOUNT
from app.synthetic import customer
from tests.fetch_helpers import serve_body
from tests.sandbox_plugin import TEST_KEY

CUSTOMERS = BY_NAME["customers"]
MIRROR_TABLES = (
    "products, prices, customers, payment_methods, subscriptions, subscription_items, "
    "invoices, invoice_lines, payment_intents, charges, stripe_events, sync_state"
)


@pytest.fixture()
def db(engine):
    """The test database, committed to: sync writes in transactions of its own."""
    yield engine
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {MIRROR_TABLES} CASCADE")


@pytest.fixture()
def settings(sandbox, monkeypatch, test_database_url, tmp_path):
    monkeypatch.setenv("FETCH_RATE", "0")  # the sandbox here has no rate limit
    return dataclasses.replace(
        load_settings("DEV"),
        stripe_api_base=sandbox.url,
        stripe_secret_key=TEST_KEY,
        database_url=test_database_url,
        rejects_dir=tmp_path / "rejects",
    )


def row(db, table: str, object_id: str) -> dict | None:
    with db.connect() as conn:
        found = conn.execute(text(f"SELECT * FROM {table} WHERE id = :id"), {"id": object_id})
        mapping = found.mappings().first()
        return dict(mapping) if mapping else None


def event(number: int, created: int, obj: dict, kind: str = "customer.updated") -> dict:
    return {
        "id": f"evt_{number}",
        "object": "event",
        "type": kind,
        "created": created,
        "livemode": False,
        "api_version": "2026-10-28.endive",
        "data": {"object": obj},
    }


def with_email(email: str) -> dict:
    obj = customer(1)
    obj["email"] = email
    return obj


def apply(db, events, reader=None):
    with db.begin() as conn:
        return apply_events(conn, events, reader)


def test_first_sync_loads_everything_and_says_why(db, settings, sandbox):
    sandbox.seed(customers=5)
    report = sync_events(db, settings)
    assert report.refresh_reason and "no sync cursor" in report.refresh_reason
    loaded = {r.resource: r.stats[r.resource].inserted for r in report.refreshed}
    assert loaded["customers"] == 5 and loaded["charges"] > 0
    assert report.cursor is not None


def test_changes_in_stripe_reach_the_mirror_through_events(db, settings, sandbox, stripe_sdk):
    stripe = stripe_sdk
    kept = stripe.Customer.create(email="kept@example.com", payment_method="pm_card_visa")
    gone = stripe.Customer.create(email="gone@example.com")
    product = stripe.Product.create(name="Plan")
    price = stripe.Price.create(
        product=product.id, currency="usd", unit_amount=900, recurring={"interval": "month"}
    )
    card = stripe.PaymentMethod.list(customer=kept.id).data[0]
    stripe.Customer.modify(kept.id, invoice_settings={"default_payment_method": card.id})
    sub = stripe.Subscription.create(customer=kept.id, items=[{"price": price.id}])
    assert sync_events(db, settings).refresh_reason  # the first pass loads everything

    stripe.Customer.modify(kept.id, email="changed@example.com", metadata={"tier": "gold"})
    stripe.Product.modify(product.id, name="Plan (renamed)")
    stripe.Subscription.cancel(sub.id)
    stripe.Customer.delete(gone.id)
    second_card = stripe.PaymentMethod.attach("pm_card_mastercard", customer=kept.id)
    stripe.PaymentMethod.detach(card.id)

    report = sync_events(db, settings)
    assert report.refresh_reason is None
    assert report.stored >= 6
    assert row(db, "customers", kept.id)["email"] == "changed@example.com"
    assert row(db, "customers", kept.id)["metadata"] == {"tier": "gold"}
    assert row(db, "products", product.id)["name"] == "Plan (renamed)"
    assert row(db, "subscriptions", sub.id)["status"] == "canceled"
    deleted = row(db, "customers", gone.id)
    assert deleted["deleted"] is True and deleted["deleted_at"] is not None
    assert deleted["email"] == "gone@example.com"  # the last known state is kept
    assert row(db, "payment_methods", card.id)["customer_id"] is None
    assert row(db, "payment_methods", second_card.id)["customer_id"] == kept.id

    # and the mirror agrees with Stripe: the deleted customer counts as deleted, not extra
    with db.connect() as conn:
        report = check(
            conn, load_order(), lambda r: read_api_objects(r, settings), account=SANDBOX_ACCOUNT
        )
        conn.rollback()
    assert report.ok, [t.to_dict() for t in report.tables if not t.ok]


def test_a_second_pass_applies_nothing_twice_and_costs_one_request(db, settings, stripe_sdk):
    stripe_sdk.Customer.create(email="a@example.com")
    sync_events(db, settings)
    stripe_sdk.Customer.create(email="b@example.com")
    first = sync_events(db, settings)
    assert first.applied.outcomes["applied"] >= 1
    again = sync_events(db, settings)
    assert again.stored == 0 and again.applied.events == 0
    assert again.requests == 1


def test_an_older_event_after_a_newer_one_changes_nothing(db):
    apply(db, [event(2, 2_000, with_email("newer@example.com"))])
    counts, outcomes = apply(db, [event(1, 1_000, with_email("older@example.com"))])
    assert outcomes == {"evt_1": "stale"}
    assert row(db, "customers", "cus_00000000000001")["email"] == "newer@example.com"


def test_events_in_one_batch_apply_oldest_first_whatever_their_order(db):
    newer, older = (
        event(2, 2_000, with_email("newer@x.io")),
        event(1, 1_000, with_email("old@x.io")),
    )
    counts, outcomes = apply(db, [newer, older])
    assert outcomes == {"evt_1": "superseded", "evt_2": "applied"}
    assert row(db, "customers", "cus_00000000000001")["email"] == "newer@x.io"


def test_an_event_confirming_the_content_still_moves_the_state_forward(db):
    apply(db, [event(1, 1_000, with_email("same@x.io"))])
    apply(db, [event(3, 3_000, with_email("same@x.io"))])  # same content, newer time
    counts, outcomes = apply(db, [event(2, 2_000, with_email("between@x.io"))])
    assert outcomes == {"evt_2": "stale"}
    assert row(db, "customers", "cus_00000000000001")["email"] == "same@x.io"


def test_a_same_second_tie_is_settled_by_reading_the_object(db, settings, stripe_sdk):
    created = stripe_sdk.Customer.create(email="now@example.com")
    one = {**customer(1), "id": created.id, "email": "first@example.com"}
    two = {**one, "email": "second@example.com"}
    reader = StripeApi(settings)
    counts, outcomes = apply(db, [event(1, 5_000, one), event(2, 5_000, two)], reader)
    assert counts.rereads == 1
    assert row(db, "customers", created.id)["email"] == "now@example.com"
    # the same second as the row's state, with other content: read again
    counts, _ = apply(
        db, [event(3, int(row(db, "customers", created.id)["state_at"].timestamp()), one)], reader
    )
    assert counts.rereads == 1
    assert row(db, "customers", created.id)["email"] == "now@example.com"


def test_a_duplicate_delivery_is_a_no_op(db):
    first = event(1, 1_000, with_email("a@x.io"))
    with db.begin() as conn:
        assert store_events(conn, [first, first], "webhook") == 1
    with db.begin() as conn:
        assert store_events(conn, [first], "webhook") == 0
    assert drain(db, None).outcomes == {"applied": 1}
    assert drain(db, None).events == 0


def test_a_crash_before_the_cursor_moves_loses_nothing(db, settings, stripe_sdk, monkeypatch):
    sync_events(db, settings)
    made = stripe_sdk.Customer.create(email="during@example.com")
    calls = []

    def crash(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("killed")

    with monkeypatch.context() as patch:
        patch.setattr(sync_module, "write_cursor", crash)
        with pytest.raises(RuntimeError):
            sync_events(db, settings)
    assert calls and row(db, "customers", made.id) is None  # stored, not applied
    report = sync_events(db, settings)
    assert row(db, "customers", made.id)["email"] == "during@example.com"
    assert report.applied.outcomes["applied"] >= 1


def test_a_crash_while_applying_leaves_the_batch_to_the_next_drain(db, monkeypatch):
    with db.begin() as conn:
        store_events(conn, [event(1, 1_000, with_email("a@x.io"))], "webhook")
    import app.live.events as events_module

    with monkeypatch.context() as patch:
        patch.setattr(events_module, "load_rows", lambda *a, **k: (_ for _ in ()).throw(OSError))
        with pytest.raises(OSError):
            drain(db, None)
    assert row(db, "customers", "cus_00000000000001") is None
    assert drain(db, None).outcomes == {"applied": 1}
    assert row(db, "customers", "cus_00000000000001")["email"] == "a@x.io"


def test_a_cursor_past_the_event_retention_triggers_a_refresh_and_says_so(db, settings, stripe_sdk):
    sync_events(db, settings)
    with db.begin() as conn:
        conn.exec_driver_sql("UPDATE sync_state SET cursor = now() - interval '31 days'")
    stripe_sdk.Customer.create(email="late@example.com")
    report = sync_events(db, settings)
    assert "30-day event retention" in report.refresh_reason
    assert {r.resource for r in report.refreshed} == set(BY_NAME)
    assert report.cursor > datetime.now(UTC) - timedelta(minutes=1)


def test_the_delete_sweep_soft_deletes_what_a_complete_listing_lacks(db, settings, stripe_sdk):
    alive = stripe_sdk.Customer.create(email="alive@example.com")
    with db.begin() as conn:
        # a row Stripe does not list (of the key's account: the sweep judges no other)
        ingest(conn, CUSTOMERS, [customer(1)], account=SANDBOX_ACCOUNT)
        ingest(
            conn,
            CUSTOMERS,
            [customer(2)],
            state_at=datetime.now(UTC) + timedelta(hours=1),
            account=SANDBOX_ACCOUNT,
        )
    result = sync_customers(db, settings)
    assert result.stats["customers"].deleted == 1
    assert row(db, "customers", "cus_00000000000001")["deleted"] is True
    assert row(db, "customers", "cus_00000000000002")["deleted"] is False  # a newer state
    assert row(db, "customers", alive.id)["deleted"] is False


def test_the_delete_sweep_never_runs_after_a_partial_listing(db):
    with db.begin() as conn:
        ingest(conn, CUSTOMERS, [customer(1), customer(2)])

    def broken_listing():
        yield customer(1)
        raise FetchError("the API failed half way")

    with db.connect() as conn, pytest.raises(FetchError):
        ingest(conn, CUSTOMERS, broken_listing(), state_at=datetime.now(UTC), sweep=True)
    assert row(db, "customers", "cus_00000000000002")["deleted"] is False


def test_refresh_then_sync_keeps_placeholders(db, settings, stripe_sdk):
    with db.begin() as conn:
        ingest(conn, BY_NAME["charges"], [{**_charge_of("cus_ghost")}])
    refresh(db, settings, names=["customers"])
    placeholder = row(db, "customers", "cus_ghost")
    assert placeholder["is_placeholder"] is True and placeholder["deleted"] is False


def _charge_of(customer_id: str) -> dict:
    from app.synthetic import charge

    obj = charge(1, 1, 500)
    obj["customer"] = customer_id
    return obj


@pytest.mark.e2e
@pytest.mark.tools("curl", "jq", "flock")
def test_a_swept_load_of_a_whole_fetch_starts_the_cursor(
    db, settings, sandbox, monkeypatch, tmp_path
):
    import orjson

    from app.commands.ingest import main as ingest_main
    from app.live.sync import read_cursor
    from tests.fetch_helpers import run_fetch

    sandbox.seed(customers=3)
    fetched = run_fetch(sandbox.url, tmp_path / "json", FETCH_RATE="0")
    assert fetched.returncode == 0, fetched.stderr
    started = orjson.loads((tmp_path / "json" / "customers.meta.json").read_bytes())["started_at"]
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    code = ingest_main(
        ["--json-dir", str(tmp_path / "json"), "--sweep", "-q", "--rejects-dir", str(tmp_path)]
    )
    assert code == 0
    cursor = read_cursor(db, settings)
    assert cursor == datetime.fromisoformat(started.replace("Z", "+00:00"))
    with db.connect() as conn:
        state_at = conn.exec_driver_sql("SELECT min(state_at) FROM customers").scalar_one()
    assert state_at == cursor
    assert sync_events(db, settings).refresh_reason is None  # incremental from the start


def test_sweep_refuses_a_file_whose_listing_time_is_unknown(db, settings, monkeypatch, tmp_path):
    from app.commands.ingest import main as ingest_main

    (tmp_path / "customers.json").write_text('[{"id": "cus_1", "object": "customer"}]')
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    code = ingest_main(
        [
            "--json-dir",
            str(tmp_path),
            "--resources",
            "customers",
            "--sweep",
            "-q",
            "--rejects-dir",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert row(db, "customers", "cus_1") is None


@pytest.mark.e2e
def test_the_sync_command_runs_a_pass_and_says_what_it_did(db, settings, stripe_sdk):
    import os
    import subprocess
    import sys

    from app.core.config import PROJECT_ROOT

    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "STRIPE_API_BASE": settings.stripe_api_base,
        "STRIPE_SECRET_KEY": TEST_KEY,
        "FETCH_RATE": "0",
    }

    def run():
        return subprocess.run(
            [sys.executable, "scripts/sync.py", "-q"],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    first = run()
    assert first.returncode == 0, first.stderr
    assert "full load: no sync cursor yet" in first.stdout
    stripe_sdk.Customer.create(email="cli@example.com")
    second = run()
    assert second.returncode == 0, second.stderr
    assert "applied 1" in second.stdout and "customers" in second.stdout


def test_an_event_postgresql_cannot_hold_is_set_aside_whole_and_blocks_nothing(db):
    bad = event(1, 1_000, with_email("a\u0000b@x.io"))
    good = event(2, 1_001, {**customer(2), "email": "fine@x.io"})
    with db.begin() as conn:
        assert store_events(conn, [bad, good], "sync") == 2
    assert drain(db, None).outcomes == {"applied": 1}
    with db.connect() as conn:
        outcome, applied_at, kept = conn.execute(
            text("SELECT outcome, applied_at, raw->>'text' FROM stripe_events WHERE id = 'evt_1'")
        ).one()
    assert outcome.startswith("rejected:") and "NUL" in outcome and applied_at is not None
    assert json.loads(kept) == bad  # nothing lost: the exact event, escapes and all
    assert row(db, "customers", "cus_00000000000002")["email"] == "fine@x.io"


# what the API may send that no column keeps exactly: a decimal beyond a double, one below its
# smallest number (read as 0.0), NaN (which orjson would write as null)
UNSTORABLE = ["0.10000000000000000000001", "1e-400", "NaN"]


@pytest.mark.parametrize("number", UNSTORABLE)
def test_a_listed_event_with_a_number_no_column_keeps_is_set_aside_as_sent(db, settings, number):
    good = json.dumps(event(2, 1_001, {**customer(2), "email": "fine@x.io"}))
    bad = json.dumps(event(1, 1_000, {**customer(1), "balance": "PLACEHOLDER"}))
    bad = bad.replace('"PLACEHOLDER"', number)
    body = f'{{"object": "list", "has_more": false, "data": [{good}, {bad}]}}'.encode()
    server = serve_body(body)
    try:
        api = StripeApi(
            dataclasses.replace(
                settings, stripe_api_base=f"http://127.0.0.1:{server.server_address[1]}"
            )
        )
        pages = list(api.events(datetime.fromtimestamp(0, UTC)))
    finally:
        server.shutdown()
    with db.begin() as conn:
        assert store_events(conn, pages[0], "sync") == 2
    assert drain(db, None).outcomes == {"applied": 1}
    with db.connect() as conn:
        outcome, kept = conn.execute(
            text("SELECT outcome, raw->>'text' FROM stripe_events WHERE id = 'evt_1'")
        ).one()
    assert outcome.startswith("rejected:") and (number in outcome or "NaN" in outcome)
    assert f'"balance": {number}' in kept  # the event as it was sent, nothing rounded
    assert row(db, "customers", "cus_00000000000002")["email"] == "fine@x.io"
    assert row(db, "customers", "cus_00000000000001") is None


@pytest.mark.parametrize("number", UNSTORABLE[:2])
def test_an_object_read_again_with_a_number_no_column_keeps_is_set_aside(db, settings, number):
    one = customer(1)
    tie = [event(1, 5_000, one), event(2, 5_000, {**one, "email": "second@example.com"})]
    now = json.dumps({**one, "balance": "PLACEHOLDER"}).replace('"PLACEHOLDER"', number)
    server = serve_body(now.encode())  # the object as the API has it now, for the tie
    try:
        reader = StripeApi(
            dataclasses.replace(
                settings, stripe_api_base=f"http://127.0.0.1:{server.server_address[1]}"
            )
        )
        counts, outcomes = apply(db, tie, reader)
    finally:
        server.shutdown()
    assert counts.rereads == 1
    assert outcomes["evt_2"].startswith("rejected:") and number in outcomes["evt_2"]
    assert row(db, "customers", one["id"]) is None  # never stored with its number rounded


@pytest.mark.slow
def test_an_event_that_cannot_be_applied_now_waits_without_holding_back_the_rest(
    db, settings, stripe_sdk, sandbox_factory
):
    made = stripe_sdk.Customer.create(email="now@example.com")
    one = {**customer(1), "id": made.id, "email": "first@example.com"}
    tie = [event(1, 5_000, one), event(2, 5_000, {**one, "email": "second@example.com"})]
    other = event(3, 5_001, {**customer(2), "email": "other@x.io"})
    with db.begin() as conn:
        store_events(conn, [*tie, other], "webhook", SANDBOX_ACCOUNT)
    down = sandbox_factory()
    down.stop()  # the API is unreachable: the tie cannot be settled now
    # (a reader knows its account from its start, as the receiver's and sync's do)
    offline = StripeApi(
        dataclasses.replace(settings, stripe_api_base=down.url, stripe_account=SANDBOX_ACCOUNT)
    )
    counts = drain(db, offline)
    # one by one: the first of the tie applies, the second is the tie, the other goes through
    assert counts.outcomes["applied"] == 2
    assert row(db, "customers", "cus_00000000000002")["email"] == "other@x.io"
    with db.connect() as conn:
        waiting = conn.execute(
            text("SELECT id, outcome FROM stripe_events WHERE applied_at IS NULL ORDER BY id")
        ).all()
    assert [w[0] for w in waiting] == ["evt_2"]
    assert "retrying: " in waiting[0][1] and "cannot reach" in waiting[0][1]
    assert drain(db, StripeApi(settings)).rereads == 1  # the API is back: settled
    assert row(db, "customers", made.id)["email"] == "now@example.com"


def test_long_invoices_deleted_drafts_and_products_arrive_through_events(db, settings, stripe_sdk):
    stripe = stripe_sdk
    buyer = stripe.Customer.create(email="long@example.com")
    sync_events(db, settings)  # the first pass loads everything and starts the cursor
    for n in range(12):  # more lines than Stripe embeds in an invoice (10)
        stripe.InvoiceItem.create(customer=buyer.id, amount=100 + n, currency="usd")
    long = stripe.Invoice.create(customer=buyer.id)
    stripe.Invoice.finalize_invoice(long.id)
    draft = stripe.Invoice.create(customer=buyer.id)
    stripe.Invoice.delete(draft.id)
    product = stripe.Product.create(name="Short-lived")
    stripe.Product.delete(product.id)

    sync_events(db, settings)
    assert row(db, "invoices", long.id)["status"] == "open"
    with db.connect() as conn:
        lines = conn.execute(
            text("SELECT count(*) FROM invoice_lines WHERE invoice_id = :id"), {"id": long.id}
        ).scalar_one()
    assert lines == 12  # the embedded first page completed from the API
    assert row(db, "invoices", draft.id)["deleted"] is True
    assert row(db, "products", product.id)["deleted"] is True


def test_invoices_expand_payments_from_basil_on_and_keep_their_payment_intent(
    db, settings, stripe_sdk
):
    invoices = BY_NAME["invoices"]
    assert invoices.expand_for("2024-06-20") == ()  # Stripe refuses the expansion before basil
    assert invoices.expand_for(settings.stripe_api_version) == ("data.payments",)
    stripe = stripe_sdk
    buyer = stripe.Customer.create(email="pays@example.com", payment_method="pm_card_visa")
    card = stripe.PaymentMethod.list(customer=buyer.id).data[0]
    stripe.Customer.modify(buyer.id, invoice_settings={"default_payment_method": card.id})
    price = stripe.Price.create(
        product_data={"name": "Pro"},
        currency="usd",
        unit_amount=700,
        recurring={"interval": "month"},
    )
    sync_events(db, settings)  # loads everything: the listing expands payments
    sub = stripe.Subscription.create(customer=buyer.id, items=[{"price": price.id}])
    report = sync_events(db, settings)  # events carry no `payments`: the invoice is read again
    invoice = row(db, "invoices", sub.latest_invoice)
    assert invoice["payment_intent_id"] is not None
    assert "payments" in invoice["raw"]
    assert report.applied.rereads >= 1


def test_items_of_an_older_version_take_their_subscriptions_period(db):
    from app.synthetic import subscription

    legacy = subscription(1, 1, 1, legacy=True)
    for item in legacy["items"]["data"]:
        del item["current_period_start"], item["current_period_end"]
    with db.begin() as conn:
        ingest(conn, BY_NAME["subscriptions"], [legacy])
    item = row(db, "subscription_items", legacy["items"]["data"][0]["id"])
    assert item["current_period_start"] == datetime.fromtimestamp(
        legacy["current_period_start"], UTC
    )
    assert item["current_period_end"] is not None


@pytest.mark.slow
def test_a_full_load_that_fails_starts_no_cursor(db, settings, sandbox_factory):
    from app.core.errors import PipelineError
    from app.live.sync import read_cursor

    down = sandbox_factory()
    down.stop()
    offline = dataclasses.replace(
        settings, stripe_api_base=down.url, stripe_account=SANDBOX_ACCOUNT
    )
    with pytest.raises(PipelineError, match="cannot reach the Stripe API"):
        sync_events(db, offline)
    assert read_cursor(db, offline) is None  # the next pass loads everything again
