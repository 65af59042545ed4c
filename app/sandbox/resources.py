"""The endpoints: one handler per Stripe operation, and the route table that maps paths to them.

Handlers take the request's `Context`, the decoded params and the ids from the path, and return
the response body; they raise `StripeError`s for Stripe's error answers. HTTP lives in server.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.sandbox import billing, objects
from app.sandbox.context import Context
from app.sandbox.errors import CardError, InvalidRequestError, NotFoundError
from app.sandbox.listing import list_of, list_page
from app.sandbox.objects import CARD_NUMBERS, TEST_CARDS, TestCard
from app.sandbox.params import (
    Params,
    as_bool,
    as_dict,
    as_int,
    as_list,
    as_str,
    merged_metadata,
)
from app.sandbox.store import Obj

Handler = Callable[..., Obj]

_INTERVALS = ("day", "week", "month", "year")
_SUBSCRIPTION_STATUSES = (
    "active", "past_due", "unpaid", "canceled", "incomplete", "incomplete_expired",
    "trialing", "paused", "all", "ended",
)  # fmt: skip


def _deleted(object_id: str, object_name: str) -> Obj:
    return {"id": object_id, "object": object_name, "deleted": True}


def _currency(params: Params, *, required: bool = True) -> str | None:
    value = as_str(params, "currency", required=required)
    if value is None:
        return None
    if not re.fullmatch(r"[a-zA-Z]{3}", value):
        raise InvalidRequestError(f"Invalid currency: {value}", param="currency")
    return value.lower()


def _plain_changes(params: Params, fields: tuple[str, ...]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in fields:
        if name in params:
            value = as_str(params, name)
            changes[name] = value if value != "" else None
    return changes


def _address(params: Params, key: str) -> Obj | None:
    raw = as_dict(params, key)
    if raw is None:
        return None
    return {**objects.EMPTY_ADDRESS, **{k: v for k, v in raw.items() if k in objects.EMPTY_ADDRESS}}


def _customer_of(ctx: Context, params: Params, *, required: bool) -> Obj | None:
    customer_id = as_str(params, "customer", required=required)
    if not customer_id:
        return None
    return ctx.store.get("customer", customer_id, param="customer")


# --- products ----------------------------------------------------------------------------------


def create_product(ctx: Context, params: Params) -> Obj:
    name = as_str(params, "name", required=True)
    assert name is not None
    product_id = as_str(params, "id") or ctx.new_id("prod")
    if ctx.store.table("product").get(product_id) is not None:
        raise InvalidRequestError(
            f"Product already exists: '{product_id}'", code="resource_already_exists", param="id"
        )
    active = as_bool(params, "active")
    prod = objects.product(
        product_id,
        ctx.now,
        ctx.livemode,
        name=name,
        active=True if active is None else active,
        description=as_str(params, "description"),
        metadata=merged_metadata({}, params),
        images=[str(i) for i in as_list(params, "images")],
        statement_descriptor=as_str(params, "statement_descriptor"),
        unit_label=as_str(params, "unit_label"),
        url=as_str(params, "url"),
        tax_code=as_str(params, "tax_code"),
        shippable=as_bool(params, "shippable"),
    )
    ctx.insert("product", prod, "product.created")
    price_data = as_dict(params, "default_price_data")
    if price_data is not None:
        price_obj = _new_price(ctx, price_data, product_id, prefix="default_price_data[")
        ctx.update("product", prod, {"default_price": price_obj["id"]})
    return prod


def update_product(ctx: Context, params: Params, product_id: str) -> Obj:
    prod = ctx.store.get("product", product_id)
    changes = _plain_changes(
        params, ("name", "description", "statement_descriptor", "unit_label", "url", "tax_code")
    )
    for flag in ("active", "shippable"):
        if flag in params:
            changes[flag] = as_bool(params, flag)
    if "default_price" in params:
        price_id = as_str(params, "default_price") or None
        if price_id is not None:
            price_obj = ctx.store.get("price", price_id, param="default_price")
            if price_obj["product"] != product_id:
                raise InvalidRequestError(
                    "The default price must belong to this product.", param="default_price"
                )
        changes["default_price"] = price_id
    if "images" in params:
        changes["images"] = [str(i) for i in as_list(params, "images")]
    metadata = merged_metadata(prod["metadata"], params)
    if metadata is not None:
        changes["metadata"] = metadata
    if changes:
        changes["updated"] = ctx.now
    return ctx.update("product", prod, changes, "product.updated")


def delete_product(ctx: Context, params: Params, product_id: str) -> Obj:
    prod = ctx.store.get("product", product_id)
    if ctx.store.table("price").ids_where("product", product_id):
        raise InvalidRequestError(
            "This product cannot be deleted because it has one or more user-created prices.",
            code="product_has_prices",
        )
    ctx.store.table("product").delete(product_id)
    ctx.emit("product.deleted", prod)
    return _deleted(product_id, "product")


def list_products(ctx: Context, params: Params) -> Obj:
    active = as_bool(params, "active")
    wanted = set(map(str, as_list(params, "ids"))) or None
    shippable = as_bool(params, "shippable")

    def keep(obj: Obj) -> bool:
        return (active is None or obj["active"] == active) and (
            shippable is None or obj["shippable"] == shippable
        )

    filtered = active is not None or shippable is not None
    return list_page(
        ctx.store.table("product"),
        params,
        "/v1/products",
        candidates=wanted,
        predicate=keep if filtered else None,
    )


# --- prices ------------------------------------------------------------------------------------


def _new_price(ctx: Context, params: Params, product_id: str | None, prefix: str = "") -> Obj:
    currency = as_str(params, "currency", required=True, prefix=prefix)
    assert currency is not None
    if product_id is None:
        product_data = as_dict(params, "product_data")
        if product_data is not None:
            product_id = create_product(ctx, product_data)["id"]
        else:
            product_id = as_str(params, "product", required=True)
            assert product_id is not None
            ctx.store.get("product", product_id, param="product")
    unit_amount = as_int(params, "unit_amount", minimum=0, prefix=prefix)
    if unit_amount is None and "unit_amount_decimal" in params:
        decimal = as_str(params, "unit_amount_decimal") or "0"
        try:
            unit_amount = round(float(decimal))
        except ValueError:
            raise InvalidRequestError(
                f"Invalid decimal: {decimal}", param=prefix + "unit_amount_decimal"
            ) from None
    if unit_amount is None:
        raise InvalidRequestError(
            "Missing required param: unit_amount.",
            code="parameter_missing",
            param=prefix + "unit_amount",
        )
    rec = None
    rec_params = as_dict(params, "recurring")
    if rec_params is not None:
        interval = as_str(rec_params, "interval", required=True, prefix=f"{prefix}recurring[")
        if interval not in _INTERVALS:
            raise InvalidRequestError(
                f"Invalid recurring[interval]: must be one of {', '.join(_INTERVALS)}",
                param=prefix + "recurring[interval]",
            )
        rec = objects.recurring(
            interval,
            as_int(rec_params, "interval_count", minimum=1) or 1,
            as_int(rec_params, "trial_period_days", minimum=0),
        )
    active = as_bool(params, "active")
    price_obj = objects.price(
        ctx.new_id("price"),
        ctx.now,
        ctx.livemode,
        product=product_id,
        currency=currency.lower(),
        unit_amount=unit_amount,
        recurring=rec,
        active=True if active is None else active,
        nickname=as_str(params, "nickname"),
        lookup_key=as_str(params, "lookup_key"),
        metadata=merged_metadata({}, params),
        tax_behavior=as_str(params, "tax_behavior") or "unspecified",
    )
    return ctx.insert("price", price_obj, "price.created")


def create_price(ctx: Context, params: Params) -> Obj:
    _currency(params)
    return _new_price(ctx, params, None)


def update_price(ctx: Context, params: Params, price_id: str) -> Obj:
    price_obj = ctx.store.get("price", price_id)
    changes = _plain_changes(params, ("nickname", "lookup_key", "tax_behavior"))
    if "active" in params:
        changes["active"] = as_bool(params, "active")
    metadata = merged_metadata(price_obj["metadata"], params)
    if metadata is not None:
        changes["metadata"] = metadata
    return ctx.update("price", price_obj, changes, "price.updated")


def list_prices(ctx: Context, params: Params) -> Obj:
    table = ctx.store.table("price")
    product_id = as_str(params, "product")
    active = as_bool(params, "active")
    currency = _currency(params, required=False)
    price_type = as_str(params, "type")
    interval = as_str(as_dict(params, "recurring") or {}, "interval")
    lookup_keys = set(map(str, as_list(params, "lookup_keys")))

    def keep(obj: Obj) -> bool:
        return (
            (active is None or obj["active"] == active)
            and (currency is None or obj["currency"] == currency)
            and (price_type is None or obj["type"] == price_type)
            and (interval is None or (obj["recurring"] or {}).get("interval") == interval)
            and (not lookup_keys or obj["lookup_key"] in lookup_keys)
        )

    candidates = table.ids_where("product", product_id) if product_id else None
    return list_page(table, params, "/v1/prices", candidates=candidates, predicate=keep)


# --- customers ---------------------------------------------------------------------------------


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
        address=_address(params, "address"),
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
            return _deleted(customer_id, "customer")
        raise NotFoundError(f"No such customer: '{customer_id}'")
    return cus


def update_customer(ctx: Context, params: Params, customer_id: str) -> Obj:
    cus = ctx.store.get("customer", customer_id)
    changes = _plain_changes(params, _CUSTOMER_FIELDS)
    if "address" in params:
        changes["address"] = _address(params, "address")
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
            _cancel(ctx, sub, reason="cancellation_requested")
    pms = ctx.store.table("payment_method")
    for pm_id in sorted(pms.ids_where("customer", customer_id)):
        ctx.update(
            "payment_method", pms.by_id[pm_id], {"customer": None}, "payment_method.detached"
        )
    ctx.store.table("customer").delete(customer_id)
    ctx.store.tombstones[customer_id] = "customer"
    ctx.emit("customer.deleted", cus)
    return _deleted(customer_id, "customer")


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
    if not number.isdigit() or not 12 <= len(number) <= 19 or not _luhn_ok(number):
        raise CardError(
            "Your card number is incorrect.", code="incorrect_number", param=prefix + "number]"
        )
    if not 1 <= exp_month <= 12:
        raise CardError(
            "Your card's expiration month is invalid.",
            code="invalid_expiry_month",
            param=prefix + "exp_month]",
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
        billing_info["address"] = _address(details, "address")
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
            merged["address"] = _address(details, "address")
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
    cus = _customer_of(ctx, params, required=True)
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
    customer_id = as_str(params, "customer")
    if customer_id:
        ctx.store.get("customer", customer_id, param="customer")
    return _list_payment_methods(ctx, params, customer_id, "/v1/payment_methods")


# --- subscriptions -----------------------------------------------------------------------------


def _subscription_items(
    ctx: Context, subscription_id: str, params_items: list[Any], start: int, trial_end: int | None
) -> list[Obj]:
    if not params_items:
        raise InvalidRequestError(
            "Missing required param: items.", code="parameter_missing", param="items"
        )
    items = []
    for index, raw in enumerate(params_items):
        prefix = f"items[{index}]["
        if not isinstance(raw, dict):
            raise InvalidRequestError(
                f"Invalid items[{index}]: must be a hash", param=f"items[{index}]"
            )
        price_id = as_str(raw, "price", required=True, prefix=prefix)
        assert price_id is not None
        price_obj = ctx.store.get("price", price_id, param=f"items[{index}][price]")
        if price_obj["recurring"] is None:
            raise InvalidRequestError(
                "The price specified is set to `type=one_time` but this field only accepts "
                "prices with `type=recurring`.",
                param=f"items[{index}][price]",
            )
        quantity = as_int(raw, "quantity", minimum=0, prefix=prefix)
        rec = price_obj["recurring"]
        end = trial_end or objects.add_interval(start, rec["interval"], rec["interval_count"])
        items.append(
            objects.subscription_item(
                ctx.new_id("si"),
                ctx.now,
                subscription=subscription_id,
                price_obj=price_obj,
                quantity=1 if quantity is None else quantity,
                period_start=start,
                period_end=end,
                metadata=merged_metadata({}, raw),
            )
        )
    currencies = {item["price"]["currency"] for item in items}
    intervals = {
        (item["price"]["recurring"]["interval"], item["price"]["recurring"]["interval_count"])
        for item in items
    }
    if len(currencies) > 1 or len(intervals) > 1:
        raise InvalidRequestError(
            "All prices on a subscription must have the same currency and billing interval.",
            param="items",
        )
    return items


def create_subscription(ctx: Context, params: Params) -> Obj:
    cus = _customer_of(ctx, params, required=True)
    assert cus is not None
    payment_behavior = as_str(params, "payment_behavior") or "allow_incomplete"
    if payment_behavior not in (
        "allow_incomplete",
        "error_if_incomplete",
        "default_incomplete",
        "pending_if_incomplete",
    ):
        raise InvalidRequestError(
            f"Invalid payment_behavior: {payment_behavior}", param="payment_behavior"
        )
    collection_method = as_str(params, "collection_method") or "charge_automatically"
    days_until_due = as_int(params, "days_until_due", minimum=0)
    if collection_method == "send_invoice" and days_until_due is None:
        raise InvalidRequestError(
            "Missing required param: days_until_due.",
            code="parameter_missing",
            param="days_until_due",
        )
    pm_id = as_str(params, "default_payment_method") or None
    if pm_id is not None:
        pm = ctx.store.get("payment_method", pm_id, param="default_payment_method")
        if pm["customer"] != cus["id"]:
            raise InvalidRequestError(
                "The payment method must be attached to the customer.",
                param="default_payment_method",
            )
    subscription_id = ctx.new_id("sub")
    trial_days = as_int(params, "trial_period_days", minimum=0)
    trial_end_param = as_str(params, "trial_end")
    trial_end = None
    if trial_end_param and trial_end_param != "now":
        trial_end = as_int(params, "trial_end", minimum=ctx.now + 1)
    elif trial_days:
        trial_end = ctx.now + 86400 * trial_days
    items = _subscription_items(ctx, subscription_id, as_list(params, "items"), ctx.now, trial_end)
    if trial_end is None and not trial_days:
        days = items[0]["price"]["recurring"]["trial_period_days"]
        if days and as_bool(params, "trial_from_plan"):
            trial_end = ctx.now + 86400 * days
    effective_pm = pm_id or billing.default_payment_method_of(ctx, cus)
    if (
        payment_behavior == "error_if_incomplete"
        and trial_end is None
        and collection_method == "charge_automatically"
    ):
        amount = sum((i["price"]["unit_amount"] or 0) * i["quantity"] for i in items)
        if amount > 0 and effective_pm is None:
            raise InvalidRequestError(
                "This customer has no attached payment source or default payment method.",
                code="resource_missing",
            )
        if amount > 0 and effective_pm is not None:
            pm = ctx.store.get("payment_method", effective_pm)
            test_card = objects.card_for(pm["card"])
            if test_card.decline_code:
                raise CardError(
                    objects.DECLINE_MESSAGES[test_card.decline_code],
                    code=test_card.error_code,
                    extra={"decline_code": test_card.decline_code},
                )
    sub = objects.subscription(
        subscription_id,
        ctx.now,
        ctx.livemode,
        customer=cus["id"],
        currency=items[0]["price"]["currency"],
        items=items,
        status="trialing" if trial_end else "active",
        start_date=ctx.now,
        billing_cycle_anchor=trial_end or ctx.now,
        default_payment_method=pm_id,
        metadata=merged_metadata({}, params),
        description=as_str(params, "description"),
        collection_method=collection_method,
        days_until_due=days_until_due,
        trial_start=ctx.now if trial_end else None,
        trial_end=trial_end,
        cancel_at_period_end=bool(as_bool(params, "cancel_at_period_end")),
    )
    for item in items:
        ctx.store.insert("subscription_item", item)
    ctx.insert("subscription", sub, "customer.subscription.created")
    if cus["currency"] is None:
        ctx.update("customer", cus, {"currency": sub["currency"]}, "customer.updated")
    billing.start_subscription(ctx, sub, cus, payment_behavior=payment_behavior)
    return sub


def _refresh_items(ctx: Context, sub: Obj) -> Obj:
    table = ctx.store.table("subscription_item")
    ids = sorted(table.ids_where("subscription", sub["id"]), key=table.key_of.__getitem__)
    return objects.item_list(sub["id"], [table.by_id[i] for i in ids])


def update_subscription(ctx: Context, params: Params, subscription_id: str) -> Obj:
    sub = ctx.store.get("subscription", subscription_id)
    if sub["status"] == "canceled":
        allowed = {"metadata", "cancellation_details", "expand"}
        if set(params) - allowed:
            raise InvalidRequestError(
                "A canceled subscription can only update its cancellation_details and metadata.",
            )
    changes = _plain_changes(params, ("description",))
    if "cancel_at_period_end" in params:
        changes["cancel_at_period_end"] = bool(as_bool(params, "cancel_at_period_end"))
        changes["cancel_at"] = (
            sub["items"]["data"][0]["current_period_end"]
            if changes["cancel_at_period_end"]
            else None
        )
    if "cancel_at" in params:
        changes["cancel_at"] = as_int(params, "cancel_at")
    if "default_payment_method" in params:
        pm_id = as_str(params, "default_payment_method") or None
        if pm_id is not None:
            pm = ctx.store.get("payment_method", pm_id, param="default_payment_method")
            if pm["customer"] != sub["customer"]:
                raise InvalidRequestError(
                    "The payment method must be attached to the customer.",
                    param="default_payment_method",
                )
        changes["default_payment_method"] = pm_id
    metadata = merged_metadata(sub["metadata"], params)
    if metadata is not None:
        changes["metadata"] = metadata
    details = as_dict(params, "cancellation_details")
    if details is not None:
        changes["cancellation_details"] = {
            **sub["cancellation_details"],
            **{k: as_str(details, k) for k in ("comment", "feedback") if k in details},
        }
    if "items" in params:
        _update_items(ctx, sub, as_list(params, "items"))
        changes["items"] = _refresh_items(ctx, sub)
    return ctx.update("subscription", sub, changes, "customer.subscription.updated")


def _update_items(ctx: Context, sub: Obj, raw_items: list[Any]) -> None:
    """Change quantities and prices, add and delete items; no proration invoices (see README)."""
    table = ctx.store.table("subscription_item")
    current = sub["items"]["data"][0]
    for index, raw in enumerate(raw_items):
        if not isinstance(raw, dict):
            raise InvalidRequestError(f"Invalid items[{index}]", param=f"items[{index}]")
        prefix = f"items[{index}]["
        item_id = as_str(raw, "id")
        if item_id:
            item = ctx.store.get("subscription_item", item_id, param=f"items[{index}][id]")
            if item["subscription"] != sub["id"]:
                raise InvalidRequestError(
                    f"No such subscription item: '{item_id}'", param=f"items[{index}][id]"
                )
            if as_bool(raw, "deleted"):
                table.delete(item_id)
                continue
            changes: dict[str, Any] = {}
            if "quantity" in raw:
                changes["quantity"] = as_int(raw, "quantity", minimum=0, prefix=prefix)
            if "price" in raw:
                price_obj = ctx.store.get(
                    "price", as_str(raw, "price") or "", param=f"items[{index}][price]"
                )
                changes["price"] = price_obj
                changes["plan"] = objects.plan_of(price_obj)
            metadata = merged_metadata(item["metadata"], raw)
            if metadata is not None:
                changes["metadata"] = metadata
            ctx.store.update("subscription_item", item, changes)
        else:
            new = _subscription_items(ctx, sub["id"], [raw], current["current_period_start"], None)[
                0
            ]
            new["current_period_end"] = current["current_period_end"]
            ctx.store.insert("subscription_item", new)
    if not table.ids_where("subscription", sub["id"]):
        raise InvalidRequestError("A subscription must keep at least one item.", param="items")


def _cancel(
    ctx: Context, sub: Obj, *, reason: str, comment: str | None = None, feedback: str | None = None
) -> Obj:
    ctx.update(
        "subscription",
        sub,
        {
            "status": "canceled",
            "canceled_at": ctx.now,
            "ended_at": ctx.now,
            "cancel_at_period_end": False,
            "cancellation_details": {"comment": comment, "feedback": feedback, "reason": reason},
        },
    )
    ctx.emit("customer.subscription.deleted", sub)
    return sub


def cancel_subscription(ctx: Context, params: Params, subscription_id: str) -> Obj:
    sub = ctx.store.get("subscription", subscription_id)
    if sub["status"] == "canceled":
        raise InvalidRequestError(
            f"This subscription is already canceled: {subscription_id}.", code="resource_missing"
        )
    details = as_dict(params, "cancellation_details") or {}
    return _cancel(
        ctx,
        sub,
        reason="cancellation_requested",
        comment=as_str(details, "comment"),
        feedback=as_str(details, "feedback"),
    )


def list_subscriptions(ctx: Context, params: Params) -> Obj:
    table = ctx.store.table("subscription")
    customer_id = as_str(params, "customer")
    price_id = as_str(params, "price")
    status = as_str(params, "status")
    collection_method = as_str(params, "collection_method")
    if status is not None and status not in _SUBSCRIPTION_STATUSES:
        raise InvalidRequestError(f"Invalid status: {status}", param="status")

    def status_ok(value: str) -> bool:
        if status is None:
            return value != "canceled" and value != "incomplete_expired"
        if status == "all":
            return True
        if status == "ended":
            return value in ("canceled", "incomplete_expired")
        return value == status

    def keep(obj: Obj) -> bool:
        return (
            status_ok(obj["status"])
            and (collection_method is None or obj["collection_method"] == collection_method)
            and (
                price_id is None or any(i["price"]["id"] == price_id for i in obj["items"]["data"])
            )
        )

    candidates = table.ids_where("customer", customer_id) if customer_id else None
    return list_page(table, params, "/v1/subscriptions", candidates=candidates, predicate=keep)


def list_subscription_items(ctx: Context, params: Params) -> Obj:
    subscription_id = as_str(params, "subscription", required=True)
    ctx.store.get("subscription", subscription_id or "", param="subscription")
    table = ctx.store.table("subscription_item")
    return list_page(
        table,
        params,
        "/v1/subscription_items",
        candidates=table.ids_where("subscription", subscription_id),
    )


# --- invoices ----------------------------------------------------------------------------------


def create_invoice(ctx: Context, params: Params) -> Obj:
    cus = _customer_of(ctx, params, required=True)
    assert cus is not None
    collection_method = as_str(params, "collection_method") or "charge_automatically"
    days_until_due = as_int(params, "days_until_due", minimum=0)
    if collection_method == "send_invoice" and days_until_due is None:
        raise InvalidRequestError(
            "Missing required param: days_until_due.",
            code="parameter_missing",
            param="days_until_due",
        )
    pm_id = as_str(params, "default_payment_method") or None
    if pm_id is not None:
        ctx.store.get("payment_method", pm_id, param="default_payment_method")
    invoice_id = ctx.new_id("in")
    lines = []
    for raw in ctx.store.pending_items.pop(cus["id"], []):
        lines.append({**raw, "id": ctx.new_id("il"), "invoice": invoice_id})
    inv = objects.invoice(
        invoice_id,
        ctx.now,
        ctx.livemode,
        customer_obj=cus,
        currency=_currency(params, required=False) or cus["currency"] or "usd",
        lines=lines,
        billing_reason="manual",
        period_start=ctx.now,
        period_end=ctx.now,
        collection_method=collection_method,
        description=as_str(params, "description"),
        metadata=merged_metadata({}, params),
        auto_advance=bool(as_bool(params, "auto_advance")),
        default_payment_method=pm_id,
        days_until_due=days_until_due,
    )
    return ctx.insert("invoice", inv, "invoice.created")


def create_invoice_item(ctx: Context, params: Params) -> Obj:
    """Invoice items are kept only as pending lines for the customer's next invoice (README)."""
    cus = _customer_of(ctx, params, required=True)
    assert cus is not None
    price_id = as_str(params, "price") or (as_dict(params, "pricing") or {}).get("price")
    quantity = as_int(params, "quantity", minimum=1) or 1
    if price_id:
        price_obj = ctx.store.get("price", str(price_id), param="price")
        amount = (price_obj["unit_amount"] or 0) * quantity
    else:
        amount = as_int(params, "amount", required=True) or 0
        currency = _currency(params) or "usd"
        price_obj = objects.price(
            "price_sandbox_adhoc",
            ctx.now,
            ctx.livemode,
            product="prod_sandbox_adhoc",
            currency=currency,
            unit_amount=amount,
        )
    item_id = ctx.new_id("ii")
    line = objects.line_item(
        "",
        ctx.livemode,
        invoice="",
        amount=amount,
        currency=price_obj["currency"],
        description=as_str(params, "description") or "Invoice item",
        period_start=ctx.now,
        period_end=ctx.now,
        quantity=quantity,
        price_obj=price_obj,
        invoice_item=item_id,
    )
    invoice_id = as_str(params, "invoice")
    if invoice_id:
        inv = ctx.store.get("invoice", invoice_id, param="invoice")
        if inv["status"] != "draft":
            raise InvalidRequestError(
                "You can only add invoice items to draft invoices.", param="invoice"
            )
        _add_line(ctx, inv, {**line, "id": ctx.new_id("il"), "invoice": invoice_id})
    else:
        ctx.store.pending_items.setdefault(cus["id"], []).append(line)
    return {
        "id": item_id,
        "object": "invoiceitem",
        "amount": amount,
        "currency": price_obj["currency"],
        "customer": cus["id"],
        "date": ctx.now,
        "description": line["description"],
        "invoice": invoice_id,
        "livemode": ctx.livemode,
        "metadata": merged_metadata({}, params) or {},
        "quantity": quantity,
    }


