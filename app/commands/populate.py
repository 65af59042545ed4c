"""Fill a Stripe test account (or the local sandbox) from the fixture files in data/fixtures/.

Idempotent by natural keys, so running it again creates nothing: products are found by the
`populate_tag` in their metadata, prices by product + amount + interval + currency, customers by
email, and a customer's subscription by its price. Payment uses the test token `tok_visa`: a card
payment method is made from it, attached, set as the customer's default, then the subscription is
created (Stripe charges the default payment method for the first invoice).

Every call goes through one `stripe.StripeClient` pointed at `settings.stripe_api_base`, so the
same code runs against the sandbox and against Stripe's test mode.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import stripe

from app.client.stripe_api import stripe_client
from app.core.config import (
    Settings,
    mask_key,
    mask_secrets,
    refuse_in_prod,
    refuse_live_key,
    remember_secret,
)
from app.core.errors import ConfigError, FetchError

log = logging.getLogger(__name__)

TAG_KEY = "populate_tag"
KINDS = ("products", "prices", "customers", "payment_methods", "subscriptions")
OUTCOMES = ("created", "found", "skipped", "canceled", "failed")
# a subscription in one of these states still bills the customer: populate leaves it alone
LIVE_STATUSES = ("active", "trialing", "past_due", "incomplete", "unpaid", "paused")
TEST_TOKEN = "tok_visa"


@dataclass(frozen=True)
class Fixtures:
    products: list[dict[str, Any]]
    prices: list[dict[str, Any]]
    customers: list[dict[str, Any]]


@dataclass
class PopulateReport:
    counts: dict[str, Counter[str]] = field(
        default_factory=lambda: {kind: Counter() for kind in KINDS}
    )
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # kind, what, why

    def add(self, kind: str, outcome: str, n: int = 1) -> None:
        self.counts[kind][outcome] += n

    def fail(self, kind: str, what: str, reason: str) -> None:
        self.counts[kind]["failed"] += 1
        self.failures.append((kind, what, mask_secrets(reason)))
        log.error("failed: %s %s: %s", kind, what, mask_secrets(reason))

    @property
    def failed(self) -> int:
        return len(self.failures)

    def created(self) -> int:
        return sum(c["created"] for c in self.counts.values())

    def table(self) -> str:
        header = f"{'kind':<18}" + "".join(f"{o:>10}" for o in OUTCOMES)
        lines = [header, "-" * len(header)]
        for kind in KINDS:
            lines.append(f"{kind:<18}" + "".join(f"{self.counts[kind][o]:>10}" for o in OUTCOMES))
        for kind, what, why in self.failures:
            lines.append(f"FAILED {kind} {what}: {why}")
        return "\n".join(lines)


def load_fixtures(folder: Path) -> Fixtures:
    """Read and cross-check products.json, prices.json and customers.json."""

    def read(name: str) -> list[dict[str, Any]]:
        path = folder / name
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: fixture file not found") from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not JSON: {exc}") from exc
        if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
            raise ConfigError(f"{path}: expected a JSON array of objects")
        return data

    fixtures = Fixtures(read("products.json"), read("prices.json"), read("customers.json"))
    tags = {p["tag"] for p in fixtures.products}
    keys = {p["key"] for p in fixtures.prices}
    for price in fixtures.prices:
        if price["product"] not in tags:
            raise ConfigError(f"price {price['key']}: unknown product tag {price['product']!r}")
    for customer in fixtures.customers:
        if customer.get("plan") and customer["plan"] not in keys:
            raise ConfigError(f"customer {customer['email']}: unknown plan {customer['plan']!r}")
    return fixtures


def check_allowed(settings: Settings) -> None:
    # whatever its shape (a mistyped `sk_tset_…` too), the key is masked in every later message
    remember_secret(settings.stripe_secret_key)
    refuse_in_prod(settings, "populate Stripe")
    refuse_live_key(settings.stripe_secret_key)
    if not settings.stripe_secret_key:
        raise ConfigError("STRIPE_SECRET_KEY is not set (see .env.dev, or put one in .env.local)")


def populate(
    settings: Settings,
    fixtures: Fixtures,
    *,
    force: bool = False,
    client: stripe.StripeClient | None = None,
) -> PopulateReport:
    """Create what is missing; with `force`, cancel and recreate the fixture subscriptions."""
    check_allowed(settings)
    # the one client every path uses (STRIPE_ACCOUNT included); the SDK adds idempotency keys
    # to retried POSTs, so a retry never creates twice
    client = client or stripe_client(settings)
    report = PopulateReport()
    try:
        products = _ensure_products(client, fixtures.products, report)
        prices = _ensure_prices(client, fixtures.prices, products, report)
        for spec in fixtures.customers:
            _ensure_customer(client, spec, prices, report, force=force)
    except stripe.APIConnectionError as exc:
        raise FetchError(
            f"cannot reach Stripe at {settings.stripe_api_base}: {type(exc).__name__} "
            "(is the sandbox running? `make sandbox-up`, or check STRIPE_API_BASE)"
        ) from exc
    except (stripe.AuthenticationError, stripe.PermissionError) as exc:
        # every later call would fail the same way: stop with one clear message
        raise FetchError(
            f"Stripe at {settings.stripe_api_base} refused or did not answer: "
            f"{mask_secrets(_message(exc))} (key {mask_key(settings.stripe_secret_key)})"
        ) from exc
    return report


def _message(exc: stripe.StripeError) -> str:
    return exc.user_message or str(exc) or type(exc).__name__


def _ensure_products(
    client: stripe.StripeClient, specs: list[dict[str, Any]], report: PopulateReport
) -> dict[str, str]:
    """Products by their metadata tag → product id (Stripe's list has no metadata filter)."""
    existing: dict[str, str] = {}
    for product in _each(client.v1.products.list(params={"limit": 100})):
        tag = (product.get("metadata") or {}).get(TAG_KEY)
        if tag and tag not in existing:
            existing[tag] = product["id"]
    ids: dict[str, str] = {}
    for spec in specs:
        tag = spec["tag"]
        if tag in existing:
            ids[tag] = existing[tag]
            report.add("products", "found")
            continue
        try:
            product = _plain(
                client.v1.products.create(
                    params={
                        "name": spec["name"],
                        "description": spec.get("description") or "",
                        "metadata": {**spec.get("metadata", {}), TAG_KEY: tag},
                    }
                )
            )
        except stripe.InvalidRequestError as exc:
            report.fail("products", tag, _message(exc))
            continue
        ids[tag] = product["id"]
        report.add("products", "created")
        log.info("created product %s (%s)", product["id"], tag)
    return ids


def _price_matches(price: Any, spec: dict[str, Any]) -> bool:
    recurring = price.get("recurring") or {}
    return (
        price.get("unit_amount") == spec["unit_amount"]
        and price.get("currency") == spec["currency"].lower()
        and recurring.get("interval") == spec["interval"]
        and bool(price.get("active", True))
    )


def _ensure_prices(
    client: stripe.StripeClient,
    specs: list[dict[str, Any]],
    products: dict[str, str],
    report: PopulateReport,
) -> dict[str, str]:
    """Prices matched by amount + interval + currency on their product → price id by key."""
    ids: dict[str, str] = {}
    for spec in specs:
        product_id = products.get(spec["product"])
        if product_id is None:
            report.fail("prices", spec["key"], f"its product {spec['product']!r} was not created")
            continue
        listed = client.v1.prices.list(params={"product": product_id, "limit": 100})
        match = next((p for p in _each(listed) if _price_matches(p, spec)), None)
        if match is not None:
            ids[spec["key"]] = match["id"]
            report.add("prices", "found")
            continue
        try:
            price = _plain(
                client.v1.prices.create(
                    params={
                        "product": product_id,
                        "unit_amount": spec["unit_amount"],
                        "currency": spec["currency"].lower(),
                        "recurring": {"interval": spec["interval"]},
                        "metadata": {TAG_KEY: spec["key"]},
                    }
                )
            )
        except stripe.InvalidRequestError as exc:
            report.fail("prices", spec["key"], _message(exc))
            continue
        ids[spec["key"]] = price["id"]
        report.add("prices", "created")
        log.info("created price %s (%s)", price["id"], spec["key"])
    return ids


def _ensure_customer(
    client: stripe.StripeClient,
    spec: dict[str, Any],
    prices: dict[str, str],
    report: PopulateReport,
    *,
    force: bool,
) -> None:
    email = spec["email"]
    try:
        found = _plain(client.v1.customers.list(params={"email": email, "limit": 1}))["data"]
        if found:
            customer = found[0]
            report.add("customers", "found")
        else:
            customer = _plain(
                client.v1.customers.create(
                    params={
                        "email": email,
                        "name": spec.get("name") or "",
                        "metadata": {TAG_KEY: "customer"},
                    }
                )
            )
            report.add("customers", "created")
            log.info("created customer %s (%s)", customer["id"], email)
    except (stripe.InvalidRequestError, stripe.CardError) as exc:
        report.fail("customers", email, _message(exc))
        return
    plan = spec.get("plan")
    if not plan:
        return
    price_id = prices.get(plan)
    if price_id is None:
        report.fail("subscriptions", email, f"its price {plan!r} was not created")
        return
    try:
        _ensure_default_card(client, customer, report)
    except (stripe.InvalidRequestError, stripe.CardError) as exc:
        report.fail("payment_methods", email, _message(exc))
        report.add("subscriptions", "skipped")
        return
    try:
        _ensure_subscription(client, customer["id"], price_id, email, report, force=force)
    except (stripe.InvalidRequestError, stripe.CardError) as exc:
        report.fail("subscriptions", email, _message(exc))


def _ensure_default_card(
    client: stripe.StripeClient, customer: dict[str, Any], report: PopulateReport
) -> None:
    settings = customer.get("invoice_settings") or {}
    if settings.get("default_payment_method"):
        report.add("payment_methods", "found")
        return
    method_id = client.v1.payment_methods.create(
        params={"type": "card", "card": {"token": TEST_TOKEN}}
    ).id
    client.v1.payment_methods.attach(method_id, params={"customer": customer["id"]})
    client.v1.customers.update(
        customer["id"], params={"invoice_settings": {"default_payment_method": method_id}}
    )
    report.add("payment_methods", "created")
    log.info("attached %s to %s as its default", method_id, customer["id"])


def _ensure_subscription(
    client: stripe.StripeClient,
    customer_id: str,
    price_id: str,
    email: str,
    report: PopulateReport,
    *,
    force: bool,
) -> None:
    listed = client.v1.subscriptions.list(
        params={"customer": customer_id, "status": "all", "limit": 100}
    )
    current = [
        s for s in _each(listed) if s.get("status") in LIVE_STATUSES and _has_price(s, price_id)
    ]
    if current and not force:
        report.add("subscriptions", "skipped")
        return
    for sub in current:
        client.v1.subscriptions.cancel(sub["id"])
        report.add("subscriptions", "canceled")
        log.info("canceled %s of %s", sub["id"], email)
    sub = _plain(
        client.v1.subscriptions.create(
            params={
                "customer": customer_id,
                "items": [{"price": price_id}],
                "metadata": {TAG_KEY: "subscription"},
            }
        )
    )
    if sub.get("status") not in ("active", "trialing"):
        report.fail(
            "subscriptions", email, f"created {sub['id']} but its status is {sub.get('status')}"
        )
        return
    report.add("subscriptions", "created")
    log.info("created %s for %s (%s)", sub["id"], email, sub.get("status"))


def _plain(obj: Any) -> dict[str, Any]:
    """SDK objects are not dicts (since stripe 8): work on plain data."""
    return obj.to_dict()


def _each(listed: Any) -> Any:
    """Every object of a list, all pages, as plain dicts."""
    return (obj.to_dict() for obj in listed.auto_paging_iter())


def _has_price(subscription: dict[str, Any], price_id: str) -> bool:
    items = (subscription.get("items") or {}).get("data") or []
    return any(((item.get("price") or {}).get("id")) == price_id for item in items)
