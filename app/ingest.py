"""The one ingest loop: Stripe objects in, rows upserted in bulk, every outcome counted.

The reading thread parses, transforms (bad objects set aside with their reason) and formats
each row as a line of COPY text; rows go, by id, to one of two writer threads with their own
connections. Per batch, in one transaction, a writer creates placeholder rows for referenced
objects that are missing, COPies the ids the table lacks straight into it, and moves the others
through a temporary staging table with one `INSERT … ON CONFLICT (id) DO UPDATE … WHERE
(columns) IS DISTINCT FROM (excluded columns)`, so unchanged rows are not rewritten. A crash
leaves whole batches; a re-run finishes the job.
"""

from __future__ import annotations

import functools
import io
import logging
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast

import orjson
import psycopg2
import psycopg2.extensions
from sqlalchemy import Connection, Table
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from app.db.session import raw_cursor
from app.errors import InputFileError, TransformError, first_line
from app.rejects import RejectSink
from app.resources import Resource
from app.strict_json import Unreadable, id_in_text
from app.transformers.common import dig

if TYPE_CHECKING:
    from app.progress import ProgressCallback

log = logging.getLogger(__name__)

Mode = Literal["upsert", "skip"]
Ties = Literal["take", "keep"]
MODES: tuple[Mode, ...] = ("upsert", "skip")
# rows per batch come from a cell budget, so wide tables get smaller batches…
CELLS_PER_BATCH = 60_000
# …and from a budget of COPY text, so objects that are large (an invoice with its lines is
# ~5 KB of JSON, ten times that as Python objects) do not make a batch of hundreds of MB: a
# batch is held while filled, queued and written, by each writer
BYTES_PER_BATCH = 2 << 20
# columns the database fills itself or that only placeholders use
_MANAGED = ("synced_at", "is_placeholder", "referenced_by", "deleted_at")
# columns that say when, not what: a row whose content is the same is not rewritten for them
_WHEN = ("state_at",)
# objects read between two calls of the progress callback
PROGRESS_EVERY = 256
# a transformed row carries its embedded items (subscription items, invoice lines) under this key
CHILDREN = "__children__"
# …and its line of COPY text, made on the reading thread
LINE = "__line__"
# …and which of its embedded lists are whole (Stripe embeds the first page only: has_more)
COMPLETE = "__complete__"