def _add_line(ctx: Context, inv: Obj, line: Obj) -> None:
    lines = [*inv["lines"]["data"], line]
    total = sum(item["amount"] for item in lines)
    ctx.update(
        "invoice",
        inv,
        {
            "lines": {**inv["lines"], "data": lines, "total_count": len(lines)},
            "amount_due": total,
            "amount_remaining": total,
            "subtotal": total,
            "subtotal_excluding_tax": total,
            "total": total,
            "total_excluding_tax": total,
        },
    )


def update_invoice(ctx: Context, params: Params, invoice_id: str) -> Obj:
    inv = ctx.store.get("invoice", invoice_id)
    changes = _plain_changes(params, ("description", "footer"))
    if "auto_advance" in params:
        changes["auto_advance"] = bool(as_bool(params, "auto_advance"))
    if "default_payment_method" in params:
        changes["default_payment_method"] = as_str(params, "default_payment_method") or None
    metadata = merged_metadata(inv["metadata"], params)
    if metadata is not None:
        changes["metadata"] = metadata
    if inv["status"] != "draft" and set(changes) - {
        "metadata",
        "description",
        "footer",
        "auto_advance",
        "default_payment_method",
    }:
        raise InvalidRequestError(
            "This invoice is no longer editable.", code="invoice_not_editable"
        )
    return ctx.update("invoice", inv, changes, "invoice.updated")


