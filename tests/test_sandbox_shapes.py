"""What the sandbox sends, as Stripe sends it: first pages in answers and events alike, the
includable `invoice.payments`, the payment-methods list, and the shapes of each API version."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import requests

from app.core.config import load_settings
from app.load.api_source import read_api_objects
from app.registry import RESOURCES, Resource
from app.sandbox.server import SandboxHandle
from app.sandbox.versions import DEFAULT_API_VERSION
from tests.fetch_helpers import TEST_KEY, create_long_lists

OLD = "2024-06-20"
Api = Callable[..., Any]


def _api(sandbox: SandboxHandle, version: str | None = None) -> Api:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TEST_KEY}"
    if version:
        session.headers["Stripe-Version"] = version

    def call(method: str, path: str, data: Any = None, status: int = 200) -> Any:
        if method == "GET":
            response = session.get(sandbox.url + path, params=data, timeout=10)
        else:
            response = session.post(sandbox.url + path, data=data, timeout=10)
        assert response.status_code == status, response.text
        return response.json()

    return call


@pytest.fixture()
def api(sandbox: SandboxHandle) -> Api:
    return _api(sandbox)


def _paying_customer(api: Api, card: str = "pm_card_visa") -> str:
    customer = api("POST", "/v1/customers", {"email": "shapes@example.com"})
    pm = api("POST", f"/v1/payment_methods/{card}/attach", {"customer": customer["id"]})
    api(
        "POST",
        f"/v1/customers/{customer['id']}",
        {"invoice_settings[default_payment_method]": pm["id"]},
    )
    return str(customer["id"])


def _monthly_price(api: Api, amount: int = 1500) -> str:
    price = api(
        "POST",
        "/v1/prices",
        {
            "currency": "usd",
            "unit_amount": str(amount),
            "recurring[interval]": "month",
            "product_data[name]": "Shapes",
        },
    )
    return str(price["id"])


def _subscribe(api: Api, customer: str, price: str, status: int = 200, **extra: str) -> Any:
    return api(
        "POST",
        "/v1/subscriptions",
        {"customer": customer, "items[0][price]": price, **extra},
        status,
    )


# --- first pages -------------------------------------------------------------------------------


def test_events_embed_the_same_first_page_as_the_api(sandbox: SandboxHandle, api: Api) -> None:
    made = create_long_lists(sandbox.url, invoice_lines=12, items=12)
    invoice = api("GET", f"/v1/invoices/{made['invoice']}")
    sub = api("GET", f"/v1/subscriptions/{made['subscription']}")
    events = api("GET", "/v1/events", {"limit": 100})["data"]
    created = {e["data"]["object"]["id"]: e["data"]["object"] for e in events if e["type"] in (
        "invoice.created", "customer.subscription.created")}  # fmt: skip
    for parent, field in ((invoice, "lines"), (sub, "items")):
        embedded = created[parent["id"]][field]
        assert len(embedded["data"]) == 10 and embedded["has_more"] is True
        assert [o["id"] for o in embedded["data"]] == [o["id"] for o in parent[field]["data"]]
    # the store keeps the whole lists; only what is sent is cut
    assert len(sandbox.store.tables["invoice"].by_id[made["invoice"]]["lines"]["data"]) == 12


# --- includables and lists ---------------------------------------------------------------------


def test_invoice_payments_come_only_when_expanded_and_agree_with_the_list(api: Api) -> None:
    paid = _subscribe(api, _paying_customer(api), _monthly_price(api))
    declined = _subscribe(api, _paying_customer(api, "pm_card_chargeDeclined"), _monthly_price(api))
    assert declined["status"] == "incomplete"  # allow_incomplete, Stripe's default behaviour
    open_invoice = api("GET", "/v1/invoices", {"status": "open"})["data"][0]
    for invoice_id in (paid["latest_invoice"], open_invoice["id"]):
        plain = api("GET", f"/v1/invoices/{invoice_id}")
        assert "payments" not in plain
        expanded = api("GET", f"/v1/invoices/{invoice_id}", {"expand[]": "payments"})["payments"]
        listed = api("GET", "/v1/invoice_payments", {"invoice": invoice_id})
        assert [p["id"] for p in expanded["data"]] == [p["id"] for p in listed["data"]]
        assert len(listed["data"]) == 1 and expanded["url"].endswith(f"invoice={invoice_id}")
    assert (
        api("GET", f"/v1/invoice_payments?invoice={open_invoice['id']}")["data"][0]["status"]
        == "open"
    )
    listed = api("GET", "/v1/invoices", {"expand[]": "data.payments"})["data"]
    assert all(invoice["payments"]["object"] == "list" for invoice in listed)


def test_payment_methods_are_listed_per_customer_only(api: Api) -> None:
    customer = _paying_customer(api)
    assert api("GET", "/v1/payment_methods")["data"] == []
    by_customer = api("GET", "/v1/payment_methods", {"customer": customer})["data"]
    assert [pm["customer"] for pm in by_customer] == [customer]
    api("GET", "/v1/payment_methods", {"limit": "0"}, status=400)


# --- versions ----------------------------------------------------------------------------------


def test_versions_before_basil_get_the_old_shapes(sandbox: SandboxHandle, api: Api) -> None:
    sub = _subscribe(api, _paying_customer(api), _monthly_price(api))
    old = _api(sandbox, OLD)
    old_sub = old("GET", f"/v1/subscriptions/{sub['id']}")
    item = sub["items"]["data"][0]
    assert old_sub["current_period_start"] == item["current_period_start"]
    assert old_sub["current_period_end"] == item["current_period_end"]
    assert "current_period_start" not in old_sub["items"]["data"][0]
    assert "current_period_start" not in sub
    invoice = old("GET", f"/v1/invoices/{sub['latest_invoice']}")
    new_invoice = api("GET", f"/v1/invoices/{sub['latest_invoice']}", {"expand[]": "payments"})
    pi_id = new_invoice["payments"]["data"][0]["payment"]["payment_intent"]
    charge_id = api("GET", f"/v1/payment_intents/{pi_id}")["latest_charge"]
    assert invoice["subscription"] == sub["id"] and "parent" not in invoice
    assert invoice["payment_intent"] == pi_id and invoice["charge"] == charge_id
    assert invoice["paid"] is True and "payments" not in invoice
    assert old("GET", f"/v1/charges/{charge_id}")["invoice"] == invoice["id"]
    assert old("GET", f"/v1/payment_intents/{pi_id}")["invoice"] == invoice["id"]
    assert "invoice" not in api("GET", f"/v1/charges/{charge_id}")
    line = invoice["lines"]["data"][0]
    assert line["subscription"] == sub["id"] and line["subscription_item"] == item["id"]
    assert line["type"] == "subscription" and line["proration"] is False
    assert line["price"]["id"] == item["price"]["id"] and "parent" not in line
    # includables that did not exist then cannot be expanded
    old("GET", f"/v1/invoices/{invoice['id']}", {"expand[]": "payments"}, status=400)
    # expanded objects are in the request's version too
    charge = old("GET", f"/v1/charges/{charge_id}", {"expand[]": "invoice"})
    assert charge["invoice"]["subscription"] == sub["id"]


def test_unknown_versions_are_refused(sandbox: SandboxHandle) -> None:
    error = _api(sandbox, "1999-01-01")("GET", "/v1/customers", status=400)["error"]
    assert error["message"] == "Invalid Stripe API version: 1999-01-01"


def test_events_carry_the_accounts_version_and_its_shapes(
    sandbox_factory: Callable[..., SandboxHandle],
) -> None:
    """An account on an old default version records old-shape events, whatever the request
    asked; its API answers default to that version too."""
    old_account = sandbox_factory(api_version=OLD)
    api = _api(old_account, DEFAULT_API_VERSION)
    sub = _subscribe(api, _paying_customer(api), _monthly_price(api))
    events = api("GET", "/v1/events", {"limit": 100})["data"]
    assert {e["api_version"] for e in events} == {OLD}
    by_type = {e["type"]: e["data"]["object"] for e in events}
    assert by_type["customer.subscription.created"]["current_period_end"]
    paid = by_type["invoice.paid"]
    assert paid["subscription"] == sub["id"] and paid["paid"] is True and paid["charge"]
    assert by_type["charge.succeeded"]["invoice"] == paid["id"]
    # what the event held at its time: the invoice had no payment yet when it was created
    assert by_type["invoice.created"]["payment_intent"] is None
    assert by_type["invoice.created"]["paid"] is False
    answered = _api(old_account)("GET", f"/v1/invoices/{paid['id']}")
    assert answered["subscription"] == sub["id"] and "parent" not in answered


def _rows(resource: Resource, objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each object's typed columns and its children's, without the raw JSON they came from."""
    rows = {}
    for obj in objects:
        row = {k: v for k, v in resource.transform(obj).items() if k != "raw"}
        for child in resource.children:
            data = obj
            for key in child.path:
                data = data[key]
            row[child.name] = [
                {k: v for k, v in child.transform(item).items() if k != "raw"} for item in data
            ]
        rows[obj["id"]] = row
    return rows


