from app.transformers.common import Row, StripeDict, amount, ref_id, stripe_columns, transformer


@transformer("charges")
def stripe_charge_to_model(obj: StripeDict) -> Row:
    row = stripe_columns("charges", obj, "charge")
    row.update(
        customer_id=ref_id(obj.get("customer")),
        payment_intent_id=ref_id(obj.get("payment_intent")),
        invoice_id=ref_id(obj.get("invoice")),  # absent from basil (2025-03-31) on
        amount=amount(obj.get("amount")),
        amount_captured=amount(obj.get("amount_captured")),
        amount_refunded=amount(obj.get("amount_refunded")),
        currency=obj.get("currency"),
        status=obj.get("status"),
        paid=obj.get("paid"),
        captured=obj.get("captured"),
        refunded=obj.get("refunded"),
        disputed=obj.get("disputed"),
        description=obj.get("description"),
        failure_code=obj.get("failure_code"),
        failure_message=obj.get("failure_message"),
        payment_method_id=ref_id(obj.get("payment_method")),
        receipt_email=obj.get("receipt_email"),
        billing_details=obj.get("billing_details"),
        outcome=obj.get("outcome"),
    )
    return row