def delete_invoice(ctx: Context, params: Params, invoice_id: str) -> Obj:
    inv = ctx.store.get("invoice", invoice_id)
    if inv["status"] != "draft":
        raise InvalidRequestError(
            "You can only delete draft invoices.", code="invoice_not_editable"
        )
    ctx.store.table("invoice").delete(invoice_id)
    ctx.emit("invoice.deleted", inv)
    return _deleted(invoice_id, "invoice")


def finalize_invoice(ctx: Context, params: Params, invoice_id: str) -> Obj:
    inv = ctx.store.get("invoice", invoice_id)
    billing.finalize_invoice(ctx, inv)
    return inv


def pay_invoice(ctx: Context, params: Params, invoice_id: str) -> Obj:
    inv = ctx.store.get("invoice", invoice_id)
    if inv["status"] == "paid":
        raise InvalidRequestError("Invoice is already paid.", code="invoice_already_paid")
    pm_id = as_str(params, "payment_method")
    pm: Obj | None
    if pm_id:
        pm = billing.resolve_payment_method(ctx, pm_id, param="payment_method")
    else:
        candidates = [inv["default_payment_method"]]
        sub_id = (inv["parent"] or {}).get("subscription_details", {}) or {}
        if sub_id.get("subscription"):
            sub = ctx.store.table("subscription").get(sub_id["subscription"])
            candidates.append(sub["default_payment_method"] if sub else None)
        cus = ctx.store.get("customer", inv["customer"])
        candidates.append(billing.default_payment_method_of(ctx, cus))
        found = next((c for c in candidates if c), None)
        if found is None and inv["amount_remaining"] > 0:
            raise InvalidRequestError(
                "This customer has no attached payment source or default payment method.",
                code="invoice_no_customer_line_items"
                if not inv["lines"]["data"]
                else "resource_missing",
            )
        pm = ctx.store.get("payment_method", found) if found else None
    error = billing.pay_invoice(ctx, inv, pm, description="Payment for Invoice")
    if error is not None:
        raise error
    return inv


