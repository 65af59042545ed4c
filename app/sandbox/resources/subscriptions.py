"""Subscriptions and their items: create (which bills the first period), update, cancel."""

from __future__ import annotations

from typing import Any

from app.sandbox import billing, objects
from app.sandbox.context import Context
from app.sandbox.errors import CardError, InvalidRequestError
from app.sandbox.listing import list_page
from app.sandbox.params import (
    Params,
    as_bool,
    as_dict,
    as_int,
    as_list,
    as_str,
    merged_metadata,
)
from app.sandbox.resources.common import (
    MAX_TRIAL_DAYS,
    check_amount,
    collection_terms,
    customer_of,
    plain_changes,
)
from app.sandbox.store import Obj

_SUBSCRIPTION_STATUSES = (
    "active", "past_due", "unpaid", "canceled", "incomplete", "incomplete_expired",
    "trialing", "paused", "all", "ended",
)  # fmt: skip


def _subscription_items(
    ctx: Context,
    subscription_id: str,
    params_items: list[Any],
    start: int,
    trial_end: int | None,
    *,
    first_index: int = 0,
) -> list[Obj]:
    if not params_items:
        raise InvalidRequestError(
            "Missing required param: items.", code="parameter_missing", param="items"
        )
    items = []
    for index, raw in enumerate(params_items, start=first_index):
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
    _check_amounts(
        items, {id(item): f"items[{index}]" for index, item in enumerate(items, start=first_index)}
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
    cus = customer_of(ctx, params, required=True)
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
    collection_method, days_until_due = collection_terms(params)
    pm_id = as_str(params, "default_payment_method") or None
    if pm_id is not None:
        pm = ctx.store.get("payment_method", pm_id, param="default_payment_method")
        if pm["customer"] != cus["id"]:
            raise InvalidRequestError(
                "The payment method must be attached to the customer.",
                param="default_payment_method",
            )
    subscription_id = ctx.new_id("sub")
    trial_days = as_int(params, "trial_period_days", minimum=0, maximum=MAX_TRIAL_DAYS)
    trial_end_param = as_str(params, "trial_end")
    trial_end = None
    if trial_end_param and trial_end_param != "now":
        trial_end = as_int(
            params, "trial_end", minimum=ctx.now + 1, maximum=ctx.now + MAX_TRIAL_DAYS * 86400
        )
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
            if test_card.authentication:
                # Stripe creates no subscription that would wait for the customer
                raise CardError(
                    "This payment requires additional user action before it can be completed "
                    "successfully.",
                    code="invoice_payment_intent_requires_action",
                )
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
        # the subscription embeds a copy: the stored item is changed in place by updates
        ctx.store.insert("subscription_item", dict(item))
    ctx.insert("subscription", sub)
    if cus["currency"] is None:
        ctx.update("customer", cus, {"currency": sub["currency"]}, "customer.updated")
    billing.start_subscription(ctx, sub, cus, payment_behavior=payment_behavior)
    # one step at Stripe: the created event shows the first invoice and the status it led to
    ctx.emit("customer.subscription.created", sub)
    return sub


def _refresh_items(ctx: Context, sub: Obj) -> Obj:
    table = ctx.store.table("subscription_item")
    ids = sorted(table.ids_where("subscription", sub["id"]), key=table.key_of.__getitem__)
    # copies: stored items change in place, and the subscription's events must keep their state
    return objects.item_list(sub["id"], [dict(table.by_id[i]) for i in ids])


def update_subscription(ctx: Context, params: Params, subscription_id: str) -> Obj:
    sub = ctx.store.get("subscription", subscription_id)
    if sub["status"] == "canceled":
        allowed = {"metadata", "cancellation_details", "expand"}
        if set(params) - allowed:
            raise InvalidRequestError(
                "A canceled subscription can only update its cancellation_details and metadata.",
            )
    changes = plain_changes(params, ("description",))
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


def _item_amount(item: Obj) -> int:
    return (item["price"]["unit_amount"] or 0) * item["quantity"]


def _check_amounts(items: list[Obj], params_of: dict[int, str]) -> None:
    """Each item's `unit_amount × quantity`, and their sum (the period's invoice), within Stripe's max."""
    for item in items:
        param = params_of.get(id(item))
        check_amount(
            _item_amount(item),
            f"{param}[quantity]" if param else "items",
            item["price"]["currency"],
        )
    check_amount(
        sum(map(_item_amount, items)), "items", items[0]["price"]["currency"] if items else None
    )


def _update_items(ctx: Context, sub: Obj, raw_items: list[Any]) -> None:
    """Change quantities and prices, add and delete items; no proration invoices (see README).

    Every change is checked before any is made: a refused update leaves the items as they were.
    """
    table = ctx.store.table("subscription_item")
    current = sub["items"]["data"][0]
    kept: dict[str, Obj] = {
        item_id: table.by_id[item_id] for item_id in table.ids_where("subscription", sub["id"])
    }
    changed: dict[str, dict[str, Any]] = {}
    added: list[Obj] = []
    deleted: set[str] = set()
    params_of: dict[int, str] = {}
    for index, raw in enumerate(raw_items):
        if not isinstance(raw, dict):
            raise InvalidRequestError(f"Invalid items[{index}]", param=f"items[{index}]")
        prefix = f"items[{index}]["
        item_id = as_str(raw, "id")
        if item_id:
            item = ctx.store.get("subscription_item", item_id, param=f"items[{index}][id]")
            if item["subscription"] != sub["id"] or item_id in deleted:
                raise InvalidRequestError(
                    f"No such subscription item: '{item_id}'", param=f"items[{index}][id]"
                )
            if as_bool(raw, "deleted"):
                kept.pop(item_id, None)
                deleted.add(item_id)
                continue
            changes: dict[str, Any] = {}
            quantity = as_int(raw, "quantity", minimum=0, prefix=prefix)
            if quantity is not None:
                changes["quantity"] = quantity
            if "price" in raw:
                price_obj = ctx.store.get(
                    "price", as_str(raw, "price") or "", param=f"items[{index}][price]"
                )
                changes["price"] = price_obj
                changes["plan"] = objects.plan_of(price_obj)
            metadata = merged_metadata(item["metadata"], raw)
            if metadata is not None:
                changes["metadata"] = metadata
            changed[item_id] = {**changed.get(item_id, {}), **changes}
            kept[item_id] = {**item, **changed[item_id]}
            params_of[id(kept[item_id])] = f"items[{index}]"
        else:
            new = _subscription_items(
                ctx, sub["id"], [raw], current["current_period_start"], None, first_index=index
            )[0]
            new["current_period_end"] = current["current_period_end"]
            added.append(new)
            params_of[id(new)] = f"items[{index}]"
    if not kept and not added:
        raise InvalidRequestError("A subscription must keep at least one item.", param="items")
    _check_amounts([*kept.values(), *added], params_of)
    for item_id in sorted(set(table.ids_where("subscription", sub["id"])) - set(kept)):
        table.delete(item_id)
    for item_id, changes in changed.items():
        if item_id in kept:
            ctx.store.update("subscription_item", table.by_id[item_id], changes)
    for new in added:
        ctx.store.insert("subscription_item", new)


def end_subscription(
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
            "cancellation_details": objects.cancellation_details(reason, comment, feedback),
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
    return end_subscription(
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
