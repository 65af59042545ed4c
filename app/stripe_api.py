"""Paging through Stripe lists with the stripe SDK, inside a request budget, retrying 429s.

`auto_paging_iter()` sends its page requests itself, so it can neither keep a fetch under
Stripe's rate limit nor retry a 429 (the SDK retries 429 only when Stripe says
`Stripe-Should-Retry: true`). `ApiPager` asks for one page at a time instead, with the same
`starting_after` cursor, after waiting for its turn in the budget.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import stripe

log = logging.getLogger(__name__)

DEFAULT_RATE = 25.0  # Stripe's test-mode limit, requests per second
MAX_RATE_LIMIT_RETRIES = 8


class RequestBudget:
    """At most `rate` requests per second, spaced evenly (0 or less: no limit)."""

    def __init__(self, rate: float) -> None:
        self.gap = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.gap:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.gap
        if slot > now:
            time.sleep(slot - now)


def budget_from_env() -> RequestBudget:
    """The same FETCH_RATE the curl fetchers read, so both paths stay under one limit."""
    raw = os.environ.get("FETCH_RATE", "")
    try:
        rate = float(raw) if raw else DEFAULT_RATE
    except ValueError:
        log.warning("FETCH_RATE=%r is not a number; using %s requests/s", raw, DEFAULT_RATE)
        rate = DEFAULT_RATE
    return RequestBudget(rate)


ListCall = Callable[[dict[str, Any]], Any]


def quiet_sdk_logging() -> None:
    """Keep the SDK's two INFO lines per request (`message='Request to Stripe api'…`) out of the
    output, unless STRIPE_LOG=info or debug (the SDK's own switch) asks for them."""
    if os.environ.get("STRIPE_LOG", "").lower() not in ("info", "debug"):
        logging.getLogger("stripe").setLevel(logging.WARNING)


class ApiPager:
    def __init__(self, budget: RequestBudget) -> None:
        self.budget = budget
        self.requests = 0
        # built beside the SDK client, so this is where its per-request logging is silenced
        quiet_sdk_logging()

    def _page(self, call: ListCall, params: dict[str, Any]) -> Any:
        for attempt in range(1, MAX_RATE_LIMIT_RETRIES + 2):
            self.budget.wait()
            self.requests += 1
            try:
                return call(params)
            except stripe.RateLimitError:
                if attempt > MAX_RATE_LIMIT_RETRIES:
                    raise
                delay = min(0.5 * 2 ** (attempt - 1), 16.0) * random.uniform(0.5, 1.0)
                log.info("rate limited (429); retry %d in %.2fs", attempt, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def each(self, call: ListCall, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every object of a list, newest first, as plain dicts, one page in memory at a time."""
        cursor: str | None = None
        while True:
            page = self._page(call, {**params, **({"starting_after": cursor} if cursor else {})})
            data = _as_sent(page)
            yield from data
            if not page.has_more or not data:
                return
            cursor = data[-1]["id"]


def _as_sent(page: Any) -> list[dict[str, Any]]:
    """The page's objects exactly as the API sent them.

    The SDK's objects coerce some fields (`unit_amount_decimal` becomes a Decimal); the raw
    JSON body keeps what the curl fetchers write, so both sources load the same rows.
    """
    response = getattr(page, "last_response", None)
    body = getattr(response, "data", None)
    if isinstance(body, dict) and isinstance(body.get("data"), list):
        return body["data"]
    return [obj.to_dict(for_json=True) for obj in page.data]