def void_invoice(ctx: Context, params: Params, invoice_id: str) -> Obj:
    inv = ctx.store.get("invoice", invoice_id)
    if inv["status"] != "open":
        raise InvalidRequestError("You can only void open invoices.", code="invoice_not_open")
    transitions = {**inv["status_transitions"], "voided_at": ctx.now}
    ctx.update("invoice", inv, {"status": "void", "status_transitions": transitions})
    ctx.emit("invoice.voided", inv)
    return inv


def mark_invoice_uncollectible(ctx: Context, params: Params, invoice_id: str) -> Obj:
    inv = ctx.store.get("invoice", invoice_id)
    if inv["status"] != "open":
        raise InvalidRequestError(
            "You can only mark open invoices uncollectible.", code="invoice_not_open"
        )
    transitions = {**inv["status_transitions"], "marked_uncollectible_at": ctx.now}
    ctx.update("invoice", inv, {"status": "uncollectible", "status_transitions": transitions})
    ctx.emit("invoice.marked_uncollectible", inv)
    return inv


def list_invoice_lines(ctx: Context, params: Params, invoice_id: str) -> Obj:
    inv = ctx.store.get("invoice", invoice_id)
    return list_of(inv["lines"]["data"], params, f"/v1/invoices/{invoice_id}/lines")


