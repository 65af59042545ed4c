"""Stripe-shaped objects made from a number: the sample export, the tests and the benchmarks.

Every function is pure and deterministic (object `n` is always the same object), so files made
from them are reproducible and tests can rebuild the object they expect. Shapes follow Stripe's
current API (2025-03-31.basil and later) unless `legacy=True` asks for the older shape.
"""

from __future__ import annotations

from typing import Any

BASE_TIME = 1_735_689_600  # 2025-01-01T00:00:00Z
Obj = dict[str, Any]


def _id(prefix: str, n: int) -> str:
    return f"{prefix}_{n:014d}"


def _address(n: int) -> Obj:
    return {
        "city": "Lyon" if n % 2 else "Berlin",
        "country": "FR" if n % 2 else "DE",
        "line1": f"{n % 200 + 1} Rue de la Paix",
        "line2": None,
        "postal_code": f"{69000 + n % 999}",
        "state": None,
    }


def product(n: int) -> Obj:
    return {
        "id": _id("prod", n),
        "object": "product",
        "active": True,
        "created": BASE_TIME + n,
        "default_price": None,
        "description": f"Plan number {n}",
        "images": [],
        "livemode": False,
        "marketing_features": [],
        "metadata": {"fixture_tag": f"plan-{n}"},
        "name": f"Plan {n}",
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "type": "service",
        "unit_label": None,
        "updated": BASE_TIME + n,
        "url": None,
    }


def price(n: int, product_n: int | None = None, amount: int | None = None) -> Obj:
    amount = 1000 + 500 * (n % 5) if amount is None else amount
    return {
        "id": _id("price", n),
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": BASE_TIME + n,
        "currency": "eur",
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": None,
        "product": _id("prod", n if product_n is None else product_n),
        "recurring": {
            "interval": "month",
            "interval_count": 1,
            "meter": None,
            "trial_period_days": None,
            "usage_type": "licensed",
        },
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring",
        "unit_amount": amount,
        "unit_amount_decimal": str(amount),
    }


def customer(n: int, default_payment_method: str | None = None) -> Obj:
    return {
        "id": _id("cus", n),
        "object": "customer",
        "address": _address(n),
        "balance": 0,
        "created": BASE_TIME + n,
        "currency": "eur",
        "default_source": None,
        "delinquent": False,
        "description": f"Customer {n}, onboarded by the sample",
        "discount": None,
        "email": f"customer{n}@example.com",
        "invoice_prefix": f"C{n:07d}",
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": default_payment_method,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {"segment": "smb" if n % 3 else "enterprise", "source": "sample"},
        "name": f"Customer {n}",
        "next_invoice_sequence": 2,
        "phone": f"+3361234{n % 10000:04d}",
        "preferred_locales": ["fr"],
        "shipping": {"address": _address(n), "name": f"Customer {n}", "phone": None},
        "tax_exempt": "none",
        "test_clock": None,
    }


def deleted_customer(n: int) -> Obj:
    return {"id": _id("cus", n), "object": "customer", "deleted": True}


def _card(n: int) -> Obj:
    return {
        "brand": "visa",
        "checks": {
            "address_line1_check": None,
            "address_postal_code_check": None,
            "cvc_check": "pass",
        },
        "country": "FR",
        "display_brand": "visa",
        "exp_month": n % 12 + 1,
        "exp_year": 2030,
        "fingerprint": f"fp{n:014d}",
        "funding": "credit",
        "generated_from": None,
        "last4": "4242",
        "networks": {"available": ["visa"], "preferred": None},
        "three_d_secure_usage": {"supported": True},
        "wallet": None,
        "regulated_status": "unregulated",
    }


def payment_method(n: int, customer_n: int) -> Obj:
    return {
        "id": _id("pm", n),
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": {
            "address": _address(customer_n),
            "email": f"customer{customer_n}@example.com",
            "name": f"Customer {customer_n}",
            "phone": None,
            "tax_id": None,
        },
        "card": _card(n),
        "created": BASE_TIME + n,
        "customer": _id("cus", customer_n),
        "customer_account": None,
        "livemode": False,
        "metadata": {},
        "type": "card",
    }


def subscription_item(n: int, subscription_n: int, price_n: int) -> Obj:
    return {
        "id": _id("si", n),
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": BASE_TIME + n,
        "current_period_end": BASE_TIME + 2_678_400,
        "current_period_start": BASE_TIME,
        "discounts": [],
        "metadata": {},
        "price": price(price_n),
        "plan": None,
        "quantity": 1,
        "subscription": _id("sub", subscription_n),
        "tax_rates": [],
    }


