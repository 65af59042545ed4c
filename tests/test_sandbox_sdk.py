"""The official stripe SDK against the sandbox, unchanged: create, retrieve, modify, delete, list."""

from __future__ import annotations

from types import ModuleType

import pytest

from app.sandbox.versions import NEWEST_API_VERSION


def _customer_with_card(stripe: ModuleType, **fields: object) -> tuple[object, object]:
    customer = stripe.Customer.create(email="ada@example.com", name="Ada", **fields)
    pm = stripe.PaymentMethod.attach("pm_card_visa", customer=customer.id)
    customer = stripe.Customer.modify(
        customer.id, invoice_settings={"default_payment_method": pm.id}
    )
    return customer, pm


def test_products_crud_and_paging(stripe_sdk: ModuleType) -> None:
    stripe = stripe_sdk
    created = [
        stripe.Product.create(name=f"Product {i}", metadata={"i": str(i)}) for i in range(25)
    ]
    assert created[0].id.startswith("prod_")
    assert stripe.Product.retrieve(created[3].id).metadata["i"] == "3"
    modified = stripe.Product.modify(created[3].id, name="Renamed", active=False)
    assert (modified.name, modified.active) == ("Renamed", False)
    listed = [p.id for p in stripe.Product.list(limit=7).auto_paging_iter()]
    assert listed == [p.id for p in reversed(created)]
    assert [p.id for p in stripe.Product.list(active=False).data] == [created[3].id]
    deleted = stripe.Product.delete(created[0].id)
    assert deleted.deleted is True and deleted.id == created[0].id
    with pytest.raises(stripe.InvalidRequestError) as missing:
        stripe.Product.retrieve(created[0].id)
    assert missing.value.http_status == 404


def test_prices_crud_and_filters(stripe_sdk: ModuleType) -> None:
    stripe = stripe_sdk
    product = stripe.Product.create(name="Gold")
    other = stripe.Product.create(name="Silver")
    monthly = stripe.Price.create(
        product=product.id, currency="usd", unit_amount=1500, recurring={"interval": "month"}
    )
    yearly = stripe.Price.create(
        product=product.id, currency="eur", unit_amount=15000, recurring={"interval": "year"}
    )
    once = stripe.Price.create(product=other.id, currency="usd", unit_amount=500)
    assert (
        monthly.id.startswith("price_") and monthly.type == "recurring" and once.type == "one_time"
    )
    assert stripe.Price.retrieve(yearly.id).recurring.interval == "year"
    assert stripe.Price.modify(once.id, nickname="Setup", active=False).nickname == "Setup"
    assert {p.id for p in stripe.Price.list(product=product.id).auto_paging_iter()} == {
        monthly.id,
        yearly.id,
    }
    assert [p.id for p in stripe.Price.list(currency="eur").data] == [yearly.id]
    assert [p.id for p in stripe.Price.list(type="one_time").data] == [once.id]
    assert [p.id for p in stripe.Price.list(active=False).data] == [once.id]
    assert [p.id for p in stripe.Price.list(recurring={"interval": "month"}).data] == [monthly.id]
    with pytest.raises(stripe.InvalidRequestError) as in_use:
        stripe.Product.delete(product.id)
    assert in_use.value.code == "product_has_prices"


def test_customers_crud_and_delete_shape(stripe_sdk: ModuleType) -> None:
    stripe = stripe_sdk
    customer = stripe.Customer.create(
        email="grace@example.com",
        name="Grace",
        metadata={"tier": "gold"},
        address={"city": "Paris"},
    )
    assert customer.id.startswith("cus_") and customer.address.city == "Paris"
    modified = stripe.Customer.modify(customer.id, metadata={"tier": "", "region": "eu"})
    assert modified.metadata.to_dict() == {"region": "eu"}
    assert stripe.Customer.retrieve(customer.id).email == "grace@example.com"
    for i in range(12):
        stripe.Customer.create(email=f"c{i}@example.com")
    assert sum(1 for _ in stripe.Customer.list(limit=5).auto_paging_iter()) == 13
    assert [c.id for c in stripe.Customer.list(email="grace@example.com").data] == [customer.id]
    deleted = stripe.Customer.delete(customer.id)
    assert deleted.to_dict() == {"id": customer.id, "object": "customer", "deleted": True}
    assert stripe.Customer.retrieve(customer.id).deleted is True
    assert sum(1 for _ in stripe.Customer.list().auto_paging_iter()) == 12


