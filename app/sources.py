"""Where Stripe objects come from: a JSON export on disk, or the API through the stripe SDK.

Every source yields plain dicts one at a time, so memory stays flat whatever the input size.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import ijson
import orjson

from app.config import mask_key, mask_secrets
from app.errors import FetchError, InputFileError
from app.transformers.common import dig

if TYPE_CHECKING:
    import stripe

    from app.resources import Child
    from app.stripe_api import ApiPager

log = logging.getLogger(__name__)


def read_json_objects(path: Path) -> Iterator[Any]:
    """Yield the objects of a Stripe export: a list envelope, a plain array, or JSON Lines.

    A malformed line of JSON Lines is yielded as a `BadLine` (the loop sets it aside); a file that
    is not JSON at all raises InputFileError naming the file before anything is yielded.
    """
    if not path.exists():
        raise InputFileError(path, "file not found (run `make fetch`, or pass JSON_DIR=… / FILE=…)")
    with path.open("rb") as handle:
        first = _first_byte(handle)
        if first is None:
            raise InputFileError(path, "the file is empty; expected Stripe JSON")
        if first == b"[":
            yield from _one_per_line_or_stream(handle, path, "item")
            return
        if first != b"{":
            raise InputFileError(path, f"not JSON: starts with {first!r}; expected '{{' or '['")
        line = handle.readline()
        try:
            head = orjson.loads(line)
        except orjson.JSONDecodeError:
            head = None  # an indented envelope or array: its first line is not whole
        if isinstance(head, dict) and not _is_envelope(head):
            yield head
            yield from _json_lines(handle, path, start_line=2)
            return
        handle.seek(0)
        if isinstance(head, dict):  # the whole envelope on one line
            yield from _envelope_data(head, path)
            return
        yield from _one_per_line_or_stream(handle, path, "data.item")


# the line that opens the array of objects: `[` for a plain array, `… "data": [` for an envelope
_OPENING = {"item": re.compile(rb"^\s*\[\s*$"), "data.item": re.compile(rb'"data"\s*:\s*\[\s*$')}
_HEADER_LINES = 50


def _one_per_line_or_stream(handle: IO[bytes], path: Path, prefix: str) -> Iterator[Any]:
    """Fast path for the layout the fetchers write (one object per line inside the array):
    orjson parses each line, several times faster than a streaming parser. Any other layout
    (pretty-printed, everything on one line…) goes to the streaming parser, skipping the
    objects the fast path has already yielded."""
    yielded = 0
    header = b""
    for number, line in enumerate(handle):
        header += line
        if _OPENING[prefix].search(line.rstrip()):
            break
        if number >= _HEADER_LINES:
            handle.seek(0)
            yield from _stream(handle, path, prefix)
            return
    for line in handle:
        text = line.strip()
        if text.startswith(b"]"):
            _check_trailer(header, text + handle.read(), path, prefix, yielded)
            return
        if text.endswith(b","):
            text = text[:-1]
        if text.startswith(b"{") and text.endswith(b"}"):
            try:
                obj = orjson.loads(text)
            except orjson.JSONDecodeError:
                obj = None
            if isinstance(obj, dict):
                yielded += 1
                yield obj
                continue
        break  # not one object per line after all
    handle.seek(0)
    for index, obj in enumerate(_stream(handle, path, prefix)):
        if index >= yielded:
            yield obj


def _check_trailer(header: bytes, trailer: bytes, path: Path, prefix: str, count: int) -> None:
    """What surrounds the objects must itself be valid JSON, as a streaming parser would insist."""
    try:
        orjson.loads(header + trailer)
    except orjson.JSONDecodeError as exc:
        raise InputFileError(path, f"not valid JSON after {count} objects: {exc}") from exc
    if prefix == "data.item" and count == 0 and b'"data"' not in header:
        raise InputFileError(path, "a JSON object without a `data` array: not a Stripe list export")


def _first_byte(handle: IO[bytes]) -> bytes | None:
    while True:
        char = handle.read(1)
        if not char:
            return None
        if not char.isspace():
            handle.seek(handle.tell() - 1)
            return char


def _is_envelope(obj: dict[str, Any]) -> bool:
    return obj.get("object") == "list" or ("data" in obj and "id" not in obj)


def _envelope_data(envelope: dict[str, Any], path: Path) -> Iterator[Any]:
    data = envelope.get("data")
    if not isinstance(data, list):
        raise InputFileError(path, "a Stripe list envelope needs a `data` array")
    yield from data


class BadLine:
    """A line of a JSON Lines file that is not JSON: set aside, the rest goes on."""

    def __init__(self, line_number: int, reason: str, text: str) -> None:
        self.line_number = line_number
        self.reason = reason
        self.text = text


def _json_lines(handle: IO[bytes], path: Path, start_line: int) -> Iterator[Any]:
    for number, line in enumerate(handle, start=start_line):
        if not line.strip():
            continue
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield BadLine(
                number, f"line {number} is not JSON: {exc}", line.decode(errors="replace")
            )


def _stream(handle: IO[bytes], path: Path, prefix: str) -> Iterator[Any]:
    count = 0
    try:
        for obj in ijson.items(handle, prefix, use_float=True):
            count += 1
            yield obj
    except ijson.JSONError as exc:
        where = f"after {count} objects" if count else "before the first object"
        raise InputFileError(path, f"not valid JSON {where}: {exc}") from exc
    if count == 0 and prefix == "data.item":
        handle.seek(0)
        _check_has_data(handle, path)


def _check_has_data(handle: IO[bytes], path: Path) -> None:
    """An object with no `data` array is not a Stripe export: say so instead of ingesting 0 rows."""
    for prefix, event, _value in ijson.parse(handle):
        if prefix == "data" and event == "start_array":
            return
    raise InputFileError(path, "a JSON object without a `data` array: not a Stripe list export")


def read_api_objects(resource: Any, settings: Any) -> Iterator[dict[str, Any]]:
    """Yield every object of a resource from the live API (or the sandbox) via the stripe SDK.

    The same list path, params and expand[] as the curl fetchers, one page at a time inside the
    FETCH_RATE budget (429s retried, 5xx and network errors by the SDK's own retries). Stripe's
    errors become a FetchError that says what to do, with the key masked.
    """
    import stripe

    try:
        yield from _api_pages(resource, settings)
    except stripe.APIConnectionError as exc:
        raise FetchError(
            f"{resource.name}: cannot reach the Stripe API at {settings.stripe_api_base} — is it "
            "running? (`make sandbox` starts the local one; STRIPE_API_BASE says where to go)"
        ) from exc
    except stripe.AuthenticationError as exc:
        raise FetchError(
            f"{resource.name}: {settings.stripe_api_base} refused the key "
            f"{mask_key(settings.stripe_secret_key)}: check STRIPE_SECRET_KEY"
        ) from exc
    except stripe.StripeError as exc:
        raise FetchError(
            f"{resource.name}: the Stripe API at {settings.stripe_api_base} failed: "
            f"{mask_secrets(exc.user_message or str(exc))}"
        ) from exc


def _api_pages(resource: Any, settings: Any) -> Iterator[dict[str, Any]]:
    import stripe

    from app.stripe_api import ApiPager, budget_from_env

    client = stripe.StripeClient(
        settings.stripe_secret_key,
        base_addresses={"api": settings.stripe_api_base},
        stripe_version=settings.stripe_api_version,
        max_network_retries=3,
    )
    pager = ApiPager(budget_from_env())
    params: dict[str, Any] = {"limit": 100, **resource.list_params}
    if resource.expand:
        params["expand"] = list(resource.expand)
    # the SDK's params are TypedDicts per endpoint; the registry's are plain dicts
    customers: Any = client.v1.customers
    if resource.per_customer:
        for customer in pager.each(lambda p: customers.list(params=p), {"limit": 100}):
            customer_id = customer["id"]

            def list_methods(p: dict[str, Any], c: str = customer_id) -> Any:
                return customers.payment_methods.list(c, params=p)

            yield from pager.each(list_methods, params)
        return
    service: Any = getattr(client.v1, resource.name)
    for obj in pager.each(lambda p: service.list(params=p), params):
        for child in resource.children:
            _complete_embedded(client, pager, obj, child)
        yield obj


def _complete_embedded(
    client: stripe.StripeClient, pager: ApiPager, parent: dict[str, Any], child: Child
) -> None:
    """Stripe embeds only the first page of a child list (`has_more: true` when there is more):
    page the rest from the registry's list path and put the whole list in the parent."""
    envelope = dig(parent, *child.envelope_path)
    if not isinstance(envelope, dict) or envelope.get("has_more") is not True:
        return
    data = envelope.get("data") or []
    path, _, query = child.list_path.replace("{id}", parent["id"]).partition("?")
    params: dict[str, Any] = {"limit": 100, **dict(parse_qsl(query))}
    if data:
        params["starting_after"] = data[-1]["id"]

    def list_page(p: dict[str, Any]) -> Any:
        return client.deserialize(client.raw_request("get", path, **p), api_mode="V1")

    envelope["data"] = [*data, *pager.each(list_page, params)]
    envelope["has_more"] = False
