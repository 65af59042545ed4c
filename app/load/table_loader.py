"""Bulk writes into one table, for one Stripe account: placeholders for missing references, new
rows COPied straight in, the others through a staging table and one `INSERT … ON CONFLICT
(account_id, id) … WHERE` that rewrites only what changed and never an older state over a
newer one; soft deletes; stale child rows. Every statement names the account: ids repeat
across accounts, and one account's load never reads or writes another's rows.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import orjson
from sqlalchemy import Connection, Table

from app.db.base import references_of
from app.db.session import raw_cursor
from app.load.rows import CopyFormat, PreparedRow

log = logging.getLogger(__name__)

Mode = Literal["upsert", "skip"]
Ties = Literal["take", "keep"]
# columns that say when, not what: a row whose content is the same is not rewritten for them
_WHEN = ("state_at",)
# a row's key: never updated
_KEY = ("account_id", "id")


@dataclass
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


class Upserted(NamedTuple):
    written: set[str]  # the ids inserted or updated
    held: set[str]  # the ids whose row holds a newer state than the one offered, and keeps it


class TableLoader:
    """Bulk writes of one account's rows into one table through a temporary staging table.
    The rows given must be that account's (their `account_id`: transform_object's `account`).

    `ties`: what a state of the same Stripe second as the row's does. "take" (events, whose
    same-second ties the caller settled by reading the object again): it replaces the row.
    "keep" (a listing, whose read may have come before a change in its own second): the row
    keeps its state unless the object is the same (a re-run still repairs its columns); a
    change after the listing's read has an event of its own, which the live path applies."""

    def __init__(
        self, conn: Connection, table: Table, account: str, *, ties: Ties = "take"
    ) -> None:
        self.conn = conn
        self.account = account
        self.ties = ties
        self.table = table
        self.name = table.name
        self.format = CopyFormat(table)
        self.columns = self.format.columns
        self.stage = f"stage_{self.name}"
        self.foreign_keys = references_of(table)

    def _cursor(self) -> Any:
        return raw_cursor(self.conn)

    def ensure_referenced(self, rows: list[PreparedRow], skip: tuple[str, ...]) -> int:
        """Insert a placeholder row for every referenced id its table does not have yet."""
        created = 0
        cursor = self._cursor()
        for column, target in self.foreign_keys:
            if column in skip:
                continue
            refs: dict[str, str] = {}
            for row in rows:
                ref = row.values.get(column)
                if ref is not None and ref not in refs:
                    refs[ref] = row.id
            if not refs:
                continue
            # sorted: concurrent writers then take these locks in one order and cannot deadlock
            # over placeholders
            ordered = sorted(refs.items())
            cursor.execute(
                f"INSERT INTO {target} (account_id, id, referenced_by, is_placeholder) "
                "SELECT %s, r.id, r.ref, true FROM unnest(%s::text[], %s::text[]) AS r(id, ref) "
                # most references exist: an anti-join skips them more cheaply than ON CONFLICT
                f"WHERE NOT EXISTS (SELECT FROM {target} t WHERE t.account_id = %s "
                "AND t.id = r.id) ON CONFLICT (account_id, id) DO NOTHING",
                (
                    self.account,
                    [ref for ref, _ in ordered],
                    [by for _, by in ordered],
                    self.account,
                ),
            )
            if cursor.rowcount > 0:
                created += cursor.rowcount
                log.debug("%s: %d placeholder(s) in %s", self.name, cursor.rowcount, target)
        return created

    def _copy(self, table: str, rows: list[PreparedRow]) -> None:
        data = "".join([row.line for row in rows])
        # the batch is already in memory: let psycopg2 take it in one read
        self._cursor().copy_expert(
            f"COPY {table} ({', '.join(self.columns)}) FROM STDIN",
            io.StringIO(data),
            size=len(data) + 1,
        )

    def upsert(
        self, rows: list[PreparedRow], mode: Mode, stats: TableStats, *, held: bool = False
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
        cursor.execute(
            f"SELECT id FROM {self.name} WHERE account_id = %s AND id = ANY(%s)",
            (self.account, [r.id for r in rows]),
        )
        existing = {row_id for (row_id,) in cursor.fetchall()}
        new = [r for r in rows if r.id not in existing]
        written: set[str] = set()
        holding: set[str] = set()
        if new:
            self._copy(self.name, new)
            stats.inserted += len(new)
            written.update(r.id for r in new)
        if existing:
            updated = self._upsert_existing(
                [r for r in rows if r.id in existing], mode, stats, held
            )
            written |= updated.written
            holding = updated.held
        return Upserted(written, holding)

    def _upsert_existing(
        self, rows: list[PreparedRow], mode: Mode, stats: TableStats, held: bool
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
            f"{c} = excluded.{c}" for c in self.columns if c not in _KEY + ("deleted",)
        )
        # every column, not only raw: a typed column damaged by hand is repaired by a re-run
        compared = [c for c in self.columns if c not in (*_KEY, "deleted", *_WHEN)]
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
            f"ON CONFLICT (account_id, id) DO UPDATE SET {updates}, is_placeholder = false, "
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
                f"SELECT s.id FROM {self.stage} s JOIN {self.name} t "
                "ON t.account_id = s.account_id AND t.id = s.id "
                "WHERE t.raw IS DISTINCT FROM s.raw"
            )
            holding = {row_id for (row_id,) in cursor.fetchall()}
        return Upserted({row_id for row_id, _new in written}, holding)

    def mark_deleted(self, rows: list[PreparedRow]) -> int:
        """Soft delete: a `deleted: true` object flags its row; nothing is dropped."""
        if not rows:
            return 0
        cursor = self._cursor()
        # a placeholder (never seen) takes the deleted object as its raw; a known row keeps
        # the object as it was last seen
        cursor.execute(
            f"INSERT INTO {self.name} "
            "(account_id, id, raw, deleted, api_version, state_at, deleted_at) "
            "SELECT %s, id, raw, true, v, s, now() "
            "FROM unnest(%s::text[], %s::jsonb[], %s::text[], %s::timestamptz[]) "
            "AS r(id, raw, v, s) "
            f"ON CONFLICT (account_id, id) DO UPDATE SET deleted = true, is_placeholder = false, "
            f"raw = COALESCE({self.name}.raw, excluded.raw), synced_at = now(), "
            f"deleted_at = now(), state_at = COALESCE(excluded.state_at, {self.name}.state_at) "
            f"WHERE NOT {self.name}.deleted",
            (
                self.account,
                [r.id for r in rows],
                [orjson.dumps(r.values["raw"]).decode() for r in rows],
                [r.values["api_version"] for r in rows],
                [r.state_at for r in rows],
            ),
        )
        return max(cursor.rowcount, 0)

    def delete_stale_children(
        self, parent_column: str, parents: set[str], rows: list[PreparedRow]
    ) -> None:
        """Items these parents no longer list are removed (they are not objects Stripe lists
        on their own, and the parent's `raw` keeps what it said)."""
        if not parents:
            return
        self._cursor().execute(
            f"DELETE FROM {self.name} WHERE account_id = %s AND {parent_column} = ANY(%s) "
            "AND NOT (id = ANY(%s))",
            (self.account, list(parents), [r.id for r in rows]),
        )
