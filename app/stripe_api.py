"""Listing Stripe through the stripe SDK: many requests in flight inside one request budget.

`auto_paging_iter()` sends its page requests itself, one at a time, so it can neither keep a
fetch under Stripe's rate limit nor retry a 429 (the SDK retries 429 only when Stripe says
`Stripe-Should-Retry: true`). Here every request first takes a token from the shared budget:
`FETCH_RATE` requests/s in all (default 25, Stripe's test-mode limit; 0: no limit) and
`FETCH_ENDPOINT_RATE` per endpoint (default 25, Stripe's default per-endpoint limit; none when
FETCH_RATE is 0 unless set), so the payment-method listing, capped at 25/s by Stripe even in
live mode, leaves the rest of the budget to the other endpoints. A 429 is retried after
`Retry-After` (or a backoff).

What runs in parallel (`ParallelLister`):
- a large list is split into `created` ranges, each paged by its own worker and merged in the
  order pages arrive. Ranges are `[gte, lt)` on whole seconds, so objects created in the same
  second fall into one range (no duplicates, no gaps). The newest range is open-ended, and
  once everything is listed the objects created since the listing began are listed too, so
  none created during the fetch is lost;
- lists that belong to a parent (a customer's payment methods) are fetched for many parents
  at once and yielded in the parents' order.
Pages wait in bounded queues, so memory stays flat: a slow consumer (the bulk load) holds the
workers back rather than piling pages up.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import stripe

from app.config import mask_key, mask_secrets
from app.errors import FetchError
from app.strict_json import inexact_number, loads_keeping_inexact, plain_answer

log = logging.getLogger(__name__)

DEFAULT_RATE = 25.0  # Stripe's test-mode limit, requests per second
DEFAULT_ENDPOINT_RATE = 25.0  # Stripe's default limit per endpoint
MAX_RATE_LIMIT_RETRIES = 8
PAGE = 100  # objects per list request: Stripe's largest page
# requests in flight without a budget (the local sandbox, a proxy): enough to keep two cores
# busy; with a budget, enough to use it when each request takes about half a second (Stripe)
UNLIMITED_WORKERS = 8
SECONDS_PER_REQUEST = 0.5
MAX_WORKERS = 64
# the budget's buckets hold this many seconds of requests (see TokenBucket)
BURST_SECONDS = 0.2
# pages fetched but not yet taken by the consumer, at most (memory stays flat)
MAX_WAITING_PAGES = 16


def stripe_client(settings: Any) -> stripe.StripeClient:
    """The SDK's client for the configured account (STRIPE_ACCOUNT: a connected account),
    retrying network errors, on an HTTP session that reads the environment once.

    requests looks up ~/.netrc, the proxy variables and the CA bundle variables on every request
    (a third of its CPU per request, 9% of a backfill's). The proxies for the API are read once
    here (no_proxy honoured); the CA bundle is the SDK's own either way; and a ~/.netrc entry is
    never wanted: requests would send it in place of the key's Authorization header.
    """
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=MAX_WORKERS)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    base = settings.stripe_api_base
    proxy = requests.utils.get_environ_proxies(base).get(base.split(":", 1)[0]) or None
    return stripe.StripeClient(
        settings.stripe_secret_key,
        base_addresses={"api": settings.stripe_api_base},
        stripe_version=settings.stripe_api_version,
        stripe_account=settings.stripe_account or None,
        max_network_retries=3,
        http_client=stripe.RequestsClient(session=session, proxy=proxy),
    )


@dataclass(frozen=True)
class Answer:
    """A successful answer: `data` decoded from `body`. `strict` when orjson decoded it: no
    NaN, Infinity, lone surrogate, integer beyond 64 bits or decimal beyond a double in it;
    otherwise its objects need `api_object_problem`'s walk."""

    data: Any
    body: bytes | str
    strict: bool


def get_json(client: stripe.StripeClient, url: str, params: dict[str, Any]) -> Answer:
    """GET `url` through the SDK: its key, version and account headers, its network retries,
    its exceptions for every error.

    The SDK decodes every answer with `json.loads(object_pairs_hook=OrderedDict)`: 7 ms for a
    page of 100 invoices, two thirds of a listing's CPU, so on two cores a backfill could not
    keep 100 requests/s busy. A successful answer is taken from the SDK's requestor (which
    `raw_request` itself calls) and decoded here: by orjson (2 ms, the same values, plain
    dicts) unless it holds a number orjson would read inexactly or something orjson refuses
    (never sent by Stripe); those go to Python's reader as before, decimals beyond a double
    kept apart so the object is set aside rather than rounded. Errors get the SDK's
    exceptions. An SDK without that requestor gets `raw_request`, its body decoded the same."""
    requestor: Any = getattr(client, "_requestor", None)
    if not hasattr(requestor, "request_raw") or not hasattr(requestor, "_interpret_response"):
        return decode_answer(client.raw_request("get", url, **params).body)
    rbody, rcode, rheaders = requestor.request_raw(
        "get",
        url,
        params=params,
        options={},
        base_address="api",
        api_mode="V1",
        usage=["raw_request"],
    )
    if 200 <= rcode < 300 and isinstance(rbody, bytes | str):
        try:
            return decode_answer(rbody)
        except ValueError:
            pass  # not JSON: the SDK's APIError says so
    # every error status: the SDK's exception (RateLimitError, AuthenticationError, …)
    response = requestor._interpret_response(rbody, rcode, rheaders, "V1")
    return decode_answer(response.body)


def decode_answer(body: bytes | str) -> Answer:
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if inexact_number(raw) is None:
        try:
            return Answer(orjson.loads(raw), raw, strict=True)
        except orjson.JSONDecodeError:
            pass
    return Answer(loads_keeping_inexact(raw), raw, strict=False)


class TokenBucket:
    """`rate` tokens per second, holding at most BURST_SECONDS of them (at least 2).

    The slack is for late wake-ups: a thread that wants the GIL while another parses a page
    claims its token late, and a bucket of 2 at 100/s is full again in 20 ms, so every late
    claim lost budget for good (a backfill at 100 requests/s sent 90). Stripe's limiter, a
    token bucket too (the sandbox's holds a second's worth), takes such a burst."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, min(max(2.0, rate * BURST_SECONDS), rate))
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for_one(self) -> float:
        """Seconds until a token is there (0: now)."""
        return max(0.0, (1.0 - self.tokens) / self.rate)


class RequestBudget:
    """At most `rate` requests per second in all and `endpoint_rate` per endpoint (0 or less:
    no such limit). Threads wait for their turn; one waiting on a busy endpoint does not hold
    back those bound for others."""

    def __init__(self, rate: float, endpoint_rate: float = 0.0) -> None:
        self.rate = rate if rate > 0 else 0.0
        self.endpoint_rate = endpoint_rate if endpoint_rate > 0 else 0.0
        self._all = TokenBucket(rate) if self.rate else None
        self._endpoints: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()
        self._first_waiting = 0  # threads of `first` endpoints waiting for an overall token
        self.requests = 0
        # requests in flight in all, whatever lists them: every listing of a backfill runs at
        # once, and each page in flight is held in memory (parsed, a few MB for 100 invoices)
        self.in_flight = threading.BoundedSemaphore(self.workers())

    @property
    def limited(self) -> bool:
        return bool(self.rate or self.endpoint_rate)

    def wait(self, endpoint: str = "", *, first: bool = False) -> None:
        """Take a token for one request to `endpoint` (a list path such as
        `/v1/customers/{id}/payment_methods`; empty: only the overall budget).

        `first`: this endpoint's requests go before the others' whenever the overall budget
        is short, up to the endpoint's own budget (without one, `first` changes nothing: it
        would starve the others). For the backfill's long pole (one request per customer for
        payment methods, at 25/s while all the other lists share the rest), every second it
        spends below its own budget makes the whole backfill longer."""
        ahead = False  # this thread counts among those waiting only for an overall token
        try:
            while True:
                with self._lock:
                    now = time.monotonic()
                    own = self._endpoint(endpoint)
                    first = first and own is not None
                    for bucket in (self._all, own):
                        if bucket is not None:
                            bucket.refill(now)
                    own_delay = own.wait_for_one() if own is not None else 0.0
                    all_delay = self._all.wait_for_one() if self._all is not None else 0.0
                    if first and ahead != (own_delay <= 0 < all_delay):
                        ahead = not ahead
                        self._first_waiting += 1 if ahead else -1
                    if not first and self._first_waiting and all_delay <= 0:
                        all_delay = 1.0 / self.rate  # the token there is for one that goes first
                    delay = max(own_delay, all_delay)
                    if delay <= 0:
                        for bucket in (self._all, own):
                            if bucket is not None:
                                bucket.tokens -= 1.0
                        self.requests += 1
                        return
                time.sleep(delay)
        finally:
            if ahead:
                with self._lock:
                    self._first_waiting -= 1

    def _endpoint(self, endpoint: str) -> TokenBucket | None:
        if not endpoint or not self.endpoint_rate:
            return None
        bucket = self._endpoints.get(endpoint)
        if bucket is None:
            bucket = self._endpoints[endpoint] = TokenBucket(self.endpoint_rate)
        return bucket

    def workers(self) -> int:
        """Requests worth having in flight: enough to use the budget at Stripe's latency."""
        if not self.rate:
            return UNLIMITED_WORKERS
        return max(4, min(MAX_WORKERS, math.ceil(self.rate * SECONDS_PER_REQUEST)))

    def endpoint_workers(self) -> int:
        """Requests worth having in flight to one endpoint (what one listing sends to): no more
        than its own budget can use. More would only hold parsed pages waiting for their turn:
        at 100 requests/s with 25 per endpoint, six listings of 50 workers held 500 MB."""
        if not self.endpoint_rate:
            return self.workers()
        return max(4, min(self.workers(), math.ceil(self.endpoint_rate * SECONDS_PER_REQUEST)))


