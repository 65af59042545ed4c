"""Customers, their card payment methods, and the tokens cards are made from."""

from __future__ import annotations

import re
from typing import Any

from app.sandbox import billing, objects
from app.sandbox.context import Context
from app.sandbox.errors import CardError, InvalidRequestError, NotFoundError
from app.sandbox.listing import list_page
from app.sandbox.objects import CARD_NUMBERS, TEST_CARDS, TestCard
from app.sandbox.params import (
    Params,
    as_dict,
    as_int,
    as_list,
    as_str,
    merged_metadata,
    param_name,
)
from app.sandbox.resources.common import (
    address_param,
    customer_of,
    deleted_stub,
    plain_changes,
)
from app.sandbox.resources.subscriptions import end_subscription
from app.sandbox.store import Obj

_CUSTOMER_FIELDS = ("email", "name", "phone", "description", "tax_exempt", "currency")


def create_customer(ctx: Context, params: Params) -> Obj:
    cus = objects.customer(
        ctx.new_id("cus"),
        ctx.now,
        ctx.livemode,
        email=as_str(params, "email"),
        name=as_str(params, "name"),
        phone=as_str(params, "phone"),
        description=as_str(params, "description"),
        address=address_param(params, "address"),
        metadata=merged_metadata({}, params),
        invoice_prefix=as_str(params, "invoice_prefix") or ctx.new_id("x")[2:10].upper(),
        preferred_locales=[str(v) for v in as_list(params, "preferred_locales")],
        shipping=as_dict(params, "shipping"),
        tax_exempt=as_str(params, "tax_exempt") or "none",
    )
    ctx.insert("customer", cus, "customer.created")
    _apply_customer_payment_params(ctx, cus, params)
    return cus


def _apply_customer_payment_params(ctx: Context, cus: Obj, params: Params) -> None:
    pm_ref = as_str(params, "payment_method")
    if pm_ref:
        _attach(ctx, billing.resolve_payment_method(ctx, pm_ref, param="payment_method"), cus)
    source = as_str(params, "source")
    if source:
        # Sources are legacy; a token becomes an attached card payment method set as default_source.
        pm = billing.resolve_payment_method(ctx, source, param="source")
        _attach(ctx, pm, cus)
        ctx.update("customer", cus, {"default_source": pm["id"]}, "customer.updated")
    settings = as_dict(params, "invoice_settings")
    if settings is not None and "default_payment_method" in settings:
        pm_id = as_str(settings, "default_payment_method") or None
        if pm_id is not None:
            pm = ctx.store.get(
                "payment_method", pm_id, param="invoice_settings[default_payment_method]"
            )
            if pm["customer"] != cus["id"]:
                raise InvalidRequestError(
                    f"The customer does not have a payment method with the ID {pm_id}. The "
                    "payment method must be attached to the customer.",
                    code="resource_missing",
                    param="invoice_settings[default_payment_method]",
                )
        new_settings = {**cus["invoice_settings"], "default_payment_method": pm_id}
        ctx.update("customer", cus, {"invoice_settings": new_settings}, "customer.updated")


def retrieve_customer(ctx: Context, params: Params, customer_id: str) -> Obj:
    cus = ctx.store.table("customer").get(customer_id)
    if cus is None:
        if customer_id in ctx.store.tombstones:
            return deleted_stub(customer_id, "customer")
        raise NotFoundError(f"No such customer: '{customer_id}'")
    return cus


def update_customer(ctx: Context, params: Params, customer_id: str) -> Obj:
    cus = ctx.store.get("customer", customer_id)
    changes = plain_changes(params, _CUSTOMER_FIELDS)
    if "address" in params:
        changes["address"] = address_param(params, "address")
    if "shipping" in params:
        changes["shipping"] = as_dict(params, "shipping")
    if "preferred_locales" in params:
        changes["preferred_locales"] = [str(v) for v in as_list(params, "preferred_locales")]
    if "default_source" in params:
        source = as_str(params, "default_source") or None
        if source is not None:
            pm = ctx.store.get("payment_method", source, param="default_source")
            if pm["customer"] != customer_id:
                raise InvalidRequestError(
                    f"Customer {customer_id} does not have a linked source with ID {source}.",
                    code="resource_missing",
                    param="default_source",
                )
        changes["default_source"] = source
    metadata = merged_metadata(cus["metadata"], params)
    if metadata is not None:
        changes["metadata"] = metadata
    ctx.update("customer", cus, changes, "customer.updated")
    _apply_customer_payment_params(ctx, cus, params)
    return cus


