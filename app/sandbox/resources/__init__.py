"""The endpoints, one module per resource family, and the one route table that maps paths to them.

Handlers take the request's `Context`, the decoded params and the ids from the path, and return
the response body; they raise `StripeError`s for Stripe's error answers. HTTP lives in server.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from app.sandbox.context import Context
from app.sandbox.listing import list_page
from app.sandbox.params import Params
from app.sandbox.resources.account import retrieve_account
from app.sandbox.resources.catalog import (
    create_price,
    create_product,
    delete_product,
    list_prices,
    list_products,
    update_price,
    update_product,
)
from app.sandbox.resources.customers import (
    attach_payment_method,
    create_customer,
    create_payment_method,
    create_token,
    delete_customer,
    detach_payment_method,
    list_customer_payment_methods,
    list_customers,
    list_payment_methods,
    retrieve_customer,
    retrieve_customer_payment_method,
    retrieve_payment_method,
    retrieve_token,
    update_customer,
    update_payment_method,
)
from app.sandbox.resources.events import list_events
from app.sandbox.resources.invoices import (
    create_invoice,
    create_invoice_item,
    delete_invoice,
    finalize_invoice,
    list_invoice_lines,
    list_invoice_payments,
    list_invoices,
    mark_invoice_uncollectible,
    pay_invoice,
    update_invoice,
    void_invoice,
)
from app.sandbox.resources.payments import (
    cancel_payment_intent,
    capture_payment_intent,
    confirm_payment_intent,
    create_charge,
    create_payment_intent,
    list_charges,
    list_payment_intents,
    update_charge,
    update_payment_intent,
)
from app.sandbox.resources.refunds import (
    create_refund,
    list_charge_refunds,
    list_refunds,
    update_refund,
)
from app.sandbox.resources.subscriptions import (
    cancel_subscription,
    create_subscription,
    list_subscription_items,
    list_subscriptions,
    update_subscription,
)
from app.sandbox.resources.webhook_endpoints import (
    create_webhook_endpoint,
    delete_webhook_endpoint,
    list_webhook_endpoints,
    update_webhook_endpoint,
)
from app.sandbox.store import Obj

Handler = Callable[..., Obj]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: Handler
    pattern: re.Pattern[str]


def _getter(resource: str) -> Handler:
    def retrieve(ctx: Context, params: Params, object_id: str) -> Obj:
        return ctx.store.get(resource, object_id)

    return retrieve


def _lister(resource: str, url: str) -> Handler:
    def list_all(ctx: Context, params: Params) -> Obj:
        return list_page(ctx.store.table(resource), params, url)

    return list_all


_ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/v1/account", retrieve_account),
    ("GET", "/v1/products", list_products),
    ("POST", "/v1/products", create_product),
    ("GET", "/v1/products/{id}", _getter("product")),
    ("POST", "/v1/products/{id}", update_product),
    ("DELETE", "/v1/products/{id}", delete_product),
    ("GET", "/v1/prices", list_prices),
    ("POST", "/v1/prices", create_price),
    ("GET", "/v1/prices/{id}", _getter("price")),
    ("POST", "/v1/prices/{id}", update_price),
    ("GET", "/v1/customers", list_customers),
    ("POST", "/v1/customers", create_customer),
    ("GET", "/v1/customers/{id}", retrieve_customer),
    ("POST", "/v1/customers/{id}", update_customer),
    ("DELETE", "/v1/customers/{id}", delete_customer),
    ("GET", "/v1/customers/{id}/payment_methods", list_customer_payment_methods),
    ("GET", "/v1/customers/{id}/payment_methods/{id}", retrieve_customer_payment_method),
    ("POST", "/v1/tokens", create_token),
    ("GET", "/v1/tokens/{id}", retrieve_token),
    ("GET", "/v1/payment_methods", list_payment_methods),
    ("POST", "/v1/payment_methods", create_payment_method),
    ("GET", "/v1/payment_methods/{id}", retrieve_payment_method),
    ("POST", "/v1/payment_methods/{id}", update_payment_method),
    ("POST", "/v1/payment_methods/{id}/attach", attach_payment_method),
    ("POST", "/v1/payment_methods/{id}/detach", detach_payment_method),
    ("GET", "/v1/subscriptions", list_subscriptions),
    ("POST", "/v1/subscriptions", create_subscription),
    ("GET", "/v1/subscriptions/{id}", _getter("subscription")),
    ("POST", "/v1/subscriptions/{id}", update_subscription),
    ("DELETE", "/v1/subscriptions/{id}", cancel_subscription),
    ("GET", "/v1/subscription_items", list_subscription_items),
    ("GET", "/v1/subscription_items/{id}", _getter("subscription_item")),
    ("GET", "/v1/invoices", list_invoices),
    ("POST", "/v1/invoices", create_invoice),
    ("GET", "/v1/invoices/{id}", _getter("invoice")),
    ("POST", "/v1/invoices/{id}", update_invoice),
    ("DELETE", "/v1/invoices/{id}", delete_invoice),
    ("GET", "/v1/invoices/{id}/lines", list_invoice_lines),
    ("POST", "/v1/invoices/{id}/finalize", finalize_invoice),
    ("POST", "/v1/invoices/{id}/pay", pay_invoice),
    ("POST", "/v1/invoices/{id}/void", void_invoice),
    ("POST", "/v1/invoices/{id}/mark_uncollectible", mark_invoice_uncollectible),
    ("POST", "/v1/invoiceitems", create_invoice_item),
    ("GET", "/v1/invoice_payments", list_invoice_payments),
    ("GET", "/v1/invoice_payments/{id}", _getter("invoice_payment")),
    ("GET", "/v1/payment_intents", list_payment_intents),
    ("POST", "/v1/payment_intents", create_payment_intent),
    ("GET", "/v1/payment_intents/{id}", _getter("payment_intent")),
    ("POST", "/v1/payment_intents/{id}", update_payment_intent),
    ("POST", "/v1/payment_intents/{id}/confirm", confirm_payment_intent),
    ("POST", "/v1/payment_intents/{id}/capture", capture_payment_intent),
    ("POST", "/v1/payment_intents/{id}/cancel", cancel_payment_intent),
    ("GET", "/v1/charges", list_charges),
    ("POST", "/v1/charges", create_charge),
    ("GET", "/v1/charges/{id}", _getter("charge")),
    ("POST", "/v1/charges/{id}", update_charge),
    ("GET", "/v1/charges/{id}/refunds", list_charge_refunds),
    ("GET", "/v1/refunds", list_refunds),
    ("POST", "/v1/refunds", create_refund),
    ("GET", "/v1/refunds/{id}", _getter("refund")),
    ("POST", "/v1/refunds/{id}", update_refund),
    ("GET", "/v1/events", list_events),
    ("GET", "/v1/events/{id}", _getter("event")),
    ("GET", "/v1/webhook_endpoints", list_webhook_endpoints),
    ("POST", "/v1/webhook_endpoints", create_webhook_endpoint),
    ("GET", "/v1/webhook_endpoints/{id}", _getter("webhook_endpoint")),
    ("POST", "/v1/webhook_endpoints/{id}", update_webhook_endpoint),
    ("DELETE", "/v1/webhook_endpoints/{id}", delete_webhook_endpoint),
]

ROUTES: list[Route] = [
    Route(method, template, handler, re.compile("^" + template.replace("{id}", "([^/]+)") + "$"))
    for method, template, handler in _ROUTES
]


_EXACT: dict[tuple[str, str], Route] = {
    (route.method, route.template): route for route in ROUTES if "{" not in route.template
}


def match(method: str, path: str) -> tuple[Route, tuple[str, ...]] | None:
    """The route for a request, or None when no endpoint has that method and path."""
    exact = _EXACT.get((method, path))
    if exact is not None:
        return exact, ()
    for route in ROUTES:
        if route.method == method:
            found = route.pattern.match(path)
            if found:
                return route, found.groups()
    return None


def path_known(path: str) -> bool:
    return any(route.pattern.match(path) for route in ROUTES)