def _rate_from_env(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw.strip() else default
    except ValueError:
        log.warning("%s=%r is not a number; using %s requests/s", name, raw, default)
        return default


_BUDGETS: dict[tuple[float, float], RequestBudget] = {}
_BUDGETS_LOCK = threading.Lock()


def budget_from_env() -> RequestBudget:
    """The process's one budget for FETCH_RATE and FETCH_ENDPOINT_RATE (the curl fetchers read
    the same FETCH_RATE): every listing of this process draws from it, whatever runs at once."""
    rate = _rate_from_env("FETCH_RATE", DEFAULT_RATE)
    # FETCH_RATE=0 means no budget at all (the local sandbox, a benchmark)
    endpoint_rate = _rate_from_env("FETCH_ENDPOINT_RATE", DEFAULT_ENDPOINT_RATE if rate > 0 else 0)
    key = (max(rate, 0.0), max(endpoint_rate, 0.0))
    with _BUDGETS_LOCK:
        budget = _BUDGETS.get(key)
        if budget is None:
            budget = _BUDGETS[key] = RequestBudget(*key)
        return budget


ListCall = Callable[[dict[str, Any]], Any]


def quiet_sdk_logging() -> None:
    """Keep the SDK's two INFO lines per request (`message='Request to Stripe api'…`) out of the
    output, unless STRIPE_LOG=info or debug (the SDK's own switch) asks for them."""
    if os.environ.get("STRIPE_LOG", "").lower() not in ("info", "debug"):
        logging.getLogger("stripe").setLevel(logging.WARNING)


class ApiPager:
    """Pages one list at a time inside the budget (the events listing of `make sync`)."""

    def __init__(self, budget: RequestBudget) -> None:
        self.budget = budget
        self.requests = 0
        # built beside the SDK client, so this is where its per-request logging is silenced
        quiet_sdk_logging()

    def _page(self, call: ListCall, params: dict[str, Any], endpoint: str = "") -> Any:
        for attempt in range(1, MAX_RATE_LIMIT_RETRIES + 2):
            self.budget.wait(endpoint)
            self.requests += 1
            try:
                return call(params)
            except stripe.RateLimitError as exc:
                if attempt > MAX_RATE_LIMIT_RETRIES:
                    raise
                delay = retry_delay(exc, attempt)
                log.info("rate limited (429); retry %d in %.2fs", attempt, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def each(
        self, call: ListCall, params: dict[str, Any], endpoint: str = ""
    ) -> Iterator[dict[str, Any]]:
        """Every object of a list, newest first, as plain dicts, one page in memory at a time."""
        for page in self.pages(call, params, endpoint):
            yield from page

    def pages(
        self, call: ListCall, params: dict[str, Any], endpoint: str = ""
    ) -> Iterator[list[dict[str, Any]]]:
        cursor: str | None = None
        while True:
            page = self._page(
                call, {**params, **({"starting_after": cursor} if cursor else {})}, endpoint
            )
            data = _as_sent(page)
            yield data
            if not _has_more(page) or not data:
                return
            cursor = data[-1]["id"]


def retry_delay(exc: stripe.StripeError, attempt: int) -> float:
    """What `Retry-After` asks for, else an exponential backoff with jitter."""
    headers = exc.headers or {}
    raw = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        if raw is not None:
            return min(max(float(raw), 0.0), 60.0)
    except ValueError:
        pass
    return min(0.5 * 2 ** (attempt - 1), 16.0) * random.uniform(0.5, 1.0)


def _has_more(page: Any) -> bool:
    if isinstance(page, dict):
        return page.get("has_more") is True
    return bool(getattr(page, "has_more", False))


def _as_sent(page: Any) -> list[dict[str, Any]]:
    """The page's objects exactly as the API sent them.

    The SDK's objects coerce some fields (`unit_amount_decimal` becomes a Decimal); the raw
    JSON body keeps what the curl fetchers write, so both sources load the same rows.
    """
    if isinstance(page, dict):
        return list(page.get("data") or [])
    response = getattr(page, "last_response", None)
    body = getattr(response, "data", None)
    if isinstance(body, dict) and isinstance(body.get("data"), list):
        return body["data"]
    return [obj.to_dict(for_json=True) for obj in page.data]


# --- many requests in flight -------------------------------------------------------------


@dataclass(frozen=True)
class ListSpec:
    """One list endpoint: `path` (`{id}` for a parent's id), its params, its budget key."""

    path: str
    params: dict[str, Any]

    def url(self, parent_id: str | None = None) -> str:
        return self.path.replace("{id}", parent_id) if parent_id else self.path


_DONE = object()


class _Stopped(Exception):
    """The consumer went away: workers drop what they hold."""


class ParallelLister:
    """Lists through a `StripeClient` with up to `workers` requests in flight, each inside the
    budget. `objects(spec)` lists a whole endpoint (in `created` ranges when it is large);
    `for_parents(spec, ids)` lists a per-parent endpoint for many parents at once. `complete`,
    if given, is called on each object in the worker that fetched it (to page embedded lists)."""

    def __init__(
        self,
        client: stripe.StripeClient,
        budget: RequestBudget,
        *,
        workers: int | None = None,
        complete: Callable[[ParallelLister, dict[str, Any]], None] | None = None,
    ) -> None:
        self.client = client
        self.budget = budget
        self.workers = max(1, workers or budget.endpoint_workers())
        self.complete = complete
        self.requests = 0
        self.rate_limited = 0
        # every answer so far was plain (app.strict_json.plain_answer): no object listed can be
        # nested too deeply or hold NaN, and the objects need no walk of their own
        self.plain = True
        self._lock = threading.Lock()
        self._stop = threading.Event()
        quiet_sdk_logging()

    # one request

    def get(self, spec: ListSpec, params: dict[str, Any], parent_id: str | None = None) -> Any:
        """One page (the decoded body), inside the budget, retrying 429s."""
        url = spec.url(parent_id)
        for attempt in range(1, MAX_RATE_LIMIT_RETRIES + 2):
            if self._stop.is_set():
                raise _Stopped
            # a per-parent list (one request per parent) is the backfill's long pole
            self.budget.wait(spec.path, first=parent_id is not None)
            with self._lock:
                self.requests += 1
            try:
                with self.budget.in_flight:
                    answer = get_json(self.client, url, params)
                if self.plain and not (answer.strict and plain_answer(answer.body, finite=True)):
                    self.plain = False  # set before its objects are handed on
                return answer.data
            except stripe.RateLimitError as exc:
                with self._lock:
                    self.rate_limited += 1
                if attempt > MAX_RATE_LIMIT_RETRIES:
                    raise
                delay = retry_delay(exc, attempt)
                log.info("rate limited (429) on %s; retry %d in %.2fs", spec.path, attempt, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def pages(
        self, spec: ListSpec, params: dict[str, Any], parent_id: str | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """A list (or a range of it) page by page, in this thread."""
        params = {**spec.params, **params}
        while True:
            body = self.get(spec, params, parent_id)
            data = list(body.get("data") or [])
            if self.complete is not None:
                for obj in data:
                    self.complete(self, obj)
            yield data
            if body.get("has_more") is not True or not data:
                return
            params = {**params, "starting_after": data[-1]["id"]}
            params.pop("ending_before", None)

    # a whole endpoint, in created ranges

    def objects(self, spec: ListSpec, *, in_order: bool = False) -> Iterator[dict[str, Any]]:
        """Every object of the list, each once, including those created while it is listed:
        in the order pages arrive, or `in_order`, a sequential listing's (newest first)."""
        first = self.get(spec, {**spec.params, "limit": PAGE})
        data = list(first.get("data") or [])
        if self.complete is not None:
            for obj in data:
                self.complete(self, obj)
        yield from data
        if first.get("has_more") is not True or not data:
            return
        newest, edge = _created(data[0]), _created(data[-1])
        # the objects of the newest second, to tell apart those created during the listing
        recent = {obj["id"] for obj in data if _created(obj) >= newest}
        jobs: list[Callable[[], Iterable[list[dict[str, Any]]]]] = [
            # the rest of the first page's range: objects of its last second not on it (ties)
            lambda: self.pages(
                spec, {"limit": PAGE, "created": {"gte": edge}, "starting_after": data[-1]["id"]}
            )
        ]
        for lower, upper in self._ranges(spec, edge, newest):
            bounds = {"lt": upper} if lower is None else {"gte": lower, "lt": upper}
            jobs.append(lambda b=bounds: self.pages(spec, {"limit": PAGE, "created": b}))  # type: ignore[misc]
        for page in self._in_order(jobs) if in_order else self._run(jobs):
            for obj in page:
                if _created(obj) >= newest:
                    recent.add(obj["id"])
            yield from page
        # created during the listing: newer than the first page, or in its newest second
        for page in self.pages(spec, {"limit": PAGE, "created": {"gte": newest}}):
            fresh = [obj for obj in page if obj["id"] not in recent]
            recent.update(obj["id"] for obj in fresh)
            yield from fresh

    def _ranges(self, spec: ListSpec, edge: int, newest: int) -> list[tuple[int | None, int]]:
        """`[lower, upper)` ranges covering everything created before `edge`, newest first; the
        oldest has no lower bound. Their number follows the density of the first page."""
        oldest = self._oldest(spec, edge)
        if oldest is None:
            return []
        span = edge - oldest
        density = PAGE / max(1, newest - edge + 1)  # objects per second on the first page
        pages_expected = density * span / PAGE
        count = max(1, min(4 * self.workers, math.ceil(pages_expected), span))
        cuts = [edge - (span * i) // count for i in range(count + 1)]
        ranges: list[tuple[int | None, int]] = []
        for i in range(count):
            upper, lower = cuts[i], cuts[i + 1]
            if lower < upper:
                ranges.append((None if i == count - 1 else lower, upper))
        return ranges

    def _oldest(self, spec: ListSpec, edge: int) -> int | None:
        """A second no later than the oldest object created before `edge` (None: there is
        none), within a few percent of the span: probes of `created[lt]` sent together."""

        def any_before(moment: int) -> bool:
            body = self.get(spec, {**spec.params, "limit": 1, "created": {"lt": moment}})
            return bool(body.get("data"))

        if not any_before(edge):
            return None
        # 1 hour, 4 hours, … ~30 years back
        spans = [3600 * 4**k for k in range(10)]
        found = self._map(lambda s: any_before(edge - s), spans)
        deeper = [s for s, yes in zip(spans, found, strict=True) if yes]
        if not deeper:
            low, high = edge - spans[0], edge
        else:
            k = spans.index(deeper[-1])
            low = edge - (spans[k + 1] if k + 1 < len(spans) else 2 * spans[k])
            high = edge - spans[k]
        # narrow [low, high): the oldest object lies within it
        step = max(1, (high - low) // 8)
        points = list(range(low + step, high, step))
        found = self._map(any_before, points)
        for point, yes in zip(points, found, strict=True):
            if yes:
                return max(0, point - step)
        return max(0, points[-1] if points else low)

    # per-parent lists, for many parents at once

    def for_parents(self, spec: ListSpec, parent_ids: Iterable[str]) -> Iterator[dict[str, Any]]:
        """The list of each parent, parent after parent in the order given, fetched `workers`
        parents at a time."""

        def whole(parent_id: str) -> list[dict[str, Any]]:
            return [
                obj
                for page in self.pages(spec, {"limit": PAGE}, parent_id=parent_id)
                for obj in page
            ]

        yield from (obj for objs in self._ordered(whole, parent_ids) for obj in objs)

    # the workers

    def _run(
        self, jobs: list[Callable[[], Iterable[list[dict[str, Any]]]]]
    ) -> Iterator[list[dict[str, Any]]]:
        """The pages of all `jobs`, in the order they arrive. At most MAX_WAITING_PAGES pages
        are asked for and not yet taken: a worker takes a turn before it asks for the next page,
        not after, so a consumer slower than the budget (the load, on a busy machine) holds the
        workers back instead of each holding a parsed page (a few MB for 100 invoices) while
        it waits."""
        pages: queue.Queue[Any] = queue.Queue()
        room = threading.BoundedSemaphore(min(2 * self.workers, MAX_WAITING_PAGES))
        todo: queue.SimpleQueue[Callable[[], Iterable[list[dict[str, Any]]]]] = queue.SimpleQueue()
        for job in jobs:
            todo.put(job)

        def work() -> None:
            try:
                while not self._stop.is_set():
                    try:
                        job = todo.get_nowait()
                    except queue.Empty:
                        return
                    chain = iter(job())
                    while True:
                        self._take(room)
                        try:
                            page = next(chain)
                        except StopIteration:
                            room.release()
                            break
                        pages.put(page)
            except _Stopped:
                return
            except BaseException as exc:  # noqa: BLE001 — handed to the consumer, raised there
                self._put(pages, exc, force=True)
            finally:
                self._put(pages, _DONE, force=True)

        threads = [
            threading.Thread(target=work, name=f"stripe-list-{i}", daemon=True)
            for i in range(min(self.workers, len(jobs)))
        ]
        for thread in threads:
            thread.start()
        running = len(threads)
        try:
            while running:
                item = pages.get()
                if item is _DONE:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    room.release()
                    yield item
        finally:
            if running:
                self._stop.set()
                _drain(pages)

    def _in_order(
        self, jobs: list[Callable[[], Iterable[list[dict[str, Any]]]]]
    ) -> Iterator[list[dict[str, Any]]]:
        """The pages of `jobs` in the jobs' order: the first unfinished job's as they come,
        those of the next ones (at most 2 × workers jobs ahead) kept until it is done."""
        window: deque[queue.SimpleQueue[Any]] = deque()
        todo: queue.Queue[tuple[Callable[[], Iterable[Any]], queue.SimpleQueue[Any]] | None]
        todo = queue.Queue()
        waiting = iter(jobs)

        def work() -> None:
            while not self._stop.is_set():
                got = todo.get()
                if got is None:
                    return
                job, out = got
                try:
                    for page in job():
                        out.put(page)
                except BaseException as exc:  # noqa: BLE001 — raised in the consumer
                    out.put(exc)
                    return
                out.put(_DONE)

        def start_next() -> bool:
            job = next(waiting, None)
            if job is None:
                return False
            window.append(queue.SimpleQueue())
            todo.put((job, window[-1]))
            return True

        threads = [
            threading.Thread(target=work, name=f"stripe-list-{i}", daemon=True)
            for i in range(min(self.workers, len(jobs)))
        ]
        for thread in threads:
            thread.start()
        try:
            while len(window) < 2 * self.workers and start_next():
                pass
            while window:
                try:
                    item = window[0].get(timeout=0.1)
                except queue.Empty:
                    if self._stop.is_set():  # stopped elsewhere: the job may never end
                        raise _Stopped from None
                    continue
                if item is _DONE:
                    window.popleft()
                    start_next()
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            if window:
                self._stop.set()
            for _ in threads:
                todo.put(None)

    def _ordered(
        self, fetch: Callable[[str], list[dict[str, Any]]], keys: Iterable[str]
    ) -> Iterator[list[dict[str, Any]]]:
        """`fetch(key)` for each key, `workers` at a time, the results in the keys' order;
        at most `2 × workers` results wait."""
        window: deque[_Result] = deque()
        todo: queue.Queue[tuple[str, _Result] | None] = queue.Queue()
        threads: list[threading.Thread] = []

        def work() -> None:
            while not self._stop.is_set():
                got = todo.get()
                if got is None:
                    return
                key, result = got
                try:
                    result.set(fetch(key))
                except _Stopped:
                    result.set(None)
                    return
                except BaseException as exc:  # noqa: BLE001 — raised in the consumer
                    result.set(exc)

        try:
            for key in keys:
                if len(threads) < self.workers:
                    thread = threading.Thread(
                        target=work, name=f"stripe-list-{len(threads)}", daemon=True
                    )
                    thread.start()
                    threads.append(thread)
                result = _Result()
                window.append(result)
                todo.put((key, result))
                while len(window) >= 2 * self.workers or (window and window[0].ready()):
                    yield window.popleft().get()
            while window:
                yield window.popleft().get()
        finally:
            if window:
                self._stop.set()
            for _ in threads:
                todo.put(None)

    def _map(self, fetch: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        """`fetch` over `items` in parallel (a few small requests)."""
        results = [_Result() for _ in items]

        def one(item: Any, result: _Result) -> None:
            try:
                result.set(fetch(item))
            except BaseException as exc:  # noqa: BLE001 — raised in the caller
                result.set(exc)

        for item, result in zip(items, results, strict=True):
            threading.Thread(target=one, args=(item, result), daemon=True).start()
        return [result.get() for result in results]

    def _take(self, room: threading.BoundedSemaphore) -> None:
        """A turn to ask for a page, waiting while the consumer has enough; _Stopped once it
        went away."""
        while not room.acquire(timeout=0.1):
            if self._stop.is_set():
                raise _Stopped
        if self._stop.is_set():
            room.release()
            raise _Stopped

    def _put(self, pages: queue.Queue[Any], item: Any, *, force: bool = False) -> None:
        while True:
            if self._stop.is_set() and not force:
                raise _Stopped
            try:
                pages.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set():
                    if force:
                        return
                    raise _Stopped from None


class _Result:
    """A value one thread sets and another waits for (an exception is raised when got)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._value: Any = None

    def set(self, value: Any) -> None:
        self._value = value
        self._event.set()

    def ready(self) -> bool:
        return self._event.is_set()

    def get(self) -> Any:
        self._event.wait()
        if isinstance(self._value, BaseException):
            raise self._value
        return self._value


def _drain(pages: queue.Queue[Any]) -> None:
    while True:
        try:
            pages.get_nowait()
        except queue.Empty:
            return


def _created(obj: dict[str, Any]) -> int:
    created = obj.get("created")
    return created if isinstance(created, int) else 0


@contextmanager
def api_errors(settings: Any, what: str) -> Iterator[None]:
    """Stripe's errors as one FetchError that says what to do next, the key masked."""
    try:
        yield
    except stripe.APIConnectionError as exc:
        raise FetchError(
            f"{what}: cannot reach the Stripe API at {settings.stripe_api_base} — is it running? "
            "(`make sandbox` starts the local one; STRIPE_API_BASE says where to go)"
        ) from exc
    except stripe.AuthenticationError as exc:
        raise FetchError(
            f"{what}: {settings.stripe_api_base} refused the key "
            f"{mask_key(settings.stripe_secret_key)}: check STRIPE_SECRET_KEY"
        ) from exc
    except stripe.StripeError as exc:
        raise FetchError(
            f"{what}: the Stripe API at {settings.stripe_api_base} failed: "
            f"{mask_secrets(exc.user_message or str(exc))}"
        ) from exc
