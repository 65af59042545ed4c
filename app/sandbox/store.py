"""The sandbox's state: one table per resource, kept in list order, with a few secondary indexes.

Lists are served newest first with exact pagination, so each table keeps its ids sorted by
`(created, seq)` — `seq` is a store-wide insertion counter that breaks ties within a second
deterministically — and answers a page by bisecting that order instead of sorting per request.
Objects are plain dicts that are never mutated below the top level (nested values are replaced,
not edited), so a shallow copy is a safe snapshot for events and expansion.
"""

from __future__ import annotations

import logging
import random
import string
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from app.sandbox.errors import InvalidRequestError, NotFoundError
from app.sandbox.versions import DEFAULT_API_VERSION

logger = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[int, int]

_ALPHABET = string.ascii_letters + string.digits
# Random bytes mapped onto the 62 id characters in one translate call: ids are the hot path of
# seeding (the slight bias of `% 62` does not matter for ids).
_ID_TABLE = bytes(ord(_ALPHABET[b % 62]) for b in range(256))
_MAX_SEQ = 1 << 62

# Which table an id belongs to, by prefix: expansion and lookups of foreign ids go through this.
ID_PREFIXES: dict[str, str] = {
    "prod": "product",
    "price": "price",
    "cus": "customer",
    "pm": "payment_method",
    "sub": "subscription",
    "si": "subscription_item",
    "in": "invoice",
    "inpay": "invoice_payment",
    "pi": "payment_intent",
    "ch": "charge",
    "re": "refund",
    "evt": "event",
    "tok": "token",
    "we": "webhook_endpoint",
}


def _field(name: str) -> Callable[[Obj], Any]:
    return lambda obj: obj.get(name)


def _invoice_subscription(obj: Obj) -> Any:
    # Since basil the invoice names its subscription only under parent.subscription_details.
    details = (obj.get("parent") or {}).get("subscription_details") or {}
    return details.get("subscription")


def _payment_intent(obj: Obj) -> Any:
    return obj["payment"].get("payment_intent")


# Secondary indexes: the filters a fetch uses per customer must not scan whole tables.
INDEXED_FIELDS: dict[str, dict[str, Callable[[Obj], Any]]] = {
    "product": {},
    "price": {"product": _field("product")},
    "customer": {"email": _field("email")},
    "payment_method": {"customer": _field("customer")},
    "subscription": {"customer": _field("customer")},
    "subscription_item": {"subscription": _field("subscription")},
    "invoice": {"customer": _field("customer"), "subscription": _invoice_subscription},
    "invoice_payment": {"invoice": _field("invoice"), "payment_intent": _payment_intent},
    "payment_intent": {"customer": _field("customer")},
    "charge": {"customer": _field("customer")},
    "refund": {"charge": _field("charge"), "payment_intent": _field("payment_intent")},
    "event": {},
    "token": {},
    "webhook_endpoint": {},
}


class IdFactory:
    """Stripe-looking ids (`cus_` + 14 characters, others + 24) from a seedable generator."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)

    def new(self, prefix: str) -> str:
        length = 14 if prefix in ("cus", "prod", "si") else 24
        return prefix + "_" + self._rng.randbytes(length).translate(_ID_TABLE).decode()

    def state(self) -> Any:
        """The generator's position, so a reloaded store goes on where it stopped."""
        return self._rng.getstate()

    def restore(self, state: Any) -> None:
        self._rng.setstate(state)