# Only versions before basil name the invoice on charges and payment intents: the mirror links
# them through invoices.payment_intent_id from basil on.
OLD_ONLY = {"charges": {"invoice_id"}, "payment_intents": {"invoice_id"}}
# Before basil a subscription item had no period of its own (its subscription's was its own).
NEW_ONLY = {"subscription_items": {"current_period_start", "current_period_end"}}


def _same_but(old: dict[str, Any], new: dict[str, Any], table: str) -> None:
    for column in OLD_ONLY.get(table, ()):
        assert new[column] is None
        new[column] = old[column]
    for column in NEW_ONLY.get(table, ()):
        assert old[column] is None
        old[column] = new[column]
    assert old == new, table


def test_the_same_objects_fetched_at_both_versions_give_the_same_columns(
    sandbox: SandboxHandle, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FETCH_RATE", "0")
    sandbox.seed(customers=40, seed=3)
    _subscribe(api, _paying_customer(api), _monthly_price(api))
    _subscribe(api, _paying_customer(api, "pm_card_chargeDeclined"), _monthly_price(api))
    create_long_lists(sandbox.url, invoice_lines=12, items=11)
    base = dataclasses.replace(
        load_settings("DEV"), stripe_api_base=sandbox.url, stripe_secret_key=TEST_KEY
    )
    for resource in RESOURCES:
        pinned = resource
        if resource.name == "invoices":
            # basil's invoice names its payment intent only in the includable `payments`
            pinned = dataclasses.replace(resource, expand=(*resource.expand, "data.payments"))
        new = list(read_api_objects(pinned, base))
        old = list(read_api_objects(resource, dataclasses.replace(base, stripe_api_version=OLD)))
        new_rows, old_rows = _rows(pinned, new), _rows(resource, old)
        assert new_rows.keys() == old_rows.keys() and new_rows, resource.name
        for object_id, old_row in old_rows.items():
            new_row = new_rows[object_id]
            for child in resource.children:
                old_items, new_items = old_row.pop(child.name), new_row.pop(child.name)
                assert len(old_items) == len(new_items)
                for old_item, new_item in zip(old_items, new_items, strict=True):
                    _same_but(old_item, new_item, child.name)
            _same_but(old_row, new_row, resource.name)
        if resource.name in OLD_ONLY:
            assert any(row["invoice_id"] for row in old_rows.values()), resource.name
        if resource.name == "invoices":
            paid = [r for r in new_rows.values() if r["status"] == "paid" and r["amount_paid"]]
            assert paid and all(r["payment_intent_id"] for r in paid)
