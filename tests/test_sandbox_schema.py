"""Conformance to the pinned API version's schema: every object kind the sandbox sends, in every
status it can reach, checked field by field against the stripe package's typed classes
(tests/stripe_schema.py) — no unknown field, no missing one, no wrong type, no unknown enum
value — through expanded and embedded objects and inside events."""

from __future__ import annotations

import typing
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from app.sandbox.server import SandboxHandle
from tests.stripe_schema import (
    SENT_CLASSES,
    _named,
    expandable_fields,
    fields,
    may_be_absent,
    never_null,
    object_class,
    problems,
)

KEY = "sk_test_schema"
# What the sandbox reaches, by kind: each must be a value of the schema's enum, and each must
# appear in the account built below (so a status that stops being reachable fails too).
STATUSES: dict[str, set[str]] = {
    "subscription": {
        "active", "trialing", "past_due", "unpaid", "canceled", "incomplete", "incomplete_expired",
    },
    "invoice": {"draft", "open", "paid", "void", "uncollectible"},
    "payment_intent": {
        "requires_payment_method", "requires_confirmation", "requires_action", "requires_capture",
        "succeeded", "canceled",
    },
    "charge": {"succeeded", "failed"},
    "invoice_payment": {"open", "paid", "canceled"},
}  # fmt: skip
LISTS = {
    "product": "/v1/products",
    "price": "/v1/prices",
    "customer": "/v1/customers",
    "subscription": "/v1/subscriptions?status=all",
    "invoice": "/v1/invoices",
    "invoice_payment": "/v1/invoice_payments",
    "payment_intent": "/v1/payment_intents",
    "charge": "/v1/charges",
    "refund": "/v1/refunds",
    "event": "/v1/events",
    "webhook_endpoint": "/v1/webhook_endpoints",
}


