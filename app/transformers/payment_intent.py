from app.transformers.common import (
    Row,
    StripeDict,
    amount,
    ref_id,
    stripe_columns,
    timestamp,
    transformer,
)


@transformer("payment_intents")
def stripe_payment_intent_to_model(obj: StripeDict) -> Row:
    row = stripe_columns("payment_intents", obj, "payment_intent")
    row.update(
        customer_id=ref_id(obj.get("customer")),
        invoice_id=ref_id(obj.get("invoice")),  # absent from basil (2025-03-31) on
        amount=amount(obj.get("amount")),
        amount_received=amount(obj.get("amount_received")),
        currency=obj.get("currency"),
        status=obj.get("status"),
        description=obj.get("description"),
        payment_method_id=ref_id(obj.get("payment_method")),
        latest_charge_id=ref_id(obj.get("latest_charge")),
        canceled_at=timestamp(obj.get("canceled_at")),
    )
    return row
