"""One request's view of the store: the clock, the ids, and the events each change records
(which the store hands to webhook delivery)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.sandbox import objects
from app.sandbox.render import event_snapshot
from app.sandbox.store import Obj, Store


@dataclass
class Context:
    store: Store
    now: int
    request_id: str | None = None
    idempotency_key: str | None = None
    record_events: bool = True
    # the `Stripe-Account` header: a connected account the request acts for
    stripe_account: str | None = None

    @property
    def livemode(self) -> bool:
        return self.store.livemode

    def new_id(self, prefix: str) -> str:
        return self.store.ids.new(prefix)

    def insert(self, resource: str, obj: Obj, event_type: str | None = None) -> Obj:
        self.store.insert(resource, obj)
        if event_type:
            self.emit(event_type, obj)
        return obj

    def update(
        self, resource: str, obj: Obj, changes: dict[str, Any], event_type: str | None = None
    ) -> Obj:
        previous = self.store.update(resource, obj, changes)
        if event_type and previous:
            self.emit(event_type, obj, previous)
        return obj

    def emit(self, event_type: str, obj: Obj, previous: dict[str, Any] | None = None) -> None:
        if not self.record_events:
            return
        # A shallow copy is a true snapshot: stored objects are only ever changed at the top level.
        # The snapshot embeds what the API would (first pages, no includables) and is rendered in
        # the account's default version, whatever version the request asked for.
        evt = objects.event(
            self.new_id("evt"),
            self.now,
            self.livemode,
            event_type=event_type,
            data_object=event_snapshot(self.store, obj),
            previous_attributes=previous,
            api_version=self.store.api_version,
            request_id=self.request_id,
            idempotency_key=self.idempotency_key,
        )
        self.store.record_event(evt)
