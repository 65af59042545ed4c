"""Fill a store with a realistic, deterministic object graph, in-process and in bulk.

Per customer: a card payment method (most customers, set as the invoice default), and for most
of those a subscription to one or two catalogue prices, billed period by period up to a fixed
end date — each period an invoice with its lines, an invoice_payment, a payment intent and a
charge. The statuses are mixed as in a real account: some subscriptions are canceled part-way,
some trialing; some have a declined last payment (past_due, an open invoice and a failed charge),
some a declined payment whose retries are over (unpaid, the invoice uncollectible); some paid by
a card that requires authentication (incomplete, the payment intent in requires_action, or after
23 hours incomplete_expired, the invoice void and its payment intent canceled); some are billed
with `send_invoice` (the latest invoice open, awaiting the customer). Some charges are refunded,
whole or in part; some customers have one-off payment intents (authorized and not captured,
abandoned, or without a payment method) and draft invoices. Each seeded object of the mirrored
resources gets the event that announces it (`customer.created`, `payment_method.attached`,
`charge.succeeded`, …), dated at the object's `created` and holding its final state, so that a
sync from `/v1/events` (or webhooks) sees every seeded object. The same `seed` on the same
starting state gives the same objects, events and ids.
"""

from __future__ import annotations

import gc
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from app.sandbox import objects
from app.sandbox.objects import TEST_CARDS
from app.sandbox.render import event_snapshot
from app.sandbox.store import IdFactory, Obj, Store

logger = logging.getLogger(__name__)

# A fixed "now" for seeded data, so that a seed is reproducible whatever the day.
SEED_END = 1_748_736_000  # 2025-06-01T00:00:00Z
_HISTORY_DAYS = 150
_FIRST_NAMES = (
    "Ada", "Alan", "Grace", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "Edsger",
    "Radia", "Tim", "Hedy", "Guido", "Katherine", "Donald", "Annie", "Bjarne", "Joan", "John",
)  # fmt: skip
_LAST_NAMES = (
    "Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson",
    "Allen", "Dijkstra", "Perlman", "Berners-Lee", "Lamarr", "van Rossum", "Johnson", "Knuth",
    "Easley", "Stroustrup", "Clarke", "McCarthy",
)  # fmt: skip
_PRODUCT_NAMES = ("Starter", "Team", "Business", "Enterprise", "Analytics", "Storage", "Support")
_CITIES = (("Paris", "FR", "75001"), ("Berlin", "DE", "10115"), ("Austin", "US", "73301"),
           ("Toronto", "CA", "M5H"), ("Sydney", "AU", "2000"), ("Tokyo", "JP", "100-0001"))  # fmt: skip
_GOOD_CARDS = [
    TEST_CARDS[n] for n in ("visa", "visa", "visa", "mastercard", "amex", "discover", "visa_debit")
]
_DECLINING_CARD = TEST_CARDS["chargeDeclinedInsufficientFunds"]
_AUTHENTICATING_CARD = TEST_CARDS["authenticationRequired"]
# Stripe expires a subscription whose first payment is still unsettled after 23 hours.
_INCOMPLETE_HOURS = 23
# The event that announces each seeded object (Stripe has no `*.created` for these two).
_CREATED_EVENTS = {
    "product": "product.created",
    "price": "price.created",
    "customer": "customer.created",
    "payment_method": "payment_method.attached",
    "subscription": "customer.subscription.created",
    "invoice": "invoice.created",
    "payment_intent": "payment_intent.created",
    "charge": "charge.succeeded",
    "refund": "refund.created",
}


# how far a seed is: (step, done, total), step "customers" then "events"
SeedProgress = Callable[[str, int, int], None]
_PROGRESS_EVERY = 500  # customers (or events) between two reports


