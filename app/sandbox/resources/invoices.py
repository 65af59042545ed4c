"""Invoices, invoice items (pending lines of a customer's next invoice) and invoice payments."""

from __future__ import annotations

from app.sandbox import billing, objects
from app.sandbox.context import Context
from app.sandbox.errors import InvalidRequestError
from app.sandbox.listing import list_of, list_page
from app.sandbox.params import (
    Params,
    as_bool,
    as_dict,
    as_int,
    as_str,
    merged_metadata,
)
from app.sandbox.resources.common import (
    check_amount,
    collection_terms,
    currency_param,
    customer_of,
    deleted_stub,
    plain_changes,
)
from app.sandbox.store import Obj


def create_invoice(ctx: Context, params: Params) -> Obj:
    cus = customer_of(ctx, params, required=True)
    assert cus is not None
    collection_method, days_until_due = collection_terms(params)
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
        currency=currency_param(params, required=False) or cus["currency"] or "usd",
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
    cus = customer_of(ctx, params, required=True)
    assert cus is not None
    price_id = as_str(params, "price") or (as_dict(params, "pricing") or {}).get("price")
    quantity = as_int(params, "quantity", minimum=1) or 1
    if price_id:
        price_obj = ctx.store.get("price", str(price_id), param="price")
        amount = check_amount(
            (price_obj["unit_amount"] or 0) * quantity, "quantity", price_obj["currency"]
        )
    else:
        currency = currency_param(params) or "usd"
        amount = check_amount(as_int(params, "amount", required=True) or 0, "amount", currency)
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
        pending = ctx.store.pending_items.setdefault(cus["id"], [])
        # they become one invoice, whose total must stay within Stripe's maximum too
        check_amount(sum(item["amount"] for item in pending) + amount, "amount", line["currency"])
        pending.append(line)
    item = objects.invoice_item(
        item_id,
        ctx.livemode,
        line=line,
        customer=cus["id"],
        date=ctx.now,
        invoice=invoice_id or None,
        metadata=merged_metadata({}, params),
    )
    ctx.emit("invoiceitem.created", item)
    return item


def _add_line(ctx: Context, inv: Obj, line: Obj) -> None:
    lines = [*inv["lines"]["data"], line]
    total = check_amount(sum(item["amount"] for item in lines), "amount", inv["currency"])
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
    changes = plain_changes(params, ("description", "footer"))
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
    return deleted_stub(invoice_id, "invoice")


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
    billing.void_invoice(ctx, inv)
    return inv


def mark_invoice_uncollectible(ctx: Context, params: Params, invoice_id: str) -> Obj:
    inv = ctx.store.get("invoice", invoice_id)
    billing.mark_invoice_uncollectible(ctx, inv)
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
