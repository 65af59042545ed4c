"""SOURCE=api lists every resource at once and loads them parents first, side by side: the
spool between a listing and its load keeps order and memory, and one resource's failure leaves
the others whole."""

from __future__ import annotations

import dataclasses
import signal
import threading
import time

import pytest
from sqlalchemy import func, select, text

import app.load.api_source as sources
import app.load.runner as command
from app.core.config import load_settings
from app.core.errors import FetchError
from app.load.api_source import ListingSpool, ListingStopped
from app.load.fetch_watch import FetchStopped, RunningFetch
from app.registry import BY_NAME, load_order
from app.sandbox.resources.account import SANDBOX_ACCOUNT
from tests.fetch_helpers import TEST_KEY, objects_in, start_fetch

TABLES = (
    "products, prices, customers, payment_methods, subscriptions, subscription_items, "
    "invoices, invoice_lines, payment_intents, charges"
)


def test_spool_keeps_the_order_through_memory_and_file():
    spool = ListingSpool(memory_chunks=2)
    spool.put([{"id": "a"}])  # no load yet: to the file
    objects = iter(spool)
    assert next(objects) == {"id": "a"}
    for n in range(10):  # the load is attached: memory until full, then the file
        spool.put([{"id": f"{n}", "big": 2**70, "text": "\ud800"}])
    spool.finish()
    rest = list(objects)
    assert [o["id"] for o in rest] == [str(n) for n in range(10)]
    assert rest[0]["big"] == 2**70 and rest[0]["text"] == "\ud800"  # exactly as listed


def test_spooled_chunks_come_back_exactly_whichever_way_they_were_written():
    spool = ListingSpool(memory_chunks=0)  # everything through the file
    plain = {"id": "p", "f": 0.1, "z": -0.0, "u": 2**64 - 1, "n": None, "l": [{"b": True}]}
    odd = {"id": "o", "big": -(2**70), "text": "a\udfffb"}  # JSON cannot hold these
    chunks = [[plain], [odd, plain], [plain]]
    for chunk in chunks:
        spool.put(chunk)
    spool.finish()
    got = list(spool)
    assert got == [plain, odd, plain, plain]
    assert [list(o) for o in got] == [list(o) for o in [plain, odd, plain, plain]]  # key order
    assert str(got[0]["z"]) == "-0.0" and type(got[0]["u"]) is int


def test_spool_raises_the_listing_error_after_its_objects():
    spool = ListingSpool()
    spool.put([{"id": "a"}, {"id": "b"}])
    spool.finish(FetchError("the API went away"))
    seen = []
    with pytest.raises(FetchError, match="went away"):
        for obj in spool:
            seen.append(obj["id"])
    assert seen == ["a", "b"]


def test_a_closed_spool_stops_its_listing():
    spool = ListingSpool()
    spool.close()
    with pytest.raises(ListingStopped):
        spool.put([{"id": "a"}])


def test_a_load_waits_for_objects_still_being_listed():
    spool = ListingSpool()
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.extend(o["id"] for o in spool))
    reader.start()
    for n in range(50):
        spool.put([{"id": str(n)}])
    spool.finish()
    reader.join(timeout=10)
    assert got == [str(n) for n in range(50)]


@pytest.fixture()
def api_run(sandbox, monkeypatch, engine, test_database_url, tmp_path):
    """run() on the sandbox into the test database (it commits: emptied afterwards)."""
    monkeypatch.setenv("FETCH_RATE", "0")
    settings = dataclasses.replace(
        load_settings("DEV"), stripe_api_base=sandbox.url, stripe_secret_key=TEST_KEY
    )

    def run(**kwargs):
        return command.run(
            test_database_url,
            load_order(),
            settings,
            source="api",
            json_dir=tmp_path,
            single_file=None,
            mode="upsert",
            rejects_dir=tmp_path / "rejects",
            **kwargs,
        )

    yield run
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {TABLES} CASCADE")


def count(engine, table: str, placeholders: bool = False) -> int:
    with engine.connect() as conn:
        query = select(func.count()).select_from(text(table))
        if not placeholders:
            query = query.where(text("NOT is_placeholder"))
        return int(conn.execute(query).scalar_one())


def test_every_resource_is_listed_at_once_and_loaded_whole(sandbox, api_run, engine):
    sandbox.seed(customers=120)
    started: list[str] = []
    real = sources._list_into

    def recording(resource, *args):
        started.append(resource.name)
        real(resource, *args)

    sources._list_into = recording  # type: ignore[assignment]
    try:
        results = api_run()
    finally:
        sources._list_into = real  # type: ignore[assignment]
    assert sorted(started) == sorted(BY_NAME)  # every listing began, not one after another
    assert [r.resource for r in results] == [r.name for r in load_order()]
    assert not any(r.error for r in results)
    for result in results:
        stats = result.stats[result.resource]
        assert stats.read == stats.inserted  # a first load: every object inserted, none twice
        assert count(engine, result.resource) == stats.read
    assert count(engine, "customers") == 120