class _Batch:
    """Objects per table, with store sequence numbers, inserted in one sort per table at the end."""

    def __init__(
        self, store: Store, rng: random.Random, progress: SeedProgress | None = None
    ) -> None:
        self.store = store
        self.rng = rng
        self.progress = progress
        self.rows: dict[str, list[tuple[Obj, int]]] = {name: [] for name in store.tables}
        self.line_items = 0

    def add(self, resource: str, obj: Obj) -> Obj:
        self.rows[resource].append((obj, self.store.next_seq()))
        return obj

    def commit(self, ids: IdFactory) -> tuple[dict[str, int], int]:
        """Insert the objects and the events that announce them; the counts and the events' number."""
        counts = {}
        for name, rows in self.rows.items():
            if rows:
                self.store.tables[name].bulk_insert(rows)
                counts[name] = len(rows)
        events = self._events(ids)
        if events:
            self.store.tables["event"].bulk_insert(events)
            listener = self.store.event_listener
            if listener is not None:
                for evt, _ in events:
                    listener(self.store, evt)
        return counts, len(events)

    def _events(self, ids: IdFactory) -> list[tuple[Obj, int]]:
        store = self.store
        livemode, api_version = store.livemode, store.api_version
        next_seq = store.next_seq
        new_id = ids.new
        events: list[tuple[Obj, int]] = []
        total = sum(len(self.rows[resource]) for resource in _CREATED_EVENTS)
        for resource, event_type in _CREATED_EVENTS.items():
            for obj, _ in self.rows[resource]:
                if self.progress is not None and len(events) % _PROGRESS_EVERY == 0:
                    self.progress("events", len(events), total)
                kind = event_type
                if resource == "charge" and obj["status"] == "failed":
                    kind = "charge.failed"
                # the object's final state, as the API sends it (nested values are never edited)
                evt = {
                    "id": new_id("evt"),
                    "object": "event",
                    "api_version": api_version,
                    "created": obj["created"],
                    "data": {"object": event_snapshot(store, obj)},
                    "livemode": livemode,
                    "pending_webhooks": 0,
                    "request": {"id": None, "idempotency_key": None},
                    "type": kind,
                }
                events.append((evt, next_seq()))
        if self.progress is not None:
            self.progress("events", len(events), total)
        return events


