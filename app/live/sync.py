"""Keep the mirror current: poll Stripe's events after a cursor, or re-list resources whole.

`sync_events()` is one pass of `make sync`: it lists `/v1/events` created since the cursor
(less a short overlap: the list is eventually consistent), stores them in the inbox (the event
id de-duplicates), moves the cursor once the listing is complete, and drains the inbox through
the one apply path (app/live/events.py) that the webhook receiver's worker also uses. When there is
no cursor yet, or it is older than Stripe keeps events (30 days), the pass says so and runs a
full refresh instead: every resource listed whole, upserted, and the rows Stripe no longer
lists soft-deleted (the delete sweep); the cursor then starts at the refresh's start.

`sync_products()` … `sync_charges()` re-list one resource the same way; each returns its counts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import stripe
from sqlalchemy import Engine

from app.client.budget import budget_from_env
from app.client.stripe_api import (
    ApiPager,
    api_errors,
    get_json,
    mirrored_account,
    stripe_client,
)
from app.core.clock import stripe_now
from app.core.config import Settings, load_settings
from app.core.errors import PipelineError
from app.core.progress import ProgressBoard
from app.db.session import get_engine, raw_cursor
from app.live.events import ApplyCounts, drain, store_events, valid_event
from app.load.api_source import complete_child_list, paged_by
from app.load.ingest import IngestResult
from app.load.runner import run
from app.registry import BY_NAME, RESOURCES, Resource, load_order

log = logging.getLogger(__name__)

EVENT_RETENTION = timedelta(days=30)  # Stripe keeps events this long
# an event may show in the list a little after it was created (the list is eventually
# consistent): each pass re-reads the events created this long before the last listing began
OVERLAP = timedelta(seconds=10)


class StripeApi:
    """The API calls syncing needs, inside the shared request budget (FETCH_RATE)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = stripe_client(settings)
        self.pager = ApiPager(budget_from_env())

    @property
    def api_version(self) -> str:
        return self.settings.stripe_api_version

    @property
    def account(self) -> str:
        """The account whose objects this reads (STRIPE_ACCOUNT, else the key's own)."""
        return mirrored_account(self.settings)

    @property
    def requests(self) -> int:
        return self.pager.requests

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        """The JSON body as Stripe sent it (the SDK's objects would cost more to build than
        the request takes, and coerce some fields), read as the backfill reads it (get_json):
        a number no column could keep exactly stays apart, for the event or object holding it
        to be set aside (app.live.events), never rounded."""
        body: dict[str, Any] = get_json(self.client, path, params).data
        return body

    def events(self, since: datetime) -> Iterator[list[dict[str, Any]]]:
        """The events created at or after `since`, a page at a time, newest first."""
        params = {"limit": 100, "created[gte]": int(since.timestamp())}
        page: list[dict[str, Any]] = []
        with api_errors(self.settings, "events"):
            for event in self.pager.each(lambda p: self._get("/v1/events", p), params):
                page.append(event)
                if len(page) == 100:
                    yield page
                    page = []
        if page:
            yield page

    def retrieve(self, resource: Resource, object_id: str) -> dict[str, Any] | None:
        """The object as it is now; None when Stripe answers 404 (deleted)."""
        version = self.settings.stripe_api_version
        expand = [e.removeprefix("data.") for e in resource.expand_for(version)]
        params: dict[str, Any] = {"expand": expand} if expand else {}
        with api_errors(self.settings, resource.name):
            self.pager.budget.wait()
            self.pager.requests += 1
            try:
                found = self._get(f"/v1/{resource.name}/{quote(object_id, safe='')}", params)
            except stripe.InvalidRequestError as exc:
                if exc.http_status == 404:
                    return None
                raise
        self.complete_children(resource, found)
        return found

    def complete_children(self, resource: Resource, obj: dict[str, Any]) -> None:
        """Page the rest of embedded lists that say `has_more`, as the fetcher does."""
        with api_errors(self.settings, resource.name):
            for child in resource.children:
                complete_child_list(obj, child, paged_by(self.client, self.pager))


@dataclass
class SyncReport:
    """What one pass did."""

    listed: int = 0  # events listed since the cursor (the overlap included)
    stored: int = 0  # …of which new to the inbox
    applied: ApplyCounts = field(default_factory=ApplyCounts)
    refreshed: list[IngestResult] = field(default_factory=list)
    refresh_reason: str | None = None
    cursor: datetime | None = None
    requests: int = 0
    seconds: float = 0.0


def _account(settings: Settings, account: str | None = None) -> tuple[str, bool]:
    """The cursor's key: the account (given, else the run's: STRIPE_ACCOUNT or the key's own)
    and the mode."""
    livemode = settings.stripe_secret_key.startswith(("sk_live_", "rk_live_"))
    return account or mirrored_account(settings), livemode


def read_cursor(engine: Engine, settings: Settings, account: str | None = None) -> datetime | None:
    return _read_state(engine, settings, account)[0]


def _read_state(
    engine: Engine, settings: Settings, account: str | None = None
) -> tuple[datetime | None, datetime | None]:
    """The cursor (the newest event stored) and when the listing that stored it began."""
    account, livemode = _account(settings, account)
    with engine.connect() as conn:
        cursor = raw_cursor(conn)
        cursor.execute(
            "SELECT cursor, listed_at FROM sync_state WHERE account_id = %s AND livemode = %s",
            (account, livemode),
        )
        found = cursor.fetchone()
        conn.rollback()
    return (found[0], found[1]) if found else (None, None)


