"""The money flows that link objects: cards, charges, payment intents, invoices, subscriptions.

These keep linked objects consistent the way Stripe does — the charge's amount is the invoice's
amount paid, `pi.latest_charge` is the charge, the invoice_payment points at the payment intent,
`subscription.latest_invoice` at the invoice — so that a mirror built from the sandbox can be
checked for referential integrity.
"""

from __future__ import annotations

import logging
from typing import Any

from app.sandbox import objects
from app.sandbox.context import Context
from app.sandbox.errors import CardError, InvalidRequestError, NotFoundError
from app.sandbox.objects import TEST_CARDS, TestCard
from app.sandbox.store import Obj

logger = logging.getLogger(__name__)


# --- payment methods from test ids and tokens -------------------------------------------------


def new_card_payment_method(
    ctx: Context, test_card: TestCard, *, billing: Obj | None = None, metadata: Obj | None = None,
    exp_month: int = 12, exp_year: int = 2034,
) -> Obj:  # fmt: skip
    pm = objects.payment_method(
        ctx.new_id("pm"),
        ctx.now,
        ctx.livemode,
        card=objects.card_details(test_card, exp_month, exp_year),
        billing=billing,
        metadata=metadata,
    )
    return ctx.insert("payment_method", pm)


def test_card_named(name: str) -> TestCard | None:
    return TEST_CARDS.get(name)


def resolve_payment_method(ctx: Context, reference: str, *, param: str) -> Obj:
    """A stored pm_, or a new one made from `pm_card_visa`-style test ids and tokens."""
    if reference.startswith("pm_card_"):
        test_card = TEST_CARDS.get(reference.removeprefix("pm_card_"))
        if test_card is None:
            raise NotFoundError(f"No such PaymentMethod: '{reference}'", param=param)
        return new_card_payment_method(ctx, test_card)
    if reference.startswith("tok_"):
        return new_card_payment_method(ctx, card_of_token(ctx, reference, param=param))
    pm = ctx.store.table("payment_method").get(reference)
    if pm is None:
        raise NotFoundError(f"No such PaymentMethod: '{reference}'", param=param)
    return pm


def card_of_token(ctx: Context, reference: str, *, param: str) -> TestCard:
    """The card behind a token; a stored token can be used once, test tokens any number of times."""
    magic = TEST_CARDS.get(reference.removeprefix("tok_"))
    if magic is not None:
        return magic
    tok = ctx.store.table("token").get(reference)
    if tok is None:
        raise NotFoundError(f"No such token: '{reference}'", param=param)
    if tok["used"]:
        raise InvalidRequestError(
            f"You cannot use a Stripe token more than once: {reference}.",
            code="token_already_used",
            param=param,
        )
    ctx.update("token", tok, {"used": True})
    return objects.card_for(tok["card"])


def default_payment_method_of(ctx: Context, customer: Obj) -> str | None:
    settings = customer.get("invoice_settings") or {}
    return settings.get("default_payment_method") or customer.get("default_source")


# --- charges and payment intents ---------------------------------------------------------------


def create_charge(
    ctx: Context, *, amount: int, currency: str, customer: str | None, pm: Obj,
    payment_intent: str | None = None, description: str | None = None,
    metadata: Obj | None = None, receipt_email: str | None = None, capture: bool = True,
) -> Obj:  # fmt: skip
    """Charge a card; a declining test card makes a failed charge (the caller raises the 402)."""
    test_card = objects.card_for(pm["card"])
    declined = test_card if test_card.decline_code else None
    if test_card.authentication and payment_intent is None:
        declined = objects.AUTHENTICATION_DECLINE  # a charge has no way to ask the customer
    ch = objects.charge(
        ctx.new_id("ch"),
        ctx.now,
        ctx.livemode,
        amount=amount,
        currency=currency,
        customer=customer,
        payment_intent=payment_intent,
        payment_method=pm["id"],
        card=pm["card"],
        billing=pm["billing_details"],
        balance_transaction=ctx.new_id("txn"),
        description=description,
        metadata=metadata,
        receipt_email=receipt_email,
        declined=declined,
    )
    if not capture and declined is None:
        ch.update({"captured": False, "amount_captured": 0, "balance_transaction": None})
    ctx.insert("charge", ch, "charge.failed" if declined else "charge.succeeded")
    return ch