class Api:
    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {KEY}"

    def get(self, path: str, params: Any = None) -> Any:
        response = self.session.get(self.url + path, params=params, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, data: Any = None, status: int = 200) -> Any:
        response = self.session.post(self.url + path, data=data, timeout=30)
        assert response.status_code == status, response.text
        return response.json()

    def every(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        after = None
        while True:
            page = self.get(path, {**params, "limit": 100, "starting_after": after})
            yield from page["data"]
            if not page["has_more"]:
                return
            after = page["data"][-1]["id"]


def _customer(api: Api, card: str | None = "pm_card_visa") -> str:
    customer = api.post("/v1/customers", {"email": "schema@example.com", "name": "Schema"})
    if card:
        pm = api.post(f"/v1/payment_methods/{card}/attach", {"customer": customer["id"]})
        api.post(
            f"/v1/customers/{customer['id']}",
            {"invoice_settings[default_payment_method]": pm["id"]},
        )
    return str(customer["id"])


def build_account(api: Api, sandbox: SandboxHandle) -> None:
    """Every status the sandbox can reach, through the API as a user would, and a seeded graph."""
    sandbox.seed(customers=60, seed=41)
    api.post("/v1/webhook_endpoints", {"url": "http://127.0.0.1:9/hook", "enabled_events[]": "*"})
    api.post("/v1/tokens", {"card[number]": "4242424242424242", "card[exp_month]": "1",
                            "card[exp_year]": "2031"})  # fmt: skip
    price = api.post("/v1/prices", {"currency": "usd", "unit_amount": "1200",
                                     "recurring[interval]": "month",
                                     "product_data[name]": "Schema"})["id"]  # fmt: skip

    def subscribe(customer: str, **extra: str) -> Any:
        return api.post("/v1/subscriptions", {"customer": customer, "items[0][price]": price,
                                               **extra})  # fmt: skip

    subscribe(_customer(api))  # active, paid
    subscribe(_customer(api), trial_period_days="14")  # trialing
    subscribe(_customer(api), payment_behavior="default_incomplete")  # incomplete, PI to confirm
    subscribe(_customer(api, "pm_card_chargeDeclined"))  # incomplete, failed charge
    voided = subscribe(_customer(api), payment_behavior="default_incomplete")
    api.post(f"/v1/invoices/{voided['latest_invoice']}/void")  # its payment intent canceled
    subscribe(_customer(api, "pm_card_authenticationRequired"))  # incomplete, PI requires_action
    subscribe(_customer(api, None), collection_method="send_invoice", days_until_due="30")
    # the latest invoice of a past_due subscription marked uncollectible: unpaid
    late = api.get("/v1/subscriptions", {"status": "past_due", "limit": 2})["data"]
    api.post(f"/v1/invoices/{late[0]['latest_invoice']}/mark_uncollectible")
    assert len(late) == 2, "the seed has past_due subscriptions to keep"
    canceled = subscribe(_customer(api))
    api.session.delete(f"{api.url}/v1/subscriptions/{canceled['id']}")
    # invoices: draft, finalized then void, uncollectible, paid out of the pay endpoint
    buyer = _customer(api)
    invoices = []
    for _ in range(4):
        api.post("/v1/invoiceitems", {"customer": buyer, "amount": "2500", "currency": "usd"})
        invoices.append(api.post("/v1/invoices", {"customer": buyer})["id"])
    draft, to_void, uncollectible, to_pay = invoices
    for invoice in (to_void, uncollectible, to_pay):
        api.post(f"/v1/invoices/{invoice}/finalize")
    api.post(f"/v1/invoices/{to_void}/void")
    api.post(f"/v1/invoices/{uncollectible}/mark_uncollectible")
    api.post(f"/v1/invoices/{to_pay}/pay")
    # payment intents in each state, and charges with refunds
    pi = {"amount": "5000", "currency": "usd", "customer": buyer}
    api.post("/v1/payment_intents", pi)  # requires_payment_method
    api.post("/v1/payment_intents", {**pi, "payment_method": "pm_card_visa"})
    held = api.post("/v1/payment_intents", {**pi, "payment_method": "pm_card_visa",
                                            "capture_method": "manual", "confirm": "true"})  # fmt: skip
    api.post(f"/v1/payment_intents/{held['id']}/capture", {"amount_to_capture": "3000"})
    api.post("/v1/payment_intents", {**pi, "payment_method": "pm_card_visa",
                                     "capture_method": "manual", "confirm": "true"})  # fmt: skip
    dropped = api.post("/v1/payment_intents", pi)
    api.post(f"/v1/payment_intents/{dropped['id']}/cancel")
    refunded = api.post("/v1/charges", {"amount": "4000", "currency": "usd", "customer": buyer})
    partial = api.post("/v1/refunds", {"charge": refunded["id"], "amount": "1000",
                                       "reason": "requested_by_customer"})  # fmt: skip
    api.post(f"/v1/refunds/{partial['id']}", {"metadata[note]": "partial"})
    api.post("/v1/refunds", {"charge": refunded["id"]})  # the rest: refunded
    api.post("/v1/charges", {"amount": "1500", "currency": "usd", "source": "tok_visa"})
    api.post("/v1/refunds", {"payment_intent": held["id"], "amount": "500"})


@pytest.fixture(scope="module")
def account(sandbox_server: SandboxHandle) -> dict[str, list[dict[str, Any]]]:
    """Every object the account's lists send, by kind: each list once plain and once with every
    expandable field expanded; plus embedded lists paged at their own urls."""
    sandbox_server.reset()
    api = Api(sandbox_server.url)
    build_account(api, sandbox_server)
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for kind, path in LISTS.items():
        cls = object_class(kind)
        assert cls is not None
        expand = [f"data.{name}" for name in expandable_fields(cls)]
        expand = [e for e in expand if e.removeprefix("data.") not in optional(cls)]
        if kind == "invoice":
            expand.append("data.payments")
        if kind == "charge":
            expand.append("data.refunds")
        path, _, query = path.partition("?")
        params = dict(p.split("=") for p in query.split("&") if p)
        found[kind].extend(api.every(path, params))
        found[kind].extend(api.every(path, {**params, "expand[]": expand}))
    for customer in found["customer"][:60]:
        found["payment_method"].extend(api.every(f"/v1/customers/{customer['id']}/payment_methods", {}))  # fmt: skip
    for sub in found["subscription"][:20]:
        found["subscription_item"].extend(api.every("/v1/subscription_items", {"subscription": sub["id"]}))  # fmt: skip
    for invoice in found["invoice"][:20]:
        found["line_item"].extend(api.every(f"/v1/invoices/{invoice['id']}/lines", {}))
    tokens = [o for o in sandbox_server.store.tables["token"].by_id.values()]
    found["token"] = [api.get(f"/v1/tokens/{t['id']}") for t in tokens] + [
        api.get("/v1/tokens/tok_visa")
    ]
    return dict(found)


def optional(cls: type) -> frozenset[str]:
    return may_be_absent().get(cls.__qualname__, frozenset())


def test_the_sent_classes_are_the_stripe_packages() -> None:
    for name in SENT_CLASSES:
        assert fields(_named(name)), name


@pytest.mark.parametrize(
    "kind",
    [
        "product", "price", "customer", "payment_method", "subscription", "subscription_item",
        "invoice", "line_item", "invoice_payment", "payment_intent", "charge", "refund",
        "event", "token", "webhook_endpoint",
    ],
)  # fmt: skip
def test_every_object_conforms_to_the_pinned_schema(
    kind: str, account: dict[str, list[dict[str, Any]]]
) -> None:
    objects = account.get(kind, [])
    assert objects, f"the account has no {kind}"
    found: Counter[str] = Counter()
    for obj in objects:
        for problem in problems(obj, f"{kind} {obj.get('id')}"):
            found[problem.split(": ", 1)[1] + " @ " + _field_path(problem)] += 1
    assert not found, "\n".join(f"{n} × {p}" for p, n in found.most_common())


def test_absent_and_null_are_told_apart(account: dict[str, list[dict[str, Any]]]) -> None:
    """The stripe package types `billing_mode.updated_at` Optional because Stripe may leave it
    out; stripe-node's types (tests/data) say it is never null: absent or a value, not null."""
    assert "updated_at" in may_be_absent()["Subscription.BillingMode"]
    assert "updated_at" in never_null()["Subscription.BillingMode"]
    sub = account["subscription"][0]
    mode = {k: v for k, v in sub["billing_mode"].items() if k != "updated_at"}
    assert problems({**sub, "billing_mode": mode}) == []
    assert problems({**sub, "billing_mode": {**mode, "updated_at": 1_700_000_000}}) == []
    assert problems({**sub, "billing_mode": {**mode, "updated_at": None}}) == [
        "subscription.billing_mode.updated_at: null, but the field is not nullable "
        "(Stripe leaves it out)"
    ]
    # a field Stripe always sends but the package types Optional all the same
    customer = account["customer"][0]
    assert problems({**customer, "balance": None}) == [
        "customer.balance: null, but the field is not nullable"
    ]
    assert problems({**customer, "description": None}) == []  # one that may be null


def _field_path(problem: str) -> str:
    """`invoice in_x.lines.data[3].period: …` → `lines.data[].period` (one line per field)."""
    where = problem.split(": ", 1)[0].split(" ", 1)[1]
    path = where.split(".", 1)[1] if "." in where else ""
    while "[" in path:
        start = path.index("[")
        path = path[:start] + "[]" + path[path.index("]", start) + 1 :].replace("[][]", "[]")
        if path.count("[") == path.count("[]"):
            break
    return path


@pytest.mark.parametrize("kind", sorted(STATUSES))
def test_every_status_is_reached_and_is_one_of_stripes(
    kind: str, account: dict[str, list[dict[str, Any]]]
) -> None:
    cls = object_class(kind)
    assert cls is not None
    enum = set(_literals(fields(cls)["status"]))
    assert not enum or STATUSES[kind] <= enum  # some statuses are typed as plain strings
    assert {obj["status"] for obj in account[kind]} == STATUSES[kind]


def _literals(annotation: Any) -> list[str]:
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    return [v for arg in typing.get_args(annotation) for v in _literals(arg)]