def write_cursor(
    engine: Engine,
    settings: Settings,
    at: datetime,
    last_event_id: str | None,
    *,
    refreshed: bool = False,
    listed_at: datetime | None = None,
    account: str | None = None,
) -> None:
    """Move the cursor forward (never back), in its own transaction."""
    account, livemode = _account(settings, account)
    with engine.begin() as conn:
        raw_cursor(conn).execute(
            "INSERT INTO sync_state "
            "(account_id, livemode, cursor, last_event_id, refreshed_at, listed_at) "
            "VALUES (%s, %s, %s, %s, CASE WHEN %s THEN now() END, %s) "
            "ON CONFLICT (account_id, livemode) DO UPDATE SET "
            "cursor = greatest(sync_state.cursor, excluded.cursor), "
            "last_event_id = CASE WHEN excluded.cursor >= sync_state.cursor "
            "  THEN excluded.last_event_id ELSE sync_state.last_event_id END, "
            "refreshed_at = coalesce(excluded.refreshed_at, sync_state.refreshed_at), "
            "listed_at = coalesce(excluded.listed_at, sync_state.listed_at), "
            "updated_at = now()",
            (account, livemode, at, last_event_id, refreshed, listed_at),
        )


def sync_events(
    engine: Engine | None = None,
    settings: Settings | None = None,
    *,
    retention: timedelta = EVENT_RETENTION,
    overlap: timedelta = OVERLAP,
    rejects_dir: Any = None,
    board: ProgressBoard | None = None,
) -> SyncReport:
    """One pass of `make sync`: new events into the inbox, the inbox into the mirror.
    `board` shows the full load's progress, when there is one."""
    settings = settings or load_settings()
    engine = engine or get_engine(settings.database_url)
    api = StripeApi(settings)
    report = SyncReport()
    started = time.monotonic()
    now = stripe_now()
    cursor, listed_at = _read_state(engine, settings)
    if cursor is None:
        report.refresh_reason = "no sync cursor yet: loading every resource whole first"
    elif cursor < now - retention:
        report.refresh_reason = (
            f"the cursor ({cursor:%Y-%m-%d %H:%M:%S} UTC) is older than Stripe's "
            f"{retention.days}-day event retention, so events may be lost: refreshing every "
            "resource whole instead"
        )
    if report.refresh_reason:
        log.warning("sync: %s", report.refresh_reason)
        report.refreshed = refresh(engine, settings, rejects_dir=rejects_dir, board=board)
        write_cursor(engine, settings, now, None, refreshed=True)
    else:
        assert cursor is not None
        newest, newest_id = cursor, None
        # new events, and those that may have shown late since the last listing began; a
        # quiet account re-reads only its newest event or two
        since = min(cursor, (listed_at or cursor) - overlap)
        for page in api.events(since):
            good = [e for e in page if valid_event(e) is None]
            if len(good) < len(page):
                log.warning(
                    "sync: %d listed item(s) are not events; skipped", len(page) - len(good)
                )
            with engine.begin() as conn:
                report.stored += store_events(conn, good, "sync", api.account)
            report.listed += len(page)
            for event in good:
                at = datetime.fromtimestamp(event["created"], tz=now.tzinfo)
                if at > newest or (at == newest and newest_id is None):
                    newest, newest_id = at, event["id"]
        # the listing is complete: only now may the cursor pass the events it covered
        write_cursor(engine, settings, newest, newest_id, listed_at=now)
    report.applied = drain(engine, api)
    report.cursor = read_cursor(engine, settings)
    report.requests = api.requests
    report.seconds = time.monotonic() - started
    return report


def refresh(
    engine: Engine,
    settings: Settings,
    names: list[str] | None = None,
    *,
    rejects_dir: Any = None,
    board: ProgressBoard | None = None,
) -> list[IngestResult]:
    """List resources whole from the API and load them as `make ingest-all SOURCE=api SWEEP=1`
    does (every listing at once inside the request budget; each resource's sweep only after its
    listing completed). A resource that failed fails the refresh: the cursor must not move."""
    results = run(
        engine.url.render_as_string(hide_password=False),
        load_order(names),
        settings,
        source="api",
        json_dir=settings.json_dir,
        single_file=None,
        mode="upsert",
        rejects_dir=rejects_dir or settings.rejects_dir,
        sweep=True,
        board=board,
    )
    failed = [f"{r.resource}: {r.error}" for r in results if r.error]
    if failed:
        raise PipelineError("the full load failed: " + "; ".join(failed))
    return results


def sync_resource(
    name: str, engine: Engine | None = None, settings: Settings | None = None
) -> IngestResult:
    """List one resource whole from the API into the mirror, with the delete sweep."""
    settings = settings or load_settings()
    engine = engine or get_engine(settings.database_url)
    if name not in BY_NAME:
        raise ValueError(f"unknown resource {name!r}; known: {', '.join(BY_NAME)}")
    return refresh(engine, settings, names=[name])[0]


def _sync_function(name: str) -> Callable[..., IngestResult]:
    def sync(engine: Engine | None = None, settings: Settings | None = None) -> IngestResult:
        return sync_resource(name, engine, settings)

    sync.__name__ = sync.__qualname__ = f"sync_{name}"
    sync.__doc__ = f"List {name} whole from the API into the mirror, with the delete sweep."
    return sync


# sync_products(), sync_prices(), sync_customers(), …: one per resource of the registry, named
# as the seed names them, so a resource added to the registry has its own at once
for _resource in RESOURCES:
    globals()[f"sync_{_resource.name}"] = _sync_function(_resource.name)