@dataclass
class TableStats:
    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    deleted: int = 0
    placeholders: int = 0

    def add(self, other: TableStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


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
) -> IngestResult:
    """Load `objects` (Stripe dicts) into the resource's table(s) and count what happened.

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
    batch_writers = [_Writer(c, resource, mode, rejects, source_name) for c in [conn, *extra]]
    seen = _SeenIds() if sweep else None
    try:
        formats = formats_for(resource)
        size = batch_size_for(resource.table)
        # an id always goes to the same writer, which writes its batches in order: a later
        # version of an object can never be overwritten by an earlier one
        pending: list[list[dict[str, Any]]] = [[] for _ in batch_writers]
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
                )
                if row is not None:
                    slot = hash(row["id"]) % len(pending)
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
            result.table(resource.name).deleted += sweep_unlisted(conn, resource, seen, state_at)
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


def _text_size(row: dict[str, Any]) -> int:
    """The COPY text a row and its embedded items make (what a batch's size is measured in)."""
    size = len(row[LINE])
    for items in row.get(CHILDREN, {}).values():
        size += sum(len(item[LINE]) for item in items)
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
            self.file.write(object_id.translate(_COPY_ESCAPES) + "\n")
        else:
            self.unknown += 1

    def close(self) -> None:
        self.file.close()


def sweep_unlisted(
    conn: Connection, resource: Resource, seen: _SeenIds, listed_at: datetime
) -> int:
    """Soft-delete the rows a complete listing (started at `listed_at`) did not hold."""
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
            "state_at = %s WHERE NOT t.deleted AND NOT t.is_placeholder "
            "AND (t.state_at IS NULL OR t.state_at < %s) "
            "AND NOT EXISTS (SELECT FROM listed_ids l WHERE l.id = t.id)",
            (listed_at, listed_at),
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
        self.loader = TableLoader(conn, resource.table, ties="keep")
        self.child_loaders = {
            c.name: TableLoader(conn, c.table, ties="keep") for c in resource.children
        }

    def load(self, rows: list[dict[str, Any]]) -> None:
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


def transform_object(
    resource: Resource,
    obj: Any,
    api_version: str | None,
    formats: dict[str, CopyFormat],
    state_at: datetime | None = None,
) -> dict[str, Any]:
    """One source object as its row, with its COPY line and its embedded child rows; raises
    TransformError naming the object when it cannot be a row. Ingest, sync and check-db share
    it."""
    if isinstance(obj, Unreadable):
        raise TransformError(resource.name, id_in_text(obj.text), obj.reason)
    row = resource.transform(obj)
    row["api_version"] = api_version
    row["state_at"] = state_at
    # a deleted object's row is written without COPY, but its line proves it can be stored
    row[LINE] = formats[resource.name].copy_line(row, resource.name)
    if not row["deleted"]:
        if resource.children:
            row[CHILDREN] = embedded_rows(resource, row)
            row[COMPLETE] = complete_lists(resource, row)
            for name, items in row[CHILDREN].items():
                for item in items:
                    item["api_version"] = api_version
                    item["state_at"] = state_at
                    item[LINE] = formats[name].copy_line(item, resource.name, row["id"])
    return row


def _transform(
    resource: Resource,
    obj: Any,
    index: int,
    api_version: str | None,
    formats: dict[str, CopyFormat],
    source_name: str,
    rejects: RejectSink | None,
    result: IngestResult,
    state_at: datetime | None = None,
) -> dict[str, Any] | None:
    """Transform one object and format its COPY line here, on the reading thread, so that the
    writer threads mostly wait on the server (and the GIL is free for the next object)."""
    try:
        return transform_object(resource, obj, api_version, formats, state_at)
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
    rows: list[dict[str, Any]],
    result: IngestResult,
    *,
    mode: Mode = "upsert",
    rejects: RejectSink | None = None,
    source_name: str = "",
) -> None:
    """Write rows made by `transform_object` in the caller's transaction (one savepoint), as a
    batch of the ingest: placeholders, upsert, soft deletes, child rows; counts into `result`."""
    loader = TableLoader(conn, resource.table)
    children = {c.name: TableLoader(conn, c.table) for c in resource.children}
    _load_batch(conn, resource, loader, children, rows, mode, rejects, source_name, result)


def stripe_now() -> datetime:
    """Now, to the second below: the resolution of Stripe's times. A state read at 10:00:00.7
    is recorded as of 10:00:00, so an event of that second is a tie to settle, never stale."""
    return datetime.now(UTC).replace(microsecond=0)


def _load_batch(
    conn: Connection,
    resource: Resource,
    loader: TableLoader,
    child_loaders: dict[str, TableLoader],
    rows: list[dict[str, Any]],
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
                row["id"],
                reason,
            )
            if rejects is not None:
                rejects.add(resource.name, source_name, None, row["id"], reason, row["raw"])
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
    rows: list[dict[str, Any]],
    mode: Mode,
    result: IngestResult,
) -> None:
    stats = TableStats()
    rows = _last_of_each_id(rows, mode, stats)
    live = [r for r in rows if not r["deleted"]]
    gone = [r for r in rows if r["deleted"]]
    stats.placeholders += loader.ensure_referenced(live, skip=())
    written, held = loader.upsert(live, mode, stats, held=True)
    marked = loader.mark_deleted(gone)
    stats.deleted += marked
    stats.unchanged += len(gone) - marked
    # upsert: the items of every parent, so that a re-run also repairs items changed or lost
    # in the database (unchanged ones are compared, not rewritten), but not a parent's whose
    # row holds a newer state (its items are that state's); skip: only new parents'
    parents = {r["id"] for r in live} - held if mode == "upsert" else written
    for child in resource.children:
        child_stats = TableStats()
        child_stats.read = sum(len(r[CHILDREN][child.name]) for r in live)
        child_rows = [c for r in live if r["id"] in parents for c in r[CHILDREN][child.name]]
        child_stats.unchanged = child_stats.read - len(child_rows)
        child_rows = _last_of_each_id(child_rows, mode, child_stats)
        child_loader = child_loaders[child.name]
        # an item missing from a list cut short (has_more) may still exist: keep it
        whole = {r["id"] for r in live if r["id"] in parents and child.name in r[COMPLETE]}
        child_loader.delete_stale_children(child.parent_column, whole, child_rows)
        stats.placeholders += child_loader.ensure_referenced(
            child_rows, skip=(child.parent_column,)
        )
        child_loader.upsert(child_rows, mode, child_stats)
        result.table(child.name).add(child_stats)
    result.table(resource.name).add(stats)


