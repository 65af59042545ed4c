"""Pure functions: one Stripe object (a dict) in, one row (column name → value) out.

A row builds a model with `Model(**row)` after renaming `metadata` to `metadata_`; the bulk
loader uses the dict as it is.
"""

from app.transformers.charge import stripe_charge_to_model
from app.transformers.customer import stripe_customer_to_model
from app.transformers.invoice import stripe_invoice_line_to_model, stripe_invoice_to_model
from app.transformers.payment_intent import stripe_payment_intent_to_model
from app.transformers.payment_method import stripe_payment_method_to_model
from app.transformers.price import stripe_price_to_model
from app.transformers.product import stripe_product_to_model
from app.transformers.subscription import (
    stripe_subscription_item_to_model,
    stripe_subscription_to_model,
)

__all__ = [
    "stripe_charge_to_model",
    "stripe_customer_to_model",
    "stripe_invoice_line_to_model",
    "stripe_invoice_to_model",
    "stripe_payment_intent_to_model",
    "stripe_payment_method_to_model",
    "stripe_price_to_model",
    "stripe_product_to_model",
    "stripe_subscription_item_to_model",
    "stripe_subscription_to_model",
]
