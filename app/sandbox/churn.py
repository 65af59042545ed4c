"""Churn: change a running sandbox over its HTTP API the way a live account changes, at a steady rate.

    python -m app.sandbox churn --rate 50 --seconds 60 [--url http://127.0.0.1:12111] [--seed N]
                                [--log mutations.jsonl]

Each round runs every flow once, in a random order: customers change email and metadata, new
customers arrive with a card (set as their invoice default), cards are attached and detached,
subscriptions change quantity, are canceled and created (which bills them: invoice, payment
intent, charge), invoice items go on invoices that are finalized and then paid or voided,
products are archived and prices deactivated (and new ones created), customers are deleted.
Every mutating request waits for a token of a bucket filled at `rate` per second; reads (the
ids to work on) are free. With `--log`, one JSON line per mutation records when the API
answered (`at`, unix seconds), its `kind`, the `object` type and `id` it changed, and the
`request_id` — the `request.id` of the events it caused — so a benchmark can measure the lag
from each mutation to the mirror. Only a sandbox on this machine (a loopback address) is driven.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import orjson
import requests

logger = logging.getLogger(__name__)

DEFAULT_KEY = "sk_test_churn"
# The catalogue is topped up when fewer active recurring prices remain.
_MIN_PRICES = 3


class ChurnError(Exception):
    """The churn cannot run: not a loopback URL, or no sandbox answers there."""


@dataclass
class ChurnReport:
    mutations: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.mutations.values())

    def summary(self) -> str:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.mutations.items()))
        errors = sum(self.errors.values())
        failed = ", ".join(f"{kind} {n}" for kind, n in sorted(self.errors.items()))
        rate = self.total / self.seconds if self.seconds else 0.0
        return (
            f"churn: {self.total} mutations in {self.seconds:.1f}s ({rate:.1f}/s): {kinds or '-'}; "
            f"errors {errors}" + (f" ({failed})" if failed else "")
        )


def require_loopback(url: str) -> str:
    """`url` without a trailing slash, or ChurnError when its host is not this machine."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme != "http" or not loopback:
        raise ChurnError(
            f"churn drives only a sandbox on this machine (http://127.0.0.1:…), not {url!r}"
        )
    return url.rstrip("/")


class _Pacer:
    """A token bucket of one token refilled `rate` times a second: calls spread evenly."""

    def __init__(self, rate: float, deadline: float) -> None:
        self.interval = 1.0 / rate
        self.deadline = deadline
        self._next = time.monotonic()

    def wait(self) -> bool:
        """Sleep until the next token; False once the time is up."""
        now = time.monotonic()
        self._next = max(self._next, now)
        if self._next >= self.deadline:
            return False
        if self._next > now:
            time.sleep(self._next - now)
        self._next += self.interval
        return True


@dataclass
class _Pools:
    """The ids the churn works on, kept up to date by its own changes."""

    customers: list[str] = field(default_factory=list)  # with a default card
    cards: dict[str, list[str]] = field(default_factory=dict)  # customer → detachable cards
    subscriptions: dict[str, tuple[str, str, int]] = field(
        default_factory=dict
    )  # id → cus, si, qty
    prices: dict[str, str] = field(default_factory=dict)  # active recurring price → product
    products: list[str] = field(default_factory=list)


class _TimeUp(Exception):
    pass