def test_payment_methods_attach_list_detach(stripe_sdk: ModuleType) -> None:
    stripe = stripe_sdk
    customer = stripe.Customer.create(email="linus@example.com")
    from_token = stripe.PaymentMethod.create(type="card", card={"token": "tok_mastercard"})
    assert from_token.id.startswith("pm_") and from_token.card.brand == "mastercard"
    attached = stripe.PaymentMethod.attach(from_token.id, customer=customer.id)
    assert attached.customer == customer.id
    visa = stripe.PaymentMethod.attach("pm_card_visa", customer=customer.id)
    assert visa.id.startswith("pm_") and visa.id != "pm_card_visa" and visa.card.last4 == "4242"
    modified = stripe.PaymentMethod.modify(visa.id, billing_details={"name": "Linus"})
    assert (
        stripe.PaymentMethod.retrieve(visa.id).billing_details.name
        == modified.billing_details.name
        == "Linus"
    )
    by_customer = [
        pm.id for pm in stripe.Customer.list_payment_methods(customer.id).auto_paging_iter()
    ]
    by_filter = [pm.id for pm in stripe.PaymentMethod.list(customer=customer.id).auto_paging_iter()]
    assert by_customer == by_filter == [visa.id, from_token.id]
    stripe.Customer.modify(customer.id, invoice_settings={"default_payment_method": visa.id})
    assert stripe.PaymentMethod.detach(visa.id).customer is None
    assert stripe.Customer.retrieve(customer.id).invoice_settings.default_payment_method is None
    assert [pm.id for pm in stripe.PaymentMethod.list(customer=customer.id).data] == [from_token.id]


def test_subscription_create_bills_first_invoice(stripe_sdk: ModuleType) -> None:
    stripe = stripe_sdk
    customer, pm = _customer_with_card(stripe)
    price = stripe.Price.create(
        product_data={"name": "Pro"},
        currency="usd",
        unit_amount=2000,
        recurring={"interval": "month"},
    )
    sub = stripe.Subscription.create(
        customer=customer.id, items=[{"price": price.id, "quantity": 3}]
    )
    assert sub.id.startswith("sub_") and sub.status == "active"
    item = sub["items"].data[0]
    assert item.id.startswith("si_") and item.current_period_end > item.current_period_start
    invoice = stripe.Invoice.retrieve(
        sub.latest_invoice, expand=["payments.data.payment.payment_intent.latest_charge"]
    )
    assert invoice.status == "paid" and invoice.amount_paid == 6000
    assert invoice.parent.subscription_details.subscription == sub.id
    assert (
        "subscription" not in invoice
        and "charge" not in invoice
        and "payment_intent" not in invoice
    )
    line = invoice.lines.data[0]
    assert (
        line.id.startswith("il_")
        and line.parent.subscription_item_details.subscription_item == item.id
    )
    payment = invoice.payments.data[0]
    assert payment.id.startswith("inpay_")
    pi = payment.payment.payment_intent
    assert pi.status == "succeeded" and pi.amount == 6000 and pi.customer == customer.id
    charge = pi.latest_charge
    assert charge.amount == invoice.amount_paid and charge.payment_intent == pi.id
    assert charge.customer == customer.id and charge.payment_method == pm.id
    assert "invoice" not in charge and "invoice" not in pi
    assert [i.id for i in stripe.Invoice.list(subscription=sub.id).data] == [invoice.id]


