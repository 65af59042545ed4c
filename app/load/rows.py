"""One Stripe object as its table's row, ready for COPY: the transformer's columns, the row as
a line of COPY text, its embedded child rows (subscription items, invoice lines) and which of
their lists are whole. The ingest, the live path and the check all make rows here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import Table

from app.core.errors import TransformError
from app.core.strict_json import Unreadable, id_in_text
from app.registry import Resource
from app.transformers.common import dig

# columns the database fills itself or that only placeholders use
_MANAGED = ("synced_at", "is_placeholder", "referenced_by", "deleted_at")


@dataclass(slots=True)
class PreparedRow:
    """An object as its table's row: what the bulk writes, the check and the live path share."""

    values: dict[str, Any]  # column → value, as the transformer (and the run) filled them
    line: str  # the row as a line of COPY text, made on the reading thread
    children: dict[str, list[PreparedRow]] = field(default_factory=dict)  # by child table
    # the child tables whose embedded list is whole (Stripe embeds a first page: has_more)
    complete: frozenset[str] = frozenset()

    @property
    def id(self) -> str:
        return cast(str, self.values["id"])

    @property
    def account(self) -> str:
        return cast(str, self.values["account_id"])

    @property
    def deleted(self) -> bool:
        return bool(self.values["deleted"])

    @property
    def state_at(self) -> datetime | None:
        return cast("datetime | None", self.values.get("state_at"))


def transform_object(
    resource: Resource,
    obj: Any,
    api_version: str | None,
    formats: dict[str, CopyFormat],
    state_at: datetime | None = None,
    *,
    account: str,
) -> PreparedRow:
    """One source object as its row, with its COPY line and its embedded child rows; raises
    TransformError naming the object when it cannot be a row. Ingest, sync and check-db share
    it. `account`: the Stripe account the object belongs to, which the run knows (the
    transformers see only the object)."""
    if isinstance(obj, Unreadable):
        raise TransformError(resource.name, id_in_text(obj.text), obj.reason)
    values = resource.transform(obj)
    values["account_id"] = account
    values["api_version"] = api_version
    values["state_at"] = state_at
    # a deleted object's row is written without COPY, but its line proves it can be stored
    row = PreparedRow(values, formats[resource.name].copy_line(values, resource.name))
    if not row.deleted and resource.children:
        row.complete = frozenset(complete_lists(resource, values))
        for name, items in embedded_rows(resource, values).items():
            for item in items:
                item["account_id"] = account
                item["api_version"] = api_version
                item["state_at"] = state_at
            row.children[name] = [
                PreparedRow(item, formats[name].copy_line(item, resource.name, row.id))
                for item in items
            ]
    return row


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


# COPY text format: backslash, tab, newline and carriage return must be escaped
COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


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
        "_escapes": COPY_ESCAPES,
        "_dumps": orjson.dumps,
        "_refuse": _refuse,
        "_BIG": 2**63,  # bigint's range
    }
    exec(compile(source, f"<copy line of {table.name}>", "exec"), namespace)  # noqa: S102
    return cast(Callable[[dict[str, Any]], str], namespace["line"])