def decline_error(ch: Obj, pm: Obj, *, payment_intent: Obj | None = None) -> CardError:
    extra: dict[str, Any] = {
        "charge": ch["id"],
        "decline_code": ch["outcome"]["reason"],
        "payment_method": dict(pm),
    }
    if payment_intent is not None:
        extra["payment_intent"] = dict(payment_intent)
    return CardError(str(ch["failure_message"]), code=ch["failure_code"], extra=extra)


def last_payment_error(error: CardError, pm: Obj) -> Obj:
    """The decline as `payment_intent.last_payment_error` shows it: its fields without a value
    (`param`) are left out, as Stripe does, not sent as null."""
    body = {key: value for key, value in error.body()["error"].items() if value is not None}
    return {**body, "payment_method": dict(pm)}


def confirm_payment_intent(ctx: Context, pi: Obj, pm: Obj) -> Obj | None:
    """Confirm with a card: the charge it made, failed when declined (the caller raises the 402;
    state is kept, as Stripe does), or None when the card waits for the customer to authenticate."""
    if objects.card_for(pm["card"]).authentication:
        if pi["status"] == "requires_action" and pi["payment_method"] == pm["id"]:
            return None  # only the customer can authenticate: it stays where it is
        ctx.update(
            "payment_intent",
            pi,
            {
                "status": "requires_action",
                "payment_method": pm["id"],
                "next_action": objects.three_d_secure_action(pi["id"]),
                "last_payment_error": None,
            },
        )
        ctx.emit("payment_intent.requires_action", pi)
        return None
    manual = pi["capture_method"] == "manual"
    ch = create_charge(
        ctx,
        amount=pi["amount"],
        currency=pi["currency"],
        customer=pi["customer"],
        pm=pm,
        payment_intent=pi["id"],
        description=pi["description"],
        receipt_email=pi["receipt_email"],
        capture=not manual,
    )
    if ch["status"] == "failed":
        error = decline_error(ch, pm)
        ctx.update(
            "payment_intent",
            pi,
            {
                "status": "requires_payment_method",
                "latest_charge": ch["id"],
                "payment_method": None,
                "next_action": None,
                "last_payment_error": last_payment_error(error, pm),
            },
        )
        ctx.emit("payment_intent.payment_failed", pi)
        return ch
    if manual:
        changes: Obj = {"status": "requires_capture", "amount_capturable": pi["amount"]}
        event_type = "payment_intent.amount_capturable_updated"
    else:
        changes = {"status": "succeeded", "amount_received": pi["amount"]}
        event_type = "payment_intent.succeeded"
    changes.update(
        {
            "latest_charge": ch["id"],
            "payment_method": pm["id"],
            "last_payment_error": None,
            "next_action": None,
        }
    )
    ctx.update("payment_intent", pi, changes)
    ctx.emit(event_type, pi)
    return ch


# --- invoices ----------------------------------------------------------------------------------


def finalize_invoice(ctx: Context, inv: Obj) -> None:
    if inv["status"] != "draft":
        raise InvalidRequestError(
            "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
            code="invoice_not_editable",
        )
    customer = ctx.store.get("customer", inv["customer"], param="customer")
    sequence = customer["next_invoice_sequence"]
    ctx.update("customer", customer, {"next_invoice_sequence": sequence + 1}, "customer.updated")
    ctx.update(
        "invoice",
        inv,
        {
            "status": "open",
            "number": f"{customer['invoice_prefix']}-{sequence:04d}",
            "effective_at": ctx.now,
            "status_transitions": {**inv["status_transitions"], "finalized_at": ctx.now},
            "hosted_invoice_url": f"https://invoice.stripe.com/i/sandbox/{inv['id']}",
            "invoice_pdf": f"https://pay.stripe.com/invoice/sandbox/{inv['id']}/pdf",
            "webhooks_delivered_at": ctx.now,
            "next_payment_attempt": ctx.now + 3600
            if inv["collection_method"] == "charge_automatically"
            else None,
        },
    )
    ctx.emit("invoice.finalized", inv)
    if inv["amount_due"] == 0:
        mark_invoice_paid(ctx, inv, payment=None)


def mark_invoice_paid(ctx: Context, inv: Obj, payment: Obj | None) -> None:
    ctx.update(
        "invoice",
        inv,
        {
            "status": "paid",
            "amount_paid": inv["amount_due"],
            "amount_remaining": 0,
            "attempted": True,
            "attempt_count": inv["attempt_count"] + (1 if payment is not None else 0),
            "next_payment_attempt": None,
            "status_transitions": {**inv["status_transitions"], "paid_at": ctx.now},
        },
    )
    ctx.emit("invoice.paid", inv)
    ctx.emit("invoice.payment_succeeded", inv)
    sub = latest_invoice_subscription(ctx, inv)
    if sub is not None and sub["status"] in ("incomplete", "past_due", "unpaid"):
        # its latest invoice paid, the subscription is in good standing again
        ctx.update("subscription", sub, {"status": "active"}, "customer.subscription.updated")


