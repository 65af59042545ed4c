from typing import Any

from app.transformers.common import (
    Row,
    StripeDict,
    amount,
    dig,
    ref_id,
    stripe_columns,
    timestamp,
    transformer,
)


def invoice_subscription_id(obj: StripeDict) -> str | None:
    """`invoice.subscription` before API 2025-03-31.basil, `parent.subscription_details` after."""
    return ref_id(obj.get("subscription")) or ref_id(
        dig(obj, "parent", "subscription_details", "subscription")
    )


def invoice_payment_intent_id(obj: StripeDict) -> str | None:
    """`invoice.payment_intent` before basil; after it, the default (else first) invoice payment."""
    old = ref_id(obj.get("payment_intent"))
    if old:
        return old
    payments: Any = dig(obj, "payments", "data") or []
    if not isinstance(payments, list):
        raise TypeError("`payments.data` is not a list")
    chosen = next((p for p in payments if dig(p, "is_default")), payments[0] if payments else None)
    return ref_id(dig(chosen, "payment", "payment_intent"))


@transformer("invoices")
def stripe_invoice_to_model(obj: StripeDict) -> Row:
    row = stripe_columns("invoices", obj, "invoice")
    transitions = obj.get("status_transitions")
    row.update(
        customer_id=ref_id(obj.get("customer")),
        subscription_id=invoice_subscription_id(obj),
        number=obj.get("number"),
        status=obj.get("status"),
        billing_reason=obj.get("billing_reason"),
        collection_method=obj.get("collection_method"),
        currency=obj.get("currency"),
        amount_due=amount(obj.get("amount_due")),
        amount_paid=amount(obj.get("amount_paid")),
        amount_remaining=amount(obj.get("amount_remaining")),
        subtotal=amount(obj.get("subtotal")),
        total=amount(obj.get("total")),
        customer_email=obj.get("customer_email"),
        period_start=timestamp(obj.get("period_start")),
        period_end=timestamp(obj.get("period_end")),
        due_date=timestamp(obj.get("due_date")),
        paid_at=timestamp(dig(transitions, "paid_at")),
        payment_intent_id=invoice_payment_intent_id(obj),
        hosted_invoice_url=obj.get("hosted_invoice_url"),
        status_transitions=transitions,
    )
    return row


@transformer("invoice_lines")
def stripe_invoice_line_to_model(obj: StripeDict) -> Row:
    row = stripe_columns("invoice_lines", obj, "line_item")
    parent = obj.get("parent")
    # basil moved subscription, subscription_item, proration and price under parent/pricing
    details = dig(parent, "subscription_item_details") or dig(parent, "invoice_item_details") or {}
    price = obj.get("price") or dig(obj, "pricing", "price_details", "price")
    proration = obj.get("proration")
    row.update(
        invoice_id=ref_id(obj.get("invoice")),
        subscription_id=ref_id(obj.get("subscription")) or ref_id(dig(details, "subscription")),
        subscription_item_id=ref_id(obj.get("subscription_item"))
        or ref_id(dig(details, "subscription_item")),
        price_id=ref_id(price),
        description=obj.get("description"),
        amount=amount(obj.get("amount")),
        currency=obj.get("currency"),
        quantity=obj.get("quantity"),
        proration=proration if proration is not None else dig(details, "proration"),
        period_start=timestamp(dig(obj, "period", "start")),
        period_end=timestamp(dig(obj, "period", "end")),
    )
    return row
