"""The events every change records, listed the way `/v1/events` lists them."""

from __future__ import annotations

import re

from app.sandbox.context import Context
from app.sandbox.errors import InvalidRequestError
from app.sandbox.listing import list_page
from app.sandbox.params import (
    Params,
    as_list,
    as_str,
)
from app.sandbox.store import Obj


def list_events(ctx: Context, params: Params) -> Obj:
    event_type = as_str(params, "type")
    types = set(map(str, as_list(params, "types")))
    if event_type and types:
        raise InvalidRequestError(
            "You may only specify one of these parameters: type, types.", param="types"
        )
    pattern = None
    if event_type:
        # Stripe allows one `*` wildcard in `type`, e.g. `invoice.*`.
        pattern = re.compile(re.escape(event_type).replace(r"\*", ".*") + "$")

    def keep(obj: Obj) -> bool:
        if pattern is not None:
            return pattern.match(obj["type"]) is not None
        return obj["type"] in types

    filtered = pattern is not None or bool(types)
    return list_page(
        ctx.store.table("event"), params, "/v1/events", predicate=keep if filtered else None
    )
