"""Stripe events into the mirror: the inbox, and the one apply path sync and webhooks share.

An event is stored in the `stripe_events` inbox first (its id is the key, so a duplicate
delivery or a re-listed event is a no-op), then applied: its `data.object` goes through the
registry's transformer and the ingest's bulk upsert, like a fetched object. Applying keeps the
newest state whatever the arrival order: each row records the Stripe time of its state
(`state_at`); an event older than that is skipped and counted `stale`; an event of the same
second with different content is settled by reading the object from the API. The rows and the
events' `applied_at` are written in one transaction, so a crash applies a batch whole or not at
all and a re-run applies nothing twice.

Each event belongs to an account (`event.account` for a connected account's event, else the
account of the run that stored it), kept in the inbox's `account_id`; it is applied to that
account's rows only.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from sqlalchemy import Connection, Engine

from app.core.clock import stripe_now
from app.core.config import DEFAULT_ACCOUNT, mask_secrets
from app.core.errors import PipelineError, TransformError
from app.core.strict_json import api_object_problem, api_object_text
from app.db.session import raw_cursor
from app.load.ingest import IngestResult, load_rows
from app.load.rows import PreparedRow, formats_for, holds_nul, transform_object
from app.registry import RESOURCES, Resource, load_order
from app.transformers.common import dig

log = logging.getLogger(__name__)

BY_OBJECT: dict[str, Resource] = {r.object_name: r for r in RESOURCES}
# `customer.subscription.deleted` is a cancellation (the object says `canceled`), not a deletion
_NOT_DELETIONS = {"subscription"}
DRAIN_BATCH = 500
REREAD_WORKERS = 8  # objects read from the API at once when events cannot settle them


class ObjectReader(Protocol):
    """What applying needs from the API: today's object (same-second ties, expansions an event
    cannot carry), whole child lists. It reads one account's objects: events of another
    account are applied without it."""

    @property
    def api_version(self) -> str: ...

    @property
    def account(self) -> str: ...

    def retrieve(self, resource: Resource, object_id: str) -> dict[str, Any] | None: ...

    def complete_children(self, resource: Resource, obj: dict[str, Any]) -> None: ...


@dataclass
class ApplyCounts:
    """What applying events did, per outcome, and the rows written per table."""

    outcomes: Counter[str] = field(default_factory=Counter)
    tables: dict[str, IngestResult] = field(default_factory=dict)
    rereads: int = 0

    def add(self, other: ApplyCounts) -> None:
        self.outcomes.update(other.outcomes)
        self.rereads += other.rereads
        for name, result in other.tables.items():
            mine = self.tables.setdefault(name, IngestResult(name))
            for table, stats in result.stats.items():
                mine.table(table).add(stats)

    @property
    def events(self) -> int:
        return sum(self.outcomes.values())


def event_time(event: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(event["created"], tz=UTC)


def is_deletion(event: dict[str, Any], kind: str) -> bool:
    return str(event.get("type", "")).endswith(".deleted") and kind not in _NOT_DELETIONS


def valid_event(event: Any) -> str | None:
    """Why this is not a Stripe event we can store, or None."""
    if not isinstance(event, dict) or event.get("object") != "event":
        return 'not a Stripe event (`object` is not "event")'
    if not isinstance(event.get("id"), str) or not event["id"]:
        return "the event has no id"
    if not isinstance(event.get("type"), str):
        return "the event has no type"
    created = event.get("created")
    if isinstance(created, bool) or not isinstance(created, int):
        return "the event has no `created` time"
    if not isinstance(dig(event, "data", "object"), dict):
        return "the event has no `data.object`"
    return None


def store_events(
    conn: Connection,
    events: Iterable[dict[str, Any]],
    source: str,
    account: str = DEFAULT_ACCOUNT,
) -> int:
    """Put events in the inbox; those already there (by id) are left as they are. Returns how
    many were new. The caller commits. An event belongs to `event.account` when it names one (a
    connected account's event, as Connect webhooks send it), else to `account`, the account of
    the run that received or listed it.

    An event PostgreSQL cannot hold as jsonb (a NUL in a string, a lone surrogate, an integer
    beyond 64 bits) is stored set aside: its exact text kept as a string, its outcome
    `rejected: <reason>`, never applied, so it neither blocks the inbox nor gets lost.
    """
    batch = list(events)
    if not batch:
        return 0
    rows = [(event, *_as_jsonb(event)) for event in batch]
    cursor = raw_cursor(conn)
    cursor.execute(
        "INSERT INTO stripe_events "
        "(account_id, id, type, created, livemode, api_version, raw, source, applied_at, outcome) "
        "SELECT a, id, type, to_timestamp(created), livemode, v, raw, %s, "
        "CASE WHEN outcome IS NOT NULL THEN now() END, outcome "
        "FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::boolean[], "
        "%s::text[], %s::jsonb[], %s::text[]) "
        "AS e(a, id, type, created, livemode, v, raw, outcome) "
        "ON CONFLICT (account_id, id) DO NOTHING",
        (
            source,
            [event_account(e, account) for e, _raw, _why in rows],
            [e["id"] for e, _raw, _why in rows],
            [e["type"] for e, _raw, _why in rows],
            [e["created"] for e, _raw, _why in rows],
            [e.get("livemode") for e, _raw, _why in rows],
            [e.get("api_version") for e, _raw, _why in rows],
            [raw for _e, raw, _why in rows],
            [f"rejected: {why}" if why else None for _e, _raw, why in rows],
        ),
    )
    for event, _raw, why in rows:
        if why:
            log.warning("event %s (%s) set aside: %s", event["id"], event["type"], why)
    return max(cursor.rowcount, 0)


def event_account(event: dict[str, Any], default: str) -> str:
    """The account whose objects the event changes: `event.account` (a connected account's
    event), else `default`, the account the event was received or listed for."""
    named = event.get("account")
    return named if isinstance(named, str) and named else default


def _as_jsonb(event: dict[str, Any]) -> tuple[str, str | None]:
    """The event as jsonb text, or a stand-in holding its exact text, and why."""
    # read from the API (make sync), an event may hold NaN (orjson would write null) or a
    # number no double holds (app.core.strict_json.InexactNumber)
    why = api_object_problem(event)
    if why is None:
        try:
            text = orjson.dumps(event).decode()
        except TypeError as exc:  # a lone surrogate, an integer beyond 64 bits
            why = f"PostgreSQL cannot store it as jsonb: {exc}"
        else:
            if "u0000" not in text or not holds_nul(event):
                return text, None
            why = "a string holds a NUL character (\\u0000), which PostgreSQL cannot store"
    exact = api_object_text(event)
    stand_in = {
        "id": event["id"],
        "object": "event",
        "type": event["type"],
        "created": event["created"],
        "unstorable": why,
        "text": exact,
    }
    return orjson.dumps(stand_in).decode(), why


def drain(
    engine: Engine,
    reader: ObjectReader | None,
    *,
    batch: int = DRAIN_BATCH,
    on_batch: Callable[[ApplyCounts], None] | None = None,
) -> ApplyCounts:
    """Apply every event of the inbox not yet applied, oldest first, a batch per transaction.

    Concurrent drains (a webhook worker and `make sync`) take different events: rows of the
    inbox are locked with SKIP LOCKED, the mirrored rows with FOR UPDATE. A batch that fails
    (the API down while a tie is settled) is applied again one event at a time, so one event
    never holds back the others: those that still fail stay pending, with the reason in their
    outcome, for the next drain. Order does not matter for correctness: the newest state wins.
    """
    total = ApplyCounts()
    failed: list[str] = []  # pending events that failed in this drain: not tried again in it
    while True:
        with engine.begin() as conn:
            pending = _pending(conn, batch, failed)
        if not pending:
            return total
        try:
            counts = _apply_pending(engine, pending, reader)
        except PipelineError as exc:
            log.warning("events: a batch failed (%s); applying its events one by one", exc)
            counts = ApplyCounts()
            for one in pending:
                try:
                    counts.add(_apply_pending(engine, [one], reader))
                except PipelineError as error:
                    failed.append(one[0])
                    _note_failure(engine, one[0], str(error))
        total.add(counts)
        if on_batch is not None:
            on_batch(counts)


def _pending(conn: Connection, batch: int, skip: list[str]) -> list[tuple[str, Any]]:
    cursor = raw_cursor(conn)
    cursor.execute(
        "SELECT id, raw FROM stripe_events WHERE applied_at IS NULL AND NOT (id = ANY(%s)) "
        "ORDER BY created, id LIMIT %s",
        (skip, batch),
    )
    return list(cursor.fetchall())


def _apply_pending(
    engine: Engine, pending: list[tuple[str, Any]], reader: ObjectReader | None
) -> ApplyCounts:
    """Apply these inbox events and mark them applied, in one transaction (locked, so a
    concurrent drain skips them; one that got there first has applied them already)."""
    with engine.begin() as conn:
        cursor = raw_cursor(conn)
        cursor.execute(
            "SELECT account_id, id, raw FROM stripe_events WHERE id = ANY(%s) "
            "AND applied_at IS NULL ORDER BY created, id FOR UPDATE SKIP LOCKED",
            ([event_id for event_id, _raw in pending],),
        )
        locked = cursor.fetchall()
        if not locked:
            return ApplyCounts()
        by_account: dict[str, list[dict[str, Any]]] = {}
        for account, _id, raw in locked:
            by_account.setdefault(account, []).append(raw)
        counts = ApplyCounts()
        outcomes: dict[tuple[str, str], str] = {}
        for account, events in sorted(by_account.items()):
            # the reader reads its own account's objects, not another's
            own = reader if reader is not None and reader.account == account else None
            applied, said = apply_events(conn, events, own, account=account)
            counts.add(applied)
            outcomes.update({(account, event_id): why for event_id, why in said.items()})
        keys = [(account, event_id) for account, event_id, _raw in locked]
        cursor.execute(
            "UPDATE stripe_events SET applied_at = clock_timestamp(), outcome = o.outcome "
            "FROM unnest(%s::text[], %s::text[], %s::text[]) AS o(account_id, id, outcome) "
            "WHERE stripe_events.account_id = o.account_id AND stripe_events.id = o.id",
            (
                [account for account, _id in keys],
                [event_id for _account, event_id in keys],
                [outcomes.get(key, "applied") for key in keys],
            ),
        )
    return counts


def _note_failure(engine: Engine, event_id: str, reason: str) -> None:
    with engine.begin() as conn:
        raw_cursor(conn).execute(
            "UPDATE stripe_events SET outcome = %s WHERE id = %s",
            (f"retrying: {mask_secrets(reason)}"[:1000], event_id),
        )


def apply_events(
    conn: Connection,
    events: list[dict[str, Any]],
    reader: ObjectReader | None,
    *,
    account: str = DEFAULT_ACCOUNT,
) -> tuple[ApplyCounts, dict[str, str]]:
    """Apply one account's events (oldest first) to its rows inside the caller's transaction;
    the counts and each event's outcome. `reader` reads that account's objects."""
    counts = ApplyCounts()
    outcomes: dict[str, str] = {}
    grouped: dict[str, list[dict[str, Any]]] = {}
    for event in sorted(events, key=lambda e: (e["created"], e["id"])):
        kind = dig(event, "data", "object", "object")
        resource = BY_OBJECT.get(kind) if isinstance(kind, str) else None
        if resource is None:
            outcomes[event["id"]] = "ignored"  # an object the mirror does not keep
            continue
        grouped.setdefault(resource.name, []).append(event)
    for resource in load_order(grouped):
        _apply_resource(conn, resource, grouped[resource.name], reader, counts, outcomes, account)
    counts.outcomes.update(outcomes.values())
    return counts, outcomes


def _apply_resource(
    conn: Connection,
    resource: Resource,
    events: list[dict[str, Any]],
    reader: ObjectReader | None,
    counts: ApplyCounts,
    outcomes: dict[str, str],
    account: str,
) -> None:
    latest: dict[str, dict[str, Any]] = {}
    ties: set[str] = set()
    kind = resource.object_name
    for event in events:  # oldest first: a later event of the same object supersedes
        object_id = dig(event, "data", "object", "id")
        if not isinstance(object_id, str) or not object_id:
            outcomes[event["id"]] = "rejected: the event's object has no id"
            continue
        earlier = latest.get(object_id)
        if earlier is not None:
            if is_deletion(earlier, kind):  # nothing happens to an object after its deletion
                outcomes[event["id"]] = "superseded"
                continue
            outcomes[earlier["id"]] = "superseded"
            if (
                earlier["created"] == event["created"]
                and _object(earlier) != _object(event)
                and not is_deletion(event, kind)
            ):
                ties.add(object_id)  # same second, different states: which is newer is unknown
        latest[object_id] = event
    if not latest:
        return
    table = resource.table.name
    cursor = raw_cursor(conn)
    cursor.execute(
        f"SELECT id, state_at, raw, deleted FROM {table} WHERE account_id = %s AND id = ANY(%s) "
        "ORDER BY id FOR UPDATE",
        (account, sorted(latest)),
    )
    held = {row_id: (state_at, raw, gone) for row_id, state_at, raw, gone in cursor.fetchall()}
    formats = formats_for(resource)
    kept: list[tuple[str, dict[str, Any], bool]] = []  # object id, its event, a deletion
    to_read: list[str] = []
    for object_id, event in latest.items():
        when, obj = event_time(event), _object(event)
        state_at, raw, gone = held.get(object_id, (None, None, False))
        deletion = is_deletion(event, kind)
        if deletion:  # final whatever its time: no state comes after it
            if gone:
                outcomes[event["id"]] = "unchanged"
                continue
        elif gone or (state_at is not None and when < state_at):
            outcomes[event["id"]] = "stale"  # older than the row's state, or after its deletion
            continue
        elif (
            object_id in ties
            or (state_at == when and raw is not None and raw != obj)
            or (reader is not None and _lacks_expansions(resource, obj, reader.api_version))
        ):
            if reader is None:
                outcomes[event["id"]] = "rejected: a same-second tie with no API to settle it"
                continue
            to_read.append(object_id)
        kept.append((object_id, event, deletion))
    reread = _reread(reader, resource, to_read, counts) if reader is not None and to_read else {}
    rows: list[PreparedRow] = []
    for object_id, event, deletion in kept:
        when, obj = reread.get(object_id) or (event_time(event), _object(event))
        deleted = deletion or obj.get("deleted") is True
        if reader is not None and not deleted:
            reader.complete_children(resource, obj)
        # read again or completed from the API: a number it holds may not be storable exactly
        problem = api_object_problem(obj) if reader is not None else None
        if problem is not None:
            outcomes[event["id"]] = f"rejected: {problem}"
            log.warning(
                "event %s: set aside %s %s: %s", event["id"], resource.name, object_id, problem
            )
            continue
        try:
            row = transform_object(
                resource, obj, event.get("api_version"), formats, when, account=account
            )
        except TransformError as exc:
            outcomes[event["id"]] = f"rejected: {exc.reason}"
            log.warning("event %s: set aside %s", event["id"], exc)
            continue
        if deleted:
            row.values["deleted"] = True
        rows.append(row)
        outcomes[event["id"]] = "deleted" if deleted else "applied"
    if not rows:
        return
    result = counts.tables.get(resource.name)
    if result is None:  # the parent's table first, then its children, as the summary shows them
        result = counts.tables[resource.name] = IngestResult(resource.name)
        for name in (resource.name, *(c.name for c in resource.children)):
            result.table(name)
    result.table(resource.name).read += len(rows)
    load_rows(conn, resource, rows, result, source_name="events", account=account)
    # a state confirmed by a newer event is newer, even when its content did not change
    cursor.execute(
        f"UPDATE {table} t SET state_at = v.s FROM unnest(%s::text[], %s::timestamptz[]) "
        "AS v(id, s) WHERE t.account_id = %s AND t.id = v.id "
        "AND (t.state_at IS NULL OR t.state_at < v.s)",
        ([r.id for r in rows], [r.state_at for r in rows], account),
    )


def _lacks_expansions(resource: Resource, obj: dict[str, Any], api_version: str) -> bool:
    """Whether the object lacks a field the listing expands (an event never carries one that
    Stripe sends only when expanded, such as an invoice's `payments`): then it is read again,
    so a row kept by events holds what a listing holds."""
    return any(
        path.removeprefix("data.").split(".")[0] not in obj
        for path in resource.expand_for(api_version)
    )


def _object(event: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = event["data"]["object"]
    return obj


def _reread(
    reader: ObjectReader, resource: Resource, object_ids: list[str], counts: ApplyCounts
) -> dict[str, tuple[datetime, dict[str, Any]]]:
    """Ask Stripe for these objects now (a same-second tie, an expansion no event carries): the
    object now is at least as new as any event of it. Several at a time, inside the request
    budget: against Stripe each read takes a few hundred milliseconds."""
    started = stripe_now()
    counts.rereads += len(object_ids)
    workers = min(REREAD_WORKERS, len(object_ids))
    with ThreadPoolExecutor(workers, thread_name_prefix="reread") as pool:
        found = list(pool.map(lambda object_id: reader.retrieve(resource, object_id), object_ids))
    now: dict[str, tuple[datetime, dict[str, Any]]] = {}
    for object_id, obj in zip(object_ids, found, strict=True):
        if obj is None:  # gone since: Stripe answers 404 for a deleted object
            obj = {"id": object_id, "object": resource.object_name, "deleted": True}
        now[object_id] = (started, obj)
    return now