class Table:
    """One resource's objects: id → object, plus the list order and indexes."""

    def __init__(self, name: str, indexed: dict[str, Callable[[Obj], Any]] | None = None) -> None:
        self.name = name
        self.by_id: dict[str, Obj] = {}
        self.key_of: dict[str, Key] = {}
        self._keys: list[Key] = []
        self._ids: list[str] = []
        self._indexed = indexed or {}
        self._indexes: dict[str, dict[Any, set[str]]] = {f: {} for f in self._indexed}

    def __len__(self) -> int:
        return len(self.by_id)

    def get(self, object_id: str) -> Obj | None:
        return self.by_id.get(object_id)

    def _index_add(self, obj: Obj) -> None:
        for fname, extract in self._indexed.items():
            value = extract(obj)
            if value is not None:
                self._indexes[fname].setdefault(value, set()).add(obj["id"])

    def _index_remove(self, obj: Obj) -> None:
        for fname, extract in self._indexed.items():
            value = extract(obj)
            if value is not None:
                ids = self._indexes[fname].get(value)
                if ids is not None:
                    ids.discard(obj["id"])
                    if not ids:
                        del self._indexes[fname][value]

    def insert(self, obj: Obj, seq: int) -> None:
        object_id = obj["id"]
        key = (obj["created"], seq)
        self.by_id[object_id] = obj
        self.key_of[object_id] = key
        if not self._keys or key > self._keys[-1]:
            self._keys.append(key)
            self._ids.append(object_id)
        else:
            position = bisect_right(self._keys, key)
            self._keys.insert(position, key)
            self._ids.insert(position, object_id)
        self._index_add(obj)

    def bulk_insert(self, objects: Iterable[tuple[Obj, int]]) -> None:
        """Insert many at once and sort once: seeding inserts old objects after new ones."""
        for obj, seq in objects:
            object_id = obj["id"]
            self.by_id[object_id] = obj
            self.key_of[object_id] = (obj["created"], seq)
            self._index_add(obj)
        pairs = sorted(self.key_of.items(), key=lambda item: item[1])
        self._ids = [object_id for object_id, _ in pairs]
        self._keys = [key for _, key in pairs]

    def reindex(self, before: Obj, after: Obj) -> None:
        """Call after changing an object whose indexed fields may have changed."""
        if any(extract(before) != extract(after) for extract in self._indexed.values()):
            self._index_remove(before)
            self._index_add(after)

    def delete(self, object_id: str) -> Obj:
        obj = self.by_id.pop(object_id)
        key = self.key_of.pop(object_id)
        position = bisect_left(self._keys, key)
        del self._keys[position]
        del self._ids[position]
        self._index_remove(obj)
        return obj

    def ids_where(self, fname: str, value: Any) -> set[str]:
        return self._indexes[fname].get(value, set())

    def page(
        self,
        *,
        limit: int,
        candidates: set[str] | None = None,
        predicate: Callable[[Obj], bool] | None = None,
        created: dict[str, int] | None = None,
        starting_after: str | None = None,
        ending_before: str | None = None,
    ) -> tuple[list[Obj], bool]:
        """One page newest first, and whether more objects lie beyond it in the paging direction."""
        if candidates is None:
            keys, ids = self._keys, self._ids
        else:
            ordered = sorted(candidates, key=self.key_of.__getitem__)
            ids = ordered
            keys = [self.key_of[i] for i in ordered]
        low, high = 0, len(keys)
        for op, bound in (created or {}).items():
            if op == "gt":
                low = max(low, bisect_right(keys, (bound, _MAX_SEQ)))
            elif op == "gte":
                low = max(low, bisect_left(keys, (bound, -1)))
            elif op == "lt":
                high = min(high, bisect_left(keys, (bound, -1)))
            elif op == "lte":
                high = min(high, bisect_right(keys, (bound, _MAX_SEQ)))
        by_id = self.by_id
        found: list[Obj] = []
        if ending_before is not None:
            cursor = self._cursor_key(ending_before, "ending_before")
            position = max(low, bisect_right(keys, cursor))
            while position < high and len(found) <= limit:
                obj = by_id[ids[position]]
                if predicate is None or predicate(obj):
                    found.append(obj)
                position += 1
            has_more = len(found) > limit
            return found[:limit][::-1], has_more
        if starting_after is not None:
            cursor = self._cursor_key(starting_after, "starting_after")
            high = min(high, bisect_left(keys, cursor))
        position = high - 1
        if predicate is None:
            start = max(low, position - limit)
            found = [by_id[i] for i in reversed(ids[start : position + 1])]
        else:
            while position >= low and len(found) <= limit:
                obj = by_id[ids[position]]
                if predicate(obj):
                    found.append(obj)
                position -= 1
        has_more = len(found) > limit
        return found[:limit], has_more

    def _cursor_key(self, object_id: str, param: str) -> Key:
        key = self.key_of.get(object_id)
        if key is None:
            raise InvalidRequestError(
                f"No such {self.name}: '{object_id}'", code="resource_missing", param=param
            )
        return key


