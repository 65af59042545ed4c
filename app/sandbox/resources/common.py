"""What the endpoints of several resource families share: parameter readers and Stripe's limits."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from app.sandbox import objects
from app.sandbox.context import Context
from app.sandbox.errors import InvalidRequestError
from app.sandbox.params import Params, as_dict, as_int, as_str, param_name
from app.sandbox.store import Obj

# Stripe's documented maximum for an amount: eight digits of the currency's smallest unit
# ($999,999.99). Anything larger (an amount, unit_amount × quantity, an invoice's lines added
# up) is refused with `amount_too_large`; it also keeps every stored integer within 64 bits.
MAX_AMOUNT = 99_999_999
# Stripe's longest trial: two years.
MAX_TRIAL_DAYS = 730
# `unit_amount_decimal`: a plain decimal with at most 12 decimal places, as Stripe documents it
# (no sign, exponent, `inf` or `nan`).
_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]{0,12})?|\.[0-9]{1,12})")


def deleted_stub(object_id: str, object_name: str) -> Obj:
    """Stripe's answer to a delete: the id, the object's name and `deleted: true`."""
    return {"id": object_id, "object": object_name, "deleted": True}


def currency_param(params: Params, *, required: bool = True) -> str | None:
    value = as_str(params, "currency", required=required)
    if value is None:
        return None
    if not re.fullmatch(r"[a-zA-Z]{3}", value):
        raise InvalidRequestError(f"Invalid currency: {value}", param="currency")
    return value.lower()


def collection_terms(params: Params) -> tuple[str, int | None]:
    """`collection_method` and `days_until_due`, which `send_invoice` requires."""
    collection_method = as_str(params, "collection_method") or "charge_automatically"
    days_until_due = as_int(params, "days_until_due", minimum=0)
    if collection_method == "send_invoice" and days_until_due is None:
        raise InvalidRequestError(
            "Missing required param: days_until_due.",
            code="parameter_missing",
            param="days_until_due",
        )
    return collection_method, days_until_due


def plain_changes(params: Params, fields: tuple[str, ...]) -> dict[str, Any]:
    """The string fields present in `params`; an empty string clears a field (null)."""
    changes: dict[str, Any] = {}
    for name in fields:
        if name in params:
            value = as_str(params, name)
            changes[name] = value if value != "" else None
    return changes


def address_param(params: Params, key: str) -> Obj | None:
    raw = as_dict(params, key)
    if raw is None:
        return None
    return {**objects.EMPTY_ADDRESS, **{k: v for k, v in raw.items() if k in objects.EMPTY_ADDRESS}}


def customer_of(ctx: Context, params: Params, *, required: bool) -> Obj | None:
    customer_id = as_str(params, "customer", required=required)
    if not customer_id:
        return None
    return ctx.store.get("customer", customer_id, param="customer")


def check_amount(amount: int, param: str | None, currency: str | None = None) -> int:
    """`amount` itself, or Stripe's 400 `amount_too_large` when it exceeds eight digits."""
    if abs(amount) > MAX_AMOUNT:
        unit = f" {currency}" if currency else ""
        raise InvalidRequestError(
            f"Amount must be no more than {MAX_AMOUNT} in the currency's smallest unit "
            f"(999,999.99{unit}); it is {amount}.",
            code="amount_too_large",
            param=param,
        )
    return amount


def decimal_amount(params: Params, key: str, *, prefix: str = "") -> int:
    """`unit_amount_decimal` as whole minor units (rounded half to even), or Stripe's 400."""
    text = as_str(params, key) or "0"
    if len(text) > 40 or not _DECIMAL.fullmatch(text):
        raise InvalidRequestError(
            f"Invalid decimal: {text[:40]} (a decimal number of the currency's smallest unit, "
            "with at most 12 decimal places)",
            code="parameter_invalid_decimal",
            param=param_name(prefix, key),
        )
    value = Decimal(text)
    if value > MAX_AMOUNT:
        check_amount(MAX_AMOUNT + 1, param_name(prefix, key))
    return int(value.to_integral_value(rounding=ROUND_HALF_EVEN))