def test_subscriptions_modify_list_cancel(stripe_sdk: ModuleType) -> None:
    stripe = stripe_sdk
    customer, _ = _customer_with_card(stripe)
    price = stripe.Price.create(
        product_data={"name": "Team"},
        currency="usd",
        unit_amount=900,
        recurring={"interval": "month"},
    )
    subs = [
        stripe.Subscription.create(customer=customer.id, items=[{"price": price.id}])
        for _ in range(3)
    ]
    assert (
        stripe.Subscription.modify(subs[0].id, metadata={"plan": "team"}).metadata["plan"] == "team"
    )
    assert stripe.Subscription.retrieve(subs[0].id).metadata["plan"] == "team"
    canceled = stripe.Subscription.cancel(subs[1].id)
    assert canceled.status == "canceled" and canceled.canceled_at is not None
    default = [s.id for s in stripe.Subscription.list(customer=customer.id).auto_paging_iter()]
    assert default == [subs[2].id, subs[0].id]
    every = [
        s.id
        for s in stripe.Subscription.list(customer=customer.id, status="all").auto_paging_iter()
    ]
    assert every == [s.id for s in reversed(subs)]
    assert [s.id for s in stripe.Subscription.list(status="canceled").data] == [subs[1].id]
    assert [s.id for s in stripe.Subscription.list(price=price.id, limit=1).data] == [subs[2].id]


def test_subscription_without_payment_method_is_incomplete(stripe_sdk: ModuleType) -> None:
    stripe = stripe_sdk
    customer = stripe.Customer.create(email="no-card@example.com")
    price = stripe.Price.create(
        product_data={"name": "Basic"},
        currency="usd",
        unit_amount=500,
        recurring={"interval": "month"},
    )
    sub = stripe.Subscription.create(
        customer=customer.id, items=[{"price": price.id}], expand=["latest_invoice"]
    )
    assert sub.status == "incomplete" and sub.latest_invoice.status == "open"


def test_invoices_create_finalize_pay_lines_delete(stripe_sdk: ModuleType) -> None:
    stripe = stripe_sdk
    customer, _ = _customer_with_card(stripe)
    price = stripe.Price.create(
        product_data={"name": "Consulting"}, currency="usd", unit_amount=12500
    )
    draft = stripe.Invoice.create(customer=customer.id, description="March")
    stripe.InvoiceItem.create(customer=customer.id, price=price.id, quantity=2, invoice=draft.id)
    assert draft.id.startswith("in_") and stripe.Invoice.retrieve(draft.id).amount_due == 25000
    assert stripe.Invoice.modify(draft.id, metadata={"po": "42"}).metadata["po"] == "42"
    finalized = stripe.Invoice.finalize_invoice(draft.id)
    assert finalized.status == "open" and finalized.number
    paid = stripe.Invoice.pay(draft.id)
    assert paid.status == "paid" and paid.amount_paid == 25000 and paid.amount_remaining == 0
    lines = list(stripe.Invoice.list_lines(draft.id).auto_paging_iter())
    assert [line.amount for line in lines] == [25000]
    other = stripe.Invoice.create(customer=customer.id)
    assert [i.id for i in stripe.Invoice.list(customer=customer.id).auto_paging_iter()] == [
        other.id,
        draft.id,
    ]
    assert [i.id for i in stripe.Invoice.list(status="paid").data] == [draft.id]
    assert stripe.Invoice.delete(other.id).deleted is True
    with pytest.raises(stripe.InvalidRequestError):
        stripe.Invoice.delete(draft.id)


def test_payment_intents_confirm_modify_cancel_list(stripe_sdk: ModuleType) -> None:
    stripe = stripe_sdk
    customer, pm = _customer_with_card(stripe)
    pi = stripe.PaymentIntent.create(
        amount=4200, currency="usd", customer=customer.id, payment_method=pm.id, confirm=True
    )
    assert pi.id.startswith("pi_") and pi.status == "succeeded" and pi.amount_received == 4200
    charge = stripe.Charge.retrieve(pi.latest_charge)
    assert charge.payment_intent == pi.id and charge.amount == 4200 and charge.paid is True
    assert stripe.PaymentIntent.modify(pi.id, metadata={"order": "7"}).metadata["order"] == "7"
    pending = stripe.PaymentIntent.create(amount=1000, currency="usd", customer=customer.id)
    assert pending.status == "requires_payment_method"
    confirmed = stripe.PaymentIntent.confirm(pending.id, payment_method="pm_card_mastercard")
    assert confirmed.status == "succeeded"
    to_cancel = stripe.PaymentIntent.create(amount=900, currency="usd")
    assert stripe.PaymentIntent.cancel(to_cancel.id).status == "canceled"
    listed = [p.id for p in stripe.PaymentIntent.list(customer=customer.id).auto_paging_iter()]
    assert listed == [pending.id, pi.id]
    assert stripe.PaymentIntent.retrieve(to_cancel.id).canceled_at is not None


