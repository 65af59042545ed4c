"""Payment intents and charges."""

from __future__ import annotations

from app.sandbox import billing, objects
from app.sandbox.context import Context
from app.sandbox.errors import InvalidRequestError
from app.sandbox.listing import list_page
from app.sandbox.params import (
    Params,
    as_bool,
    as_int,
    as_str,
    merged_metadata,
)
from app.sandbox.resources.common import (
    check_amount,
    currency_param,
    customer_of,
    plain_changes,
)
from app.sandbox.store import Obj


def _amount(params: Params, currency: str) -> int:
    amount = as_int(params, "amount", required=True, minimum=1)
    assert amount is not None
    if currency == "usd" and amount < 50:
        raise InvalidRequestError(
            "Amount must be at least $0.50 usd", code="amount_too_small", param="amount"
        )
    return check_amount(amount, "amount", currency)


def create_payment_intent(ctx: Context, params: Params) -> Obj:
    currency = currency_param(params)
    assert currency is not None
    amount = _amount(params, currency)
    cus = customer_of(ctx, params, required=False)
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
    if amount > pi["amount"]:
        raise InvalidRequestError(
            f"The amount to capture ({amount}) is more than the amount capturable "
            f"({pi['amount']}).",
            code="amount_too_large",
            param="amount_to_capture",
        )
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
            "next_action": None,
        },
    )
    ctx.emit("payment_intent.canceled", pi)
    return pi


def update_payment_intent(ctx: Context, params: Params, pi_id: str) -> Obj:
    pi = ctx.store.get("payment_intent", pi_id)
    changes = plain_changes(params, ("description", "receipt_email", "statement_descriptor"))
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
        cus = customer_of(ctx, params, required=False)
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
    currency = currency_param(params)
    assert currency is not None
    amount = _amount(params, currency)
    cus = customer_of(ctx, params, required=False)
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
    changes = plain_changes(params, ("description", "receipt_email"))
    if "customer" in params:
        if ch["customer"] is not None:
            raise InvalidRequestError("This charge already has a customer.", param="customer")
        cus = customer_of(ctx, params, required=True)
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
