from typing import Any

from app.transformers.common import (
    Row,
    StripeDict,
    dig,
    ref_id,
    stripe_columns,
    timestamp,
    transformer,
)


@transformer("subscriptions")
def stripe_subscription_to_model(obj: StripeDict) -> Row:
    row = stripe_columns("subscriptions", obj, "subscription")
    items = dig(obj, "items", "data") or []
    # basil (2025-03-31) moved the period onto each item; keep the subscription's columns filled
    first_item: Any = items[0] if items else None
    row.update(
        customer_id=ref_id(obj.get("customer")),
        status=obj.get("status"),
        currency=obj.get("currency"),
        collection_method=obj.get("collection_method"),
        cancel_at_period_end=obj.get("cancel_at_period_end"),
        current_period_start=timestamp(
            obj.get("current_period_start", dig(first_item, "current_period_start"))
        ),
        current_period_end=timestamp(
            obj.get("current_period_end", dig(first_item, "current_period_end"))
        ),
        start_date=timestamp(obj.get("start_date")),
        canceled_at=timestamp(obj.get("canceled_at")),
        ended_at=timestamp(obj.get("ended_at")),
        trial_start=timestamp(obj.get("trial_start")),
        trial_end=timestamp(obj.get("trial_end")),
        default_payment_method_id=ref_id(obj.get("default_payment_method")),
        latest_invoice_id=ref_id(obj.get("latest_invoice")),
    )
    return row


@transformer("subscription_items")
def stripe_subscription_item_to_model(obj: StripeDict) -> Row:
    row = stripe_columns("subscription_items", obj, "subscription_item")
    row.update(
        subscription_id=ref_id(obj.get("subscription")),
        price_id=ref_id(obj.get("price")),
        quantity=obj.get("quantity"),
        current_period_start=timestamp(obj.get("current_period_start")),
        current_period_end=timestamp(obj.get("current_period_end")),
        plan=obj.get("plan"),
    )
    return row
