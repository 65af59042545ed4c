from app.transformers.common import Row, StripeDict, dig, ref_id, stripe_columns, transformer


@transformer("payment_methods")
def stripe_payment_method_to_model(obj: StripeDict) -> Row:
    row = stripe_columns("payment_methods", obj, "payment_method")
    card = obj.get("card")
    row.update(
        customer_id=ref_id(obj.get("customer")),
        type=obj.get("type"),
        card_brand=dig(card, "brand"),
        card_last4=dig(card, "last4"),
        card_exp_month=dig(card, "exp_month"),
        card_exp_year=dig(card, "exp_year"),
        card_fingerprint=dig(card, "fingerprint"),
        billing_details=obj.get("billing_details"),
    )
    return row
