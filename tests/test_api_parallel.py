"""SOURCE=api with many requests in flight, over real HTTP against the local sandbox: every
object exactly once (created ranges meeting without gaps or overlaps, ties included), nothing
created during the listing lost, and the shared budget never exceeded."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from typing import Any

import pytest
import stripe

from app.client.budget import RequestBudget, TokenBucket, budget_from_env
from app.client.lister import ListSpec, ParallelLister
from app.core.config import load_settings
from app.load.api_source import api_client, read_api_objects
from app.registry import BY_NAME, load_order
from tests.fetch_helpers import TEST_KEY, sandbox_ids, serve_body


def settings_for(url: str) -> Any:
    return dataclasses.replace(
        load_settings("DEV"), stripe_api_base=url, stripe_secret_key=TEST_KEY
    )


@pytest.fixture()
def unlimited(monkeypatch):
    monkeypatch.setenv("FETCH_RATE", "0")
    monkeypatch.delenv("FETCH_ENDPOINT_RATE", raising=False)


def ids_of(objects: list[dict[str, Any]]) -> list[str]:
    return [obj["id"] for obj in objects]


def add_customers(sandbox, createds: list[int]) -> list[str]:
    """Customers with the given `created` seconds, straight into the sandbox's store."""
    template = stripe.StripeClient(TEST_KEY, base_addresses={"api": sandbox.url}).v1.customers
    model = template.create(params={"email": "model@example.com"}).to_dict()
    made = []
    with sandbox.store.lock:
        for n, created in enumerate(createds):
            obj = {**model, "id": f"cus_tie{n:06d}", "created": created, "email": f"t{n}@x.io"}
            sandbox.store.insert("customer", obj)
            made.append(obj["id"])
    return made


def record_requests(sandbox) -> list[tuple[float, int, str]]:
    """Every request the sandbox answers from now on: (time, status, path)."""
    seen: list[tuple[float, int, str]] = []
    answer = sandbox.sandbox.handle

    def counted(method: str, target: str, headers: dict[str, str], body: bytes) -> Any:
        response = answer(method, target, headers, body)
        seen.append((time.monotonic(), response.status, target.split("?")[0]))
        return response

    sandbox.sandbox.handle = counted
    return seen


def test_parallel_listing_returns_every_object_exactly_once(sandbox, unlimited):
    sandbox.seed(customers=400)
    settings = settings_for(sandbox.url)
    for resource in load_order():
        listed = ids_of(list(read_api_objects(resource, settings)))
        assert len(listed) == len(set(listed)), resource.name
        assert set(listed) == sandbox_ids(sandbox.store, resource), resource.name


def test_large_lists_are_split_into_created_ranges(sandbox, unlimited):
    sandbox.seed(customers=400)
    lister = ParallelLister(api_client(settings_for(sandbox.url)), budget_from_env(), workers=4)
    spec = ListSpec("/v1/invoices", {})
    newest = lister.get(spec, {"limit": 100})["data"]
    ranges = lister._ranges(spec, newest[-1]["created"], newest[0]["created"])
    assert len(ranges) > 1
    # newest first, each range's `lt` the previous one's `gte`; the oldest is open below
    assert all(older[1] == newer[0] for newer, older in zip(ranges, ranges[1:], strict=False))
    assert ranges[-1][0] is None
    assert ranges[0][1] == newest[-1]["created"]