@dataclass
class Store:
    """All tables of one mode (test or live) and the counters that make ids and order."""

    livemode: bool = False
    seed: int | None = None
    # The account's default API version (a setting, not state): events are rendered in it.
    api_version: str = DEFAULT_API_VERSION
    tables: dict[str, Table] = field(init=False)
    ids: IdFactory = field(init=False)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _seq: int = field(default=0, init=False)
    # Deleted customers still answer retrieve with Stripe's deleted shape.
    tombstones: dict[str, str] = field(default_factory=dict, init=False)
    # Invoice items not yet on an invoice, per customer: pulled into its next invoice.
    pending_items: dict[str, list[Obj]] = field(default_factory=dict, init=False)
    # Each webhook endpoint's signing secret (Stripe shows it only when the endpoint is created).
    webhook_secrets: dict[str, str] = field(default_factory=dict, init=False)
    # Told of every recorded event, under the lock: webhook delivery (not part of the state).
    event_listener: Callable[[Store, Obj], None] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.tables = {name: Table(name, fields) for name, fields in INDEXED_FIELDS.items()}
            self.ids = IdFactory(self.seed)
            self._seq = 0
            self.tombstones = {}
            self.pending_items = {}
            self.webhook_secrets = {}

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def table(self, name: str) -> Table:
        return self.tables[name]

    def insert(self, resource: str, obj: Obj) -> Obj:
        self.tables[resource].insert(obj, self.next_seq())
        return obj

    def record_event(self, evt: Obj) -> Obj:
        """Store an event and tell the listener (webhook delivery) about it."""
        self.tables["event"].insert(evt, self.next_seq())
        if self.event_listener is not None:
            self.event_listener(self, evt)
        return evt

    def get(self, resource: str, object_id: str, *, param: str = "id") -> Obj:
        obj = self.tables[resource].get(object_id)
        if obj is None:
            raise NotFoundError(f"No such {resource}: '{object_id}'", param=param)
        return obj

    def find(self, object_id: str) -> Obj | None:
        """Any object by id, its table chosen by the id's prefix."""
        prefix = object_id.partition("_")[0]
        resource = ID_PREFIXES.get(prefix)
        if resource is None:
            return None
        return self.tables[resource].get(object_id)

    def update(self, resource: str, obj: Obj, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply top-level changes in place; returns Stripe's `previous_attributes` of what changed."""
        previous = {k: obj.get(k) for k, v in changes.items() if obj.get(k) != v}
        if previous:
            before = dict(obj)
            obj.update(changes)
            self.tables[resource].reindex(before, obj)
        return previous

    def counts(self) -> dict[str, int]:
        return {name: len(table) for name, table in self.tables.items()}

    def dump_state(self) -> dict[str, Any]:
        """Everything needed to rebuild this store, as plain builtins (call under the lock).

        Rows are `(object, seq)` in list order; the objects are the live dicts, not copies, so
        the caller must serialise before the lock is released.
        """
        return {
            "seq": self._seq,
            "ids": self.ids.state(),
            "tables": {
                name: [(table.by_id[i], table.key_of[i][1]) for i in table._ids]
                for name, table in self.tables.items()
            },
            "tombstones": self.tombstones,
            "pending_items": self.pending_items,
            "webhook_secrets": self.webhook_secrets,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Replace the contents with a `dump_state()`; list order and counters carry on as before."""
        with self.lock:
            self.reset()
            unknown = set(state["tables"]) - set(self.tables)
            if unknown:
                raise ValueError(f"unknown tables {sorted(unknown)}")
            for name, rows in state["tables"].items():
                if rows:
                    self.tables[name].bulk_insert(rows)
            self._seq = state["seq"]
            self.ids.restore(state["ids"])
            self.tombstones = state["tombstones"]
            self.pending_items = state["pending_items"]
            # absent from files written before webhook endpoints existed
            self.webhook_secrets = state.get("webhook_secrets", {})