def delete_customer(ctx: Context, params: Params, customer_id: str) -> Obj:
    cus = ctx.store.get("customer", customer_id)
    subs = ctx.store.table("subscription")
    for sub_id in sorted(subs.ids_where("customer", customer_id)):
        sub = subs.by_id[sub_id]
        if sub["status"] not in ("canceled", "incomplete_expired"):
            end_subscription(ctx, sub, reason="cancellation_requested")
    pms = ctx.store.table("payment_method")
    for pm_id in sorted(pms.ids_where("customer", customer_id)):
        ctx.update(
            "payment_method", pms.by_id[pm_id], {"customer": None}, "payment_method.detached"
        )
    ctx.store.table("customer").delete(customer_id)
    ctx.store.tombstones[customer_id] = "customer"
    ctx.emit("customer.deleted", cus)
    return deleted_stub(customer_id, "customer")


def list_customers(ctx: Context, params: Params) -> Obj:
    table = ctx.store.table("customer")
    email = as_str(params, "email")
    candidates = table.ids_where("email", email) if email is not None else None
    return list_page(table, params, "/v1/customers", candidates=candidates)


def list_customer_payment_methods(ctx: Context, params: Params, customer_id: str) -> Obj:
    ctx.store.get("customer", customer_id)
    return _list_payment_methods(
        ctx, params, customer_id, f"/v1/customers/{customer_id}/payment_methods"
    )


def retrieve_customer_payment_method(
    ctx: Context, params: Params, customer_id: str, pm_id: str
) -> Obj:
    ctx.store.get("customer", customer_id)
    pm = ctx.store.get("payment_method", pm_id)
    if pm["customer"] != customer_id:
        raise NotFoundError(f"No such PaymentMethod: '{pm_id}'")
    return pm


# --- tokens and payment methods ----------------------------------------------------------------


def _luhn_ok(number: str) -> bool:
    digits = [int(d) for d in number][::-1]
    total = sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
    return total % 10 == 0


def _card_from_params(card: Params, prefix: str) -> tuple[TestCard, int, int]:
    number = re.sub(r"[\s-]", "", as_str(card, "number", required=True, prefix=prefix) or "")
    exp_month = as_int(card, "exp_month", required=True, prefix=prefix) or 12
    exp_year = as_int(card, "exp_year", required=True, prefix=prefix) or 2034
    # ASCII digits only: `isdigit()` alone takes superscripts such as `²`, which int() refuses
    if (
        not (number.isascii() and number.isdigit())
        or not 12 <= len(number) <= 19
        or not _luhn_ok(number)
    ):
        raise CardError(
            "Your card number is incorrect.",
            code="incorrect_number",
            param=param_name(prefix, "number"),
        )
    if not 1 <= exp_month <= 12:
        raise CardError(
            "Your card's expiration month is invalid.",
            code="invalid_expiry_month",
            param=param_name(prefix, "exp_month"),
        )
    name = CARD_NUMBERS.get(number)
    if name is not None:
        return TEST_CARDS[name], exp_month, exp_year
    brand = {"4": "visa", "5": "mastercard", "3": "amex", "6": "discover"}.get(number[0], "unknown")
    return TestCard(brand, number[-4:]), exp_month, exp_year


def create_token(ctx: Context, params: Params) -> Obj:
    card = as_dict(params, "card")
    if card is None:
        raise InvalidRequestError(
            "Missing required param: card.", code="parameter_missing", param="card"
        )
    test_card, exp_month, exp_year = _card_from_params(card, "card[")
    tok = objects.token(
        ctx.new_id("tok"), ctx.now, ctx.livemode, card_id=ctx.new_id("card"), test_card=test_card
    )
    tok["card"] = {**tok["card"], "exp_month": exp_month, "exp_year": exp_year}
    return ctx.insert("token", tok)


def retrieve_token(ctx: Context, params: Params, token_id: str) -> Obj:
    test_card = TEST_CARDS.get(token_id.removeprefix("tok_"))
    if test_card is not None:
        return objects.token(
            token_id, ctx.now, ctx.livemode, card_id="card_" + token_id[4:], test_card=test_card
        )
    return ctx.store.get("token", token_id)