def void_invoice(ctx: Context, inv: Obj) -> None:
    """Void an open invoice; its payment intent still waiting for a payment is canceled
    (`void_invoice`) and its invoice payment with it, as Stripe does."""
    if inv["status"] != "open":
        raise InvalidRequestError("You can only void open invoices.", code="invoice_not_open")
    pi = find_invoice_payment_intent(ctx, inv)
    if pi is not None:
        ctx.update(
            "payment_intent",
            pi,
            {
                "status": "canceled",
                "canceled_at": ctx.now,
                "cancellation_reason": "void_invoice",
                "amount_capturable": 0,
                "next_action": None,
            },
        )
        ctx.emit("payment_intent.canceled", pi)
        for inpay_id in ctx.store.table("invoice_payment").ids_where("payment_intent", pi["id"]):
            inpay = ctx.store.get("invoice_payment", inpay_id)
            if inpay["status"] == "open":
                transitions = {**inpay["status_transitions"], "canceled_at": ctx.now}
                # Stripe has no `invoice_payment.canceled` event
                ctx.update(
                    "invoice_payment",
                    inpay,
                    {"status": "canceled", "status_transitions": transitions},
                )
    transitions = {**inv["status_transitions"], "voided_at": ctx.now}
    ctx.update("invoice", inv, {"status": "void", "status_transitions": transitions})
    ctx.emit("invoice.voided", inv)


def latest_invoice_subscription(ctx: Context, inv: Obj) -> Obj | None:
    """The subscription whose latest invoice `inv` is, if any."""
    details = (inv.get("parent") or {}).get("subscription_details") or {}
    sub = ctx.store.table("subscription").get(details.get("subscription") or "")
    return sub if sub is not None and sub["latest_invoice"] == inv["id"] else None


def mark_invoice_uncollectible(ctx: Context, inv: Obj) -> None:
    """Stripe's end of failed-payment retries, with the settings "mark the invoice uncollectible"
    and "mark the subscription unpaid": the sandbox has no retry clock, so marking the latest
    invoice of a `past_due` subscription uncollectible stands for that moment and makes the
    subscription `unpaid` (it goes back to `active` once that invoice is paid)."""
    if inv["status"] != "open":
        raise InvalidRequestError(
            "You can only mark open invoices uncollectible.", code="invoice_not_open"
        )
    transitions = {**inv["status_transitions"], "marked_uncollectible_at": ctx.now}
    ctx.update("invoice", inv, {"status": "uncollectible", "status_transitions": transitions})
    ctx.emit("invoice.marked_uncollectible", inv)
    sub = latest_invoice_subscription(ctx, inv)
    if sub is not None and sub["status"] == "past_due":
        ctx.update("subscription", sub, {"status": "unpaid"}, "customer.subscription.updated")


def pay_invoice(ctx: Context, inv: Obj, pm: Obj | None, *, description: str) -> CardError | None:
    """Collect an open invoice through a payment intent; returns the decline to raise, if any."""
    if inv["status"] == "draft":
        finalize_invoice(ctx, inv)
    if inv["status"] == "paid":
        return None
    if inv["status"] not in ("open", "uncollectible"):  # Stripe still takes payment of the latter
        raise InvalidRequestError(
            f"Invoice is {inv['status']} and cannot be paid.", code="invoice_not_open"
        )
    pi = find_invoice_payment_intent(ctx, inv)
    if pi is None:
        pi = objects.payment_intent(
            ctx.new_id("pi"),
            ctx.now,
            ctx.livemode,
            amount=inv["amount_remaining"],
            currency=inv["currency"],
            customer=inv["customer"],
            payment_method=None,
            description=description,
        )
        ctx.insert("payment_intent", pi)
        inpay = objects.invoice_payment(
            ctx.new_id("inpay"),
            ctx.now,
            ctx.livemode,
            invoice=inv["id"],
            payment_intent=pi["id"],
            amount=pi["amount"],
            currency=pi["currency"],
            paid_at=None,
        )
        ctx.insert("invoice_payment", inpay)
        # announced once it belongs to the invoice: older versions show `payment_intent.invoice`
        ctx.emit("payment_intent.created", pi)
    if pm is None:
        return None
    ch = confirm_payment_intent(ctx, pi, pm)
    if ch is None:  # the customer must authenticate: the invoice stays open
        ctx.update("invoice", inv, {"attempted": True, "attempt_count": inv["attempt_count"] + 1})
        ctx.emit("invoice.payment_action_required", inv)
        return CardError(
            "This payment requires additional user action before it can be completed "
            "successfully. Payment can be completed using the PaymentIntent associated with "
            "the invoice.",
            code="invoice_payment_intent_requires_action",
            extra={"payment_intent": dict(pi)},
        )
    inpay_id = min(ctx.store.table("invoice_payment").ids_where("invoice", inv["id"]))
    inpay_obj = ctx.store.get("invoice_payment", inpay_id)
    if ch is not None and ch["status"] == "failed":
        ctx.update(
            "invoice",
            inv,
            {
                "attempted": True,
                "attempt_count": inv["attempt_count"] + 1,
                "next_payment_attempt": ctx.now + 86400 * 3,
            },
        )
        ctx.emit("invoice.payment_failed", inv)
        return decline_error(ch, pm, payment_intent=pi)
    ctx.update(
        "invoice_payment",
        inpay_obj,
        {
            "status": "paid",
            "amount_paid": pi["amount"],
            "status_transitions": {"canceled_at": None, "paid_at": ctx.now},
        },
    )
    ctx.emit("invoice_payment.paid", inpay_obj)
    mark_invoice_paid(ctx, inv, inpay_obj)
    return None