def list_invoices(ctx: Context, params: Params) -> Obj:
    table = ctx.store.table("invoice")
    customer_id = as_str(params, "customer")
    subscription_id = as_str(params, "subscription")
    status = as_str(params, "status")
    collection_method = as_str(params, "collection_method")

    def keep(obj: Obj) -> bool:
        return (
            (status is None or obj["status"] == status)
            and (collection_method is None or obj["collection_method"] == collection_method)
            and (customer_id is None or obj["customer"] == customer_id)
        )

    if subscription_id:
        candidates = table.ids_where("subscription", subscription_id)
    elif customer_id:
        candidates = table.ids_where("customer", customer_id)
    else:
        candidates = None
    filtered = status or collection_method or (customer_id and subscription_id)
    return list_page(
        table, params, "/v1/invoices", candidates=candidates, predicate=keep if filtered else None
    )


def list_invoice_payments(ctx: Context, params: Params) -> Obj:
    table = ctx.store.table("invoice_payment")
    invoice_id = as_str(params, "invoice")
    candidates = table.ids_where("invoice", invoice_id) if invoice_id else None
    return list_page(table, params, "/v1/invoice_payments", candidates=candidates)


# --- payment intents and charges ---------------------------------------------------------------


def _amount(params: Params, currency: str) -> int:
    amount = as_int(params, "amount", required=True, minimum=1)
    assert amount is not None
    if currency == "usd" and amount < 50:
        raise InvalidRequestError(
            "Amount must be at least $0.50 usd", code="amount_too_small", param="amount"
        )
    return amount