def test_a_failed_listing_spares_the_other_resources(sandbox, api_run, engine, monkeypatch):
    sandbox.seed(customers=30)
    real = sources.read_api_objects

    def failing(resource, settings):
        if resource.name == "prices":
            yield from []
            raise FetchError("prices: the Stripe API at the sandbox failed: boom")
        yield from real(resource, settings)

    monkeypatch.setattr(sources, "read_api_objects", failing)
    results = api_run()
    by_name = {r.resource: r for r in results}
    assert "boom" in (by_name["prices"].error or "")
    assert [r.resource for r in results if r.error] == ["prices"]
    # the subscriptions of the missing prices still load, with placeholders for the prices
    assert (
        count(engine, "subscriptions") == by_name["subscriptions"].stats["subscriptions"].read > 0
    )
    assert count(engine, "prices", placeholders=True) > 0
    assert count(engine, "customers") == 30


def test_sweep_starts_the_sync_cursor_after_a_whole_api_run(sandbox, api_run):
    sandbox.seed(customers=10)
    started: list[object] = []
    results = api_run(sweep=True, on_whole_listing=lambda at, account: started.append(account))
    assert not any(r.error for r in results)
    assert started == [SANDBOX_ACCOUNT]  # the cursor of the account listed
    partial: list[object] = []  # without the sweep, no listing is known to be whole
    api_run(on_whole_listing=lambda at, account: partial.append(at))
    assert partial == []


def json_run(test_database_url, json_dir, tmp_path):
    return command.run(
        test_database_url,
        load_order(),
        load_settings("DEV"),
        source="json",
        json_dir=json_dir,
        single_file=None,
        mode="upsert",
        rejects_dir=tmp_path / "rejects",
    )


def fetch_holding_the_lock(url, json_dir, **settings):
    """A curl fetch in the background, once it holds the folder's lock (the ingest sees it)."""
    process = start_fetch(url, json_dir, **settings)
    deadline = time.monotonic() + 20
    while (holder := RunningFetch.find(json_dir)) is None or holder.pid != process.pid:
        assert time.monotonic() < deadline and process.poll() is None, "the fetch did not start"
        time.sleep(0.05)
    return process


# one chain a list (no probes): the lists take a few requests each
SLOW_FETCH = {
    "FETCH_RATE": "40",
    "FETCH_ENDPOINT_RATE": "5",
    "FETCH_PAGE_LIMIT": "50",
    "FETCH_RANGES": "1",
}


@pytest.mark.e2e
@pytest.mark.tools("curl", "jq", "flock")
def test_an_ingest_during_a_fetch_loads_each_file_once_it_is_written(
    sandbox_factory, engine, test_database_url, tmp_path
):
    # payment methods at 5 requests/s, one a customer (6 s): the lists, a few pages each, are
    # written long before
    slow = sandbox_factory(rate_limit=True, test_rate=40, endpoint_rate=5)
    slow.seed(customers=30)
    json_dir = tmp_path / "json"
    fetch = fetch_holding_the_lock(slow.url, json_dir, **SLOW_FETCH)
    try:
        results = json_run(test_database_url, json_dir, tmp_path)
        assert fetch.wait(timeout=60) == 0, fetch.stderr.read() if fetch.stderr else ""
        assert not any(r.error for r in results), [r.error for r in results]
        for result in results:  # every file, whole, as the fetch wrote it
            assert count(engine, result.resource) == len(objects_in(json_dir, result.resource))
        # the customers were loaded while the payment methods were still being fetched
        written = (json_dir / "payment_methods.json").stat().st_mtime
        with engine.connect() as conn:
            loaded = conn.execute(text("SELECT max(synced_at) FROM customers")).scalar_one()
        assert loaded.timestamp() < written - 1
    finally:
        fetch.kill()
        with engine.begin() as conn:
            conn.exec_driver_sql(f"TRUNCATE {TABLES} CASCADE")


@pytest.mark.e2e
@pytest.mark.tools("curl", "jq", "flock")
def test_an_ingest_says_which_file_a_stopped_fetch_never_wrote(
    sandbox_factory, engine, test_database_url, tmp_path
):
    slow = sandbox_factory(rate_limit=True, test_rate=40, endpoint_rate=5)
    slow.seed(customers=30)
    json_dir = tmp_path / "json"
    fetch = fetch_holding_the_lock(slow.url, json_dir, **SLOW_FETCH)
    lists = {r.name for r in load_order()} - {"payment_methods"}

    def written() -> set[str]:  # what the fetch says it wrote (fetch_lib.sh's mark_fetched)
        completed = json_dir / ".partial" / "completed"
        text_ = completed.read_text() if completed.exists() else ""
        return {line.split(" ")[0] for line in text_.splitlines()}

    def interrupt_once_only_payment_methods_are_left() -> None:
        deadline = time.monotonic() + 30
        while not lists <= written() and time.monotonic() < deadline:
            time.sleep(0.05)
        fetch.send_signal(signal.SIGINT)  # Ctrl-C

    threading.Thread(target=interrupt_once_only_payment_methods_are_left, daemon=True).start()
    try:
        with pytest.raises(FetchStopped, match="stopped before writing payment_methods.json"):
            json_run(test_database_url, json_dir, tmp_path)
        assert fetch.wait(timeout=30) == 130
        for resource in load_order():  # what it did write is loaded
            if resource.name != "payment_methods":
                assert count(engine, resource.name) == len(objects_in(json_dir, resource.name))
    finally:
        fetch.kill()
        with engine.begin() as conn:
            conn.exec_driver_sql(f"TRUNCATE {TABLES} CASCADE")