def _last_of_each_id(
    rows: list[dict[str, Any]], mode: Mode, stats: TableStats
) -> list[dict[str, Any]]:
    """One row per id (ON CONFLICT cannot touch a row twice): the newest, or the first in skip."""
    by_id: dict[str, dict[str, Any]] = {}
    for row in rows:
        if mode == "skip" and row["id"] in by_id:
            continue
        by_id[row["id"]] = row
    stats.unchanged += len(rows) - len(by_id)
    return list(by_id.values())


def embedded_rows(resource: Resource, row: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The child rows (subscription items, invoice lines) a parent's embedded lists give, with
    the parent column filled in. Pure; a bad item raises a TransformError naming the parent,
    so the parent is set aside whole instead of failing a batch."""
    children: dict[str, list[dict[str, Any]]] = {}
    for child in resource.children:
        found = dig(row["raw"], *child.path) or []
        if not isinstance(found, list):
            raise TransformError(
                resource.name, row["id"], f"`{'.'.join(child.path)}` is not a list"
            )
        items = []
        for obj in found:
            try:
                item = child.transform(obj)
            except TransformError as exc:
                raise TransformError(resource.name, row["id"], f"{child.name}: {exc}") from exc
            item[child.parent_column] = row["id"]
            for column in child.inherit:
                if item.get(column) is None:
                    item[column] = row.get(column)
            items.append(item)
        children[child.name] = items
    return children


def complete_lists(resource: Resource, row: dict[str, Any]) -> set[str]:
    """The child tables whose embedded list in this parent is whole (`has_more` not true)."""
    return {
        child.name
        for child in resource.children
        if dig(row["raw"], *child.path[:-1], "has_more") is not True
    }


class CopyFormat:
    """How a table's rows are written as COPY text: the columns, and one line per row."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.columns = [c.name for c in table.columns if c.name not in _MANAGED]
        self._line = copy_line_function(table, self.columns)

    def copy_line(self, row: dict[str, Any], resource: str, object_id: str | None = None) -> str:
        try:
            line = self._line(row)
        except (TypeError, ValueError) as exc:
            raise TransformError(resource, object_id or row.get("id"), _why(exc)) from exc
        # PostgreSQL's text and jsonb cannot hold NUL: refused here, by name, rather than by
        # the database for a whole batch (a rare literal `u0000` only costs a closer look)
        if "\x00" in line or ("u0000" in line and holds_nul(row.get("raw"))):
            raise TransformError(
                resource,
                object_id or row.get("id"),
                "a string holds a NUL character (\\u0000), which PostgreSQL cannot store",
            )
        return line


def _why(exc: Exception) -> str:
    """The reason a value cannot be written, in the user's terms."""
    text = str(exc)
    if "surrogates not allowed" in text:
        return "a string holds a lone UTF-16 surrogate (not valid Unicode), which cannot be stored"
    if "Recursion limit" in text:
        return "nested too deeply to be stored"
    if "Integer exceeds 64-bit range" in text:
        return "an integer beyond 64 bits cannot be stored exactly"
    return text


def holds_nul(value: Any) -> bool:
    """Whether any string (or key) in a JSON value holds NUL; iterative, so any depth is safe."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def formats_for(resource: Resource) -> dict[str, CopyFormat]:
    """The COPY formats of a resource's table and its child tables, by table name."""
    return {
        resource.name: CopyFormat(resource.table),
        **{child.name: CopyFormat(child.table) for child in resource.children},
    }


class Upserted(NamedTuple):
    written: set[str]  # the ids inserted or updated
    held: set[str]  # the ids whose row holds a newer state than the one offered, and keeps it


class TableLoader:
    """Bulk writes into one table through a temporary staging table.

    `ties`: what a state of the same Stripe second as the row's does. "take" (events, whose
    same-second ties the caller settled by reading the object again): it replaces the row.
    "keep" (a listing, whose read may have come before a change in its own second): the row
    keeps its state unless the object is the same (a re-run still repairs its columns); a
    change after the listing's read has an event of its own, which the live path applies."""

    def __init__(self, conn: Connection, table: Table, *, ties: Ties = "take") -> None:
        self.conn = conn
        self.ties = ties
        self.table = table
        self.name = table.name
        self.format = CopyFormat(table)
        self.columns = self.format.columns
        self.stage = f"stage_{self.name}"
        self.foreign_keys = [(fk.parent.name, fk.column.table.name) for fk in table.foreign_keys]

    def _cursor(self) -> Any:
        return raw_cursor(self.conn)

    def ensure_referenced(self, rows: list[dict[str, Any]], skip: tuple[str, ...]) -> int:
        """Insert a placeholder row for every referenced id its table does not have yet."""
        created = 0
        cursor = self._cursor()
        for column, target in self.foreign_keys:
            if column in skip:
                continue
            refs: dict[str, str] = {}
            for row in rows:
                ref = row.get(column)
                if ref is not None and ref not in refs:
                    refs[ref] = row["id"]
            if not refs:
                continue
            # sorted: concurrent writers then take these locks in one order and cannot deadlock
            # over placeholders
            ordered = sorted(refs.items())
            cursor.execute(
                f"INSERT INTO {target} (id, referenced_by, is_placeholder) "
                "SELECT r.id, r.ref, true FROM unnest(%s::text[], %s::text[]) AS r(id, ref) "
                # most references exist: an anti-join skips them more cheaply than ON CONFLICT
                f"WHERE NOT EXISTS (SELECT FROM {target} t WHERE t.id = r.id) "
                "ON CONFLICT (id) DO NOTHING",
                ([ref for ref, _ in ordered], [by for _, by in ordered]),
            )
            if cursor.rowcount > 0:
                created += cursor.rowcount
                log.debug("%s: %d placeholder(s) in %s", self.name, cursor.rowcount, target)
        return created

    def _copy(self, table: str, rows: list[dict[str, Any]]) -> None:
        data = "".join([row[LINE] for row in rows])
        # the batch is already in memory: let psycopg2 take it in one read
        self._cursor().copy_expert(
            f"COPY {table} ({', '.join(self.columns)}) FROM STDIN",
            io.StringIO(data),
            size=len(data) + 1,
        )

    def upsert(
        self, rows: list[dict[str, Any]], mode: Mode, stats: TableStats, *, held: bool = False
    ) -> Upserted:
        """Insert new rows, update changed ones (upsert mode); the ids written, and (`held`)
        those whose row holds a newer state.

        Ids the table does not have yet are COPied straight into it: on a first load that halves
        the server's work. The others go through the staging table and one ON CONFLICT
        statement that rewrites only what changed. (Should another process insert one of the
        "new" ids meanwhile, COPY fails on the primary key, the batch rolls back and is retried
        in halves, and the retry finds the id and takes the ON CONFLICT path. This run's own
        writers never race for an id: each id has one writer.)
        """
        if not rows:
            return Upserted(set(), set())
        cursor = self._cursor()
        cursor.execute(f"SELECT id FROM {self.name} WHERE id = ANY(%s)", ([r["id"] for r in rows],))
        existing = {row_id for (row_id,) in cursor.fetchall()}
        new = [r for r in rows if r["id"] not in existing]
        written: set[str] = set()
        holding: set[str] = set()
        if new:
            self._copy(self.name, new)
            stats.inserted += len(new)
            written.update(r["id"] for r in new)
        if existing:
            updated = self._upsert_existing(
                [r for r in rows if r["id"] in existing], mode, stats, held
            )
            written |= updated.written
            holding = updated.held
        return Upserted(written, holding)

    def _upsert_existing(
        self, rows: list[dict[str, Any]], mode: Mode, stats: TableStats, held: bool
    ) -> Upserted:
        cursor = self._cursor()
        # every batch: a rolled-back batch takes the temp table it created with it
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {self.stage} (LIKE {self.name} INCLUDING DEFAULTS)"
        )
        cursor.execute(f"TRUNCATE {self.stage}")
        self._copy(self.stage, rows)
        cols = ", ".join(self.columns)
        updates = ", ".join(
            f"{c} = excluded.{c}" for c in self.columns if c not in ("id", "deleted")
        )
        # every column, not only raw: a typed column damaged by hand is repaired by a re-run
        compared = [c for c in self.columns if c not in ("id", "deleted", *_WHEN)]
        mine = ", ".join(f"{self.name}.{c}" for c in compared)
        theirs = ", ".join(f"excluded.{c}" for c in compared)
        # never an older state over a newer one (states of unknown time always apply); a state
        # of the row's own second as `ties` says
        tie = f"excluded.state_at = {self.name}.state_at"
        if self.ties == "keep" and "raw" in self.columns:
            tie += f" AND excluded.raw IS NOT DISTINCT FROM {self.name}.raw"
        newer = (
            f"(excluded.state_at IS NULL OR {self.name}.state_at IS NULL "
            f"OR excluded.state_at > {self.name}.state_at OR ({tie}))"
        )
        when = (
            f"(({mine}) IS DISTINCT FROM ({theirs}) AND {newer}) OR {self.name}.is_placeholder"
            if mode == "upsert"
            else f"{self.name}.is_placeholder"
        )
        cursor.execute(
            f"INSERT INTO {self.name} ({cols}) SELECT {cols} FROM {self.stage} "
            f"ON CONFLICT (id) DO UPDATE SET {updates}, is_placeholder = false, "
            f"referenced_by = NULL, synced_at = now() WHERE {when} "
            "RETURNING id, (xmax = 0) AS inserted"
        )
        written = cursor.fetchall()
        inserted = sum(1 for _id, new in written if new)
        stats.inserted += inserted
        stats.updated += len(written) - inserted
        stats.unchanged += len(rows) - len(written)
        holding: set[str] = set()
        if held and mode == "upsert" and "raw" in self.columns:
            # what still differs was refused: the row holds a newer state
            cursor.execute(
                f"SELECT s.id FROM {self.stage} s JOIN {self.name} t ON t.id = s.id "
                "WHERE t.raw IS DISTINCT FROM s.raw"
            )
            holding = {row_id for (row_id,) in cursor.fetchall()}
        return Upserted({row_id for row_id, _new in written}, holding)

    def mark_deleted(self, rows: list[dict[str, Any]]) -> int:
        """Soft delete: a `deleted: true` object flags its row; nothing is dropped."""
        if not rows:
            return 0
        cursor = self._cursor()
        # a placeholder (never seen) takes the deleted object as its raw; a known row keeps
        # the object as it was last seen
        cursor.execute(
            f"INSERT INTO {self.name} (id, raw, deleted, api_version, state_at, deleted_at) "
            "SELECT id, raw, true, v, s, now() "
            "FROM unnest(%s::text[], %s::jsonb[], %s::text[], %s::timestamptz[]) "
            "AS r(id, raw, v, s) "
            f"ON CONFLICT (id) DO UPDATE SET deleted = true, is_placeholder = false, "
            f"raw = COALESCE({self.name}.raw, excluded.raw), synced_at = now(), "
            f"deleted_at = now(), state_at = COALESCE(excluded.state_at, {self.name}.state_at) "
            f"WHERE NOT {self.name}.deleted",
            (
                [r["id"] for r in rows],
                [orjson.dumps(r["raw"]).decode() for r in rows],
                [r["api_version"] for r in rows],
                [r.get("state_at") for r in rows],
            ),
        )
        return max(cursor.rowcount, 0)

    def delete_stale_children(
        self, parent_column: str, parents: set[str], rows: list[dict[str, Any]]
    ) -> None:
        """Items these parents no longer list are removed (they are not objects Stripe lists
        on their own, and the parent's `raw` keeps what it said)."""
        if not parents:
            return
        self._cursor().execute(
            f"DELETE FROM {self.name} WHERE {parent_column} = ANY(%s) AND NOT (id = ANY(%s))",
            (list(parents), [r["id"] for r in rows]),
        )


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