def create_payment_intent(ctx: Context, params: Params) -> Obj:
    currency = _currency(params)
    assert currency is not None
    amount = _amount(params, currency)
    cus = _customer_of(ctx, params, required=False)
    pm_ref = as_str(params, "payment_method") or None
    pm = billing.resolve_payment_method(ctx, pm_ref, param="payment_method") if pm_ref else None
    if (
        pm is not None
        and pm["customer"] is not None
        and (cus is None or pm["customer"] != cus["id"])
    ):
        raise InvalidRequestError(
            "The provided PaymentMethod was previously used with a PaymentIntent without Customer "
            "attachment, shared with a connected account without Customer attachment, or was "
            "detached from a Customer.",
            param="payment_method",
        )
    capture_method = as_str(params, "capture_method") or "automatic"
    if capture_method not in ("automatic", "automatic_async", "manual"):
        raise InvalidRequestError(
            f"Invalid capture_method: {capture_method}", param="capture_method"
        )
    pi = objects.payment_intent(
        ctx.new_id("pi"),
        ctx.now,
        ctx.livemode,
        amount=amount,
        currency=currency,
        customer=cus["id"] if cus else None,
        payment_method=pm["id"] if pm else None,
        description=as_str(params, "description"),
        metadata=merged_metadata({}, params),
        capture_method=capture_method,
        receipt_email=as_str(params, "receipt_email"),
        setup_future_usage=as_str(params, "setup_future_usage"),
        statement_descriptor=as_str(params, "statement_descriptor"),
    )
    ctx.insert("payment_intent", pi, "payment_intent.created")
    if as_bool(params, "confirm"):
        _confirm(ctx, pi, pm)
    return pi