def _catalogue(batch: _Batch, ids: IdFactory, rng: random.Random, customers: int) -> list[Obj]:
    """Products with monthly and yearly prices; returns the recurring prices to subscribe to."""
    livemode = batch.store.livemode
    start = SEED_END - (_HISTORY_DAYS + 30) * 86400
    recurring: list[Obj] = []
    count = max(3, min(60, customers // 2000 + 3))
    for index in range(count):
        name = f"{_PRODUCT_NAMES[index % len(_PRODUCT_NAMES)]} {index // len(_PRODUCT_NAMES) + 1}"
        created = start + index * 60
        product = batch.add(
            "product",
            objects.product(
                ids.new("prod"), created, livemode, name=name, description=f"The {name} plan"
            ),
        )
        monthly_amount = rng.choice((900, 1900, 2900, 4900, 9900, 19900))
        monthly = batch.add(
            "price",
            objects.price(
                ids.new("price"), created + 1, livemode, product=product["id"], currency="usd",
                unit_amount=monthly_amount, recurring=objects.recurring("month"), nickname="Monthly",
            ),
        )  # fmt: skip
        product["default_price"] = monthly["id"]
        yearly = batch.add(
            "price",
            objects.price(
                ids.new("price"), created + 2, livemode, product=product["id"], currency="usd",
                unit_amount=monthly_amount * 10, recurring=objects.recurring("year"), nickname="Yearly",
            ),
        )  # fmt: skip
        batch.add(
            "price",
            objects.price(
                ids.new("price"), created + 3, livemode, product=product["id"], currency="usd",
                unit_amount=monthly_amount * 3, nickname="Setup fee",
            ),
        )  # fmt: skip
        recurring.extend((monthly, monthly, monthly, yearly))
    return recurring


def _bill_period(
    batch: _Batch, ids: IdFactory, cus: Obj, sub: Obj, pm: Obj, *, period_start: int,
    period_end: int, billing_reason: str, outcome: str, trial: bool,
) -> Obj:  # fmt: skip
    """One period's invoice; `outcome`: `paid`, `declined`, `action` (the card requires
    authentication) or `sent` (a send_invoice invoice the customer has yet to pay)."""
    rng = batch.rng
    livemode = batch.store.livemode
    invoice_id = ids.new("in")
    lines = []
    for item in sub["items"]["data"]:
        price_obj = item["price"]
        amount = 0 if trial else price_obj["unit_amount"] * item["quantity"]
        lines.append(
            objects.line_item(
                ids.new("il"), livemode, invoice=invoice_id, amount=amount, currency="usd",
                description=f"{item['quantity']} × {price_obj['nickname']} plan",
                period_start=period_start, period_end=period_end, quantity=item["quantity"],
                price_obj=price_obj, subscription=sub["id"], subscription_item=item["id"],
            )
        )  # fmt: skip
    batch.line_items += len(lines)
    inv = objects.invoice(
        invoice_id, period_start, livemode, customer_obj=cus, currency="usd", lines=lines,
        billing_reason=billing_reason, period_start=period_start, period_end=period_start,
        subscription=sub["id"], auto_advance=True, collection_method=sub["collection_method"],
        days_until_due=sub["days_until_due"],
    )  # fmt: skip
    sequence = cus["next_invoice_sequence"]
    cus["next_invoice_sequence"] = sequence + 1
    finalized = period_start + 60
    inv.update(
        number=f"{cus['invoice_prefix']}-{sequence:04d}",
        status="open",
        effective_at=finalized,
        status_transitions={**inv["status_transitions"], "finalized_at": finalized},
        hosted_invoice_url=f"https://invoice.stripe.com/i/sandbox/{invoice_id}",
        invoice_pdf=f"https://pay.stripe.com/invoice/sandbox/{invoice_id}/pdf",
        webhooks_delivered_at=finalized,
    )
    batch.add("invoice", inv)
    if inv["amount_due"] == 0:
        inv.update(
            status="paid",
            attempted=True,
            status_transitions={**inv["status_transitions"], "paid_at": finalized},
        )
        return inv
    if outcome == "sent":
        return inv
    paid_at = finalized + 5
    pi = objects.payment_intent(
        ids.new("pi"), finalized, livemode, amount=inv["amount_due"], currency="usd",
        customer=cus["id"], payment_method=pm["id"], description="Subscription update"
        if billing_reason == "subscription_cycle" else "Subscription creation",
    )  # fmt: skip
    declined = outcome == "declined"
    inpay = objects.invoice_payment(
        ids.new("inpay"), finalized, livemode, invoice=invoice_id, payment_intent=pi["id"],
        amount=pi["amount"], currency="usd", paid_at=None if outcome != "paid" else paid_at,
    )  # fmt: skip
    batch.add("payment_intent", pi)
    batch.add("invoice_payment", inpay)
    if outcome == "action":
        pi.update(status="requires_action", next_action=objects.three_d_secure_action(pi["id"]))
        inv.update(attempted=True, attempt_count=1)
        return inv
    card = _DECLINING_CARD if declined else objects.card_for(pm["card"])
    ch = objects.charge(
        ids.new("ch"), paid_at, livemode, amount=pi["amount"], currency="usd", customer=cus["id"],
        payment_intent=pi["id"], payment_method=pm["id"], card=pm["card"],
        billing=pm["billing_details"], balance_transaction=ids.new("txn"),
        description=pi["description"], declined=card if declined else None,
    )  # fmt: skip
    if declined:
        pi.update(status="requires_payment_method", latest_charge=ch["id"], payment_method=None)
        inv.update(attempted=True, attempt_count=1, next_payment_attempt=paid_at + 3 * 86400)
    else:
        pi.update(status="succeeded", amount_received=pi["amount"], latest_charge=ch["id"])
        inv.update(
            status="paid", amount_paid=inv["amount_due"], amount_remaining=0, attempted=True,
            attempt_count=1,
            status_transitions={**inv["status_transitions"], "paid_at": paid_at},
        )  # fmt: skip
    batch.add("charge", ch)
    if not declined and rng.random() < 0.03:
        _refund(batch, ids, ch, whole=rng.random() < 0.7)
    return inv


def _refund(batch: _Batch, ids: IdFactory, ch: Obj, *, whole: bool) -> None:
    """A refund some days after the charge (before the seed's end), whole or half."""
    rng = batch.rng
    created = min(ch["created"] + rng.randrange(3600, 10 * 86400), SEED_END - 1)
    amount = ch["amount"] if whole else ch["amount"] // 2
    refund = objects.refund(
        ids.new("re"), max(created, ch["created"]), batch.store.livemode, charge=ch,
        amount=amount, balance_transaction=ids.new("txn"),
        reason=rng.choice(("requested_by_customer", "requested_by_customer", "duplicate", None)),
    )  # fmt: skip
    ch.update(amount_refunded=amount, refunded=whole)
    batch.add("refund", refund)


def seed_store(
    store: Store, *, customers: int, seed: int = 0, progress: SeedProgress | None = None
) -> dict[str, Any]:
    """Generate `customers` customers and their graph into `store`; returns counts and speed.
    `progress(step, done, total)` is told how far it is, every few hundred customers, then
    events."""
    # The cyclic GC would rescan the growing heap of new dicts again and again (they hold no
    # cycles): pausing it more than doubles the speed.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _seed(store, customers=customers, seed=seed, progress=progress)
    finally:
        if gc_was_enabled:
            gc.enable()
        # Old, long-lived objects: keep them out of future collections of the server.
        gc.freeze()


def _seed(
    store: Store, *, customers: int, seed: int, progress: SeedProgress | None
) -> dict[str, Any]:
    started = time.perf_counter()
    # Keyed by the store's size too, so that seeding twice adds new objects instead of clashing ids.
    state = f"{seed}:{store.counts()['customer']}:{store.counts()['product']}"
    rng = random.Random(state)
    ids = IdFactory(int.from_bytes(state.encode(), "big") % (1 << 63))
    batch = _Batch(store, rng, progress)
    livemode = store.livemode
    plans = _catalogue(batch, ids, rng, customers)
    history = _HISTORY_DAYS * 86400
    for index in range(customers):
        if progress is not None and index % _PROGRESS_EVERY == 0:
            progress("customers", index, customers)
        first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
        city, country, postal_code = rng.choice(_CITIES)
        created = SEED_END - rng.randrange(history)
        cus = objects.customer(
            ids.new("cus"), created, livemode, name=f"{first} {last}",
            email=f"{first}.{last}.{index}@example.com".lower().replace(" ", ""),
            phone=f"+1555{index % 10_000_000:07d}", invoice_prefix=ids.new("x")[2:10].upper(),
            address={**objects.EMPTY_ADDRESS, "city": city, "country": country,
                     "line1": f"{index % 999 + 1} Main Street", "postal_code": postal_code},
            metadata={"seed_index": str(index)}, currency="usd",
        )  # fmt: skip
        batch.add("customer", cus)
        if rng.random() < 0.1:
            continue
        card = rng.choice(_GOOD_CARDS)
        pm = batch.add(
            "payment_method",
            objects.payment_method(
                ids.new("pm"), created + 30, livemode, customer=cus["id"],
                card=objects.card_details(card, rng.randint(1, 12), rng.randint(2026, 2032)),
                billing=objects.billing_details(cus["name"], cus["email"]),
            ),
        )  # fmt: skip
        cus["invoice_settings"] = objects.invoice_settings(pm["id"])
        if rng.random() < 0.03:
            _one_off(batch, ids, cus, pm)
        if rng.random() < 0.2:
            continue
        _seed_subscription(batch, ids, rng, cus, pm, plans)
    if progress is not None:
        progress("customers", customers, customers)
    counts, events = batch.commit(ids)
    elapsed = time.perf_counter() - started
    total = sum(counts.values()) + batch.line_items
    logger.info(
        "seeded %d objects and %d events for %d customers in %.2fs",
        total,
        events,
        customers,
        elapsed,
    )
    return {
        "customers": customers,
        "seed": seed,
        "objects": total,
        "events": events,
        "line_items": batch.line_items,
        "counts": counts,
        "seconds": round(elapsed, 3),
        "objects_per_second": round(total / elapsed) if elapsed > 0 else None,
    }


def _seed_subscription(
    batch: _Batch, ids: IdFactory, rng: random.Random, cus: Obj, pm: Obj, plans: list[Obj]
) -> None:
    livemode = batch.store.livemode
    start = cus["created"] + 60
    price_obj = rng.choice(plans)
    rec = price_obj["recurring"]
    sub_id = ids.new("sub")
    roll = rng.random()
    trial = roll < 0.05 and SEED_END - start < 14 * 86400
    declines = 0.15 <= roll < 0.2  # past_due
    unpaid = 0.2 <= roll < 0.22  # declined, retries over
    authenticates = 0.22 <= roll < 0.24  # incomplete, or incomplete_expired
    sent = 0.24 <= roll < 0.28  # send_invoice
    if authenticates:
        pm["card"] = objects.card_details(_AUTHENTICATING_CARD, pm["card"]["exp_month"],
                                          pm["card"]["exp_year"])  # fmt: skip
        if roll < 0.225:  # the customer is still to authenticate: a recent sign-up
            start = max(start, SEED_END - rng.randrange(_INCOMPLETE_HOURS * 3600))
    period_end = start + 14 * 86400 if trial else objects.add_interval(start, rec["interval"])
    items = [
        objects.subscription_item(
            ids.new("si"), start, subscription=sub_id, price_obj=price_obj,
            quantity=rng.choice((1, 1, 1, 2, 5)), period_start=start, period_end=period_end,
        )
    ]  # fmt: skip
    sub = objects.subscription(
        sub_id, start, livemode, customer=cus["id"], currency="usd", items=items,
        status="trialing" if trial else "active", start_date=start,
        billing_cycle_anchor=period_end if trial else start,
        trial_start=start if trial else None, trial_end=period_end if trial else None,
        collection_method="send_invoice" if sent else "charge_automatically",
        days_until_due=30 if sent else None,
    )  # fmt: skip
    cancel_at = SEED_END - rng.randrange(60 * 86400) if 0.05 <= roll < 0.15 else None
    period_start, reason = start, "subscription_create"
    inv = _bill_period(
        batch, ids, cus, sub, pm, period_start=start, period_end=period_end,
        billing_reason=reason, outcome="action" if authenticates else "paid", trial=trial,
    )  # fmt: skip
    while (
        period_end <= SEED_END
        and not trial
        and not authenticates
        and (cancel_at is None or period_end < cancel_at)
    ):
        period_start = period_end
        period_end = objects.add_interval(period_start, rec["interval"])
        last = period_end > SEED_END
        outcome = "paid"
        if last and (declines or unpaid):
            outcome = "declined"
        elif last and sent:
            outcome = "sent"
        inv = _bill_period(
            batch, ids, cus, sub, pm, period_start=period_start, period_end=period_end,
            billing_reason="subscription_cycle", outcome=outcome, trial=False,
        )  # fmt: skip
    item = {**items[0], "current_period_start": period_start, "current_period_end": period_end}
    # a copy: an update of the stored item must not change the subscription (nor its events)
    sub["items"] = objects.item_list(sub_id, [dict(item)])
    sub["latest_invoice"] = inv["id"]
    if inv["status"] == "open" and authenticates:
        if SEED_END - start < _INCOMPLETE_HOURS * 3600:
            sub["status"] = "incomplete"
        else:
            _expire(batch, sub, inv, start + _INCOMPLETE_HOURS * 3600)
    elif inv["status"] == "open" and unpaid and inv["attempted"]:
        marked = min(inv["created"] + 7 * 86400, SEED_END - 60)
        inv.update(
            status="uncollectible",
            next_payment_attempt=None,
            status_transitions={**inv["status_transitions"], "marked_uncollectible_at": marked},
        )
        sub["status"] = "unpaid"
    elif inv["status"] == "open" and inv["attempted"]:
        sub["status"] = "past_due"
    if cancel_at is not None and cancel_at > start:
        sub.update(
            status="canceled", canceled_at=cancel_at, ended_at=cancel_at,
            cancellation_details=objects.cancellation_details("cancellation_requested", feedback=rng.choice(
                ("too_expensive", "unused", "switched_service", None))),
        )  # fmt: skip
    batch.add("subscription_item", item)
    batch.add("subscription", sub)


def _expire(batch: _Batch, sub: Obj, inv: Obj, when: int) -> None:
    """Stripe's end of an incomplete subscription: incomplete_expired, its invoice void and the
    invoice's payment intent canceled (`void_invoice`)."""
    inv.update(status="void", status_transitions={**inv["status_transitions"], "voided_at": when})
    sub.update(status="incomplete_expired", ended_at=when)
    # the subscription's only period was billed last: its payment intent and invoice payment are
    # the last ones added
    for pi, _ in batch.rows["payment_intent"][-1:]:
        pi.update(status="canceled", canceled_at=when, cancellation_reason="void_invoice",
                  next_action=None)  # fmt: skip
    for inpay, _ in batch.rows["invoice_payment"][-1:]:
        inpay.update(status="canceled",
                     status_transitions={"canceled_at": when, "paid_at": None})  # fmt: skip


def _one_off(batch: _Batch, ids: IdFactory, cus: Obj, pm: Obj) -> None:
    """A payment outside subscriptions: authorized and not yet captured, abandoned, or waiting
    for a payment method; or a draft invoice being prepared."""
    rng, livemode = batch.rng, batch.store.livemode
    created = max(cus["created"] + 120, SEED_END - rng.randrange(6 * 86400))
    amount = rng.choice((1500, 2500, 4900, 12000))
    kind = rng.random()
    if kind < 0.25:
        lines = [
            objects.line_item(
                ids.new("il"), livemode, invoice="", amount=amount, currency="usd",
                description="Consulting", period_start=created, period_end=created, quantity=1,
                price_obj=objects.price("price_sandbox_adhoc", created, livemode,
                                        product="prod_sandbox_adhoc", currency="usd",
                                        unit_amount=amount),
                invoice_item=ids.new("ii"),
            )
        ]  # fmt: skip
        inv = objects.invoice(
            ids.new("in"), created, livemode, customer_obj=cus, currency="usd", lines=lines,
            billing_reason="manual", period_start=created, period_end=created,
        )  # fmt: skip
        for line in lines:
            line["invoice"] = inv["id"]
        batch.line_items += 1
        batch.add("invoice", inv)
        return
    with_pm = kind >= 0.4
    pi = objects.payment_intent(
        ids.new("pi"), created, livemode, amount=amount, currency="usd", customer=cus["id"],
        payment_method=pm["id"] if with_pm else None, description="One-off purchase",
        capture_method="manual" if kind >= 0.7 else "automatic",
    )  # fmt: skip
    if kind >= 0.7 and not objects.card_for(pm["card"]).authentication:
        ch = objects.charge(
            ids.new("ch"), created + 5, livemode, amount=amount, currency="usd",
            customer=cus["id"], payment_intent=pi["id"], payment_method=pm["id"],
            card=pm["card"], billing=pm["billing_details"], balance_transaction=None,
            description=pi["description"],
        )  # fmt: skip
        ch.update(captured=False, amount_captured=0)
        pi.update(status="requires_capture", amount_capturable=amount, latest_charge=ch["id"])
        batch.add("charge", ch)
    elif with_pm:
        pi.update(status="canceled", canceled_at=created + 3600, cancellation_reason="abandoned")
    batch.add("payment_intent", pi)
