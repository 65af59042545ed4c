"""Objects as Stripe sends them: the request's API version, first pages, includables, `expand[]`.

The store keeps one shape of each object — the current one (basil and later), with whole lists
and without includable fields — and this module turns it into what goes on the wire:

- **Versions.** Before 2025-03-31.basil (see DESIGN.md, "Shapes that moved") the subscription
  carries `current_period_*`, the invoice `subscription`, `charge`, `payment_intent` and `paid`,
  charges and payment intents their `invoice`, and invoice lines `subscription`,
  `subscription_item`, `type`, `proration` and their `price`; basil moved them under `parent`,
  onto subscription items, or behind `invoice.payments`. The links that moved away (`charge.invoice`,
  `invoice.charge`, …) are looked up in the store when an object is served, and captured in an
  event's snapshot when the event is recorded, so an old-version event tells the state of its time.
- **First pages.** An invoice's `lines` and a subscription's `items` embed their first 10
  objects, `has_more` saying there is more, in API answers and events alike.
- **Includables.** `invoice.payments` is sent only when asked for with `expand[]=payments`, read
  from the invoice payments themselves (so it always agrees with `/v1/invoice_payments?invoice=`);
  `charge.refunds` likewise with `expand[]=refunds`, read from the refunds, from 2022-11-15 on
  (earlier versions embed it unasked, in answers and in events).
- **expand[]** replaces ids by their objects, each rendered the same way.
"""

from __future__ import annotations

from typing import Any

from app.sandbox import objects
from app.sandbox.errors import InvalidRequestError
from app.sandbox.objects import plan_of
from app.sandbox.params import Params, as_list
from app.sandbox.store import Obj, Store
from app.sandbox.versions import before_basil, embeds_charge_refunds

MAX_EXPAND_DEPTH = 4
# Stripe embeds only the first page (its default limit) of the lists inside an object; the rest
# is served by the list's own `url`.
EMBEDDED_PAGE = 10
EMBEDDED_LISTS = {"invoice": "lines", "subscription": "items"}
# The links basil removed, kept in event snapshots so that old versions can show them.
_LINKS: dict[str, tuple[str, ...]] = {
    "invoice": ("charge", "payment_intent"),
    "charge": ("invoice",),
    "payment_intent": ("invoice",),
}


# --- links that basil removed ---------------------------------------------------------------


def invoice_payment_of(store: Store, invoice_id: str) -> Obj | None:
    """The payment an old-version invoice points at: the paid one, else the latest."""
    table = store.table("invoice_payment")
    ids = table.ids_where("invoice", invoice_id)
    if not ids:
        return None
    payments = [table.by_id[i] for i in sorted(ids, key=table.key_of.__getitem__)]
    paid = [p for p in payments if p["status"] == "paid"]
    return (paid or payments)[-1]


def invoice_links(store: Store, invoice: Obj) -> tuple[str | None, str | None]:
    """`invoice.payment_intent` and `invoice.charge` as versions before basil send them."""
    payment = invoice_payment_of(store, invoice["id"])
    if payment is None:
        return None, None
    pi_id = payment["payment"]["payment_intent"]
    pi = store.table("payment_intent").get(pi_id)
    return pi_id, (pi["latest_charge"] if pi else None)


def payment_intent_invoice(store: Store, pi_id: str | None) -> str | None:
    """`payment_intent.invoice` (and `charge.invoice`) before basil."""
    if pi_id is None:
        return None
    ids = store.table("invoice_payment").ids_where("payment_intent", pi_id)
    if not ids:
        return None
    return str(store.table("invoice_payment").by_id[min(ids)]["invoice"])


def links(store: Store, obj: Obj) -> dict[str, Any]:
    kind = obj.get("object")
    if kind == "invoice":
        pi_id, charge_id = invoice_links(store, obj)
        return {"charge": charge_id, "payment_intent": pi_id}
    if kind == "payment_intent":
        return {"invoice": payment_intent_invoice(store, obj["id"])}
    if kind == "charge":
        return {"invoice": payment_intent_invoice(store, obj.get("payment_intent"))}
    return {}


def _link(store: Store, obj: Obj, name: str) -> Any:
    # an event's snapshot holds the link of its time; a stored object is looked up now
    return obj[name] if name in obj else links(store, obj)[name]


# --- first pages and event snapshots ---------------------------------------------------------


