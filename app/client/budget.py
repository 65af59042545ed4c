"""The request budget every request of a run shares: `FETCH_RATE` requests/s in all (default 25,
Stripe's test-mode limit; 0: no limit) and `FETCH_ENDPOINT_RATE` per endpoint (default 25,
Stripe's default per-endpoint limit; none when FETCH_RATE is 0 unless set), token buckets
that threads wait on.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time

from app.core.errors import ConfigError

log = logging.getLogger(__name__)

# requests in flight without a budget (the local sandbox, a proxy): enough to keep two cores
# busy; with a budget, enough to use it when each request takes about half a second (Stripe)
UNLIMITED_WORKERS = 8
SECONDS_PER_REQUEST = 0.5
MAX_WORKERS = 64

DEFAULT_RATE = 25.0  # Stripe's test-mode limit, requests per second


DEFAULT_ENDPOINT_RATE = 25.0  # Stripe's default limit per endpoint


# the budget's buckets hold this many seconds of requests (see TokenBucket)
BURST_SECONDS = 0.2


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


_RATE = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _rate_from_env(name: str, default: float, what: str) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not _RATE.fullmatch(raw):
        raise ConfigError(f"{name} must be a number of requests per second ({what}), not {raw!r}")
    return float(raw)


def budget_rates() -> tuple[float, float]:
    """The run's budget from FETCH_RATE and FETCH_ENDPOINT_RATE, for every path (the curl fetch
    reads it through scripts/list_resources.py): requests/s in all and per endpoint, 0 for
    none. Stripe's limits by default; FETCH_RATE=0 (the local sandbox, a benchmark) means no
    budget at all, per endpoint too unless FETCH_ENDPOINT_RATE says otherwise."""
    rate = _rate_from_env("FETCH_RATE", DEFAULT_RATE, "0: no budget")
    endpoint_default = DEFAULT_ENDPOINT_RATE if rate > 0 else 0.0
    return rate, _rate_from_env("FETCH_ENDPOINT_RATE", endpoint_default, "0: none")


_BUDGETS: dict[tuple[float, float], RequestBudget] = {}
_BUDGETS_LOCK = threading.Lock()


def budget_from_env() -> RequestBudget:
    """The process's one budget for FETCH_RATE and FETCH_ENDPOINT_RATE (the curl fetchers read
    the same FETCH_RATE): every listing of this process draws from it, whatever runs at once."""
    key = budget_rates()
    with _BUDGETS_LOCK:
        budget = _BUDGETS.get(key)
        if budget is None:
            budget = _BUDGETS[key] = RequestBudget(*key)
        return budget