# COPY text format: backslash, tab, newline and carriage return must be escaped
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

# what each kind of column becomes in a generated line function (VALUE: the row's value, not
# None). JSON: orjson escapes control characters inside strings, so only backslashes need
# doubling. A value of the wrong type is refused, never coerced into something else.
_INLINE = {
    "text": "(VALUE.translate(_escapes) if VALUE.__class__ is str else _refuse('text', VALUE))",
    "json": "_dumps(VALUE).decode().replace('\\\\', '\\\\\\\\')",
    "bool": "('t' if VALUE is True else 'f' if VALUE is False else _refuse('true or false', VALUE))",
    "int": "(str(VALUE) if VALUE.__class__ is int and -_BIG <= VALUE < _BIG"
    " else _refuse('an integer of at most 64 bits', VALUE))",
    "time": "VALUE.isoformat()",
}


def _refuse(expected: str, value: Any) -> str:
    raise TypeError(f"expected {expected}, got {value!r:.80}")


def _column_kind(column_type: Any) -> str:
    kind = type(column_type).__name__
    if kind == "JSONB":
        return "json"
    if kind == "Boolean":
        return "bool"
    if kind in ("BigInteger", "Integer"):
        return "int"
    if kind == "DateTime":
        return "time"
    return "text"


def copy_line_function(table: Table, columns: list[str]) -> Callable[[dict[str, Any]], str]:
    """The COPY line function of these columns (made once per table: compiling is slow)."""
    return _copy_line_function(table, tuple(columns))