def subscription(n: int, customer_n: int, price_n: int, legacy: bool = False) -> Obj:
    obj: Obj = {
        "id": _id("sub", n),
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"enabled": False, "liability": None},
        "billing_cycle_anchor": BASE_TIME,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically",
        "created": BASE_TIME + n,
        "currency": "eur",
        "customer": _id("cus", customer_n),
        "days_until_due": None,
        "default_payment_method": _id("pm", customer_n),
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "ended_at": None,
        "items": {
            "object": "list",
            "data": [subscription_item(n, n, price_n)],
            "has_more": False,
            "url": f"/v1/subscription_items?subscription={_id('sub', n)}",
        },
        "latest_invoice": _id("in", n),
        "livemode": False,
        "metadata": {},
        "start_date": BASE_TIME,
        "status": "active",
        "test_clock": None,
        "trial_end": None,
        "trial_start": None,
    }
    if legacy:
        obj["current_period_start"] = BASE_TIME
        obj["current_period_end"] = BASE_TIME + 2_678_400
    return obj


def invoice_line(
    n: int, invoice_n: int, subscription_n: int, price_n: int, amount: int, legacy: bool = False
) -> Obj:
    obj: Obj = {
        "id": _id("il", n),
        "object": "line_item",
        "amount": amount,
        "currency": "eur",
        "description": f"1 × Plan {price_n} (at €{amount / 100:.2f} / month)",
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": _id("in", invoice_n),
        "livemode": False,
        "metadata": {},
        "period": {"end": BASE_TIME + 2_678_400, "start": BASE_TIME},
        "quantity": 1,
        "subtotal": amount,
        "taxes": [],
        "pretax_credit_amounts": [],
    }
    if legacy:
        obj.update(
            subscription=_id("sub", subscription_n),
            subscription_item=_id("si", subscription_n),
            type="subscription",
            proration=False,
            price=price(price_n),
        )
    else:
        obj.update(
            parent={
                "type": "subscription_item_details",
                "invoice_item_details": None,
                "subscription_item_details": {
                    "invoice_item": None,
                    "proration": False,
                    "proration_details": None,
                    "subscription": _id("sub", subscription_n),
                    "subscription_item": _id("si", subscription_n),
                },
            },
            pricing={
                "type": "price_details",
                "price_details": {"price": _id("price", price_n), "product": _id("prod", price_n)},
                "unit_amount_decimal": str(amount),
            },
        )
    return obj


def invoice(
    n: int, customer_n: int, subscription_n: int, price_n: int, amount: int, legacy: bool = False
) -> Obj:
    obj: Obj = {
        "id": _id("in", n),
        "object": "invoice",
        "account_country": "FR",
        "account_name": "Sample SAS",
        "amount_due": amount,
        "amount_paid": amount,
        "amount_remaining": 0,
        "attempt_count": 1,
        "attempted": True,
        "auto_advance": False,
        "billing_reason": "subscription_create",
        "collection_method": "charge_automatically",
        "created": BASE_TIME + n,
        "currency": "eur",
        "customer": _id("cus", customer_n),
        "customer_email": f"customer{customer_n}@example.com",
        "customer_name": f"Customer {customer_n}",
        "description": None,
        "due_date": None,
        "hosted_invoice_url": None,
        "lines": {
            "object": "list",
            "data": [invoice_line(n, n, subscription_n, price_n, amount, legacy)],
            "has_more": False,
            "url": f"/v1/invoices/{_id('in', n)}/lines",
        },
        "livemode": False,
        "metadata": {},
        "number": f"C{customer_n:07d}-0001",
        "period_end": BASE_TIME,
        "period_start": BASE_TIME,
        "status": "paid",
        "status_transitions": {
            "finalized_at": BASE_TIME + n,
            "marked_uncollectible_at": None,
            "paid_at": BASE_TIME + n,
            "voided_at": None,
        },
        "subtotal": amount,
        "total": amount,
    }
    if legacy:
        obj.update(
            subscription=_id("sub", subscription_n),
            charge=_id("ch", n),
            payment_intent=_id("pi", n),
            paid=True,
        )
    else:
        obj.update(
            parent={
                "type": "subscription_details",
                "quote_details": None,
                "subscription_details": {
                    "metadata": {},
                    "subscription": _id("sub", subscription_n),
                },
            },
            payments={
                "object": "list",
                "has_more": False,
                "url": "/v1/invoice_payments",
                "data": [
                    {
                        "id": _id("inpay", n),
                        "object": "invoice_payment",
                        "amount_paid": amount,
                        "amount_requested": amount,
                        "created": BASE_TIME + n,
                        "currency": "eur",
                        "invoice": _id("in", n),
                        "is_default": True,
                        "livemode": False,
                        "payment": {"type": "payment_intent", "payment_intent": _id("pi", n)},
                        "status": "paid",
                        "status_transitions": {"canceled_at": None, "paid_at": BASE_TIME + n},
                    }
                ],
            },
        )
    return obj


