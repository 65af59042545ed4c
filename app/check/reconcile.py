"""Reconcile the database against Stripe: row by row and field by field, in bulk inside PostgreSQL.

For each resource, the source objects (a JSON export or the live API) go through the same
transformers as the ingest and are COPYed into a temporary `expected_<table>` table (children,
such as subscription items, from their parents' embedded lists, as the ingest derives them).
Set-based SQL then compares that table with the mirrored one: one FULL JOIN classifies every id
(missing, extra, differing, placeholder, soft-deleted), an anti-join per foreign key finds
references that point nowhere. Python only streams objects and holds a few samples, so memory
stays flat however large the export; the work is a scan and a hash join per table.

The check is of one Stripe account: the mirrored rows of other accounts are neither counted
nor compared (`account`; the expected rows carry it too).

Nothing is written outside temporary tables and functions; callers run the check in a
transaction they roll back.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg2
from sqlalchemy import Connection, Table

from app.core.config import DEFAULT_ACCOUNT
from app.core.errors import PipelineError, TransformError, first_line
from app.core.progress import ProgressCallback
from app.db.base import references_of
from app.db.session import raw_cursor

# the ingest's own rows and COPY formatting: the check must see values exactly as the ingest
# writes them
from app.load.ingest import BatchWriter, batch_size_for
from app.load.rows import CopyFormat, PreparedRow, transform_object
from app.registry import RESOURCES, Child, Resource

log = logging.getLogger(__name__)

# bookkeeping columns of the mirror: not derived from the Stripe object, so never compared
_BOOKKEEPING = (
    "account_id",
    "id",
    "raw",
    "api_version",
    "deleted",
    "is_placeholder",
    "referenced_by",
    "synced_at",
    "state_at",
    "deleted_at",
)
SAMPLE_SIZE = 5
_PER_CUSTOMER = {r.name for r in RESOURCES if r.per_customer}
MAX_FIELDS = 10  # differing object fields named per sampled row


@dataclass(frozen=True)
class Kind:
    name: str
    label: str
    failure: bool  # False: reported, but the mirror still agrees with Stripe


KINDS: tuple[Kind, ...] = (
    Kind("missing", "in the source, not in the database", True),
    Kind("extra", "in the database, not in the source", True),
    Kind("differs", "stored content differs from the source", True),
    Kind("not_replaced", "in the source, but only a placeholder in the database", True),
    Kind("deletion_differs", "deleted on one side only", True),
    Kind("dangling", "foreign key pointing at no row", True),
    Kind("unreadable", "source objects the transformer refused (the ingest sets them aside)", True),
    # Stripe does not list deleted objects, so some placeholders wait for ever
    Kind("placeholders", "referenced but never fetched (placeholder rows)", False),
    Kind("soft_deleted", "soft-deleted rows", False),
    # Stripe lists payment methods only under their customer: a detached one is listed nowhere
    Kind(
        "detached",
        "detached from their customer, or their customer deleted (Stripe lists them nowhere)",
        False,
    ),
)
KIND_BY_NAME = {k.name: k for k in KINDS}


@dataclass
class Finding:
    """One kind of disagreement in one table: how many rows, and the first few of them."""

    kind: str
    count: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failure(self) -> bool:
        return KIND_BY_NAME[self.kind].failure and self.count > 0


@dataclass
class TableCheck:
    table: str
    resource: str
    parent: str | None = None  # the parent table, for embedded children
    source_count: int = 0  # distinct ids the source holds
    db_count: int = 0  # rows in the table, placeholders and soft-deleted rows included
    findings: dict[str, Finding] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None  # the check could not run (file missing, not JSON, API failed)

    def finding(self, kind: str) -> Finding:
        return self.findings.setdefault(kind, Finding(kind))

    def count(self, kind: str) -> int:
        found = self.findings.get(kind)
        return found.count if found else 0

    @property
    def failures(self) -> int:
        return sum(f.count for f in self.findings.values() if f.failure)

    @property
    def ok(self) -> bool:
        return self.error is None and self.failures == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "resource": self.resource,
            "parent": self.parent,
            "ok": self.ok,
            "error": self.error,
            "source_count": self.source_count,
            "db_count": self.db_count,
            "seconds": round(self.seconds, 3),
            "findings": {
                k.name: {
                    "count": f.count,
                    "failure": k.failure,
                    "label": k.label,
                    "samples": f.samples,
                }
                for k in KINDS
                if (f := self.findings.get(k.name)) is not None and f.count
            },
        }


@dataclass
class CheckReport:
    source: str  # "json" or "api"
    location: str  # the folder or API base compared against
    tables: list[TableCheck] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables)

    @property
    def errors(self) -> list[TableCheck]:
        return [t for t in self.tables if t.error]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "source": self.source,
            "location": self.location,
            "seconds": round(self.seconds, 3),
            "failures": sum(t.failures for t in self.tables),
            "tables": [t.to_dict() for t in self.tables],
        }


ObjectsFor = Callable[[Resource], Iterable[Any]]
# a progress callback for the named resource's check (the command draws it)
ProgressFor = Callable[[str], ProgressCallback]


def check(
    conn: Connection,
    resources: Iterable[Resource],
    objects_for: ObjectsFor,
    *,
    source: str = "json",
    location: str = "",
    sample_size: int = SAMPLE_SIZE,
    progress: ProgressFor | None = None,
    account: str = DEFAULT_ACCOUNT,
) -> CheckReport:
    """Compare each resource's table(s), the rows of `account`, with the objects
    `objects_for(resource)` yields."""
    started = time.monotonic()
    report = CheckReport(source, location)
    for resource in resources:
        report.tables.extend(
            check_resource(
                conn,
                resource,
                objects_for,
                sample_size=sample_size,
                progress=progress,
                account=account,
            )
        )
    report.seconds = time.monotonic() - started
    return report


def check_resource(
    conn: Connection,
    resource: Resource,
    objects_for: ObjectsFor,
    *,
    sample_size: int = SAMPLE_SIZE,
    progress: ProgressFor | None = None,
    account: str = DEFAULT_ACCOUNT,
) -> list[TableCheck]:
    """The resource's table, then each child table, each compared with what the source says."""
    started = time.monotonic()
    cursor = raw_cursor(conn)
    _install_diff_function(cursor)
    parent = TableCheck(resource.name, resource.name)
    children = [TableCheck(c.name, resource.name, parent=resource.name) for c in resource.children]
    # a resource whose load fails is rolled back alone; the others still get checked
    cursor.execute("SAVEPOINT check_resource")
    loaders = [ExpectedTable(conn, resource.table)]
    loaders += [ExpectedTable(conn, c.table) for c in resource.children]
    try:
        _load_expected(
            resource,
            objects_for(resource),
            loaders,
            parent,
            progress(resource.name) if progress is not None else None,
            sample_size,
            account,
        )
    except (PipelineError, psycopg2.DataError) as exc:
        cursor.execute("ROLLBACK TO SAVEPOINT check_resource")
        parent.error = (
            str(exc)
            if isinstance(exc, PipelineError)
            else f"PostgreSQL refuses an object of the source ({first_line(exc)}); the "
            "ingest sets such objects aside: see data/rejects/"
        )
        parent.seconds = time.monotonic() - started
        return [parent]
    compare_table(cursor, resource.table, loaders[0], parent, sample_size, None, account)
    for child, loader, result in zip(resource.children, loaders[1:], children, strict=True):
        compare_table(cursor, child.table, loader, result, sample_size, child, account)
    for loader in loaders:
        loader.drop()
    cursor.execute("RELEASE SAVEPOINT check_resource")
    parent.seconds = time.monotonic() - started
    return [parent, *children]