def test_charges_create_modify_list(stripe_sdk: ModuleType) -> None:
    stripe = stripe_sdk
    customer, _ = _customer_with_card(stripe)
    by_token = stripe.Charge.create(
        amount=2500, currency="usd", source="tok_visa", description="One"
    )
    by_customer = stripe.Charge.create(amount=3500, currency="usd", customer=customer.id)
    assert (
        by_token.id.startswith("ch_")
        and by_token.status == "succeeded"
        and by_token.payment_intent is None
    )
    assert stripe.Charge.retrieve(by_customer.id).customer == customer.id
    assert stripe.Charge.modify(by_token.id, description="Two").description == "Two"
    assert [c.id for c in stripe.Charge.list(customer=customer.id).auto_paging_iter()] == [
        by_customer.id
    ]
    assert [c.id for c in stripe.Charge.list(limit=1).auto_paging_iter()] == [
        by_customer.id,
        by_token.id,
    ]


def test_tokens_and_declines(stripe_sdk: ModuleType) -> None:
    stripe = stripe_sdk
    token = stripe.Token.create(
        card={"number": "4000000000000002", "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    )
    assert token.id.startswith("tok_") and token.card.last4 == "0002"
    with pytest.raises(stripe.CardError) as declined:
        stripe.Charge.create(amount=1000, currency="usd", source=token.id)
    assert declined.value.http_status == 402 and declined.value.code == "card_declined"
    with pytest.raises(stripe.InvalidRequestError) as reused:
        stripe.Charge.create(amount=1000, currency="usd", source=token.id)
    assert reused.value.code == "token_already_used"
    failed = stripe.Charge.list(limit=1).data[0]
    assert failed.status == "failed" and failed.failure_code == "card_declined"


def test_events_record_changes(stripe_sdk: ModuleType) -> None:
    stripe = stripe_sdk
    customer, _ = _customer_with_card(stripe)
    price = stripe.Price.create(
        product_data={"name": "Pro"},
        currency="usd",
        unit_amount=2000,
        recurring={"interval": "month"},
    )
    sub = stripe.Subscription.create(customer=customer.id, items=[{"price": price.id}])
    types = [e.type for e in stripe.Event.list(limit=100).auto_paging_iter()]
    for expected in (
        "customer.created",
        "customer.updated",
        "payment_method.attached",
        "product.created",
        "price.created",
        "customer.subscription.created",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "payment_intent.succeeded",
        "charge.succeeded",
    ):
        assert expected in types
    paid = stripe.Event.list(type="invoice.paid").data
    assert len(paid) == 1 and paid[0].data.object.parent.subscription_details.subscription == sub.id
    assert (
        paid[0].id.startswith("evt_") and stripe.Event.retrieve(paid[0].id).type == "invoice.paid"
    )
    updated = stripe.Event.list(type="customer.updated").data[-1]
    assert "invoice_settings" in updated.data.previous_attributes
    assert {e.type for e in stripe.Event.list(type="invoice.*", limit=100).data} >= {
        "invoice.paid",
        "invoice.created",
    }


def test_an_sdk_pinned_to_a_newer_api_version_works(
    stripe_sdk: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    stripe = stripe_sdk
    monkeypatch.setattr(stripe, "api_version", "2026-11-18.endive")  # newer than the sandbox
    customer, pm = _customer_with_card(stripe)
    assert customer.last_response.headers["Sandbox-Rendered-As"] == NEWEST_API_VERSION
    product = stripe.Product.create(name="Newer")
    price = stripe.Price.create(
        product=product.id, currency="usd", unit_amount=900, recurring={"interval": "month"}
    )
    sub = stripe.Subscription.create(customer=customer.id, items=[{"price": price.id}])
    invoice = stripe.Invoice.retrieve(sub.latest_invoice, expand=["payments"])
    assert invoice.status == "paid" and invoice.parent.subscription_details.subscription == sub.id
    assert invoice.last_response.headers["Stripe-Version"] == NEWEST_API_VERSION
