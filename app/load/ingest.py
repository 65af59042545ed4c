"""The one ingest loop: Stripe objects in, rows upserted in bulk, every outcome counted.

The reading thread parses, transforms (bad objects set aside with their reason) and formats
each row as a line of COPY text; rows go, by id, to one of two writer threads with their own
connections. Per batch, in one transaction, a writer creates placeholder rows for referenced
objects that are missing, COPies the ids the table lacks straight into it, and moves the others
through a temporary staging table with one `INSERT … ON CONFLICT (account_id, id) DO UPDATE … WHERE
(columns) IS DISTINCT FROM (excluded columns)`, so unchanged rows are not rewritten. A crash
leaves whole batches; a re-run finishes the job.
"""

from __future__ import annotations

import logging
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg2
import psycopg2.extensions
from sqlalchemy import Connection, Table
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from app.core.config import DEFAULT_ACCOUNT
from app.core.errors import InputFileError, TransformError, first_line
from app.core.strict_json import Unreadable, id_in_text
from app.db.session import raw_cursor
from app.load.rejects import RejectSink
from app.load.rows import COPY_ESCAPES, CopyFormat, PreparedRow, formats_for, transform_object
from app.load.table_loader import Mode, TableLoader, TableStats
from app.registry import Resource

if TYPE_CHECKING:
    from app.core.progress import ProgressCallback

log = logging.getLogger(__name__)

MODES: tuple[Mode, ...] = ("upsert", "skip")
# rows per batch come from a cell budget, so wide tables get smaller batches…
CELLS_PER_BATCH = 60_000
# …and from a budget of COPY text, so objects that are large (an invoice with its lines is
# ~5 KB of JSON, ten times that as Python objects) do not make a batch of hundreds of MB: a
# batch is held while filled, queued and written, by each writer
BYTES_PER_BATCH = 2 << 20
# objects read between two calls of the progress callback
PROGRESS_EVERY = 256


@dataclass
class IngestResult:
    resource: str
    stats: dict[str, TableStats] = field(default_factory=dict)  # per table, parent first
    seconds: float = 0.0
    error: str | None = None  # a fatal error for this resource (file not JSON, missing…)

    def table(self, name: str) -> TableStats:
        return self.stats.setdefault(name, TableStats())

    @property
    def rejected(self) -> int:
        return sum(s.rejected for s in self.stats.values())