@pytest.mark.parametrize("block", [1, 37, 100, 250])
def test_ranges_meet_without_gaps_or_overlaps_when_many_share_a_second(sandbox, unlimited, block):
    # 1,500 customers in blocks of `block` sharing one `created` second, over a few days:
    # range edges and page edges fall inside the blocks
    base = 1_700_000_000
    made = add_customers(sandbox, [base + (n // block) * 600 for n in range(1500)])
    listed = ids_of(list(read_api_objects(BY_NAME["customers"], settings_for(sandbox.url))))
    counts = Counter(listed)
    assert not [i for i, c in counts.items() if c > 1], "listed twice"
    assert set(made) <= set(listed) and len(listed) == len(made) + 1  # + the model customer


def test_a_list_read_in_order_comes_in_a_sequential_listings_order(sandbox_factory, unlimited):
    # the payment methods follow the customers in this order, whichever range finished first
    # (a third of the answers come late, so ranges finish out of order)
    slow = sandbox_factory(slow_rate=0.3, slow_seconds=0.05, fault_seed=7)
    slow.seed(customers=400)
    lister = ParallelLister(api_client(settings_for(slow.url)), budget_from_env(), workers=4)
    spec = ListSpec("/v1/customers", {})
    sequential = [obj["id"] for page in lister.pages(spec, {"limit": 100}) for obj in page]
    requests = lister.requests
    assert ids_of(list(lister.objects(spec, in_order=True))) == sequential
    assert lister.requests - requests > len(sequential) // 100 + 1  # in ranges, with probes
    assert sorted(ids_of(list(lister.objects(spec)))) == sorted(sequential)


def test_objects_created_during_the_listing_are_not_lost(sandbox, unlimited):
    sandbox.seed(customers=600)
    client = stripe.StripeClient(TEST_KEY, base_addresses={"api": sandbox.url})
    listed, created = [], []
    for n, obj in enumerate(read_api_objects(BY_NAME["customers"], settings_for(sandbox.url))):
        listed.append(obj["id"])
        if n in (0, 250, 550):  # the listing is under way: some ranges done, others not
            for k in range(3):
                customer = client.v1.customers.create(params={"email": f"new{n}-{k}@x.io"})
                created.append(customer.id)
    assert set(created) <= set(listed)
    assert len(listed) == len(set(listed))
    assert set(listed) == sandbox_ids(sandbox.store, BY_NAME["customers"])


def test_payment_methods_come_in_the_customers_order(sandbox, unlimited):
    sandbox.seed(customers=120)
    settings = settings_for(sandbox.url)
    first = ids_of(list(read_api_objects(BY_NAME["payment_methods"], settings)))
    again = ids_of(list(read_api_objects(BY_NAME["payment_methods"], settings)))
    assert first == again  # deterministic, whatever finished first
    owners = [sandbox.store.get("payment_method", pm)["customer"] for pm in first]
    customers = [
        c["id"] for c in read_api_objects(BY_NAME["customers"], settings) if c["id"] in owners
    ]
    order = {customer: n for n, customer in enumerate(customers)}
    # the customers list is newest first; so are their payment methods, one customer after another
    assert [order[o] for o in owners] == sorted(order[o] for o in owners)


@pytest.mark.slow
def test_the_shared_budget_is_never_exceeded(sandbox_factory, monkeypatch):
    rate, per_endpoint = 20, 8
    limited = sandbox_factory(rate_limit=True, test_rate=rate, endpoint_rate=per_endpoint)
    limited.seed(customers=60)
    monkeypatch.setenv("FETCH_RATE", str(rate))
    monkeypatch.setenv("FETCH_ENDPOINT_RATE", str(per_endpoint))
    seen = record_requests(limited)
    settings = settings_for(limited.url)
    results: dict[str, list[str]] = {}

    def listing(name: str) -> None:
        results[name] = ids_of(list(read_api_objects(BY_NAME[name], settings)))

    # two listings at once draw from the one budget of the process
    threads = [
        threading.Thread(target=listing, args=(name,)) for name in ("payment_methods", "invoices")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for name in ("payment_methods", "invoices"):
        assert set(results[name]) == sandbox_ids(limited.store, BY_NAME[name])
    assert not [s for _, s, _ in seen if s == 429]
    stamps = sorted(t for t, _, _ in seen)
    # in any second, at most the rate (+ the bucket's slack for late wake-ups)
    slack, endpoint_slack = TokenBucket(rate).capacity, TokenBucket(per_endpoint).capacity
    assert max(sum(1 for u in stamps if t <= u < t + 1) for t in stamps) <= rate + slack
    by_endpoint: dict[str, list[float]] = {}
    for t, _, path in seen:
        key = "pm" if path.endswith("/payment_methods") else path
        by_endpoint.setdefault(key, []).append(t)
    busy = by_endpoint["pm"]
    assert (
        max(sum(1 for u in busy if t <= u < t + 1) for t in busy) <= per_endpoint + endpoint_slack
    )
    # and the budget is used: payment methods keep to their endpoint's rate
    assert len(busy) / (busy[-1] - busy[0]) > per_endpoint * 0.8


@pytest.mark.slow
def test_a_429_is_retried_after_retry_after(sandbox_factory, monkeypatch):
    limited = sandbox_factory(rate_limit=True, test_rate=4)
    limited.seed(customers=10)
    monkeypatch.setenv("FETCH_RATE", "0")  # no budget of ours: the sandbox refuses, we wait
    seen = record_requests(limited)
    listed = list(read_api_objects(BY_NAME["payment_methods"], settings_for(limited.url)))
    assert {m["id"] for m in listed} == sandbox_ids(limited.store, BY_NAME["payment_methods"])
    assert any(status == 429 for _, status, _ in seen)


@pytest.mark.parametrize("name", ["invoices", "payment_methods"])
def test_a_consumer_that_stops_early_stops_the_workers(sandbox, unlimited, name):
    # payment methods: their workers and those listing the customers' ids in order
    sandbox.seed(customers=400)
    before = threading.active_count()
    objects = read_api_objects(BY_NAME[name], settings_for(sandbox.url))
    for _ in zip(range(150), objects, strict=False):
        pass
    objects.close()  # type: ignore[attr-defined]
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= before


@pytest.mark.slow
def test_budget_spaces_requests_per_endpoint_without_holding_back_others():
    budget = RequestBudget(100, 10)
    took: dict[str, float] = {}

    def use(endpoint: str) -> None:
        started = time.monotonic()
        for _ in range(12):
            budget.wait(endpoint)
        took[endpoint] = time.monotonic() - started

    threads = [
        threading.Thread(target=use, args=(e,))
        for e in ("/v1/customers/{id}/payment_methods", "/v1/charges")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # each endpoint at 10/s after a burst of 2 (~1 s), side by side rather than one after
    # the other (~2 s)
    assert all(0.9 <= seconds < 1.6 for seconds in took.values()), took
    assert budget.requests == 24


def requests_taken(budget: RequestBudget, threads: list[str], seconds: float) -> Counter[str]:
    """Each endpoint's requests taken within `seconds`, one thread per entry of `threads`
    asking for them as fast as the budget allows; "pm" goes first."""
    took: Counter[str] = Counter()
    stop = time.monotonic() + seconds

    def use(endpoint: str) -> None:
        while time.monotonic() < stop:
            budget.wait(endpoint, first=endpoint == "pm")
            if time.monotonic() < stop:
                took[endpoint] += 1

    running = [threading.Thread(target=use, args=(endpoint,)) for endpoint in threads]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    return took


@pytest.mark.slow
def test_a_first_endpoint_keeps_its_own_budget_when_the_overall_one_is_short():
    # 40/s in all, 20/s per endpoint: three endpoints want 60/s. The one that goes first (the
    # payment methods' long pole) keeps its 20/s; the other two share what is left
    budget = RequestBudget(40, 20)
    took = requests_taken(budget, ["pm", "pm", *["charges"] * 3, *["invoices"] * 3], 2.0)
    # two seconds, and the buckets' slack they start with
    assert took["pm"] >= 2 * 20 - 2, took
    assert sum(took.values()) <= 2 * 40 + TokenBucket(40).capacity, took
    assert min(took["charges"], took["invoices"]) >= 10, took  # not starved either
    assert budget._first_waiting == 0


@pytest.mark.slow
def test_first_changes_nothing_without_an_endpoint_budget():
    # with no endpoint budget to stop at, going first would leave the others nothing
    took = requests_taken(RequestBudget(40, 0), ["pm", "pm", "charges", "charges"], 1.0)
    # about half of the 40 each; going first without a limit left the others 1 or 2
    assert took["charges"] >= 8, took


def test_a_slow_consumer_holds_the_workers_back_before_they_ask():
    # pages asked for and not yet taken stay bounded: a worker waits for its turn before it
    # asks for a page, instead of holding a parsed page while the consumer is busy
    from app.client.budget import RequestBudget
    from app.client.lister import MAX_WAITING_PAGES

    asked = 0
    lock = threading.Lock()

    def job():
        nonlocal asked
        for n in range(100):
            with lock:
                asked += 1
            yield [{"id": f"x{n}"}]

    lister = ParallelLister(None, RequestBudget(0), workers=8)  # type: ignore[arg-type]
    pages = lister._run([job for _ in range(8)])
    next(pages)
    time.sleep(0.5)  # the consumer is busy: the workers may only fill the room
    assert asked <= MAX_WAITING_PAGES + 1
    assert sum(1 for _ in pages) == 8 * 100 - 1  # and nothing is lost


def test_a_listing_has_as_many_workers_as_its_endpoint_can_use():
    from app.client.budget import RequestBudget

    assert RequestBudget(100, 25).endpoint_workers() == 13  # 25/s at half a second each
    assert RequestBudget(100, 0).endpoint_workers() == 50
    assert ParallelLister(None, RequestBudget(100, 25)).workers == 13  # type: ignore[arg-type]


def test_answers_decode_to_what_the_sdk_decodes(sandbox, unlimited):
    # successful answers are decoded by orjson, not the SDK's OrderedDict reader: the same
    # values, for every list the backfill reads
    from app.client.stripe_api import get_json

    sandbox.seed(customers=30)
    client = api_client(settings_for(sandbox.url))
    # the SDK's requestor, whose answers get_json takes undecoded: an SDK without it still
    # works (raw_request, decoding every answer twice), but this says the listing got slower
    assert hasattr(client._requestor, "request_raw")
    assert hasattr(client._requestor, "_interpret_response")
    # a customer with a payment method (not every seeded customer has one)
    method = min(sandbox_ids(sandbox.store, BY_NAME["payment_methods"]))
    customer = sandbox.store.get("payment_method", method)["customer"]
    for resource in load_order():
        path = resource.list_path.replace("{customer}", customer)
        params = {**resource.list_params, "limit": 100}
        answer = get_json(client, path, params)
        assert answer.strict, resource.name
        assert answer.data["data"], resource.name
        assert answer.data == client.raw_request("get", path, **params).data, resource.name


@pytest.mark.parametrize(
    "value, kept",
    [
        (b"NaN", lambda v: v != v),
        (b"-Infinity", lambda v: v == float("-inf")),
        (b"1180591620717411303424", lambda v: v == 2**70),  # beyond 64 bits: orjson rounds it
        (b'"\\ud800"', lambda v: v == "\ud800"),  # a lone surrogate
        (b"0.10000000000000000000001", lambda v: v.text == "0.10000000000000000000001"),
    ],
)
def test_what_orjson_would_refuse_or_round_is_decoded_exactly_and_walked(unlimited, value, kept):
    # Python's reader takes them (decimals beyond a double kept apart), and the listing then
    # walks each object, so the ingest sets it aside by name instead of storing another value
    from app.client.stripe_api import get_json

    body = b'{"object": "list", "has_more": false, "data": [{"id": "cus_1", "x": ' + value + b"}]}"
    server = serve_body(body)
    try:
        settings = settings_for(f"http://127.0.0.1:{server.server_address[1]}")
        answer = get_json(api_client(settings), "/v1/customers", {"limit": 100})
        assert not answer.strict
        assert kept(answer.data["data"][0]["x"])
        lister = ParallelLister(api_client(settings), RequestBudget(0))
        assert [o["id"] for o in lister.objects(ListSpec("/v1/customers", {}))] == ["cus_1"]
        assert lister.plain is False
    finally:
        server.shutdown()


# beyond a double's precision, and below its smallest number (read as 0.0, short as it is)
@pytest.mark.parametrize("number", ["0.10000000000000000000001", "1e-400"])
def test_a_decimal_no_double_holds_is_set_aside_by_name_not_rounded(unlimited, number):
    from app.core.strict_json import Unreadable

    body = (
        b'{"object": "list", "has_more": false, "data": ['
        b'{"id": "cus_ok", "created": 2, "balance": 0},'
        b'{"id": "cus_bad", "created": 1, "x": ' + number.encode() + b"}]}"
    )
    server = serve_body(body)
    try:
        settings = settings_for(f"http://127.0.0.1:{server.server_address[1]}")
        listed = list(read_api_objects(BY_NAME["customers"], settings))
    finally:
        server.shutdown()
    assert listed[0]["id"] == "cus_ok"
    assert isinstance(listed[1], Unreadable)
    assert f'"x": {number}}}' in listed[1].text  # as sent, for the rejects file
    assert f"{number} cannot be stored exactly" in listed[1].reason