class Churn:
    def __init__(
        self,
        url: str,
        *,
        rate: float,
        seconds: float,
        seed: int | None = None,
        log: IO[bytes] | None = None,
        key: str = DEFAULT_KEY,
        session: requests.Session | None = None,
    ) -> None:
        if rate <= 0 or seconds < 0:
            raise ChurnError("--rate must be > 0 and --seconds >= 0")
        self.url = require_loopback(url)
        self.rate = rate
        self.seconds = seconds
        self.rng = random.Random(seed)
        self.log = log
        self.session = session or requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"
        self.report = ChurnReport()
        self.pools = _Pools()
        self._serial = 0
        self._pacer = _Pacer(rate, time.monotonic())

    # -- requests ----------------------------------------------------------------------------

    def _read(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.session.get(self.url + path, params=params, timeout=30)
        response.raise_for_status()
        return dict(response.json())

    def _mutate(
        self, kind: str, method: str, path: str, data: dict[str, str] | None = None
    ) -> dict[str, Any] | None:
        """One mutating request, paced and logged; None when it failed (counted as an error)."""
        if not self._pacer.wait():
            raise _TimeUp
        try:
            response = self.session.request(method, self.url + path, data=data, timeout=30)
        except requests.RequestException as error:
            logger.warning("churn %s: %s", kind, error)
            self.report.errors[kind] += 1
            return None
        answered = time.time()
        if response.status_code != 200:
            logger.warning("churn %s: %s %s", kind, response.status_code, response.text[:300])
            self.report.errors[kind] += 1
            return None
        body = dict(response.json())
        self.report.mutations[kind] += 1
        if self.log is not None:
            line = {
                "at": answered,
                "kind": kind,
                "object": body.get("object"),
                "id": body.get("id"),
                "request_id": response.headers.get("Request-Id"),
            }
            self.log.write(orjson.dumps(line) + b"\n")
        return body

    def _name(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}-{int(time.time())}-{self._serial}"

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> ChurnReport:
        started = time.monotonic()
        self._pacer = _Pacer(self.rate, started + self.seconds)
        try:
            self._load_pools()
            while True:
                flows = list(self._flows())
                self.rng.shuffle(flows)
                for flow in flows:
                    flow()
        except _TimeUp:
            pass
        finally:
            self.report.seconds = time.monotonic() - started
        return self.report

    def _flows(self) -> tuple[Callable[[], None], ...]:
        return (
            self.customer_email, self.customer_metadata, self.customer_create, self.card_attach,
            self.card_detach, self.subscription_quantity, self.subscription_cancel,
            self.subscription_create, self.invoice_paid, self.invoice_voided, self.product_archive,
            self.price_deactivate, self.product_create, self.customer_delete,
        )  # fmt: skip

    def _load_pools(self) -> None:
        """Start from what the sandbox holds (the newest 100 of each)."""
        pools = self.pools
        for cus in self._read("/v1/customers", limit=100)["data"]:
            if (cus.get("invoice_settings") or {}).get("default_payment_method"):
                pools.customers.append(cus["id"])
        for sub in self._read("/v1/subscriptions", limit=100, status="active")["data"]:
            item = sub["items"]["data"][0]
            pools.subscriptions[sub["id"]] = (sub["customer"], item["id"], item["quantity"])
        for product in self._read("/v1/products", limit=100, active="true")["data"]:
            pools.products.append(product["id"])
        active = set(pools.products)
        for price in self._read("/v1/prices", limit=100, active="true", type="recurring")["data"]:
            if price["product"] in active and price["currency"] == "usd":
                pools.prices[price["id"]] = price["product"]

    def _pick(self, items: list[str]) -> str | None:
        return self.rng.choice(items) if items else None

    # -- customers and cards -----------------------------------------------------------------

    def customer_email(self) -> None:
        customer = self._pick(self.pools.customers)
        if customer is None:
            return self.customer_create()
        self._mutate(
            "customer_email",
            "POST",
            f"/v1/customers/{customer}",
            {"email": f"{self._name('churn')}@example.com"},
        )
        return None

    def customer_metadata(self) -> None:
        customer = self._pick(self.pools.customers)
        if customer is None:
            return self.customer_create()
        self._mutate(
            "customer_metadata",
            "POST",
            f"/v1/customers/{customer}",
            {"metadata[churn]": self._name("m"), "metadata[tier]": self.rng.choice("abc")},
        )
        return None

    def customer_create(self) -> None:
        name = self._name("churn")
        cus = self._mutate(
            "customer_create",
            "POST",
            "/v1/customers",
            {"email": f"{name}@example.com", "name": name, "payment_method": "pm_card_visa"},
        )
        if cus is None:
            return
        card = self._read("/v1/payment_methods", customer=cus["id"], type="card")["data"][0]
        if self._mutate(
            "customer_default_card",
            "POST",
            f"/v1/customers/{cus['id']}",
            {"invoice_settings[default_payment_method]": card["id"]},
        ):
            self.pools.customers.append(cus["id"])

    def card_attach(self) -> None:
        customer = self._pick(self.pools.customers)
        if customer is None:
            return self.customer_create()
        card = self._mutate(
            "card_attach", "POST", "/v1/payment_methods/pm_card_mastercard/attach",
            {"customer": customer},
        )  # fmt: skip
        if card is not None:
            self.pools.cards.setdefault(customer, []).append(card["id"])
        return None

    def card_detach(self) -> None:
        owners = [cus for cus, cards in self.pools.cards.items() if cards]
        customer = self._pick(owners)
        if customer is None:
            self.card_attach()
            owners = [cus for cus, cards in self.pools.cards.items() if cards]
            customer = self._pick(owners)
            if customer is None:
                return
        card = self.pools.cards[customer].pop()
        self._mutate("card_detach", "POST", f"/v1/payment_methods/{card}/detach")

    # -- subscriptions -----------------------------------------------------------------------

    def subscription_create(self) -> None:
        customer = self._pick(self.pools.customers)
        if customer is None:
            self.customer_create()
            customer = self._pick(self.pools.customers)
        if not self.pools.prices:
            self.product_create()
        price = self._pick(list(self.pools.prices))
        if customer is None or price is None:
            return
        quantity = self.rng.choice((1, 1, 2, 3))
        sub = self._mutate(
            "subscription_create",
            "POST",
            "/v1/subscriptions",
            {"customer": customer, "items[0][price]": price, "items[0][quantity]": str(quantity)},
        )
        if sub is not None and sub["status"] == "active":
            item = sub["items"]["data"][0]
            self.pools.subscriptions[sub["id"]] = (customer, item["id"], item["quantity"])

    def subscription_quantity(self) -> None:
        sub_id = self._pick(list(self.pools.subscriptions))
        if sub_id is None:
            return self.subscription_create()
        customer, item, quantity = self.pools.subscriptions[sub_id]
        new = quantity % 5 + 1
        if self._mutate(
            "subscription_quantity",
            "POST",
            f"/v1/subscriptions/{sub_id}",
            {"items[0][id]": item, "items[0][quantity]": str(new)},
        ):
            self.pools.subscriptions[sub_id] = (customer, item, new)
        return None

    def subscription_cancel(self) -> None:
        sub_id = self._pick(list(self.pools.subscriptions))
        if sub_id is None:
            return self.subscription_create()
        del self.pools.subscriptions[sub_id]
        self._mutate("subscription_cancel", "DELETE", f"/v1/subscriptions/{sub_id}")
        return None

    # -- invoices ----------------------------------------------------------------------------

    def _open_invoice(self) -> dict[str, Any] | None:
        customer = self._pick(self.pools.customers)
        if customer is None:
            self.customer_create()
            customer = self._pick(self.pools.customers)
            if customer is None:
                return None
        item = self._mutate(
            "invoice_item_create",
            "POST",
            "/v1/invoiceitems",
            {
                "customer": customer,
                "amount": str(self.rng.randrange(100, 20_000)),
                "currency": "usd",
                "description": self._name("one-off"),
            },
        )
        if item is None:
            return None
        invoice = self._mutate(
            "invoice_create",
            "POST",
            "/v1/invoices",
            {"customer": customer, "collection_method": "charge_automatically"},
        )
        if invoice is None:
            return None
        return self._mutate("invoice_finalize", "POST", f"/v1/invoices/{invoice['id']}/finalize")

    def invoice_paid(self) -> None:
        invoice = self._open_invoice()
        if invoice is not None and invoice["status"] == "open":
            self._mutate("invoice_pay", "POST", f"/v1/invoices/{invoice['id']}/pay")

    def invoice_voided(self) -> None:
        invoice = self._open_invoice()
        if invoice is not None and invoice["status"] == "open":
            self._mutate("invoice_void", "POST", f"/v1/invoices/{invoice['id']}/void")

    # -- catalogue ---------------------------------------------------------------------------

    def product_create(self) -> None:
        name = self._name("Plan")
        product = self._mutate(
            "product_create",
            "POST",
            "/v1/products",
            {
                "name": name,
                "default_price_data[currency]": "usd",
                "default_price_data[unit_amount]": str(self.rng.choice((500, 900, 1900, 4900))),
                "default_price_data[recurring][interval]": self.rng.choice(("month", "year")),
            },
        )
        if product is not None:
            self.pools.products.append(product["id"])
            self.pools.prices[product["default_price"]] = product["id"]

    def product_archive(self) -> None:
        if len(self.pools.prices) <= _MIN_PRICES:
            self.product_create()
        product = self._pick(self.pools.products)
        if product is None:
            return
        self.pools.products.remove(product)
        for price, owner in list(self.pools.prices.items()):
            if owner == product:
                del self.pools.prices[price]
        self._mutate("product_archive", "POST", f"/v1/products/{product}", {"active": "false"})

    def price_deactivate(self) -> None:
        if len(self.pools.prices) <= _MIN_PRICES:
            self.product_create()
        price = self._pick(list(self.pools.prices))
        if price is None:
            return
        del self.pools.prices[price]
        self._mutate("price_deactivate", "POST", f"/v1/prices/{price}", {"active": "false"})

    def customer_delete(self) -> None:
        if len(self.pools.customers) <= 2:
            self.customer_create()
        customer = self._pick(self.pools.customers)
        if customer is None:
            return
        self.pools.customers.remove(customer)
        self.pools.cards.pop(customer, None)
        for sub_id, (owner, _, _) in list(self.pools.subscriptions.items()):
            if owner == customer:
                del self.pools.subscriptions[sub_id]
        self._mutate("customer_delete", "DELETE", f"/v1/customers/{customer}")


def run_churn(
    url: str,
    *,
    rate: float,
    seconds: float,
    seed: int | None = None,
    log_path: Path | None = None,
    key: str = DEFAULT_KEY,
) -> ChurnReport:
    """Churn the sandbox at `url` for `seconds` at `rate` mutations/s; the counts by kind."""
    url = require_loopback(url)
    try:
        requests.get(url + "/_sandbox/health", timeout=2).raise_for_status()
    except requests.RequestException as error:
        raise ChurnError(f"no sandbox answers at {url} ({error})") from error
    if log_path is None:
        return Churn(url, rate=rate, seconds=seconds, seed=seed, key=key).run()
    with log_path.open("wb") as log:
        return Churn(url, rate=rate, seconds=seconds, seed=seed, log=log, key=key).run()
