from app.transformers.common import (
    Row,
    StripeDict,
    amount,
    dig,
    ref_id,
    stripe_columns,
    transformer,
)


@transformer("prices")
def stripe_price_to_model(obj: StripeDict) -> Row:
    row = stripe_columns("prices", obj, "price")
    recurring = obj.get("recurring")
    decimal = obj.get("unit_amount_decimal")
    row.update(
        product_id=ref_id(obj.get("product")),
        active=obj.get("active"),
        currency=obj.get("currency"),
        unit_amount=amount(obj.get("unit_amount")),
        unit_amount_decimal=None if decimal is None else str(decimal),
        type=obj.get("type"),
        billing_scheme=obj.get("billing_scheme"),
        recurring_interval=dig(recurring, "interval"),
        recurring_interval_count=dig(recurring, "interval_count"),
        recurring=recurring,
        lookup_key=obj.get("lookup_key"),
        nickname=obj.get("nickname"),
        tax_behavior=obj.get("tax_behavior"),
    )
    return row
