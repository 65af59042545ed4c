"""Stripe's list envelope and its paging parameters, shared by every resource."""

from __future__ import annotations

from collections.abc import Callable

from app.sandbox.errors import InvalidRequestError
from app.sandbox.params import Params, as_dict, as_int, as_str
from app.sandbox.store import Obj, Table

_CREATED_OPS = ("gt", "gte", "lt", "lte")


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
