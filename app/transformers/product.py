from app.transformers.common import Row, StripeDict, ref_id, stripe_columns, timestamp, transformer


@transformer("products")
def stripe_product_to_model(obj: StripeDict) -> Row:
    row = stripe_columns("products", obj, "product")
    row.update(
        name=obj.get("name"),
        description=obj.get("description"),
        active=obj.get("active"),
        type=obj.get("type"),
        default_price_id=ref_id(obj.get("default_price")),
        unit_label=obj.get("unit_label"),
        tax_code=ref_id(obj.get("tax_code")),
        images=obj.get("images"),
        updated=timestamp(obj.get("updated")),
    )
    return row
