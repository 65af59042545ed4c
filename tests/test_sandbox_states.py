"""The statuses a real account reaches, through the API as in Stripe: refunds, cards that require
authentication, `unpaid` subscriptions, voided invoices and what their payment intents become."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from app.sandbox.server import SandboxHandle

KEY = "sk_test_states"


class Api:
    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {KEY}"

    def get(self, path: str, expect: int = 200, **params: Any) -> Any:
        response = self.session.get(self.url + path, params=params, timeout=30)
        assert response.status_code == expect, response.text
        return response.json()

    def post(self, path: str, data: Any = None, expect: int = 200, **headers: str) -> Any:
        response = self.session.post(self.url + path, data=data, headers=headers, timeout=30)
        assert response.status_code == expect, response.text
        return response.json()

    def events(self, object_id: str) -> list[str]:
        """The types of the events about `object_id`, oldest first."""
        page = self.get("/v1/events", limit=100)
        return [e["type"] for e in reversed(page["data"]) if e["data"]["object"]["id"] == object_id]


@pytest.fixture()
def api(sandbox: SandboxHandle) -> Api:
    return Api(sandbox.url)


def _charge(api: Api, amount: int = 5000) -> Any:
    return api.post("/v1/charges", {"amount": amount, "currency": "usd", "source": "tok_visa"})


# --- refunds -----------------------------------------------------------------------------------


def test_partial_then_remaining_refund_marks_the_charge_refunded(api: Api) -> None:
    ch = _charge(api)
    first = api.post("/v1/refunds", {"charge": ch["id"], "amount": 1200, "reason": "duplicate",
                                     "metadata[ticket]": "42"})  # fmt: skip
    assert (first["amount"], first["status"], first["reason"]) == (1200, "succeeded", "duplicate")
    assert first["metadata"] == {"ticket": "42"}
    partly = api.get(f"/v1/charges/{ch['id']}")
    assert (partly["amount_refunded"], partly["refunded"]) == (1200, False)
    rest = api.post("/v1/refunds", {"charge": ch["id"]})
    assert rest["amount"] == 3800
    whole = api.get(f"/v1/charges/{ch['id']}")
    assert (whole["amount_refunded"], whole["refunded"]) == (5000, True)
    assert api.get("/v1/refunds", charge=ch["id"])["data"] == [rest, first]
    assert api.get(f"/v1/refunds/{first['id']}") == first
    assert [r["id"] for r in api.get(f"/v1/charges/{ch['id']}/refunds")["data"]] == [
        rest["id"],
        first["id"],
    ]
    assert api.events(ch["id"]) == ["charge.succeeded", "charge.refunded", "charge.refunded"]
    assert api.events(first["id"]) == ["refund.created"]


def test_refund_over_the_remainder_is_refused_as_stripe_does(api: Api) -> None:
    ch = _charge(api)
    api.post("/v1/refunds", {"charge": ch["id"], "amount": 4000})
    error = api.post("/v1/refunds", {"charge": ch["id"], "amount": 1001}, expect=400)["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "amount"
    assert "greater than unrefunded amount on charge ($10.00)" in error["message"]
    api.post("/v1/refunds", {"charge": ch["id"]})
    again = api.post("/v1/refunds", {"charge": ch["id"]}, expect=400)["error"]
    assert again["code"] == "charge_already_refunded"
    assert api.post("/v1/refunds", {}, expect=400)["error"]["code"] == "parameter_missing"


def test_refund_by_payment_intent_refunds_its_charge(api: Api) -> None:
    pi = api.post("/v1/payment_intents", {"amount": 3000, "currency": "usd",
                                           "payment_method": "pm_card_visa", "confirm": "true"})  # fmt: skip
    refund = api.post("/v1/refunds", {"payment_intent": pi["id"]})
    assert (refund["charge"], refund["payment_intent"], refund["amount"]) == (
        pi["latest_charge"], pi["id"], 3000,
    )  # fmt: skip
    assert api.get("/v1/refunds", payment_intent=pi["id"])["data"] == [refund]
    waiting = api.post("/v1/payment_intents", {"amount": 3000, "currency": "usd"})
    api.post("/v1/refunds", {"payment_intent": waiting["id"]}, expect=400)


def test_charge_refunds_are_includable_from_2022_11_15_and_embedded_before(api: Api) -> None:
    ch = _charge(api)
    refund = api.post("/v1/refunds", {"charge": ch["id"], "amount": 100})
    assert "refunds" not in api.get(f"/v1/charges/{ch['id']}")
    expanded = api.get(f"/v1/charges/{ch['id']}", **{"expand[]": "refunds"})["refunds"]
    assert [r["id"] for r in expanded["data"]] == [refund["id"]]
    assert expanded["url"] == f"/v1/charges/{ch['id']}/refunds"
    old = api.session.get(
        f"{api.url}/v1/charges/{ch['id']}", headers={"Stripe-Version": "2022-08-01"}, timeout=30
    ).json()
    assert [r["id"] for r in old["refunds"]["data"]] == [refund["id"]]


def test_refund_metadata_update_sends_charge_refund_updated(api: Api) -> None:
    refund = api.post("/v1/refunds", {"charge": _charge(api)["id"]})
    updated = api.post(f"/v1/refunds/{refund['id']}", {"metadata[k]": "v"})
    assert updated["metadata"] == {"k": "v"}
    assert api.events(refund["id"]) == ["refund.created", "charge.refund.updated", "refund.updated"]
    api.post(f"/v1/refunds/{refund['id']}", {"amount": 5}, expect=400)


# --- cards that require authentication ----------------------------------------------------------


@pytest.mark.parametrize("card", ["pm_card_authenticationRequired", "tok_threeDSecure2Required"])
def test_a_payment_intent_waits_for_the_customer_to_authenticate(api: Api, card: str) -> None:
    pi = api.post("/v1/payment_intents", {"amount": 2000, "currency": "usd",
                                           "payment_method": card, "confirm": "true"})  # fmt: skip
    assert pi["status"] == "requires_action" and pi["latest_charge"] is None
    assert pi["next_action"]["type"] == "use_stripe_sdk"
    again = api.post(f"/v1/payment_intents/{pi['id']}/confirm")
    assert again["status"] == "requires_action"
    assert api.events(pi["id"]) == ["payment_intent.created", "payment_intent.requires_action"]
    canceled = api.post(f"/v1/payment_intents/{pi['id']}/cancel")
    assert (canceled["status"], canceled["next_action"]) == ("canceled", None)


def test_another_card_completes_a_payment_intent_that_required_action(api: Api) -> None:
    pi = api.post("/v1/payment_intents", {"amount": 2000, "currency": "usd", "confirm": "true",
                                           "payment_method": "pm_card_authenticationRequired"})  # fmt: skip
    done = api.post(f"/v1/payment_intents/{pi['id']}/confirm", {"payment_method": "pm_card_visa"})
    assert (done["status"], done["next_action"]) == ("succeeded", None)


def test_a_charge_with_a_card_that_requires_authentication_is_declined(api: Api) -> None:
    error = api.post("/v1/charges", {"amount": 2000, "currency": "usd",
                                      "source": "tok_authenticationRequired"}, expect=402)["error"]  # fmt: skip
    assert (error["code"], error["decline_code"]) == ("card_declined", "authentication_required")


def test_a_subscription_whose_card_requires_authentication_is_incomplete(api: Api) -> None:
    customer = api.post("/v1/customers", {"payment_method": "pm_card_authenticationRequired",
                                           "invoice_settings[default_payment_method]": ""})  # fmt: skip
    pm = api.get(f"/v1/customers/{customer['id']}/payment_methods")["data"][0]
    price = api.post("/v1/prices", {"currency": "usd", "unit_amount": 900,
                                     "recurring[interval]": "month", "product_data[name]": "3DS"})  # fmt: skip
    sub = api.post("/v1/subscriptions", {"customer": customer["id"], "items[0][price]": price["id"],
                                          "default_payment_method": pm["id"],
                                          "expand[]": "latest_invoice"})  # fmt: skip
    invoice = sub["latest_invoice"]
    assert (sub["status"], invoice["status"], invoice["attempt_count"]) == ("incomplete", "open", 1)
    payments = api.get("/v1/invoice_payments", invoice=invoice["id"])["data"]
    pi = api.get(f"/v1/payment_intents/{payments[0]['payment']['payment_intent']}")
    assert pi["status"] == "requires_action"
    assert "invoice.payment_action_required" in api.events(invoice["id"])
    error = api.post(f"/v1/invoices/{invoice['id']}/pay", expect=402)["error"]
    assert error["code"] == "invoice_payment_intent_requires_action"
    refused = api.post("/v1/subscriptions", {"customer": customer["id"],
                                              "items[0][price]": price["id"],
                                              "default_payment_method": pm["id"],
                                              "payment_behavior": "error_if_incomplete"},
                       expect=402)  # fmt: skip
    assert refused["error"]["code"] == "invoice_payment_intent_requires_action"


# --- unpaid subscriptions ------------------------------------------------------------------------


def test_a_past_due_subscription_whose_latest_invoice_is_uncollectible_is_unpaid(
    api: Api, sandbox: SandboxHandle
) -> None:
    sandbox.seed(customers=200, seed=3)
    sub = api.get("/v1/subscriptions", status="past_due", limit=1)["data"][0]
    invoice = api.post(f"/v1/invoices/{sub['latest_invoice']}/mark_uncollectible")
    assert invoice["status"] == "uncollectible"
    unpaid = api.get(f"/v1/subscriptions/{sub['id']}")
    assert unpaid["status"] == "unpaid"
    assert sub["id"] in [s["id"] for s in api.get("/v1/subscriptions", status="unpaid")["data"]]
    change = api.get("/v1/events", type="customer.subscription.updated", limit=1)["data"][0]
    assert change["data"]["previous_attributes"] == {"status": "past_due"}
    # Stripe still takes payment of an uncollectible invoice: the subscription is active again
    paid = api.post(f"/v1/invoices/{invoice['id']}/pay", {"payment_method": "pm_card_visa"})
    assert paid["status"] == "paid"
    assert api.get(f"/v1/subscriptions/{sub['id']}")["status"] == "active"


def test_paying_the_first_invoice_activates_an_incomplete_subscription(api: Api) -> None:
    customer = api.post("/v1/customers", {"payment_method": "pm_card_visa"})
    price = api.post("/v1/prices", {"currency": "usd", "unit_amount": 900,
                                     "recurring[interval]": "month", "product_data[name]": "Late"})  # fmt: skip
    sub = api.post("/v1/subscriptions", {"customer": customer["id"], "items[0][price]": price["id"],
                                          "payment_behavior": "default_incomplete"})  # fmt: skip
    assert sub["status"] == "incomplete"
    pm = api.get(f"/v1/customers/{customer['id']}/payment_methods")["data"][0]
    api.post(f"/v1/invoices/{sub['latest_invoice']}/pay", {"payment_method": pm["id"]})
    assert api.get(f"/v1/subscriptions/{sub['id']}")["status"] == "active"


# --- voided invoices -----------------------------------------------------------------------------


def test_voiding_an_invoice_cancels_its_open_payment_intent(api: Api) -> None:
    customer = api.post("/v1/customers", {"payment_method": "pm_card_authenticationRequired"})
    pm = api.get(f"/v1/customers/{customer['id']}/payment_methods")["data"][0]
    api.post("/v1/invoiceitems", {"customer": customer["id"], "amount": 2500, "currency": "usd"})
    invoice = api.post("/v1/invoices", {"customer": customer["id"]})
    api.post(f"/v1/invoices/{invoice['id']}/pay", {"payment_method": pm["id"]}, expect=402)
    payment = api.get("/v1/invoice_payments", invoice=invoice["id"])["data"][0]
    pi_id = payment["payment"]["payment_intent"]
    assert api.get(f"/v1/payment_intents/{pi_id}")["status"] == "requires_action"
    assert api.post(f"/v1/invoices/{invoice['id']}/void")["status"] == "void"
    pi = api.get(f"/v1/payment_intents/{pi_id}")
    assert (pi["status"], pi["cancellation_reason"], pi["next_action"]) == (
        "canceled", "void_invoice", None,
    )  # fmt: skip
    assert api.get(f"/v1/invoice_payments/{payment['id']}")["status"] == "canceled"
    assert api.events(pi_id)[-1] == "payment_intent.canceled"


def test_voiding_a_paid_invoice_is_refused(api: Api) -> None:
    customer = api.post("/v1/customers", {"payment_method": "pm_card_visa"})
    pm = api.get(f"/v1/customers/{customer['id']}/payment_methods")["data"][0]
    api.post("/v1/invoiceitems", {"customer": customer["id"], "amount": 2500, "currency": "usd"})
    invoice = api.post("/v1/invoices", {"customer": customer["id"]})
    api.post(f"/v1/invoices/{invoice['id']}/pay", {"payment_method": pm["id"]})
    api.post(f"/v1/invoices/{invoice['id']}/void", expect=400)