def _load_expected(
    resource: Resource,
    objects: Iterable[Any],
    loaders: list[ExpectedTable],
    result: TableCheck,
    progress: ProgressCallback | None,
    sample_size: int,
    account: str,
) -> None:
    """Stream the source through the ingest's own transform into the expected tables."""
    size = batch_size_for(resource.table)
    formats = {loader.table.name: loader.format for loader in loaders}
    batches: list[list[PreparedRow]] = [[] for _ in loaders]

    def send(texts: list[tuple[ExpectedTable, str]]) -> None:
        for loader, data in texts:
            loader.send(data)

    def flush(writer: BatchWriter) -> None:
        writer.put(
            [(loader, loader.lines(rows)) for loader, rows in zip(loaders, batches, strict=True)]
        )
        for rows in batches:
            rows.clear()

    # the temp tables belong to this connection, so one writer thread: it COPies a batch while
    # this thread parses and transforms the next
    with BatchWriter([send]) as writer:
        for obj in objects:
            try:
                row = transform_object(resource, obj, None, formats, account=account)
            except TransformError as exc:
                unreadable = result.finding("unreadable")
                unreadable.count += 1
                if len(unreadable.samples) < sample_size:
                    unreadable.samples.append({"id": exc.object_id, "reason": exc.reason})
                continue
            batches[0].append(row)
            for child, child_batch in zip(resource.children, batches[1:], strict=True):
                child_batch.extend(row.children.get(child.name, ()))
            if len(batches[0]) >= size:
                flush(writer)
            if progress is not None:
                progress(1)
        flush(writer)
    for loader in loaders:
        loader.finish()


