"""Webhook endpoints: where the sandbox POSTs its events (delivery itself is in webhooks.py).

The signing secret is answered only by create, as Stripe does; the store keeps it beside the
endpoint for delivery.
"""

from __future__ import annotations

import re
import secrets
import string
from urllib.parse import urlsplit

from app.sandbox import objects
from app.sandbox.context import Context
from app.sandbox.errors import InvalidRequestError
from app.sandbox.listing import list_page
from app.sandbox.params import Params, as_bool, as_list, as_str, merged_metadata
from app.sandbox.resources.common import deleted_stub, plain_changes
from app.sandbox.store import Obj
from app.sandbox.versions import is_accepted

# Stripe's limit per account and mode.
MAX_ENDPOINTS = 16
_MAX_URL = 2048
_EVENT_TYPE = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_]+)+")
_SECRET_ALPHABET = string.ascii_letters + string.digits


def _url(params: Params, *, required: bool) -> str | None:
    url = as_str(params, "url", required=required)
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a malformed port or IPv6 host
        valid = False
    if not valid or len(url) > _MAX_URL or any(c.isspace() for c in url):
        raise InvalidRequestError(
            f"Invalid URL: {url[:200]}. URLs must be http:// or https:// addresses of a host.",
            code="url_invalid",
            param="url",
        )
    return url


def _enabled_events(params: Params, *, required: bool) -> list[str] | None:
    if "enabled_events" not in params and not required:
        return None
    values = as_list(params, "enabled_events")
    if not values:
        raise InvalidRequestError(
            "Missing required param: enabled_events.",
            code="parameter_missing",
            param="enabled_events",
        )
    events: list[str] = []
    for index, value in enumerate(values):
        if not isinstance(value, str) or not (value == "*" or _EVENT_TYPE.fullmatch(value)):
            raise InvalidRequestError(
                f"Invalid enabled_events[{index}]: {str(value)[:80]!r} is not an event type "
                "(such as `customer.created`) or `*`.",
                param=f"enabled_events[{index}]",
            )
        if value not in events:
            events.append(value)
    return events


def create_webhook_endpoint(ctx: Context, params: Params) -> Obj:
    url = _url(params, required=True)
    enabled_events = _enabled_events(params, required=True)
    assert url is not None and enabled_events is not None
    api_version = as_str(params, "api_version") or None
    if api_version is not None and not is_accepted(api_version):
        raise InvalidRequestError(f"Invalid api_version: {api_version[:80]}", param="api_version")
    table = ctx.store.table("webhook_endpoint")
    if len(table) >= MAX_ENDPOINTS:
        mode = "live" if ctx.livemode else "test"
        raise InvalidRequestError(
            f"You have reached the maximum of {MAX_ENDPOINTS} {mode} webhook endpoints.",
            param="url",
        )
    endpoint = objects.webhook_endpoint(
        ctx.new_id("we"),
        ctx.now,
        ctx.livemode,
        url=url,
        enabled_events=enabled_events,
        description=as_str(params, "description") or None,
        metadata=merged_metadata({}, params),
        api_version=api_version,
    )
    ctx.store.insert("webhook_endpoint", endpoint)
    secret = "whsec_" + "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(32))
    ctx.store.webhook_secrets[endpoint["id"]] = secret
    return {**endpoint, "secret": secret}


def update_webhook_endpoint(ctx: Context, params: Params, endpoint_id: str) -> Obj:
    endpoint = ctx.store.get("webhook_endpoint", endpoint_id)
    changes = plain_changes(params, ("description",))
    url = _url(params, required=False)
    if url is not None:
        changes["url"] = url
    enabled_events = _enabled_events(params, required=False)
    if enabled_events is not None:
        changes["enabled_events"] = enabled_events
    disabled = as_bool(params, "disabled")
    if disabled is not None:
        changes["status"] = "disabled" if disabled else "enabled"
    metadata = merged_metadata(endpoint["metadata"], params)
    if metadata is not None:
        changes["metadata"] = metadata
    return ctx.update("webhook_endpoint", endpoint, changes)


def delete_webhook_endpoint(ctx: Context, params: Params, endpoint_id: str) -> Obj:
    ctx.store.get("webhook_endpoint", endpoint_id)
    ctx.store.table("webhook_endpoint").delete(endpoint_id)
    ctx.store.webhook_secrets.pop(endpoint_id, None)
    return deleted_stub(endpoint_id, "webhook_endpoint")


def list_webhook_endpoints(ctx: Context, params: Params) -> Obj:
    return list_page(ctx.store.table("webhook_endpoint"), params, "/v1/webhook_endpoints")