def _confirm(ctx: Context, pi: Obj, pm: Obj | None) -> None:
    if pm is None:
        raise InvalidRequestError(
            "You cannot confirm this PaymentIntent because it's missing a payment method. "
            "Update the PaymentIntent with a payment method and then confirm it again.",
            code="payment_intent_unexpected_state",
            param="payment_method",
        )
    ch = billing.confirm_payment_intent(ctx, pi, pm)
    if ch is not None and ch["status"] == "failed":
        raise billing.decline_error(ch, pm, payment_intent=pi)


def confirm_payment_intent(ctx: Context, params: Params, pi_id: str) -> Obj:
    pi = ctx.store.get("payment_intent", pi_id)
    if pi["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
        raise InvalidRequestError(
            f"This PaymentIntent's status is {pi['status']}, so it cannot be confirmed.",
            code="payment_intent_unexpected_state",
        )
    pm_ref = as_str(params, "payment_method") or pi["payment_method"]
    pm = billing.resolve_payment_method(ctx, pm_ref, param="payment_method") if pm_ref else None
    _confirm(ctx, pi, pm)
    return pi


def capture_payment_intent(ctx: Context, params: Params, pi_id: str) -> Obj:
    pi = ctx.store.get("payment_intent", pi_id)
    if pi["status"] != "requires_capture":
        raise InvalidRequestError(
            f"This PaymentIntent could not be captured because it has a status of {pi['status']}.",
            code="payment_intent_unexpected_state",
        )
    amount = as_int(params, "amount_to_capture", minimum=1) or pi["amount"]
    ch = ctx.store.get("charge", pi["latest_charge"])
    ctx.update(
        "charge",
        ch,
        {"captured": True, "amount_captured": amount, "balance_transaction": ctx.new_id("txn")},
    )
    ctx.emit("charge.captured", ch)
    ctx.update(
        "payment_intent",
        pi,
        {"status": "succeeded", "amount_received": amount, "amount_capturable": 0},
    )
    ctx.emit("payment_intent.succeeded", pi)
    return pi


def cancel_payment_intent(ctx: Context, params: Params, pi_id: str) -> Obj:
    pi = ctx.store.get("payment_intent", pi_id)
    if pi["status"] in ("succeeded", "canceled"):
        raise InvalidRequestError(
            f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}.",
            code="payment_intent_unexpected_state",
        )
    reason = as_str(params, "cancellation_reason") or "requested_by_customer"
    ctx.update(
        "payment_intent",
        pi,
        {
            "status": "canceled",
            "canceled_at": ctx.now,
            "cancellation_reason": reason,
            "amount_capturable": 0,
        },
    )
    ctx.emit("payment_intent.canceled", pi)
    return pi