def create_payment_method(ctx: Context, params: Params) -> Obj:
    pm_type = as_str(params, "type", required=True)
    if pm_type != "card":
        raise InvalidRequestError(
            f"The sandbox supports card payment methods only, not '{pm_type}'.", param="type"
        )
    card = as_dict(params, "card")
    if card is None:
        raise InvalidRequestError(
            "Missing required param: card.", code="parameter_missing", param="card"
        )
    token_ref = as_str(card, "token")
    if token_ref:
        test_card = billing.card_of_token(ctx, token_ref, param="card[token]")
        exp_month, exp_year = 12, 2034
    else:
        test_card, exp_month, exp_year = _card_from_params(card, "card[")
    details = as_dict(params, "billing_details") or {}
    billing_info = objects.billing_details(as_str(details, "name"), as_str(details, "email"))
    if "address" in details:
        billing_info["address"] = address_param(details, "address")
    if "phone" in details:
        billing_info["phone"] = as_str(details, "phone")
    return billing.new_card_payment_method(
        ctx,
        test_card,
        billing=billing_info,
        metadata=merged_metadata({}, params),
        exp_month=exp_month,
        exp_year=exp_year,
    )


def retrieve_payment_method(ctx: Context, params: Params, pm_id: str) -> Obj:
    if pm_id.startswith("pm_card_"):
        return billing.resolve_payment_method(ctx, pm_id, param="payment_method")
    return ctx.store.get("payment_method", pm_id)


def update_payment_method(ctx: Context, params: Params, pm_id: str) -> Obj:
    pm = ctx.store.get("payment_method", pm_id)
    changes: dict[str, Any] = {}
    details = as_dict(params, "billing_details")
    if details is not None:
        merged = dict(pm["billing_details"])
        for key in ("name", "email", "phone"):
            if key in details:
                merged[key] = as_str(details, key) or None
        if "address" in details:
            merged["address"] = address_param(details, "address")
        changes["billing_details"] = merged
    card = as_dict(params, "card")
    if card is not None:
        new_card = dict(pm["card"])
        for key in ("exp_month", "exp_year"):
            if key in card:
                new_card[key] = as_int(card, key, prefix="card[")
        changes["card"] = new_card
    metadata = merged_metadata(pm["metadata"], params)
    if metadata is not None:
        changes["metadata"] = metadata
    return ctx.update("payment_method", pm, changes, "payment_method.updated")


def _attach(ctx: Context, pm: Obj, cus: Obj) -> Obj:
    if pm["customer"] == cus["id"]:
        return pm
    if pm["customer"] is not None:
        raise InvalidRequestError(
            "The payment method you provided has already been attached to a customer.",
            code="payment_method_unexpected_state",
        )
    return ctx.update("payment_method", pm, {"customer": cus["id"]}, "payment_method.attached")


def attach_payment_method(ctx: Context, params: Params, pm_id: str) -> Obj:
    cus = customer_of(ctx, params, required=True)
    assert cus is not None
    pm = billing.resolve_payment_method(ctx, pm_id, param="payment_method")
    return _attach(ctx, pm, cus)


def detach_payment_method(ctx: Context, params: Params, pm_id: str) -> Obj:
    pm = ctx.store.get("payment_method", pm_id)
    customer_id = pm["customer"]
    if customer_id is None:
        raise InvalidRequestError(
            "The payment method you provided is not attached to a customer so detachment is impossible.",
            code="payment_method_unexpected_state",
        )
    cus = ctx.store.get("customer", customer_id)
    if cus["invoice_settings"]["default_payment_method"] == pm_id:
        new_settings = {**cus["invoice_settings"], "default_payment_method": None}
        ctx.update("customer", cus, {"invoice_settings": new_settings}, "customer.updated")
    if cus["default_source"] == pm_id:
        ctx.update("customer", cus, {"default_source": None}, "customer.updated")
    return ctx.update("payment_method", pm, {"customer": None}, "payment_method.detached")


def _list_payment_methods(ctx: Context, params: Params, customer_id: str | None, url: str) -> Obj:
    table = ctx.store.table("payment_method")
    pm_type = as_str(params, "type")
    candidates = table.ids_where("customer", customer_id) if customer_id else None

    def keep(obj: Obj) -> bool:
        return pm_type is None or obj["type"] == pm_type

    return list_page(table, params, url, candidates=candidates, predicate=keep if pm_type else None)


def list_payment_methods(ctx: Context, params: Params) -> Obj:
    """With `customer`, that customer's payment methods. Without it Stripe lists the account's
    own payment methods (for Treasury flows), never its customers' cards: the sandbox has none."""
    customer_id = as_str(params, "customer")
    if customer_id:
        ctx.store.get("customer", customer_id, param="customer")
        return _list_payment_methods(ctx, params, customer_id, "/v1/payment_methods")
    list_page(ctx.store.table("payment_method"), params, "/v1/payment_methods", candidates=set())
    return {"object": "list", "data": [], "has_more": False, "url": "/v1/payment_methods"}