def payment_intent(n: int, customer_n: int, amount: int, invoice_n: int | None = None) -> Obj:
    obj: Obj = {
        "id": _id("pi", n),
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": amount,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic",
        "client_secret": f"{_id('pi', n)}_secret_sample",
        "confirmation_method": "automatic",
        "created": BASE_TIME + n,
        "currency": "eur",
        "customer": _id("cus", customer_n),
        "description": "Subscription creation",
        "last_payment_error": None,
        "latest_charge": _id("ch", n),
        "livemode": False,
        "metadata": {},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": _id("pm", customer_n),
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded",
        "transfer_data": None,
        "transfer_group": None,
    }
    if invoice_n is not None:  # API versions before 2025-03-31 linked the invoice here
        obj["invoice"] = _id("in", invoice_n)
    return obj


def charge(
    n: int,
    customer_n: int,
    amount: int,
    payment_intent_n: int | None = None,
    invoice_n: int | None = None,
) -> Obj:
    obj: Obj = {
        "id": _id("ch", n),
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": _id("txn", n),
        "billing_details": {
            "address": _address(customer_n),
            "email": f"customer{customer_n}@example.com",
            "name": f"Customer {customer_n}",
            "phone": None,
            "tax_id": None,
        },
        "calculated_statement_descriptor": "SAMPLE SAS",
        "captured": True,
        "created": BASE_TIME + n,
        "currency": "eur",
        "customer": _id("cus", customer_n),
        "description": "Subscription creation",
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "fraud_details": {},
        "livemode": False,
        "metadata": {},
        "on_behalf_of": None,
        "outcome": {
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "risk_score": n % 100,
            "seller_message": "Payment complete.",
            "type": "authorized",
        },
        "paid": True,
        "payment_intent": None if payment_intent_n is None else _id("pi", payment_intent_n),
        "payment_method": _id("pm", customer_n),
        "payment_method_details": {
            "card": {
                **_card(customer_n),
                "amount_authorized": amount,
                "authorization_code": f"{n % 999999:06d}",
                "extended_authorization": {"status": "disabled"},
                "incremental_authorization": {"status": "unavailable"},
                "installments": None,
                "mandate": None,
                "multicapture": {"status": "unavailable"},
                "network": "visa",
                "network_token": {"used": False},
                "network_transaction_id": f"{n:015d}",
                "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
                "three_d_secure": None,
            },
            "type": "card",
        },
        "radar_options": {},
        "receipt_email": f"customer{customer_n}@example.com",
        "receipt_number": None,
        "receipt_url": f"https://pay.example.com/receipts/payment/{_id('ch', n)}",
        "refunded": False,
        "refunds": {
            "object": "list",
            "data": [],
            "has_more": False,
            "url": f"/v1/charges/{_id('ch', n)}/refunds",
        },
        "review": None,
        "shipping": None,
        "source": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded",
        "transfer_data": None,
        "transfer_group": None,
    }
    if invoice_n is not None:  # API versions before 2025-03-31 linked the invoice here
        obj["invoice"] = _id("in", invoice_n)
    return obj


def sample_export(customers: int = 12) -> dict[str, list[Obj]]:
    """A small, linked export of all eight resources, with the cases users meet in real data:
    an older API version's shapes (every third customer), a deleted customer a charge still
    points at, and a canceled subscription."""
    plans = 3
    out: dict[str, list[Obj]] = {
        name: []
        for name in (
            "products",
            "prices",
            "customers",
            "payment_methods",
            "subscriptions",
            "invoices",
            "payment_intents",
            "charges",
        )
    }
    for p in range(1, plans + 1):
        out["products"].append(product(p))
        out["prices"].append(price(p, amount=900 * p + 100))
    for c in range(1, customers + 1):
        plan = c % plans + 1
        amount = 900 * plan + 100
        legacy = c % 3 == 0
        out["customers"].append(customer(c, default_payment_method=_id("pm", c)))
        out["payment_methods"].append(payment_method(c, c))
        sub = subscription(c, c, plan, legacy=legacy)
        if c == customers:
            sub.update(
                status="canceled", canceled_at=BASE_TIME + 86_400, ended_at=BASE_TIME + 86_400
            )
        out["subscriptions"].append(sub)
        out["invoices"].append(invoice(c, c, c, plan, amount, legacy=legacy))
        out["payment_intents"].append(payment_intent(c, c, amount, invoice_n=c if legacy else None))
        out["charges"].append(
            charge(c, c, amount, payment_intent_n=c, invoice_n=c if legacy else None)
        )
    # a one-off charge of a customer since deleted: Stripe no longer lists the customer
    ghost = customers + 1
    out["charges"].append(charge(ghost, ghost, 4200))
    # Stripe lists newest first
    for objects in out.values():
        objects.sort(key=lambda o: o.get("created", 0), reverse=True)
    return out


def list_envelope(objects: list[Obj], url: str) -> Obj:
    return {"object": "list", "data": objects, "has_more": False, "url": url}
