"""The one registry of Stripe resources: fetch, ingest, check and tests all read it.

Adding a ninth resource is one model, one transformer and one `Resource(...)` line here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from typing import Any, cast

from sqlalchemy import Table

from app.db.base import Base
from app.models import (
    Charge,
    Customer,
    Invoice,
    InvoiceLine,
    PaymentIntent,
    PaymentMethod,
    Price,
    Product,
    Subscription,
    SubscriptionItem,
)
from app.transformers import (
    stripe_charge_to_model,
    stripe_customer_to_model,
    stripe_invoice_line_to_model,
    stripe_invoice_to_model,
    stripe_payment_intent_to_model,
    stripe_payment_method_to_model,
    stripe_price_to_model,
    stripe_product_to_model,
    stripe_subscription_item_to_model,
    stripe_subscription_to_model,
)

Transform = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Child:
    """Objects embedded in a parent's list field, mirrored into a table of their own."""

    name: str
    model: type[Base]
    transform: Transform
    path: tuple[str, ...]  # where the list's objects sit in the parent, e.g. ("items", "data")
    parent_column: str
    # GET path paging the whole list ({id}: the parent's id). Stripe embeds only the first page
    # (`has_more: true` when there is more); fetch and SOURCE=api page the rest from here.
    list_path: str
    # typed columns an item takes from its parent's row when it has none of its own (before
    # basil a subscription's items share its period, and only the subscription says it)
    inherit: tuple[str, ...] = ()

    @property
    def envelope_path(self) -> tuple[str, ...]:
        """Where the embedded list envelope (`data`, `has_more`, `url`) sits, e.g. ("items",)."""
        return self.path[:-1]

    @property
    def table(self) -> Table:
        return cast(Table, self.model.__table__)


@dataclass(frozen=True)
class Resource:
    name: str  # table name, JSON file stem, make target suffix
    model: type[Base]
    transform: Transform
    object_name: str  # Stripe's `object` value
    list_path: str  # GET path listing the resource
    depends_on: tuple[str, ...] = ()
    list_params: dict[str, str] = field(default_factory=dict)
    expand: tuple[str, ...] = ()
    # listed per customer (`/v1/customers/{id}/payment_methods`), not by one global list
    per_customer: bool = False
    children: tuple[Child, ...] = ()
    # expansions that exist only from an API version on (Stripe refuses them before): path → date
    expand_since: dict[str, str] = field(default_factory=dict)

    def expand_for(self, api_version: str) -> tuple[str, ...]:
        """The `expand[]` of a list request made at this API version."""
        day = api_version[:10]
        return tuple(e for e in self.expand if day >= self.expand_since.get(e, ""))

    @property
    def file_name(self) -> str:
        return f"{self.name}.json"

    @property
    def table(self) -> Table:
        return cast(Table, self.model.__table__)


RESOURCES: tuple[Resource, ...] = (
    Resource("products", Product, stripe_product_to_model, "product", "/v1/products"),
    Resource(
        "prices", Price, stripe_price_to_model, "price", "/v1/prices", depends_on=("products",)
    ),
    Resource(
        "customers",
        Customer,
        stripe_customer_to_model,
        "customer",
        "/v1/customers",
        expand=("data.invoice_settings.default_payment_method",),
    ),
    Resource(
        "payment_methods",
        PaymentMethod,
        stripe_payment_method_to_model,
        "payment_method",
        "/v1/customers/{customer}/payment_methods",
        depends_on=("customers",),
        per_customer=True,
    ),
    Resource(
        "subscriptions",
        Subscription,
        stripe_subscription_to_model,
        "subscription",
        "/v1/subscriptions",
        depends_on=("customers", "prices"),
        list_params={"status": "all"},
        children=(
            Child(
                "subscription_items",
                SubscriptionItem,
                stripe_subscription_item_to_model,
                ("items", "data"),
                "subscription_id",
                "/v1/subscription_items?subscription={id}",
                inherit=("current_period_start", "current_period_end"),
            ),
        ),
    ),
    Resource(
        "invoices",
        Invoice,
        stripe_invoice_to_model,
        "invoice",
        "/v1/invoices",
        depends_on=("customers", "subscriptions"),
        # from basil on, an invoice's payment intent is in `payments`, sent only when expanded
        expand=("data.payments",),
        expand_since={"data.payments": "2025-03-31"},
        children=(
            Child(
                "invoice_lines",
                InvoiceLine,
                stripe_invoice_line_to_model,
                ("lines", "data"),
                "invoice_id",
                "/v1/invoices/{id}/lines",
            ),
        ),
    ),
    Resource(
        "payment_intents",
        PaymentIntent,
        stripe_payment_intent_to_model,
        "payment_intent",
        "/v1/payment_intents",
        depends_on=("customers", "invoices"),
    ),
    Resource(
        "charges",
        Charge,
        stripe_charge_to_model,
        "charge",
        "/v1/charges",
        depends_on=("customers", "payment_intents", "invoices"),
    ),
)

BY_NAME: dict[str, Resource] = {r.name: r for r in RESOURCES}


class UnknownResourceError(ValueError):
    pass


def load_order(names: Iterable[str] | None = None) -> list[Resource]:
    """Resources parents first; `names` picks some of them (their order does not matter)."""
    wanted = list(BY_NAME) if names is None else list(names)
    unknown = [n for n in wanted if n not in BY_NAME]
    if unknown:
        raise UnknownResourceError(
            f"unknown resource(s): {', '.join(unknown)}; known: {', '.join(BY_NAME)}"
        )
    position = {r.name: i for i, r in enumerate(RESOURCES)}
    sorter = TopologicalSorter({r.name: set(r.depends_on) for r in RESOURCES})
    sorter.prepare()  # raises CycleError if the registry's dependencies loop
    order: list[str] = []
    ready: set[str] = set()
    while sorter.is_active():
        ready.update(sorter.get_ready())
        # among the resources ready to load, keep the registry's order: stable and readable
        name = min(ready, key=position.__getitem__)
        ready.remove(name)
        order.append(name)
        sorter.done(name)
    return [BY_NAME[name] for name in order if name in wanted]


def parse_names(value: str) -> list[str]:
    """`RESOURCES="customers charges"` or `customers,charges` as a list of names."""
    return [part for part in value.replace(",", " ").split() if part]