class ExpectedTable:
    """A temporary table shaped like a mirrored table, holding the rows the source implies."""

    def __init__(self, conn: Connection, table: Table) -> None:
        self.table = table
        self.name = f"expected_{table.name}"
        self.format = CopyFormat(table)
        self.columns = self.format.columns
        self.cursor = raw_cursor(conn)
        self.seq = 0
        self.cursor.execute(f"DROP TABLE IF EXISTS {self.name}")
        # `seq` keeps the source's order: with an id listed twice, the last one wins, as in
        # the ingest's upsert
        self.cursor.execute(
            f"CREATE TEMP TABLE {self.name} (LIKE {table.name} INCLUDING DEFAULTS, seq bigint)"
        )

    def lines(self, rows: list[PreparedRow]) -> str:
        """The rows' COPY lines, numbered in the source's order."""
        out = []
        for row in rows:
            self.seq += 1
            out.append(f"{row.line[:-1]}\t{self.seq}\n")
        return "".join(out)

    def send(self, data: str) -> None:
        """COPY the text in (on the writer thread, while the next batch is read)."""
        if data:
            self.cursor.copy_expert(
                f"COPY {self.name} ({', '.join(self.columns)}, seq) FROM STDIN",
                io.StringIO(data),
                size=len(data) + 1,
            )

    def finish(self) -> None:
        """Keep the last copy of an id listed twice, then give the planner statistics (temporary
        tables are never auto-analyzed, and a blind plan can turn a hash join into a loop)."""
        self.cursor.execute(
            f"DELETE FROM {self.name} e USING ("
            f"  SELECT id, max(seq) AS last FROM {self.name} GROUP BY id HAVING count(*) > 1"
            f") d WHERE e.id = d.id AND e.seq < d.last"
        )
        if self.cursor.rowcount:
            log.info(
                "%s: %d object(s) listed more than once; the last one counts",
                self.table.name,
                self.cursor.rowcount,
            )
        self.cursor.execute(f"ANALYZE {self.name}")

    def drop(self) -> None:
        self.cursor.execute(f"DROP TABLE IF EXISTS {self.name}")