def update_payment_intent(ctx: Context, params: Params, pi_id: str) -> Obj:
    pi = ctx.store.get("payment_intent", pi_id)
    changes = _plain_changes(params, ("description", "receipt_email", "statement_descriptor"))
    if pi["status"] in ("succeeded", "canceled") and set(params) - {
        "metadata",
        "description",
        "receipt_email",
        "expand",
    }:
        raise InvalidRequestError(
            f"This PaymentIntent's status is {pi['status']}; only metadata and description can change.",
            code="payment_intent_unexpected_state",
        )
    if "amount" in params:
        changes["amount"] = _amount(params, pi["currency"])
    if "customer" in params:
        cus = _customer_of(ctx, params, required=False)
        changes["customer"] = cus["id"] if cus else None
    if "payment_method" in params:
        pm_ref = as_str(params, "payment_method") or None
        pm = billing.resolve_payment_method(ctx, pm_ref, param="payment_method") if pm_ref else None
        changes["payment_method"] = pm["id"] if pm else None
        changes["status"] = "requires_confirmation" if pm else "requires_payment_method"
    metadata = merged_metadata(pi["metadata"], params)
    if metadata is not None:
        changes["metadata"] = metadata
    return ctx.update("payment_intent", pi, changes)


def list_payment_intents(ctx: Context, params: Params) -> Obj:
    table = ctx.store.table("payment_intent")
    customer_id = as_str(params, "customer")
    candidates = table.ids_where("customer", customer_id) if customer_id else None
    return list_page(table, params, "/v1/payment_intents", candidates=candidates)


def create_charge(ctx: Context, params: Params) -> Obj:
    currency = _currency(params)
    assert currency is not None
    amount = _amount(params, currency)
    cus = _customer_of(ctx, params, required=False)
    source = as_str(params, "source") or as_str(params, "payment_method")
    if source:
        pm = billing.resolve_payment_method(ctx, source, param="source")
    elif cus is not None:
        default = billing.default_payment_method_of(ctx, cus)
        if default is None:
            raise InvalidRequestError(
                "Cannot charge a customer that has no active card", code="missing", param="card"
            )
        pm = ctx.store.get("payment_method", default)
    else:
        raise InvalidRequestError(
            "Must provide source or customer.", code="parameter_missing", param="source"
        )
    capture = as_bool(params, "capture")
    ch = billing.create_charge(
        ctx,
        amount=amount,
        currency=currency,
        customer=cus["id"] if cus else None,
        pm=pm,
        description=as_str(params, "description"),
        metadata=merged_metadata({}, params),
        receipt_email=as_str(params, "receipt_email"),
        capture=True if capture is None else capture,
    )
    if ch["status"] == "failed":
        raise billing.decline_error(ch, pm)
    return ch


def update_charge(ctx: Context, params: Params, charge_id: str) -> Obj:
    ch = ctx.store.get("charge", charge_id)
    changes = _plain_changes(params, ("description", "receipt_email"))
    if "customer" in params:
        if ch["customer"] is not None:
            raise InvalidRequestError("This charge already has a customer.", param="customer")
        cus = _customer_of(ctx, params, required=True)
        changes["customer"] = cus["id"] if cus else None
    metadata = merged_metadata(ch["metadata"], params)
    if metadata is not None:
        changes["metadata"] = metadata
    return ctx.update("charge", ch, changes, "charge.updated")


def list_charges(ctx: Context, params: Params) -> Obj:
    table = ctx.store.table("charge")
    customer_id = as_str(params, "customer")
    pi_id = as_str(params, "payment_intent")
    candidates = table.ids_where("customer", customer_id) if customer_id else None

    def keep(obj: Obj) -> bool:
        return obj["payment_intent"] == pi_id

    return list_page(
        table, params, "/v1/charges", candidates=candidates, predicate=keep if pi_id else None
    )


# --- events ------------------------------------------------------------------------------------


def list_events(ctx: Context, params: Params) -> Obj:
    event_type = as_str(params, "type")
    types = set(map(str, as_list(params, "types")))
    if event_type and types:
        raise InvalidRequestError(
            "You may only specify one of these parameters: type, types.", param="types"
        )
    pattern = None
    if event_type:
        # Stripe allows one `*` wildcard in `type`, e.g. `invoice.*`.
        pattern = re.compile(re.escape(event_type).replace(r"\*", ".*") + "$")

    def keep(obj: Obj) -> bool:
        if pattern is not None:
            return pattern.match(obj["type"]) is not None
        return obj["type"] in types

    filtered = pattern is not None or bool(types)
    return list_page(
        ctx.store.table("event"), params, "/v1/events", predicate=keep if filtered else None
    )


# --- the route table ---------------------------------------------------------------------------


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
    ("GET", "/v1/events", list_events),
    ("GET", "/v1/events/{id}", _getter("event")),
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
