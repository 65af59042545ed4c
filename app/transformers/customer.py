from app.transformers.common import (
    Row,
    StripeDict,
    amount,
    dig,
    ref_id,
    stripe_columns,
    transformer,
)


@transformer("customers")
def stripe_customer_to_model(obj: StripeDict) -> Row:
    row = stripe_columns("customers", obj, "customer")
    invoice_settings = obj.get("invoice_settings")
    row.update(
        email=obj.get("email"),
        name=obj.get("name"),
        phone=obj.get("phone"),
        description=obj.get("description"),
        currency=obj.get("currency"),
        balance=amount(obj.get("balance")),
        delinquent=obj.get("delinquent"),
        tax_exempt=obj.get("tax_exempt"),
        default_payment_method_id=ref_id(dig(invoice_settings, "default_payment_method")),
        address=obj.get("address"),
        shipping=obj.get("shipping"),
        invoice_settings=invoice_settings,
    )
    return row