def first_page(store: Store, obj: Obj) -> Obj:
    """`obj` with its embedded list cut to the first page (the store keeps the whole list)."""
    field = EMBEDDED_LISTS.get(obj.get("object", ""))
    embedded = obj.get(field) if field else None
    if field is None or not isinstance(embedded, dict):
        return obj
    if len(embedded.get("data") or ()) <= EMBEDDED_PAGE:
        return obj
    if field == "items":
        # the same order as GET /v1/subscription_items, so its `starting_after` goes on from here
        table = store.table("subscription_item")
        subscription_items = table.ids_where("subscription", obj["id"])
        data, _ = table.page(limit=EMBEDDED_PAGE, candidates=subscription_items)
        # copies: stored items change in place, and an event must keep the state of its time
        data = [dict(item) for item in data]
    else:
        data = embedded["data"][:EMBEDDED_PAGE]  # GET /v1/invoices/{id}/lines pages in this order
    return {**obj, field: {**embedded, "data": data, "has_more": True}}


def event_snapshot(store: Store, obj: Obj) -> Obj:
    """What an event holds of `obj`: its state now, as the API would send it, plus the links that
    versions before basil show (dropped again when the event is rendered in basil or later)."""
    snapshot = first_page(store, obj)
    snapshot = dict(snapshot) if snapshot is obj else snapshot
    snapshot.update(links(store, obj))
    if obj.get("object") == "charge" and embeds_charge_refunds(store.api_version):
        snapshot["refunds"] = charge_refunds(store, obj["id"])
    return snapshot


def charge_refunds(store: Store, charge_id: str) -> Obj:
    """The includable `charge.refunds`: the first page of the charge's refunds."""
    table = store.table("refund")
    ids = table.ids_where("charge", charge_id)
    data, has_more = table.page(limit=EMBEDDED_PAGE, candidates=ids)
    return {
        "object": "list",
        "data": [dict(refund) for refund in data],  # copies: an event keeps the state of its time
        "has_more": has_more,
        "total_count": len(ids),
        "url": f"/v1/charges/{charge_id}/refunds",
    }


# --- versions --------------------------------------------------------------------------------


def _without(obj: Obj, names: tuple[str, ...]) -> Obj:
    if not any(name in obj for name in names):
        return obj
    return {k: v for k, v in obj.items() if k not in names}


def shape(store: Store, obj: Obj, version: str) -> Obj:
    """One object (not a list, not an event) in `version`'s shape, its first page embedded."""
    kind = obj.get("object")
    if kind is None or obj.get("deleted") is True:
        return obj
    obj = first_page(store, obj)
    if kind == "charge":
        obj = _charge(store, obj, version)
    if not before_basil(version):
        names = _LINKS.get(kind)
        return _without(obj, names) if names else obj
    if kind == "subscription":
        return _old_subscription(obj)
    if kind == "subscription_item":
        return _without(obj, ("current_period_start", "current_period_end"))
    if kind == "invoice":
        return _old_invoice(store, obj)
    if kind == "line_item":
        return _old_line(store, obj)
    if kind in ("charge", "payment_intent"):
        return {**obj, "invoice": _link(store, obj, "invoice")}
    return obj


def _charge(store: Store, charge: Obj, version: str) -> Obj:
    if embeds_charge_refunds(version):
        if "refunds" in charge:
            return charge
        return _sorted({**charge, "refunds": charge_refunds(store, charge["id"])})
    return _without(charge, ("refunds",))  # an event's snapshot in an older account version


def _sorted(obj: Obj) -> Obj:
    return dict(sorted(obj.items()))


def _old_subscription(sub: Obj) -> Obj:
    items = sub["items"]
    data = items["data"]
    first = data[0] if data else {}
    return _sorted(
        {
            **sub,
            "current_period_end": first.get("current_period_end"),
            "current_period_start": first.get("current_period_start"),
            "items": {
                **items,
                "data": [
                    _without(item, ("current_period_start", "current_period_end")) for item in data
                ],
            },
        }
    )


def _old_invoice(store: Store, invoice: Obj) -> Obj:
    new = {k: v for k, v in invoice.items() if k not in ("parent", "payments", *_LINKS["invoice"])}
    details = (invoice.get("parent") or {}).get("subscription_details")
    new["subscription"] = details["subscription"] if details else None
    new["subscription_details"] = {"metadata": details["metadata"]} if details else None
    new["quote"] = None
    new["payment_intent"] = _link(store, invoice, "payment_intent")
    new["charge"] = _link(store, invoice, "charge")
    new["paid"] = invoice["status"] == "paid"
    new["paid_out_of_band"] = False
    lines = invoice["lines"]
    new["lines"] = {**lines, "data": [_old_line(store, line) for line in lines["data"]]}
    return _sorted(new)


