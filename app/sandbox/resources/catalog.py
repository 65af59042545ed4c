"""Products and prices: the catalogue that subscriptions and invoice items bill from."""

from __future__ import annotations

from app.sandbox import objects
from app.sandbox.context import Context
from app.sandbox.errors import InvalidRequestError
from app.sandbox.listing import list_page
from app.sandbox.params import (
    Params,
    as_bool,
    as_dict,
    as_int,
    as_list,
    as_str,
    merged_metadata,
    param_name,
)
from app.sandbox.resources.common import (
    MAX_TRIAL_DAYS,
    check_amount,
    currency_param,
    decimal_amount,
    deleted_stub,
    plain_changes,
)
from app.sandbox.store import Obj

_INTERVALS = ("day", "week", "month", "year")
# Stripe bills at most every three years.
_MAX_INTERVAL_COUNT = {"day": 1095, "week": 156, "month": 36, "year": 3}


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
    ctx.insert("product", prod)
    price_data = as_dict(params, "default_price_data")
    if price_data is not None:
        price_obj = _new_price(ctx, price_data, product_id, prefix="default_price_data[")
        ctx.update("product", prod, {"default_price": price_obj["id"]})
    # Stripe creates the product and its default price in one step: the event shows both
    ctx.emit("product.created", prod)
    return prod


def update_product(ctx: Context, params: Params, product_id: str) -> Obj:
    prod = ctx.store.get("product", product_id)
    changes = plain_changes(
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
    return deleted_stub(product_id, "product")


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
    if unit_amount is not None:
        check_amount(unit_amount, param_name(prefix, "unit_amount"), currency.lower())
    elif "unit_amount_decimal" in params:
        unit_amount = decimal_amount(params, "unit_amount_decimal", prefix=prefix)
    if unit_amount is None:
        raise InvalidRequestError(
            "Missing required param: unit_amount.",
            code="parameter_missing",
            param=param_name(prefix, "unit_amount"),
        )
    rec = None
    rec_params = as_dict(params, "recurring")
    if rec_params is not None:
        interval = as_str(rec_params, "interval", required=True, prefix=f"{prefix}recurring[")
        if interval not in _INTERVALS:
            raise InvalidRequestError(
                f"Invalid recurring[interval]: must be one of {', '.join(_INTERVALS)}",
                param=param_name(f"{prefix}recurring[", "interval"),
            )
        rec_prefix = f"{prefix}recurring["
        rec = objects.recurring(
            interval,
            as_int(
                rec_params,
                "interval_count",
                minimum=1,
                maximum=_MAX_INTERVAL_COUNT[interval],
                prefix=rec_prefix,
            )
            or 1,
            as_int(
                rec_params,
                "trial_period_days",
                minimum=0,
                maximum=MAX_TRIAL_DAYS,
                prefix=rec_prefix,
            ),
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
    currency_param(params)
    return _new_price(ctx, params, None)


def update_price(ctx: Context, params: Params, price_id: str) -> Obj:
    price_obj = ctx.store.get("price", price_id)
    changes = plain_changes(params, ("nickname", "lookup_key", "tax_behavior"))
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
    currency = currency_param(params, required=False)
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
