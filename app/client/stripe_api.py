"""Requests to Stripe through the stripe SDK, inside one request budget, and their retries.

`auto_paging_iter()` sends its page requests itself, one at a time, so it can neither keep a
fetch under Stripe's rate limit nor retry a 429 (the SDK retries 429 only when Stripe says
`Stripe-Should-Retry: true`). Here every request first takes a token from the shared budget:
`FETCH_RATE` requests/s in all (default 25, Stripe's test-mode limit; 0: no limit) and
`FETCH_ENDPOINT_RATE` per endpoint (default 25, Stripe's default per-endpoint limit; none when
FETCH_RATE is 0 unless set), so the payment-method listing, capped at 25/s by Stripe even in
live mode, leaves the rest of the budget to the other endpoints. A 429 is retried after
`Retry-After` (or a backoff).

What runs in parallel is app.client.lister's; the budget is app.client.budget's.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import stripe

from app.client.budget import MAX_WORKERS, RequestBudget
from app.core.config import mask_key, mask_secrets
from app.core.errors import FetchError
from app.core.strict_json import inexact_number, loads_keeping_inexact

log = logging.getLogger(__name__)

# How a failed request is retried, by every path: the curl fetch reads these rules through
# scripts/list_resources.py. Retries after the first attempt; the backoff before retry n is
# drawn between half and all of backoff_ceiling(n); a Retry-After is honoured up to a minute.
MAX_RATE_LIMIT_RETRIES = 8
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 16.0
RETRY_AFTER_MAX_SECONDS = 60
PAGE = 100  # objects per list request: Stripe's largest page


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


_accounts: dict[tuple[str, str], str] = {}
_accounts_lock = threading.Lock()


def mirrored_account(settings: Any) -> str:
    """The id of the Stripe account a run mirrors: STRIPE_ACCOUNT when set (a connected
    account), else the key's own account, as `GET /v1/account` names it — asked once per key
    and address in a process."""
    if settings.stripe_account:
        return str(settings.stripe_account)
    key = (settings.stripe_api_base, settings.stripe_secret_key)
    with _accounts_lock:
        known = _accounts.get(key)
        if known is not None:
            return known
        with api_errors(settings, "account"):
            answer = get_json(stripe_client(settings), "/v1/account", {})
        found = answer.data.get("id") if isinstance(answer.data, dict) else None
        if not isinstance(found, str) or not found:
            raise FetchError(
                f"account: {settings.stripe_api_base}/v1/account answered no account id"
            )
        _accounts[key] = found
        return found


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
            return min(max(float(raw), 0.0), RETRY_AFTER_MAX_SECONDS)
    except ValueError:
        pass
    return backoff_ceiling(attempt) * random.uniform(0.5, 1.0)


def backoff_ceiling(attempt: int) -> float:
    """The longest backoff before retry `attempt` (from 1): doubling from half a second, at
    most 16 s."""
    return min(BACKOFF_FIRST_SECONDS * 2 ** (attempt - 1), BACKOFF_MAX_SECONDS)


def backoff_ceilings_ms() -> list[int]:
    """backoff_ceiling of each retry, in ms, up to the first that reaches the most (the same
    after it): the table the curl fetch draws its backoffs from."""
    table = [round(backoff_ceiling(1) * 1000)]
    while table[-1] < BACKOFF_MAX_SECONDS * 1000:
        table.append(round(backoff_ceiling(len(table) + 1) * 1000))
    return table


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