def _old_line(store: Store, line: Obj) -> Obj:
    parent = line.get("parent") or {}
    item_details = parent.get("subscription_item_details")
    invoice_item_details = parent.get("invoice_item_details")
    details = item_details or invoice_item_details or {}
    new = {k: v for k, v in line.items() if k not in ("parent", "pricing")}
    pricing = line.get("pricing") or {}
    price_details = pricing.get("price_details") or {}
    price = store.table("price").get(price_details.get("price") or "")
    if price is None and price_details:
        # an ad-hoc price (an invoice item made with `amount`): the line says all there is of it
        unit = pricing.get("unit_amount_decimal")
        price = objects.price(
            price_details["price"], line["period"]["start"], line["livemode"],
            product=price_details["product"],
            currency=line["currency"], unit_amount=None if unit is None else int(float(unit)),
            active=False,
        )  # fmt: skip
    new.update(
        subscription=details.get("subscription"),
        subscription_item=item_details["subscription_item"] if item_details else None,
        type="subscription" if item_details else "invoiceitem",
        proration=bool(details.get("proration")),
        proration_details=details.get("proration_details") or {"credited_items": None},
        invoice_item=invoice_item_details["invoice_item"] if invoice_item_details else None,
        price=price,
        plan=plan_of(price) if price is not None and price["recurring"] else None,
    )
    return _sorted(new)


def event(store: Store, evt: Obj, version: str | None = None) -> Obj:
    """An event with its object in `version` (the event's own version by default)."""
    version = version or evt["api_version"]
    data = evt["data"]
    inner = data.get("object")
    if not isinstance(inner, dict):
        return evt
    shaped = shape(store, inner, version)
    if shaped is inner and version == evt["api_version"]:
        return evt
    return {**evt, "api_version": version, "data": {**data, "object": shaped}}


# --- a whole answer ----------------------------------------------------------------------------


def render(store: Store, body: Obj, version: str) -> Obj:
    """An answer's body in `version`: objects shaped, lists item by item, events in their own
    version (Stripe renders an event once, when it happens)."""
    kind = body.get("object")
    if kind == "list" and isinstance(body.get("data"), list):
        data = body["data"]
        done = [render(store, obj, version) for obj in data]
        if any(new is not old for new, old in zip(done, data, strict=True)):
            return {**body, "data": done}
        return body
    if kind == "event":
        return event(store, body)
    return shape(store, body, version)


def response(store: Store, body: Obj, params: Params, version: str) -> Obj:
    """What an endpoint's result looks like on the wire: rendered, then `expand[]` applied."""
    body = render(store, body, version)
    paths = as_list(params, "expand")
    return expand(store, body, paths, version) if paths else body


def expand(store: Store, body: Obj, paths: list[Any], version: str) -> Obj:
    """Apply `expand[]` paths, copying only the objects along each path."""
    for path in paths:
        if not isinstance(path, str) or not path:
            raise InvalidRequestError("Invalid expand: paths are strings", param="expand")
        parts = path.split(".")
        if len([p for p in parts if p != "data"]) > MAX_EXPAND_DEPTH:
            raise InvalidRequestError(
                f"You cannot expand more than {MAX_EXPAND_DEPTH} levels of a property. Property: {path}",
                param="expand",
            )
        body = _Expander(store, version, path).object(body, parts)
    return body


class _Expander:
    def __init__(self, store: Store, version: str, path: str) -> None:
        self.store = store
        self.version = version
        self.path = path

    def refuse(self) -> InvalidRequestError:
        return InvalidRequestError(
            f"This property cannot be expanded ({self.path}).", param="expand"
        )

    def object(self, obj: Obj, parts: list[str]) -> Obj:
        if obj.get("deleted") is True:
            return obj  # a deleted object's stub has nothing to expand: Stripe sends it as is
        head = parts[0]
        if head in obj:
            value = obj[head]
        elif head == "payments" and obj.get("object") == "invoice":
            value = self.payments(obj)
        elif head == "refunds" and obj.get("object") == "charge":
            value = charge_refunds(self.store, obj["id"])
        else:
            raise self.refuse()
        copy = obj.copy()
        copy[head] = self.value(value, parts[1:])
        return copy

    def value(self, value: Any, rest: list[str]) -> Any:
        # The hot path of list pages with `data.` expansions: exact class checks, no helpers.
        cls = value.__class__
        if cls is list:
            return [self.value(item, rest) for item in value]
        if cls is str:
            target = self.store.find(value)
            if target is None:
                if rest:
                    raise self.refuse()
                return value
            value, cls = shape(self.store, target, self.version), dict
        if rest and cls is dict:
            return self.object(value, rest)
        return value

    def payments(self, invoice: Obj) -> Obj:
        """The includable `invoice.payments`: the first page of the invoice's payments."""
        if before_basil(self.version):
            raise self.refuse()  # invoice payments arrived with basil
        table = self.store.table("invoice_payment")
        data, has_more = table.page(
            limit=EMBEDDED_PAGE, candidates=table.ids_where("invoice", invoice["id"])
        )
        return {
            "object": "list",
            "data": data,
            "has_more": has_more,
            "total_count": len(table.ids_where("invoice", invoice["id"])),
            "url": f"/v1/invoice_payments?invoice={invoice['id']}",
        }
