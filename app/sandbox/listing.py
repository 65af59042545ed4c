"""Stripe's list envelope and `expand[]`, shared by every resource."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.sandbox.errors import InvalidRequestError
from app.sandbox.params import Params, as_dict, as_int, as_list, as_str
from app.sandbox.store import Obj, Store, Table

_CREATED_OPS = ("gt", "gte", "lt", "lte")
MAX_EXPAND_DEPTH = 4


def created_range(params: Params, key: str = "created") -> dict[str, int] | None:
    """`created=123` or `created[gte]=...`: bounds for the table's bisect."""
    raw = params.get(key)
    if raw is None:
        return None
    if isinstance(raw, str):
        exact = as_int(params, key)
        return None if exact is None else {"gte": exact, "lte": exact}
    bounds = as_dict(params, key) or {}
    result: dict[str, int] = {}
    for op in bounds:
        if op not in _CREATED_OPS:
            raise InvalidRequestError(
                f"Received unknown parameter: {key}[{op}]", param=f"{key}[{op}]"
            )
        number = as_int(bounds, op, prefix=f"{key}[")
        if number is not None:
            result[op] = number
    return result


def list_page(
    table: Table,
    params: Params,
    url: str,
    *,
    candidates: set[str] | None = None,
    predicate: Callable[[Obj], bool] | None = None,
) -> Obj:
    limit = as_int(params, "limit")
    if limit is None:
        limit = 10
    elif not 1 <= limit <= 100:
        raise InvalidRequestError(
            "Invalid limit: must be between 1 and 100",
            code="parameter_invalid_integer",
            param="limit",
        )
    starting_after = as_str(params, "starting_after") or None
    ending_before = as_str(params, "ending_before") or None
    if starting_after and ending_before:
        raise InvalidRequestError(
            "You may only specify one of these parameters: ending_before, starting_after.",
            param="ending_before",
        )
    data, has_more = table.page(
        limit=limit,
        candidates=candidates,
        predicate=predicate,
        created=created_range(params),
        starting_after=starting_after,
        ending_before=ending_before,
    )
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def list_of(items: list[Obj], params: Params, url: str) -> Obj:
    """Paginate a short list held inside another object (an invoice's lines)."""
    limit = as_int(params, "limit") or 10
    if not 1 <= limit <= 100:
        raise InvalidRequestError("Invalid limit: must be between 1 and 100", param="limit")
    ids = [item["id"] for item in items]
    start, end = 0, len(items)
    cursor = as_str(params, "starting_after")
    if cursor:
        if cursor not in ids:
            raise InvalidRequestError(f"No such object: '{cursor}'", param="starting_after")
        start = ids.index(cursor) + 1
        data = items[start : start + limit]
        has_more = start + limit < end
    elif before := as_str(params, "ending_before"):
        if before not in ids:
            raise InvalidRequestError(f"No such object: '{before}'", param="ending_before")
        end = ids.index(before)
        data = items[max(0, end - limit) : end]
        has_more = end - limit > 0
    else:
        data = items[:limit]
        has_more = limit < end
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


# Stripe embeds only the first page (its default limit) of the lists inside an object; the rest
# is served by the list's own `url`.
EMBEDDED_PAGE = 10
EMBEDDED_LISTS = {"invoice": "lines", "subscription": "items"}


def first_pages(store: Store, body: Obj) -> Obj:
    """A response as Stripe sends it: invoice lines and subscription items cut to their first
    page, `has_more` saying there is more. The store keeps the whole lists."""
    kind = body.get("object")
    if kind == "list" and isinstance(body.get("data"), list):
        data = body["data"]
        cut = [_first_page(store, obj) for obj in data]
        if any(new is not old for new, old in zip(cut, data, strict=True)):
            return {**body, "data": cut}
        return body
    if kind == "event" and isinstance(body.get("data"), dict):
        inner = body["data"].get("object")
        if isinstance(inner, dict):
            cut_inner = _first_page(store, inner)
            if cut_inner is not inner:
                return {**body, "data": {**body["data"], "object": cut_inner}}
        return body
    return _first_page(store, body)


def _first_page(store: Store, obj: Obj) -> Obj:
    field = EMBEDDED_LISTS.get(obj.get("object", ""))
    embedded = obj.get(field) if field else None
    if field is None or not isinstance(embedded, dict):
        return obj
    if len(embedded.get("data") or ()) <= EMBEDDED_PAGE:
        return obj
    if field == "items":
        # the same order as GET /v1/subscription_items, so its `starting_after` goes on from here
        table = store.table("subscription_item")
        subscription_items = table.ids_where("subscription", obj["id"])
        data, _ = table.page(limit=EMBEDDED_PAGE, candidates=subscription_items)
    else:
        data = embedded["data"][:EMBEDDED_PAGE]  # GET /v1/invoices/{id}/lines pages in this order
    return {**obj, field: {**embedded, "data": data, "has_more": True}}


def expand(store: Store, body: Obj, params: Params) -> Obj:
    """Apply `expand[]` paths, copying only the objects along each path."""
    for path in as_list(params, "expand"):
        if not isinstance(path, str) or not path:
            raise InvalidRequestError("Invalid expand: paths are strings", param="expand")
        parts = path.split(".")
        if len([p for p in parts if p != "data"]) > MAX_EXPAND_DEPTH:
            raise InvalidRequestError(
                f"You cannot expand more than {MAX_EXPAND_DEPTH} levels of a property. Property: {path}",
                param="expand",
            )
        body = _expand_object(store, body, parts, path)
    return body


def _expand_object(store: Store, obj: Obj, parts: list[str], path: str) -> Obj:
    head = parts[0]
    if head not in obj:
        raise InvalidRequestError(f"This property cannot be expanded ({path}).", param="expand")
    copy = obj.copy()
    copy[head] = _expand_value(store, obj[head], parts[1:], path)
    return copy


def _expand_value(store: Store, value: Any, rest: list[str], path: str) -> Any:
    # The hot path of list pages with `data.` expansions: exact class checks, no helpers.
    cls = value.__class__
    if cls is list:
        return [_expand_value(store, item, rest, path) for item in value]
    if cls is str:
        target = store.find(value)
        if target is None:
            if rest:
                raise InvalidRequestError(
                    f"This property cannot be expanded ({path}).", param="expand"
                )
            return value
        value, cls = target, dict
    if rest and cls is dict:
        return _expand_object(store, value, rest, path)
    return value