@functools.cache
def _copy_line_function(table: Table, columns: tuple[str, ...]) -> Callable[[dict[str, Any]], str]:
    """A function turning a row into one line of COPY text, generated for these columns.

    Straight-line code, one statement per column: a loop of per-column formatter calls was the
    ingest's largest Python cost.
    """
    parts = []
    for index, column in enumerate(columns):
        expression = _INLINE[_column_kind(table.columns[column].type)].replace("VALUE", f"v{index}")
        parts.append(
            f"    v{index} = row.get({column!r})\n"
            f"    c{index} = '\\\\N' if v{index} is None else {expression}\n"
        )
    joined = ", ".join(f"c{i}" for i in range(len(columns)))
    source = "def line(row):\n" + "".join(parts) + f"    return '\\t'.join(({joined},)) + '\\n'\n"
    namespace: dict[str, Any] = {
        "_escapes": _COPY_ESCAPES,
        "_dumps": orjson.dumps,
        "_refuse": _refuse,
        "_BIG": 2**63,  # bigint's range
    }
    exec(compile(source, f"<copy line of {table.name}>", "exec"), namespace)  # noqa: S102
    return cast(Callable[[dict[str, Any]], str], namespace["line"])


def ingest_file(conn: Connection, resource: Resource, path: Path, **kwargs: Any) -> IngestResult:
    from app.sources import read_json_objects

    return ingest(conn, resource, read_json_objects(path), source_name=str(path), **kwargs)