def find_invoice_payment_intent(ctx: Context, inv: Obj) -> Obj | None:
    for inpay_id in ctx.store.table("invoice_payment").ids_where("invoice", inv["id"]):
        inpay = ctx.store.get("invoice_payment", inpay_id)
        pi = ctx.store.table("payment_intent").get(inpay["payment"]["payment_intent"])
        if pi is not None and pi["status"] not in ("canceled", "succeeded"):
            return pi
    return None


# --- subscriptions -----------------------------------------------------------------------------


def subscription_invoice(
    ctx: Context, sub: Obj, customer: Obj, *, billing_reason: str, trial: bool
) -> Obj:
    """The invoice for one period of a subscription, one line per item, left as a draft."""
    invoice_id = ctx.new_id("in")
    lines = []
    for item in sub["items"]["data"]:
        price_obj = item["price"]
        product = ctx.store.table("product").get(price_obj["product"])
        product_name = product["name"] if product else price_obj["product"]
        amount = 0 if trial else (price_obj["unit_amount"] or 0) * item["quantity"]
        description = (
            f"Trial period for {product_name}" if trial else f"{item['quantity']} × {product_name}"
        )
        lines.append(
            objects.line_item(
                ctx.new_id("il"),
                ctx.livemode,
                invoice=invoice_id,
                amount=amount,
                currency=price_obj["currency"],
                description=description,
                period_start=item["current_period_start"],
                period_end=item["current_period_end"],
                quantity=item["quantity"],
                price_obj=price_obj,
                subscription=sub["id"],
                subscription_item=item["id"],
            )
        )
    first = sub["items"]["data"][0]
    inv = objects.invoice(
        invoice_id,
        ctx.now,
        ctx.livemode,
        customer_obj=customer,
        currency=sub["currency"],
        lines=lines,
        billing_reason=billing_reason,
        period_start=first["current_period_start"],
        period_end=first["current_period_start"],
        subscription=sub["id"],
        collection_method=sub["collection_method"],
        days_until_due=sub["days_until_due"],
        auto_advance=True,
    )
    return ctx.insert("invoice", inv, "invoice.created")


def start_subscription(
    ctx: Context, sub: Obj, customer: Obj, *, payment_behavior: str
) -> CardError | None:
    """Bill the first period as Stripe does on create; returns the decline to raise, if any."""
    trial = sub["status"] == "trialing"
    inv = subscription_invoice(
        ctx, sub, customer, billing_reason="subscription_create", trial=trial
    )
    ctx.update("subscription", sub, {"latest_invoice": inv["id"]})
    finalize_invoice(ctx, inv)
    if inv["status"] == "paid" or sub["collection_method"] == "send_invoice":
        return None
    pm_id = sub["default_payment_method"] or default_payment_method_of(ctx, customer)
    pm = None
    if pm_id is not None and payment_behavior != "default_incomplete":
        pm = ctx.store.table("payment_method").get(pm_id)
    error = pay_invoice(ctx, inv, pm, description="Subscription creation")
    if inv["status"] != "paid":
        ctx.update("subscription", sub, {"status": "incomplete"})
    return error
