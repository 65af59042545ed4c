"""Builders of Stripe-shaped objects, with the keys of Stripe's current API (basil and later).

Each builder takes plain values (the API layer parses params, the seeder draws them) and returns a
new dict. Constant nested values are shared between objects on purpose: objects are never
edited below the top level (see store.py), and sharing keeps a seeded store of a million objects
small.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]

EMPTY_ADDRESS: Obj = {
    "city": None,
    "country": None,
    "line1": None,
    "line2": None,
    "postal_code": None,
    "state": None,
}
_CARD_CHECKS: Obj = {
    "address_line1_check": None,
    "address_postal_code_check": None,
    "cvc_check": "pass",
}

_PAYMENT_INTENT_CARD_OPTIONS: Obj = {
    "installments": None,
    "mandate_options": None,
    "network": None,
    "request_three_d_secure": "automatic",
}


@dataclass(frozen=True)
class TestCard:
    brand: str
    last4: str
    funding: str = "credit"
    country: str = "US"
    decline_code: str | None = None
    # 3D Secure on every payment: a payment intent waits in `requires_action` for the customer
    authentication: bool = False

    @property
    def error_code(self) -> str:
        # Stripe reports these three declines under their own error code, the rest as card_declined.
        if self.decline_code in ("expired_card", "incorrect_cvc", "processing_error"):
            return self.decline_code
        return "card_declined"


# The pm_card_<name> / tok_<name> test family, as in Stripe's testing docs.
TEST_CARDS: dict[str, TestCard] = {
    "visa": TestCard("visa", "4242"),
    "visa_debit": TestCard("visa", "5556", "debit"),
    "mastercard": TestCard("mastercard", "4444"),
    "mastercard_debit": TestCard("mastercard", "8210", "debit"),
    "amex": TestCard("amex", "8431"),
    "discover": TestCard("discover", "1117"),
    "jcb": TestCard("jcb", "0000", country="JP"),
    "unionpay": TestCard("unionpay", "0005", country="CN"),
    "chargeDeclined": TestCard("visa", "0002", decline_code="generic_decline"),
    "chargeDeclinedInsufficientFunds": TestCard("visa", "9995", decline_code="insufficient_funds"),
    "chargeDeclinedLostCard": TestCard("visa", "9987", decline_code="lost_card"),
    "chargeDeclinedStolenCard": TestCard("visa", "9979", decline_code="stolen_card"),
    "chargeDeclinedExpiredCard": TestCard("visa", "0069", decline_code="expired_card"),
    "chargeDeclinedIncorrectCvc": TestCard("visa", "0127", decline_code="incorrect_cvc"),
    "chargeDeclinedProcessingError": TestCard("visa", "0119", decline_code="processing_error"),
    "chargeDeclinedFraudulent": TestCard("visa", "0019", decline_code="fraudulent"),
    "authenticationRequired": TestCard("visa", "3184", authentication=True),
    "threeDSecure2Required": TestCard("visa", "3220", authentication=True),
}
_CARDS_BY_LAST4: dict[str, TestCard] = {card.last4: card for card in TEST_CARDS.values()}
CARD_NUMBERS: dict[str, str] = {
    "4242424242424242": "visa",
    "4000056655665556": "visa_debit",
    "5555555555554444": "mastercard",
    "5200828282828210": "mastercard_debit",
    "378282246310005": "amex",
    "371449635398431": "amex",
    "6011111111111117": "discover",
    "3566002020360505": "jcb",
    "6200000000000005": "unionpay",
    "4000000000000002": "chargeDeclined",
    "4000000000009995": "chargeDeclinedInsufficientFunds",
    "4000000000009987": "chargeDeclinedLostCard",
    "4000000000009979": "chargeDeclinedStolenCard",
    "4000000000000069": "chargeDeclinedExpiredCard",
    "4000000000000127": "chargeDeclinedIncorrectCvc",
    "4000000000000119": "chargeDeclinedProcessingError",
    "4100000000000019": "chargeDeclinedFraudulent",
    "4000002760003184": "authenticationRequired",
    "4000000000003220": "threeDSecure2Required",
}
DECLINE_MESSAGES: dict[str, str] = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "lost_card": "Your card was declined.",
    "stolen_card": "Your card was declined.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "Your card's security code is incorrect.",
    "processing_error": "An error occurred while processing your card. Try again in a little bit.",
    "fraudulent": "Your card was declined.",
    "authentication_required": "Your card was declined. This transaction requires authentication.",
}
# What a card that requires authentication does outside a payment intent (`POST /v1/charges`).
AUTHENTICATION_DECLINE = TestCard("visa", "3184", decline_code="authentication_required")


def three_d_secure_action(payment_intent_id: str) -> Obj:
    """`next_action` of a payment intent waiting for the customer to authenticate."""
    source = "src_" + payment_intent_id.removeprefix("pi_")
    return {
        "type": "use_stripe_sdk",
        "use_stripe_sdk": {
            "type": "three_d_secure_redirect",
            "stripe_js": f"https://hooks.stripe.com/redirect/authenticate/{source}",
            "source": source,
        },
    }


def card_for(card: Obj) -> TestCard:
    """The test card behind a stored card dict (its decline behaviour travels with last4)."""
    # last4 is unique across the test family, and a token's card spells brands differently.
    test_card = _CARDS_BY_LAST4.get(str(card.get("last4")))
    if test_card is not None:
        return test_card
    return TestCard(str(card.get("brand")).lower(), str(card.get("last4")))


def add_interval(timestamp: int, interval: str, count: int = 1) -> int:
    """Stripe's billing arithmetic: months keep the day of month, clamped to the month's end."""
    if interval == "day":
        return timestamp + 86400 * count
    if interval == "week":
        return timestamp + 7 * 86400 * count
    moment = datetime.fromtimestamp(timestamp, UTC)
    months = count * (12 if interval == "year" else 1)
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def product(
    object_id: str, created: int, livemode: bool, *, name: str, active: bool = True,
    description: str | None = None, metadata: Obj | None = None, default_price: str | None = None,
    images: list[str] | None = None, statement_descriptor: str | None = None,
    unit_label: str | None = None, url: str | None = None, tax_code: str | None = None,
    shippable: bool | None = None,
) -> Obj:  # fmt: skip
    return {
        "id": object_id,
        "object": "product",
        "active": active,
        "created": created,
        "default_price": default_price,
        "description": description,
        "images": images or [],
        "livemode": livemode,
        "marketing_features": [],
        "metadata": metadata or {},
        "name": name,
        "package_dimensions": None,
        "shippable": shippable,
        "statement_descriptor": statement_descriptor,
        "tax_code": tax_code,
        "tax_details": None,
        "type": "service",
        "unit_label": unit_label,
        "updated": created,
        "url": url,
    }


def recurring(interval: str, interval_count: int = 1, trial_period_days: int | None = None) -> Obj:
    return {
        "interval": interval,
        "interval_count": interval_count,
        "meter": None,
        "trial_period_days": trial_period_days,
        "usage_type": "licensed",
    }


def price(
    object_id: str, created: int, livemode: bool, *, product: str, currency: str,
    unit_amount: int | None, recurring: Obj | None = None, active: bool = True,
    nickname: str | None = None, lookup_key: str | None = None, metadata: Obj | None = None,
    tax_behavior: str = "unspecified",
) -> Obj:  # fmt: skip
    return {
        "id": object_id,
        "object": "price",
        "active": active,
        "billing_scheme": "per_unit",
        "created": created,
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": livemode,
        "lookup_key": lookup_key,
        "metadata": metadata or {},
        "nickname": nickname,
        "product": product,
        "recurring": recurring,
        "tax_behavior": tax_behavior,
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring" if recurring else "one_time",
        "unit_amount": unit_amount,
        "unit_amount_decimal": None if unit_amount is None else str(unit_amount),
    }


def plan_of(price_obj: Obj) -> Obj:
    """The legacy `plan` view of a recurring price that subscription items still carry."""
    rec = price_obj.get("recurring") or recurring("month")
    return {
        "id": price_obj["id"],
        "object": "plan",
        "active": price_obj["active"],
        "amount": price_obj["unit_amount"],
        "amount_decimal": price_obj["unit_amount_decimal"],
        "billing_scheme": price_obj["billing_scheme"],
        "created": price_obj["created"],
        "currency": price_obj["currency"],
        "interval": rec["interval"],
        "interval_count": rec["interval_count"],
        "livemode": price_obj["livemode"],
        "metadata": price_obj["metadata"],
        "meter": None,
        "nickname": price_obj["nickname"],
        "product": price_obj["product"],
        "tiers_mode": None,
        "transform_usage": None,
        "trial_period_days": rec["trial_period_days"],
        "usage_type": rec["usage_type"],
    }


def customer(
    object_id: str, created: int, livemode: bool, *, email: str | None = None,
    name: str | None = None, phone: str | None = None, description: str | None = None,
    address: Obj | None = None, metadata: Obj | None = None, invoice_prefix: str,
    default_payment_method: str | None = None, preferred_locales: list[str] | None = None,
    shipping: Obj | None = None, tax_exempt: str = "none", currency: str | None = None,
) -> Obj:  # fmt: skip
    return {
        "id": object_id,
        "object": "customer",
        "address": address,
        "balance": 0,
        "created": created,
        "currency": currency,
        "default_source": None,
        "delinquent": False,
        "description": description,
        "discount": None,
        "email": email,
        "invoice_prefix": invoice_prefix,
        "invoice_settings": invoice_settings(default_payment_method),
        "livemode": livemode,
        "metadata": metadata or {},
        "name": name,
        "next_invoice_sequence": 1,
        "phone": phone,
        "preferred_locales": preferred_locales or [],
        "shipping": shipping,
        "tax_exempt": tax_exempt,
        "test_clock": None,
    }


def invoice_settings(default_payment_method: str | None) -> Obj:
    return {
        "custom_fields": None,
        "default_payment_method": default_payment_method,
        "footer": None,
        "rendering_options": None,
    }


def card_details(card: TestCard, exp_month: int = 12, exp_year: int = 2034) -> Obj:
    return {
        "brand": card.brand,
        "checks": _CARD_CHECKS,
        "country": card.country,
        "display_brand": card.brand,
        "exp_month": exp_month,
        "exp_year": exp_year,
        "fingerprint": f"fp{card.brand[:4]}{card.last4}{card.funding[:2]}",
        "funding": card.funding,
        "generated_from": None,
        "last4": card.last4,
        "networks": {"available": [card.brand], "preferred": None},
        "regulated_status": "unregulated",
        "three_d_secure_usage": {"supported": True},
        "wallet": None,
    }


def billing_details(name: str | None = None, email: str | None = None) -> Obj:
    return {
        "address": EMPTY_ADDRESS,
        "email": email,
        "name": name,
        "phone": None,
        "tax_id": None,
    }


def payment_method(
    object_id: str, created: int, livemode: bool, *, card: Obj, customer: str | None = None,
    billing: Obj | None = None, metadata: Obj | None = None,
) -> Obj:  # fmt: skip
    return {
        "id": object_id,
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": billing or billing_details(),
        "card": card,
        "created": created,
        "customer": customer,
        "customer_account": None,
        "livemode": livemode,
        "metadata": metadata or {},
        "type": "card",
    }


def token(
    object_id: str, created: int, livemode: bool, *, card_id: str, test_card: TestCard
) -> Obj:
    return {
        "id": object_id,
        "object": "token",
        "card": {
            "id": card_id,
            "object": "card",
            "address_city": None,
            "address_country": None,
            "address_line1": None,
            "address_line1_check": None,
            "address_line2": None,
            "address_state": None,
            "address_zip": None,
            "address_zip_check": None,
            "brand": {"amex": "American Express", "mastercard": "MasterCard"}.get(
                test_card.brand, test_card.brand.title()
            ),
            "country": test_card.country,
            "cvc_check": "unchecked",
            "dynamic_last4": None,
            "exp_month": 12,
            "exp_year": 2034,
            "fingerprint": f"fp{test_card.brand[:4]}{test_card.last4}{test_card.funding[:2]}",
            "funding": test_card.funding,
            "last4": test_card.last4,
            "metadata": {},
            "name": None,
            "networks": {"preferred": None},
            "regulated_status": "unregulated",
            "tokenization_method": None,
        },
        "client_ip": "127.0.0.1",
        "created": created,
        "livemode": livemode,
        "type": "card",
        "used": False,
    }


def subscription_item(
    object_id: str, created: int, *, subscription: str, price_obj: Obj, quantity: int,
    period_start: int, period_end: int, metadata: Obj | None = None,
) -> Obj:  # fmt: skip
    return {
        "id": object_id,
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": created,
        "current_period_end": period_end,
        "current_trial": None,
        "current_period_start": period_start,
        "discounts": [],
        "metadata": metadata or {},
        "plan": plan_of(price_obj),
        "price": price_obj,
        "quantity": quantity,
        "subscription": subscription,
        "tax_rates": [],
    }


def item_list(subscription_id: str, items: list[Obj]) -> Obj:
    return {
        "object": "list",
        "data": items,
        "has_more": False,
        "total_count": len(items),
        "url": f"/v1/subscription_items?subscription={subscription_id}",
    }


_SUBSCRIPTION_PAYMENT_SETTINGS: Obj = {
    "payment_method_options": None,
    "payment_method_types": None,
    "save_default_payment_method": "off",
}
_SUBSCRIPTION_INVOICE_SETTINGS: Obj = {
    "account_tax_ids": None,
    "custom_fields": None,
    "description": None,
    "footer": None,
    "issuer": {"type": "self"},
}
_AUTOMATIC_TAX_OFF: Obj = {"disabled_reason": None, "enabled": False, "liability": None}
_INVOICE_AUTOMATIC_TAX_OFF: Obj = {**_AUTOMATIC_TAX_OFF, "provider": None, "status": None}
_TRIAL_SETTINGS: Obj = {
    "end_behavior": {"billing_cycle_anchor": None, "missing_payment_method": "create_invoice"}
}


def cancellation_details(
    reason: str | None = None, comment: str | None = None, feedback: str | None = None
) -> Obj:
    return {"comment": comment, "feedback": feedback, "feedback_option": None, "reason": reason}


def subscription(
    object_id: str, created: int, livemode: bool, *, customer: str, currency: str,
    items: list[Obj], status: str, start_date: int, billing_cycle_anchor: int,
    default_payment_method: str | None = None, metadata: Obj | None = None,
    description: str | None = None, collection_method: str = "charge_automatically",
    days_until_due: int | None = None, trial_start: int | None = None,
    trial_end: int | None = None, cancel_at_period_end: bool = False,
) -> Obj:  # fmt: skip
    return {
        "id": object_id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": _AUTOMATIC_TAX_OFF,
        "billing_cycle_anchor": billing_cycle_anchor,
        "billing_cycle_anchor_config": None,
        # `updated_at` only once the mode was changed: Stripe leaves it out, never sends null
        "billing_mode": {"flexible": None, "type": "classic"},
        "billing_schedules": [],
        "billing_thresholds": None,
        "cancel_at": None,
        "cancel_at_period_end": cancel_at_period_end,
        "canceled_at": None,
        "cancellation_details": cancellation_details(),
        "collection_method": collection_method,
        "created": created,
        "currency": currency,
        "customer": customer,
        "customer_account": None,
        "days_until_due": days_until_due,
        "default_payment_method": default_payment_method,
        "default_source": None,
        "default_tax_rates": [],
        "description": description,
        "discounts": [],
        "ended_at": None,
        "invoice_settings": _SUBSCRIPTION_INVOICE_SETTINGS,
        "items": item_list(object_id, items),
        "latest_invoice": None,
        "livemode": livemode,
        "managed_payments": None,
        "metadata": metadata or {},
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": _SUBSCRIPTION_PAYMENT_SETTINGS,
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": start_date,
        "status": status,
        "test_clock": None,
        "transfer_data": None,
        "trial_end": trial_end,
        "trial_settings": _TRIAL_SETTINGS,
        "trial_start": trial_start,
    }


def line_item(
    object_id: str, livemode: bool, *, invoice: str, amount: int, currency: str,
    description: str, period_start: int, period_end: int, quantity: int, price_obj: Obj,
    subscription: str | None = None, subscription_item: str | None = None,
    invoice_item: str | None = None,
) -> Obj:  # fmt: skip
    if subscription_item is not None:
        parent: Obj = {
            "type": "subscription_item_details",
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": subscription,
                "subscription_item": subscription_item,
            },
        }
    else:
        parent = {
            "type": "invoice_item_details",
            "invoice_item_details": {
                "invoice_item": invoice_item,
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": subscription,
            },
            "subscription_item_details": None,
        }
    return {
        "id": object_id,
        "object": "line_item",
        "amount": amount,
        "currency": currency,
        "description": description,
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": invoice,
        "livemode": livemode,
        "metadata": {},
        "parent": parent,
        "period": {"end": period_end, "start": period_start},
        "pretax_credit_amounts": [],
        "pricing": {
            "price_details": {"price": price_obj["id"], "product": price_obj["product"]},
            "type": "price_details",
            "unit_amount_decimal": price_obj["unit_amount_decimal"],
        },
        "quantity": quantity,
        "quantity_decimal": str(quantity),
        "subscription": subscription,
        "subtotal": amount,
        "taxes": [],
    }


def invoice_item(
    object_id: str, livemode: bool, *, line: Obj, customer: str, date: int,
    invoice: str | None, metadata: Obj | None,
) -> Obj:  # fmt: skip
    """An invoice item, from the line it becomes on its invoice."""
    return {
        "id": object_id,
        "object": "invoiceitem",
        "amount": line["amount"],
        "currency": line["currency"],
        "customer": customer,
        "customer_account": None,
        "date": date,
        "description": line["description"],
        "discountable": True,
        "discounts": [],
        "invoice": invoice,
        "livemode": livemode,
        "metadata": metadata or {},
        "parent": None,
        "period": line["period"],
        "pricing": line["pricing"],
        "proration": False,
        "quantity": line["quantity"],
        "quantity_decimal": line["quantity_decimal"],
        "tax_rates": [],
        "test_clock": None,
    }


def invoice(
    object_id: str, created: int, livemode: bool, *, customer_obj: Obj, currency: str,
    lines: list[Obj], billing_reason: str, period_start: int, period_end: int,
    subscription: str | None = None, collection_method: str = "charge_automatically",
    description: str | None = None, metadata: Obj | None = None, auto_advance: bool = False,
    default_payment_method: str | None = None, days_until_due: int | None = None,
) -> Obj:  # fmt: skip
    total = sum(line["amount"] for line in lines)
    parent = None
    if subscription is not None:
        parent = {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"metadata": {}, "subscription": subscription},
        }
    return {
        "id": object_id,
        "object": "invoice",
        "account_country": "US",
        "account_name": "Stripe Sandbox",
        "account_tax_ids": None,
        "amount_due": total,
        "amount_overpaid": 0,
        "amount_paid": 0,
        "amount_remaining": total,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": auto_advance,
        "automatic_tax": _INVOICE_AUTOMATIC_TAX_OFF,
        "automatically_finalizes_at": None,
        "billing_reason": billing_reason,
        "collection_method": collection_method,
        "created": created,
        "currency": currency,
        "custom_fields": None,
        "customer": customer_obj["id"],
        "customer_account": None,
        "customer_address": customer_obj["address"],
        "customer_email": customer_obj["email"],
        "customer_name": customer_obj["name"],
        "customer_phone": customer_obj["phone"],
        "customer_shipping": customer_obj["shipping"],
        "customer_tax_exempt": customer_obj["tax_exempt"],
        "customer_tax_ids": [],
        "default_payment_method": default_payment_method,
        "default_source": None,
        "default_tax_rates": [],
        "description": description,
        "discounts": [],
        "due_date": None if days_until_due is None else created + 86400 * days_until_due,
        "effective_at": None,
        "ending_balance": None,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {
            "object": "list",
            "data": lines,
            "has_more": False,
            "total_count": len(lines),
            "url": f"/v1/invoices/{object_id}/lines",
        },
        "livemode": livemode,
        "metadata": metadata or {},
        "next_payment_attempt": None,
        "number": None,
        "on_behalf_of": None,
        "parent": parent,
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": period_end,
        "period_start": period_start,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": "draft",
        "status_transitions": {
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "subtotal": total,
        "subtotal_excluding_tax": total,
        "test_clock": None,
        "total": total,
        "total_discount_amounts": [],
        "total_excluding_tax": total,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": None,
    }


def invoice_payment(
    object_id: str, created: int, livemode: bool, *, invoice: str, payment_intent: str,
    amount: int, currency: str, paid_at: int | None,
) -> Obj:  # fmt: skip
    return {
        "id": object_id,
        "object": "invoice_payment",
        "amount_paid": amount if paid_at is not None else None,
        "amount_requested": amount,
        "created": created,
        "currency": currency,
        "invoice": invoice,
        "is_default": True,
        "livemode": livemode,
        "payment": {"type": "payment_intent", "payment_intent": payment_intent},
        "status": "paid" if paid_at is not None else "open",
        "status_transitions": {"canceled_at": None, "paid_at": paid_at},
    }


def payment_intent(
    object_id: str, created: int, livemode: bool, *, amount: int, currency: str,
    customer: str | None, payment_method: str | None, description: str | None = None,
    metadata: Obj | None = None, capture_method: str = "automatic",
    receipt_email: str | None = None, setup_future_usage: str | None = None,
    statement_descriptor: str | None = None,
) -> Obj:  # fmt: skip
    return {
        "id": object_id,
        "object": "payment_intent",
        "allowed_payment_method_types": None,
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": capture_method,
        "client_secret": f"{object_id}_secret_{object_id[-12:]}sandbox",
        "confirmation_method": "automatic",
        "created": created,
        "currency": currency,
        "customer": customer,
        "customer_account": None,
        "description": description,
        "excluded_payment_method_types": None,
        "last_payment_error": None,
        "latest_charge": None,
        "livemode": livemode,
        "managed_payments": None,
        "metadata": metadata or {},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": payment_method,
        "payment_method_configuration_details": None,
        "payment_method_options": {"card": _PAYMENT_INTENT_CARD_OPTIONS},
        "payment_method_types": ["card"],
        "payment_record": None,
        "processing": None,
        "receipt_email": receipt_email,
        "review": None,
        "setup_future_usage": setup_future_usage,
        "shipping": None,
        "source": None,
        "statement_descriptor": statement_descriptor,
        "statement_descriptor_suffix": None,
        "status": "requires_payment_method" if payment_method is None else "requires_confirmation",
        "transfer_data": None,
        "transfer_group": None,
    }


_OUTCOME_OK: Obj = {
    "advice_code": None,
    "network_advice_code": None,
    "network_decline_code": None,
    "network_status": "approved_by_network",
    "reason": None,
    "risk_level": "normal",
    "risk_score": 32,
    "seller_message": "Payment complete.",
    "type": "authorized",
}


def charge(
    object_id: str, created: int, livemode: bool, *, amount: int, currency: str,
    customer: str | None, payment_intent: str | None, payment_method: str, card: Obj,
    billing: Obj, balance_transaction: str | None, description: str | None = None,
    metadata: Obj | None = None, receipt_email: str | None = None,
    declined: TestCard | None = None, receipt_number: str | None = None,
) -> Obj:  # fmt: skip
    if declined is None:
        outcome = _OUTCOME_OK
    else:
        outcome = {
            **_OUTCOME_OK,
            "network_status": "declined_by_network",
            "reason": declined.decline_code,
            "seller_message": "The bank did not return any further details with this decline.",
            "type": "issuer_declined",
        }
    succeeded = declined is None
    failure_code = None if declined is None else declined.error_code
    failure_message = (
        None if declined is None else DECLINE_MESSAGES[declined.decline_code or "generic_decline"]
    )
    return {
        "id": object_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount if succeeded else 0,
        "amount_refunded": 0,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": balance_transaction if succeeded else None,
        "billing_details": billing,
        "calculated_statement_descriptor": "STRIPE SANDBOX",
        "captured": succeeded,
        "created": created,
        "currency": currency,
        "customer": customer,
        "description": description,
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": failure_code,
        "failure_message": failure_message,
        "fraud_details": {},
        "livemode": livemode,
        "metadata": metadata or {},
        "on_behalf_of": None,
        "outcome": outcome,
        "paid": succeeded,
        "payment_intent": payment_intent,
        "payment_method": payment_method,
        "payment_method_details": {
            "card": {
                "amount_authorized": amount if succeeded else None,
                "authorization_code": None,
                "brand": card["brand"],
                "checks": _CARD_CHECKS,
                "country": card["country"],
                "electronic_commerce_indicator": None,
                "exp_month": card["exp_month"],
                "exp_year": card["exp_year"],
                "extended_authorization": {"status": "disabled"},
                "fingerprint": card["fingerprint"],
                "funding": card["funding"],
                "incremental_authorization": {"status": "unavailable"},
                "installments": None,
                "last4": card["last4"],
                "mandate": None,
                "multicapture": {"status": "unavailable"},
                "network": card["brand"],
                "network_token": {"used": False},
                "network_transaction_id": None,
                "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
                "regulated_status": "unregulated",
                "three_d_secure": None,
                "transaction_link_id": None,
                "wallet": None,
            },
            "type": "card",
        },
        "receipt_email": receipt_email,
        "receipt_number": receipt_number,
        "receipt_url": f"https://pay.stripe.com/receipts/sandbox/{object_id}",
        "refunded": False,
        "review": None,
        "shipping": None,
        "source": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded" if succeeded else "failed",
        "transfer_data": None,
        "transfer_group": None,
    }


def refund(
    object_id: str, created: int, livemode: bool, *, charge: Obj, amount: int,
    balance_transaction: str, reason: str | None = None, metadata: Obj | None = None,
) -> Obj:  # fmt: skip
    """A card refund, which Stripe settles at once (`succeeded`)."""
    return {
        "id": object_id,
        "object": "refund",
        "amount": amount,
        "balance_transaction": balance_transaction,
        "charge": charge["id"],
        "created": created,
        "currency": charge["currency"],
        "customer": charge["customer"],
        "customer_account": None,
        # a refund soon after the charge reverses the authorization rather than crediting it
        "destination_details": {"card": {"type": "reversal"}, "type": "card"},
        "metadata": metadata or {},
        "payment_intent": charge["payment_intent"],
        "payment_method": charge["payment_method"],
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
    }


def event(
    object_id: str, created: int, livemode: bool, *, event_type: str, data_object: Obj,
    previous_attributes: Obj | None, api_version: str, request_id: str | None,
    idempotency_key: str | None,
) -> Obj:  # fmt: skip
    data: Obj = {"object": data_object}
    if previous_attributes:
        data["previous_attributes"] = previous_attributes
    return {
        "id": object_id,
        "object": "event",
        "api_version": api_version,
        "created": created,
        "data": data,
        "livemode": livemode,
        "pending_webhooks": 0,
        "request": {"id": request_id, "idempotency_key": idempotency_key},
        "type": event_type,
    }


def webhook_endpoint(
    object_id: str, created: int, livemode: bool, *, url: str, enabled_events: list[str],
    description: str | None, metadata: Obj | None, api_version: str | None,
) -> Obj:  # fmt: skip
    return {
        "id": object_id,
        "object": "webhook_endpoint",
        "api_version": api_version,
        "application": None,
        "created": created,
        "description": description,
        "enabled_events": enabled_events,
        "livemode": livemode,
        "metadata": metadata or {},
        "status": "enabled",
        "url": url,
    }
