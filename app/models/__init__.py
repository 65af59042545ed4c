"""One module per Stripe resource; importing this package registers every table."""

from app.models.charge import Charge
from app.models.customer import Customer
from app.models.invoice import Invoice, InvoiceLine
from app.models.payment_intent import PaymentIntent
from app.models.payment_method import PaymentMethod
from app.models.price import Price
from app.models.product import Product
from app.models.subscription import Subscription, SubscriptionItem
from app.models.sync import StripeEvent, SyncState

__all__ = [
    "Charge",
    "Customer",
    "Invoice",
    "InvoiceLine",
    "PaymentIntent",
    "PaymentMethod",
    "Price",
    "Product",
    "StripeEvent",
    "Subscription",
    "SubscriptionItem",
    "SyncState",
]
