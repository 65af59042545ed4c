"""A Stripe list page, as the curl fetch keeps it: its objects one per line, and what paging on
needs (`has_more`, how many, the last id, the embedded lists that have more).

jq did this in the fetch, once per page: 60 ms of CPU for a page of 100 invoices, which held the
curl path to a fraction of a 100 requests/s budget on two cores, and it rounds integers beyond
2**53 and numbers beyond a double as it re-writes them. Here a page costs about 3 ms (orjson),
and what cannot be re-written exactly (an integer beyond 64 bits, a number beyond a double, a
lone surrogate) keeps the text Stripe sent, on one line: the ingest then sets it aside by name.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from app.core.errors import InputFileError
from app.core.strict_json import array_elements, inexact_number


@dataclass
class ListPage:
    """`head`: "has_more count last_id" ("-" when there is no last id), or "not-a-list" /
    "not-json"; `lines`: the objects, one per line; `needs`: "envelope id last_item_id" of each
    embedded list that has more."""

    head: str
    lines: bytes = b""
    needs: list[str] = field(default_factory=list)


def split_list_page(body: bytes, envelopes: list[str]) -> ListPage:
    """The page's objects and what paging on needs; `envelopes`: dotted paths of the lists
    embedded in each object whose further pages are fetched (`lines`, `items`)."""
    exact = inexact_number(body) is None
    try:
        page = orjson.loads(body) if exact else json.loads(body)
    except (orjson.JSONDecodeError, UnicodeDecodeError, ValueError):
        try:  # a lone surrogate: orjson refuses it, Python's reader keeps it
            page = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return ListPage("not-json")
        exact = False
    if not (isinstance(page, dict) and page.get("object") == "list"):
        return ListPage("not-a-list")
    data = page.get("data")
    if not isinstance(data, list):
        return ListPage("not-a-list")
    lines = b"".join(orjson.dumps(obj) + b"\n" for obj in data) if exact else _as_sent(body)
    if lines is None:
        return ListPage("not-json")
    last = data[-1].get("id") if data and isinstance(data[-1], dict) else None
    more = page.get("has_more")
    head = "true" if more is True else "false" if more is False else "null"
    head += f" {len(data)} {last if last is not None else '-'}"
    return ListPage(head, lines, _needs(data, envelopes))


def _needs(data: list[Any], envelopes: list[str]) -> list[str]:
    needs = []
    for envelope in envelopes:
        keys = envelope.split(".")
        for obj in data:
            inner: Any = obj
            for key in keys:
                inner = inner.get(key) if isinstance(inner, dict) else None
            if isinstance(inner, dict) and inner.get("has_more") is True:
                items = inner.get("data") or []
                last = items[-1].get("id") if items and isinstance(items[-1], dict) else None
                needs.append(f"{envelope} {obj.get('id')} {last if last is not None else '-'}")
    return needs


def _as_sent(body: bytes) -> bytes | None:
    """Each element of the page's `data` in the text Stripe sent, on one line (a raw line break
    can only stand between tokens in JSON, where a space means the same); None when the page
    cannot be read so (an element over the size limit, whose text is not kept)."""
    lines = []
    try:
        for element in array_elements(io.BytesIO(body), Path("page"), envelope=True):
            if not isinstance(element, bytes):
                return None
            lines.append(element.replace(b"\r", b" ").replace(b"\n", b" ") + b"\n")
    except InputFileError:
        return None
    return b"".join(lines)