def compare_table(
    cursor: Any,
    table: Table,
    expected: ExpectedTable,
    result: TableCheck,
    sample_size: int,
    child: Child | None,
    account: str,
) -> None:
    name, exp = table.name, expected.name
    cursor.execute(
        f"SELECT (SELECT count(*) FROM {exp}), (SELECT count(*) FROM {name} WHERE account_id = %s)",
        (account,),
    )
    result.source_count, result.db_count = cursor.fetchone()
    # the account's rows only: a subquery the planner pulls up into the scan
    mine = f"(SELECT *, ctid AS row_ctid FROM {name} WHERE account_id = %s)"

    typed = [c.name for c in table.columns if c.name not in _BOOKKEEPING]
    json_columns = {c.name for c in table.columns if type(c.type).__name__ == "JSONB"}
    both_live = (
        "t.id IS NOT NULL AND e.id IS NOT NULL AND NOT t.is_placeholder "
        "AND NOT t.deleted AND NOT e.deleted"
    )
    same = " AND ".join(
        [_same_json("raw", top=True)]
        + [
            _same_json(c, top=False) if c in json_columns else f"t.{c} IS NOT DISTINCT FROM e.{c}"
            for c in typed
        ]
    )
    differing_columns = ", ".join(
        f"CASE WHEN NOT {_same_json(c, top=False)} THEN '{c}' END"
        if c in json_columns
        else f"CASE WHEN t.{c} IS DISTINCT FROM e.{c} THEN '{c}' END"
        for c in typed
    )
    if child is None and "customer_id" in table.columns and result.resource in _PER_CUSTOMER:
        # detached, or its customer deleted (Stripe detaches a deleted customer's methods)
        extra = (
            "CASE WHEN t.customer_id IS NULL OR EXISTS (SELECT 1 FROM customers c "
            "WHERE c.account_id = t.account_id AND c.id = t.customer_id AND c.deleted) "
            "THEN 'detached' ELSE 'extra' END"
        )
    elif child is None:
        extra = "'extra'"
    else:
        # items of a parent deleted in Stripe stay as they were: the parent's row says deleted
        parent_table = next(
            target for column, target in references_of(table) if column == child.parent_column
        )
        extra = (
            f"CASE WHEN EXISTS (SELECT 1 FROM {parent_table} p "
            f"WHERE p.account_id = t.account_id AND p.id = t.{child.parent_column} "
            "AND p.deleted) THEN 'soft_deleted' ELSE 'extra' END"
        )
    # one pass: the WHERE keeps only rows that do not agree, so the CASEs and arrays are
    # computed for those alone; the window functions count each kind and pick its samples
    cursor.execute(
        f"""
        SELECT kind, id, n, columns, referenced_by, t_ctid, e_ctid FROM (
          SELECT kind, id, columns, referenced_by, t_ctid, e_ctid,
                 count(*) OVER (PARTITION BY kind) AS n,
                 row_number() OVER (PARTITION BY kind ORDER BY id) AS rank
          FROM (
            SELECT coalesce(t.id, e.id) AS id,
                   CASE
                     WHEN t.id IS NULL THEN 'missing'
                     WHEN e.id IS NULL AND t.is_placeholder THEN 'placeholders'
                     WHEN e.id IS NULL AND t.deleted THEN 'soft_deleted'
                     WHEN e.id IS NULL THEN {extra}
                     WHEN t.is_placeholder THEN 'not_replaced'
                     WHEN e.deleted AND t.deleted THEN 'soft_deleted'
                     WHEN e.deleted OR t.deleted THEN 'deletion_differs'
                     ELSE 'differs'
                   END AS kind,
                   CASE WHEN {both_live}
                        THEN array_remove(ARRAY[{differing_columns}]::text[], NULL) END
                     AS columns,
                   t.referenced_by, t.row_ctid::text AS t_ctid, e.ctid::text AS e_ctid
            FROM {mine} t FULL JOIN {exp} e ON t.id = e.id
            WHERE NOT ({both_live} AND {same})
          ) classified
        ) ranked
        WHERE rank <= %s
        ORDER BY kind, id
        """,
        (account, sample_size),
    )
    for kind, row_id, n, columns, referenced_by, t_ctid, e_ctid in cursor.fetchall():
        found = result.finding(kind)
        found.count = n
        sample: dict[str, Any] = {"id": row_id}
        if kind == "differs":
            sample["columns"] = list(columns or [])
            sample["fields"] = _differing_fields(cursor, name, exp, t_ctid, e_ctid)
        elif kind == "placeholders":
            sample["referenced_by"] = referenced_by
        elif kind == "deletion_differs":
            sample["deleted_in"] = _deleted_side(cursor, name, exp, t_ctid, e_ctid)
        found.samples.append(sample)
    _check_foreign_keys(cursor, table, result, sample_size, account)


def _same_json(column: str, *, top: bool) -> str:
    """SQL: the column agrees on both sides, embedded copies of other objects compared by id.

    Stripe sends no event to an object that embeds a copy of another (a subscription item's
    price, an expanded default payment method) when the copied object changes, and an event
    never carries the expansions a listing asked for: a mirror kept by events holds such a copy
    as it was delivered. The copied object is checked in its own table; here it counts by id.
    The exact comparison runs first, so the rewrite is paid only for rows that differ."""
    flag = "true" if top else "false"
    return (
        f"(CASE WHEN t.{column} IS NOT DISTINCT FROM e.{column} THEN true ELSE "
        f"pg_temp.stripe_refs(t.{column}, {flag}) IS NOT DISTINCT FROM "
        f"pg_temp.stripe_refs(e.{column}, {flag}) END)"
    )


def _differing_fields(cursor: Any, name: str, exp: str, t_ctid: str, e_ctid: str) -> list[str]:
    """Paths inside the Stripe object that differ (`amount`, `items.data[0].quantity`); by
    ctid, so the expected table needs no index for a handful of lookups."""
    cursor.execute(
        f"SELECT pg_temp.stripe_diff_paths(pg_temp.stripe_refs(t.raw, true), "
        f"pg_temp.stripe_refs(e.raw, true), '') FROM {name} t, {exp} e "
        f"WHERE t.ctid = %s::tid AND e.ctid = %s::tid LIMIT %s",
        (t_ctid, e_ctid, MAX_FIELDS),
    )
    return [path for (path,) in cursor.fetchall()]


