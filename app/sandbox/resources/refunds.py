"""Refunds of card charges: whole or partial, as many as the charge's captured amount allows."""

from __future__ import annotations

from app.sandbox import objects
from app.sandbox.context import Context
from app.sandbox.errors import InvalidRequestError
from app.sandbox.listing import list_page
from app.sandbox.params import Params, as_int, as_str, merged_metadata
from app.sandbox.store import Obj

REASONS = ("duplicate", "fraudulent", "requested_by_customer")


def _money(amount: int, currency: str) -> str:
    return f"{amount / 100:.2f} {currency}" if currency != "usd" else f"${amount / 100:.2f}"


def _charge_to_refund(ctx: Context, params: Params) -> Obj:
    charge_id = as_str(params, "charge") or None
    pi_id = as_str(params, "payment_intent") or None
    if charge_id and pi_id:
        raise InvalidRequestError(
            "You cannot specify both `charge` and `payment_intent`; provide only one.",
            param="payment_intent",
        )
    if charge_id:
        return ctx.store.get("charge", charge_id, param="charge")
    if not pi_id:
        raise InvalidRequestError(
            "One of the following params should be provided for this request: "
            "payment_intent or charge.",
            code="parameter_missing",
        )
    pi = ctx.store.get("payment_intent", pi_id, param="payment_intent")
    ch = ctx.store.table("charge").get(pi["latest_charge"] or "")
    if pi["status"] != "succeeded" or ch is None:
        raise InvalidRequestError(
            f"This PaymentIntent ({pi_id}) does not have a successful charge to refund.",
            code="charge_not_refundable" if ch is not None else "resource_missing",
            param="payment_intent",
        )
    return ch


def create_refund(ctx: Context, params: Params) -> Obj:
    ch = _charge_to_refund(ctx, params)
    if ch["status"] != "succeeded" or not ch["captured"]:
        what = "failed" if ch["status"] == "failed" else "not been captured"
        raise InvalidRequestError(
            f"Charge {ch['id']} has {what}, so it cannot be refunded.",
            code="charge_not_refundable",
            param="charge",
        )
    remaining = ch["amount_captured"] - ch["amount_refunded"]
    if remaining <= 0:
        raise InvalidRequestError(
            f"Charge {ch['id']} has already been refunded.",
            code="charge_already_refunded",
            param="charge",
        )
    amount = as_int(params, "amount", minimum=1)
    if amount is None:
        amount = remaining
    elif amount > remaining:
        raise InvalidRequestError(
            f"Refund amount ({_money(amount, ch['currency'])}) is greater than unrefunded "
            f"amount on charge ({_money(remaining, ch['currency'])})",
            code="amount_too_large",
            param="amount",
        )
    reason = as_str(params, "reason") or None
    if reason is not None and reason not in REASONS:
        raise InvalidRequestError(
            f"Invalid reason: must be one of {', '.join(REASONS)}", param="reason"
        )
    refund = objects.refund(
        ctx.new_id("re"),
        ctx.now,
        ctx.livemode,
        charge=ch,
        amount=amount,
        balance_transaction=ctx.new_id("txn"),
        reason=reason,
        metadata=merged_metadata({}, params),
    )
    ctx.insert("refund", refund, "refund.created")
    refunded = ch["amount_refunded"] + amount
    ctx.update(
        "charge",
        ch,
        {"amount_refunded": refunded, "refunded": refunded == ch["amount_captured"]},
        "charge.refunded",
    )
    return refund


def update_refund(ctx: Context, params: Params, refund_id: str) -> Obj:
    refund = ctx.store.get("refund", refund_id)
    if set(params) - {"metadata", "expand"}:
        raise InvalidRequestError(
            "Only the metadata of a refund can be updated.",
            param=sorted(set(params) - {"metadata", "expand"})[0],
        )
    metadata = merged_metadata(refund["metadata"], params)
    if metadata is None:
        return refund
    previous = ctx.store.update("refund", refund, {"metadata": metadata})
    if previous:
        # Stripe sends both: `refund.updated` for some payment methods, `charge.refund.updated`
        # for every refund
        ctx.emit("charge.refund.updated", refund, previous)
        ctx.emit("refund.updated", refund, previous)
    return refund


def list_refunds(ctx: Context, params: Params) -> Obj:
    table = ctx.store.table("refund")
    charge_id = as_str(params, "charge")
    pi_id = as_str(params, "payment_intent")
    if charge_id:
        candidates = table.ids_where("charge", charge_id)
    elif pi_id:
        candidates = table.ids_where("payment_intent", pi_id)
    else:
        candidates = None

    def keep(obj: Obj) -> bool:
        return obj["payment_intent"] == pi_id

    return list_page(
        table,
        params,
        "/v1/refunds",
        candidates=candidates,
        predicate=keep if charge_id and pi_id else None,
    )


def list_charge_refunds(ctx: Context, params: Params, charge_id: str) -> Obj:
    ctx.store.get("charge", charge_id)
    table = ctx.store.table("refund")
    return list_page(
        table,
        params,
        f"/v1/charges/{charge_id}/refunds",
        candidates=table.ids_where("charge", charge_id),
    )