def batch_size_for(table: Table) -> int:
    return max(100, CELLS_PER_BATCH // len(table.columns))


def ingest(
    conn: Connection,
    resource: Resource,
    objects: Iterable[Any],
    *,
    mode: Mode = "upsert",
    api_version: str | None = None,
    rejects: RejectSink | None = None,
    source_name: str = "",
    progress: ProgressCallback | None = None,
    writers: int | None = None,
    state_at: datetime | None = None,
    sweep: bool = False,
    account: str = DEFAULT_ACCOUNT,
) -> IngestResult:
    """Load `objects` (Stripe dicts) of one Stripe `account` into the resource's table(s) and
    count what happened. Every row written carries the account; no other account's row is read
    or written (the sweep included).

    Batches are written by `writers` threads, each on its own connection (default
    WRITERS): PostgreSQL is the bottleneck of a load and uses one core per connection. When the
    caller already holds a transaction on `conn` (tests, sync), everything goes through `conn`,
    one batch at a time, each in a savepoint.

    `state_at`: the Stripe time of the objects' state (the start of the listing that read
    them); a row holding a newer state is not overwritten. None: unknown, the objects win.

    `sweep`: `objects` are a complete listing of the resource, started at `state_at`; once all
    of them are read and written, rows it did not list are soft-deleted (the delete sweep),
    except placeholders and rows holding a state newer than the listing. An input that breaks
    off raises before any sweep.

    `progress(n)` is told as objects are read (every few hundred, and the rest at the end).
    """
    if sweep and state_at is None:
        raise ValueError("the delete sweep needs the listing's start time (state_at)")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if conn.in_transaction():
        writers = 1
    result = IngestResult(resource.name)
    result.table(resource.name)
    for child in resource.children:
        result.table(child.name)
    started = time.monotonic()
    extra = [conn.engine.connect() for _ in range(max(1, writers or WRITERS) - 1)]
    batch_writers = [
        _Writer(c, resource, account, mode, rejects, source_name) for c in [conn, *extra]
    ]
    seen = _SeenIds() if sweep else None
    try:
        formats = formats_for(resource)
        size = batch_size_for(resource.table)
        # an id always goes to the same writer, which writes its batches in order: a later
        # version of an object can never be overwritten by an earlier one
        pending: list[list[PreparedRow]] = [[] for _ in batch_writers]
        pending_bytes = [0 for _ in batch_writers]
        with BatchWriter([w.load for w in batch_writers]) as queue_:
            for index, obj in enumerate(objects):
                result.table(resource.name).read += 1
                if seen is not None:
                    seen.add(obj)
                row = _transform(
                    resource,
                    obj,
                    index,
                    api_version,
                    formats,
                    source_name,
                    rejects,
                    result,
                    state_at,
                    account,
                )
                if row is not None:
                    slot = hash(row.id) % len(pending)
                    pending[slot].append(row)
                    pending_bytes[slot] += _text_size(row)
                    if len(pending[slot]) >= size or pending_bytes[slot] >= BYTES_PER_BATCH:
                        queue_.put(pending[slot], slot)
                        pending[slot], pending_bytes[slot] = [], 0
                if progress is not None and index % PROGRESS_EVERY == PROGRESS_EVERY - 1:
                    progress(PROGRESS_EVERY)
            if progress is not None:
                progress(result.table(resource.name).read % PROGRESS_EVERY)
            for slot, rows in enumerate(pending):
                if rows:
                    queue_.put(rows, slot)
        if seen is not None and state_at is not None:
            result.table(resource.name).deleted += sweep_unlisted(
                conn, resource, seen, state_at, account
            )
    except InputFileError as exc:
        # the input broke off: what was written stays (whole batches); say how much it was
        exc.partial = _merged(result, batch_writers, started)
        raise
    finally:
        for connection in extra:
            connection.close()
        if seen is not None:
            seen.close()
    return _merged(result, batch_writers, started)


def _text_size(row: PreparedRow) -> int:
    """The COPY text a row and its embedded items make (what a batch's size is measured in)."""
    size = len(row.line)
    for items in row.children.values():
        size += sum(len(item.line) for item in items)
    return size


class _SeenIds:
    """The ids a complete listing held, spooled to a temporary file (memory stays flat)."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile("w+", encoding="utf-8", errors="surrogateescape")
        self.unknown = 0  # objects whose id could not be read: the sweep cannot run

    def add(self, obj: Any) -> None:
        object_id = obj.get("id") if isinstance(obj, dict) else None
        if isinstance(obj, Unreadable):
            object_id = id_in_text(obj.text)
        if isinstance(object_id, str) and object_id and "\x00" not in object_id:
            self.file.write(object_id.translate(COPY_ESCAPES) + "\n")
        else:
            self.unknown += 1

    def close(self) -> None:
        self.file.close()


def sweep_unlisted(
    conn: Connection, resource: Resource, seen: _SeenIds, listed_at: datetime, account: str
) -> int:
    """Soft-delete the account's rows a complete listing of it (started at `listed_at`) did not
    hold; other accounts' rows are not the listing's to judge."""
    if resource.per_customer:
        # listed through their customers: a card missing there may be detached, not deleted
        log.info("%s: no delete sweep (listed per customer)", resource.name)
        return 0
    if seen.unknown:
        log.warning(
            "%s: no delete sweep: %d listed object(s) had no readable id",
            resource.name,
            seen.unknown,
        )
        return 0
    seen.file.flush()
    seen.file.seek(0)
    table = resource.table.name
    with _transaction(conn):
        cursor = raw_cursor(conn)
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS listed_ids (id text)")
        cursor.execute("TRUNCATE listed_ids")
        cursor.copy_expert("COPY listed_ids (id) FROM STDIN", seen.file)
        cursor.execute("ANALYZE listed_ids")
        cursor.execute(
            f"UPDATE {table} t SET deleted = true, deleted_at = now(), synced_at = now(), "
            "state_at = %s WHERE t.account_id = %s AND NOT t.deleted AND NOT t.is_placeholder "
            "AND (t.state_at IS NULL OR t.state_at < %s) "
            "AND NOT EXISTS (SELECT FROM listed_ids l WHERE l.id = t.id)",
            (listed_at, account, listed_at),
        )
        swept = max(cursor.rowcount, 0)
    if swept:
        log.info("%s: %d row(s) Stripe no longer lists marked deleted", resource.name, swept)
    return swept


def _merged(result: IngestResult, writers: list[_Writer], started: float) -> IngestResult:
    for writer in writers:
        for table, stats in writer.result.stats.items():
            result.table(table).add(stats)
        writer.result.stats.clear()
    result.seconds = time.monotonic() - started
    return result


# connections writing batches at once: on two cores, two backends keep PostgreSQL busy while
# Python parses (measured: 50,000 charges in 3.8 s with two, 5.9 s with one)
WRITERS = 2


class _Writer:
    """One connection's share of the batches, with its own loaders and its own counts."""

    def __init__(
        self,
        conn: Connection,
        resource: Resource,
        account: str,
        mode: Mode,
        rejects: RejectSink | None,
        source_name: str,
    ) -> None:
        self.conn = conn
        self.resource = resource
        self.mode = mode
        self.rejects = rejects
        self.source_name = source_name
        self.result = IngestResult(resource.name)
        # a listing's rows: of a state read in some second, which a same-second event may follow
        self.loader = TableLoader(conn, resource.table, account, ties="keep")
        self.child_loaders = {
            c.name: TableLoader(conn, c.table, account, ties="keep") for c in resource.children
        }

    def load(self, rows: list[PreparedRow]) -> None:
        _load_batch(
            self.conn,
            self.resource,
            self.loader,
            self.child_loaders,
            rows,
            self.mode,
            self.rejects,
            self.source_name,
            self.result,
        )


class BatchWriter:
    """Writes batches on other threads while the caller reads and transforms the next ones.

    The database works (COPY, upsert) while Python parses: psycopg2 releases the GIL while it
    waits on the server. Each writer has its own queue, written in order, holding one batch at
    most, so memory stays flat. The first error of a writer is raised in the caller at its next
    `put` or at the end.
    """

    def __init__(self, loads: list[Callable[[list[Any]], None]]) -> None:
        self.queues: list[queue.Queue[list[Any] | None]] = [queue.Queue(maxsize=1) for _ in loads]
        self.error: BaseException | None = None
        self.threads = [
            threading.Thread(
                target=self._run, args=(load, q), daemon=True, name=f"ingest-writer-{n}"
            )
            for n, (load, q) in enumerate(zip(loads, self.queues, strict=True))
        ]

    def __enter__(self) -> BatchWriter:
        for thread in self.threads:
            thread.start()
        return self

    def _run(
        self, load: Callable[[list[Any]], None], batches: queue.Queue[list[Any] | None]
    ) -> None:
        while True:
            rows = batches.get()
            if rows is None:
                return
            if self.error is None:
                try:
                    load(rows)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                    self.error = exc

    def put(self, rows: list[Any], writer: int = 0) -> None:
        self._raise_error()
        self.queues[writer].put(rows)

    def _raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # on the caller's error too, let the batches in flight finish whole before leaving
        for batches in self.queues:
            batches.put(None)
        for thread in self.threads:
            thread.join()
        if exc_type is None:
            self._raise_error()


def _transform(
    resource: Resource,
    obj: Any,
    index: int,
    api_version: str | None,
    formats: dict[str, CopyFormat],
    source_name: str,
    rejects: RejectSink | None,
    result: IngestResult,
    state_at: datetime | None,
    account: str,
) -> PreparedRow | None:
    """Transform one object and format its COPY line here, on the reading thread, so that the
    writer threads mostly wait on the server (and the GIL is free for the next object)."""
    try:
        return transform_object(resource, obj, api_version, formats, state_at, account=account)
    except TransformError as exc:
        result.table(resource.name).rejected += 1
        log.warning("%s: set aside %s", source_name or resource.name, exc)
        if rejects is not None:
            raw = obj.text if isinstance(obj, Unreadable) else obj
            rejects.add(resource.name, source_name, index, exc.object_id, exc.reason, raw)
        return None


def load_rows(
    conn: Connection,
    resource: Resource,
    rows: list[PreparedRow],
    result: IngestResult,
    *,
    mode: Mode = "upsert",
    rejects: RejectSink | None = None,
    source_name: str = "",
    account: str,
) -> None:
    """Write rows made by `transform_object` for `account` in the caller's transaction (one
    savepoint), as a batch of the ingest: placeholders, upsert, soft deletes, child rows;
    counts into `result`."""
    loader = TableLoader(conn, resource.table, account)
    children = {c.name: TableLoader(conn, c.table, account) for c in resource.children}
    _load_batch(conn, resource, loader, children, rows, mode, rejects, source_name, result)


def _load_batch(
    conn: Connection,
    resource: Resource,
    loader: TableLoader,
    child_loaders: dict[str, TableLoader],
    rows: list[PreparedRow],
    mode: Mode,
    rejects: RejectSink | None,
    source_name: str,
    result: IngestResult,
) -> None:
    """Load one batch in one transaction; if the database refuses it, find the rows it refuses."""
    try:
        for attempt in range(_RETRIES):
            try:
                with _transaction(conn):
                    _write_batch(resource, loader, child_loaders, rows, mode, result)
                return
            except (psycopg2.OperationalError, OperationalError) as exc:
                # two writers met on the same ids (a deadlock): the batch is rolled back whole
                cause = getattr(exc, "orig", exc)
                if not isinstance(cause, _RETRYABLE) or attempt == _RETRIES - 1:
                    raise
                log.info("%s: batch retried after %s", resource.name, first_line(exc))
                time.sleep(0.05 * (attempt + 1))
    except _DATABASE_ERRORS as exc:
        if len(rows) == 1:
            row = rows[0]
            reason = f"the database refused it: {first_line(exc)}"
            result.table(resource.name).rejected += 1
            log.warning(
                "%s: set aside %s %s: %s",
                source_name or resource.name,
                resource.name,
                row.id,
                reason,
            )
            if rejects is not None:
                rejects.add(resource.name, source_name, None, row.id, reason, row.values["raw"])
            return
        # bisect: the good rows still land, each bad one is named (only on this error path)
        middle = len(rows) // 2
        for half in (rows[:middle], rows[middle:]):
            _load_batch(
                conn, resource, loader, child_loaders, half, mode, rejects, source_name, result
            )


def _write_batch(
    resource: Resource,
    loader: TableLoader,
    child_loaders: dict[str, TableLoader],
    rows: list[PreparedRow],
    mode: Mode,
    result: IngestResult,
) -> None:
    stats = TableStats()
    rows = _last_of_each_id(rows, mode, stats)
    live = [r for r in rows if not r.deleted]
    gone = [r for r in rows if r.deleted]
    stats.placeholders += loader.ensure_referenced(live, skip=())
    written, held = loader.upsert(live, mode, stats, held=True)
    marked = loader.mark_deleted(gone)
    stats.deleted += marked
    stats.unchanged += len(gone) - marked
    # upsert: the items of every parent, so that a re-run also repairs items changed or lost
    # in the database (unchanged ones are compared, not rewritten), but not a parent's whose
    # row holds a newer state (its items are that state's); skip: only new parents'
    parents = {r.id for r in live} - held if mode == "upsert" else written
    for child in resource.children:
        child_stats = TableStats()
        child_stats.read = sum(len(r.children[child.name]) for r in live)
        child_rows = [c for r in live if r.id in parents for c in r.children[child.name]]
        child_stats.unchanged = child_stats.read - len(child_rows)
        child_rows = _last_of_each_id(child_rows, mode, child_stats)
        child_loader = child_loaders[child.name]
        # an item missing from a list cut short (has_more) may still exist: keep it
        whole = {r.id for r in live if r.id in parents and child.name in r.complete}
        child_loader.delete_stale_children(child.parent_column, whole, child_rows)
        stats.placeholders += child_loader.ensure_referenced(
            child_rows, skip=(child.parent_column,)
        )
        child_loader.upsert(child_rows, mode, child_stats)
        result.table(child.name).add(child_stats)
    result.table(resource.name).add(stats)


def _last_of_each_id(rows: list[PreparedRow], mode: Mode, stats: TableStats) -> list[PreparedRow]:
    """One row per id (ON CONFLICT cannot touch a row twice): the newest, or the first in skip."""
    by_id: dict[str, PreparedRow] = {}
    for row in rows:
        if mode == "skip" and row.id in by_id:
            continue
        by_id[row.id] = row
    stats.unchanged += len(rows) - len(by_id)
    return list(by_id.values())


_DATABASE_ERRORS = (psycopg2.DataError, psycopg2.IntegrityError, DataError, IntegrityError)
_RETRYABLE = psycopg2.extensions.TransactionRollbackError
_RETRIES = 4


class _transaction:
    """A batch's transaction: its own, or a savepoint when the caller already holds one
    (tests run each test in a transaction that is rolled back)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        if self.conn.in_transaction():
            self.tx: Any = self.conn.begin_nested()
            self.tx.__enter__()
            return
        self.tx = self.conn.begin()
        self.tx.__enter__()
        # the commit need not wait for the disk: a server crash loses at most the last batches
        # whole (never part of one), and a re-run of the idempotent ingest loads them again
        self.conn.exec_driver_sql("SET LOCAL synchronous_commit = off")

    def __exit__(self, *exc: Any) -> None:
        self.tx.__exit__(*exc)
