"""Every sandbox object carries the top-level keys of Stripe's example object (fixtures3.json)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from app.sandbox.server import SandboxHandle
from tests.stripe_schema import object_class, problems

# Keys of Stripe's example objects the sandbox leaves out on purpose, with the reason.
DELIBERATE_OMISSIONS: dict[str, dict[str, str]] = {
    "invoice": {
        "subscription": "removed in 2025-03-31.basil: the invoice names its subscription under "
        "parent.subscription_details.subscription (stripe-python 16 has no Invoice.subscription)",
    },
}

RESOURCES = (
    "product", "price", "customer", "payment_method", "subscription", "invoice",
    "payment_intent", "charge", "refund", "subscription_item", "line_item", "invoice_payment",
    "event", "token",
)  # fmt: skip


@pytest.fixture(scope="module")
def sample_objects(sandbox_server: SandboxHandle) -> dict[str, dict[str, Any]]:
    """One object of each resource, made through the API the way a user would."""
    sandbox_server.reset()
    session = requests.Session()
    session.headers["Authorization"] = "Bearer sk_test_conformance"
    url = sandbox_server.url

    def post(path: str, data: dict[str, str]) -> dict[str, Any]:
        response = session.post(url + path, data=data)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def get(path: str) -> dict[str, Any]:
        response = session.get(url + path)
        assert response.status_code == 200, response.text
        return dict(response.json())

    token = post(
        "/v1/tokens",
        {"card[number]": "4242424242424242", "card[exp_month]": "1", "card[exp_year]": "2031"},
    )
    customer = post(
        "/v1/customers", {"email": "conf@example.com", "payment_method": "pm_card_visa"}
    )
    pm = get(f"/v1/customers/{customer['id']}/payment_methods")["data"][0]
    post(f"/v1/customers/{customer['id']}", {"invoice_settings[default_payment_method]": pm["id"]})
    product = post("/v1/products", {"name": "Conformance"})
    price = post(
        "/v1/prices",
        {
            "product": product["id"],
            "currency": "usd",
            "unit_amount": "1000",
            "recurring[interval]": "month",
        },
    )
    sub = post("/v1/subscriptions", {"customer": customer["id"], "items[0][price]": price["id"]})
    invoice = get(f"/v1/invoices/{sub['latest_invoice']}?expand[]=payments")
    payment = invoice["payments"]["data"][0]
    pi = get(f"/v1/payment_intents/{payment['payment']['payment_intent']}")
    refund = post("/v1/refunds", {"charge": pi["latest_charge"], "amount": "100"})
    return {
        "product": get(f"/v1/products/{product['id']}"),
        "price": price,
        "customer": get(f"/v1/customers/{customer['id']}"),
        "payment_method": get(f"/v1/payment_methods/{pm['id']}"),
        "subscription": get(f"/v1/subscriptions/{sub['id']}"),
        "invoice": invoice,
        "payment_intent": pi,
        # includable since 2022-11-15, as `invoice.payments` is
        "charge": get(f"/v1/charges/{pi['latest_charge']}?expand[]=refunds"),
        "refund": refund,
        "subscription_item": get(f"/v1/subscription_items/{sub['items']['data'][0]['id']}"),
        "line_item": get(f"/v1/invoices/{invoice['id']}/lines")["data"][0],
        "invoice_payment": get(f"/v1/invoice_payments/{payment['id']}"),
        "event": get("/v1/events?limit=1")["data"][0],
        "token": token,
    }


@pytest.mark.parametrize("resource", RESOURCES)
def test_object_has_every_key_of_stripes_example(
    resource: str, sample_objects: dict[str, dict[str, Any]], stripe_examples: dict[str, Any]
) -> None:
    expected = set(stripe_examples[resource]) - set(DELIBERATE_OMISSIONS.get(resource, {}))
    obj = sample_objects[resource]
    assert sorted(expected - set(obj)) == [], f"{resource} lacks keys of Stripe's example"
    assert obj["object"] == stripe_examples[resource]["object"]


def test_deliberate_omissions_are_really_absent(sample_objects: dict[str, dict[str, Any]]) -> None:
    for resource, keys in DELIBERATE_OMISSIONS.items():
        assert not set(keys) & set(sample_objects[resource])


def test_basil_shapes_of_linked_objects(sample_objects: dict[str, dict[str, Any]]) -> None:
    invoice, pi, charge = (
        sample_objects["invoice"],
        sample_objects["payment_intent"],
        sample_objects["charge"],
    )
    sub, customer = sample_objects["subscription"], sample_objects["customer"]
    assert invoice["parent"]["subscription_details"]["subscription"] == sub["id"]
    assert sub["latest_invoice"] == invoice["id"]
    assert invoice["payments"]["data"][0]["payment"] == {
        "type": "payment_intent",
        "payment_intent": pi["id"],
    }
    assert charge["amount"] == invoice["amount_paid"] == pi["amount_received"]
    assert pi["latest_charge"] == charge["id"] and charge["payment_intent"] == pi["id"]
    assert charge["customer"] == pi["customer"] == invoice["customer"] == customer["id"]
    assert charge["payment_method"] == customer["invoice_settings"]["default_payment_method"]
    assert "invoice" not in charge and "invoice" not in pi
    item = sample_objects["subscription_item"]
    assert item["current_period_start"] < item["current_period_end"]
    line = sample_objects["line_item"]
    assert line["parent"]["subscription_item_details"]["subscription_item"] == item["id"]
    prefixes = {"product": "prod_", "price": "price_", "customer": "cus_", "payment_method": "pm_",
                "subscription": "sub_", "subscription_item": "si_", "invoice": "in_", "line_item": "il_",
                "invoice_payment": "inpay_", "payment_intent": "pi_", "charge": "ch_", "event": "evt_",
                "token": "tok_"}  # fmt: skip
    for resource, prefix in prefixes.items():
        assert sample_objects[resource]["id"].startswith(prefix), resource


def test_stripes_examples_send_no_null_where_the_schema_says_never(
    stripe_examples: dict[str, Any],
) -> None:
    """A second source for tests/data's nullability (taken from stripe-node's types): Stripe's own
    example objects never send null where it says a field is never null."""
    found = [
        problem
        for name, example in stripe_examples.items()
        if isinstance(example, dict) and object_class(str(example.get("object"))) is not None
        for problem in problems(example, name)
        if "not nullable" in problem
    ]
    assert found == []