def _deleted_side(cursor: Any, name: str, exp: str, t_ctid: str, e_ctid: str) -> str:
    cursor.execute(
        f"SELECT t.deleted FROM {name} t, {exp} e WHERE t.ctid = %s::tid AND e.ctid = %s::tid",
        (t_ctid, e_ctid),
    )
    (db_deleted,) = cursor.fetchone()
    return "database" if db_deleted else "source"


def _check_foreign_keys(
    cursor: Any, table: Table, result: TableCheck, sample_size: int, account: str
) -> None:
    """Foreign keys are real constraints, but triggers can be disabled and rows edited by hand:
    look for values that name no row of their target, in the row's account, anyway."""
    for column, target in references_of(table):
        cursor.execute(
            f"SELECT c.id, c.{column}, count(*) OVER () FROM {table.name} c "
            f"WHERE c.account_id = %s AND c.{column} IS NOT NULL "
            f"AND NOT EXISTS (SELECT 1 FROM {target} p "
            f"WHERE p.account_id = c.account_id AND p.id = c.{column}) "
            f"ORDER BY c.id LIMIT %s",
            (account, sample_size),
        )
        rows = cursor.fetchall()
        if not rows:
            continue
        found = result.finding("dangling")
        found.count += rows[0][2]
        for row_id, value, _n in rows:
            if len(found.samples) < sample_size:
                found.samples.append(
                    {"id": row_id, "column": column, "points_to": value, "target": target}
                )


# Recursive jsonb diff: the paths where two Stripe objects disagree. A temporary function lives
# in the session's pg_temp schema: nothing is installed in the user's database.
# every embedded object of a mirrored kind below the top as its id (see _same_json)
_REFS_FUNCTION = """
CREATE OR REPLACE FUNCTION pg_temp.stripe_refs(j jsonb, top boolean)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF jsonb_typeof(j) = 'object' THEN
    IF NOT top AND j ? 'id' AND (j ->> 'object') = ANY(%s::text[]) THEN
      RETURN j -> 'id';
    END IF;
    RETURN coalesce(
      (SELECT jsonb_object_agg(key, pg_temp.stripe_refs(value, false)) FROM jsonb_each(j)),
      '{}'::jsonb);
  ELSIF jsonb_typeof(j) = 'array' THEN
    RETURN coalesce(
      (SELECT jsonb_agg(pg_temp.stripe_refs(value, false) ORDER BY n)
       FROM jsonb_array_elements(j) WITH ORDINALITY AS a(value, n)),
      '[]'::jsonb);
  END IF;
  RETURN j;
END
$$
"""

_DIFF_FUNCTION = """
CREATE OR REPLACE FUNCTION pg_temp.stripe_diff_paths(a jsonb, b jsonb, path text)
RETURNS SETOF text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  k text;
  i integer;
BEGIN
  IF a IS NOT DISTINCT FROM b THEN
    RETURN;
  END IF;
  IF jsonb_typeof(a) = 'object' AND jsonb_typeof(b) = 'object' THEN
    FOR k IN SELECT jsonb_object_keys(a) UNION SELECT jsonb_object_keys(b) ORDER BY 1 LOOP
      RETURN QUERY SELECT pg_temp.stripe_diff_paths(
        a -> k, b -> k, CASE WHEN path = '' THEN k ELSE path || '.' || k END);
    END LOOP;
  ELSIF jsonb_typeof(a) = 'array' AND jsonb_typeof(b) = 'array'
        AND jsonb_array_length(a) = jsonb_array_length(b) THEN
    FOR i IN 0 .. jsonb_array_length(a) - 1 LOOP
      RETURN QUERY SELECT pg_temp.stripe_diff_paths(a -> i, b -> i, path || '[' || i || ']');
    END LOOP;
  ELSE
    RETURN NEXT CASE WHEN path = '' THEN '(whole object)' ELSE path END;
  END IF;
END
$$
"""


def _install_diff_function(cursor: Any) -> None:
    cursor.execute(_DIFF_FUNCTION)
    # the resources' own kinds; a parent's items and lines are its own, sent with it
    kinds = sorted(r.object_name for r in RESOURCES)
    cursor.execute(_REFS_FUNCTION, (kinds,))
