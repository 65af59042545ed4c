"""Where Stripe objects come from: a JSON export on disk, or the API through the stripe SDK.

Every source yields plain dicts one at a time, so memory stays flat whatever the input size.
"""

from __future__ import annotations

import logging
import pickle
import re
import stat
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from app import strict_json
from app.errors import InputFileError
from app.strict_json import (
    KEPT_TEXT_BYTES,
    Oversized,
    Unreadable,
    api_object_problem,
    api_object_text,
    array_elements,
    checked,
    decode_object,
    too_large,
)
from app.transformers.common import dig

if TYPE_CHECKING:
    import stripe

    from app.progress import ProgressBoard
    from app.resources import Child, Resource
    from app.stripe_api import ApiPager, ParallelLister

log = logging.getLogger(__name__)


def read_json_objects(
    path: Path, *, opened: Callable[[IO[bytes]], None] | None = None
) -> Iterator[Any]:
    """Yield the objects of a Stripe export: a list envelope, a plain array, or JSON Lines.

    Every object is decoded strictly (app.strict_json): one that cannot be stored exactly is
    yielded as an `Unreadable` with its reason and text, and the loop sets it aside. A file that
    is not a Stripe export at all raises InputFileError naming the file before anything is
    yielded; one whose JSON breaks off raises it after the objects before the break.

    `opened(handle)` is shown the open file (progress measures the position read).
    """
    _check_regular_file(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputFileError(path, f"cannot be opened: {exc.strerror or exc}") from exc
    with handle:
        if opened is not None:
            opened(handle)
        first = _first_byte(handle)
        if first is None:
            raise InputFileError(path, "the file is empty; expected Stripe JSON")
        if first == b"[":
            yield from _one_per_line_or_split(handle, path, envelope=False)
            return
        if first != b"{":
            raise InputFileError(path, f"not JSON: starts with {first!r}; expected '{{' or '['")
        line = handle.readline(strict_json.MAX_OBJECT_BYTES + 1)
        try:
            head = orjson.loads(line)
        except orjson.JSONDecodeError:
            head = None  # an indented envelope or array, or a first line that is not whole
        if (isinstance(head, dict) and not _is_envelope(head)) or (
            head is None
            and not strict_json.opens_a_list(line)
            and _looks_like_json_lines(handle, line)
        ):
            handle.seek(0)
            yield from _json_lines(handle, path)
            return
        handle.seek(0)
        yield from _one_per_line_or_split(handle, path, envelope=True)


def _check_regular_file(path: Path) -> None:
    """Only regular files are read: a FIFO or a device would block or never end."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputFileError(
            path, "file not found (run `make fetch`, or pass JSON_DIR=… / FILE=…)"
        ) from None
    except OSError as exc:
        raise InputFileError(path, f"cannot be read: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(mode):
        raise InputFileError(path, "is a directory; expected a JSON file")
    if not stat.S_ISREG(mode):
        raise InputFileError(
            path, "is not a regular file (a FIFO, socket or device); expected a JSON file"
        )


def _looks_like_json_lines(handle: IO[bytes], first_line: bytes) -> bool:
    """A first line that is one object which fails to decode, followed by a line that starts
    another object: JSON Lines whose first object is bad, not a pretty-printed envelope."""
    text = first_line.strip()
    if not (text.startswith(b"{") and text.endswith(b"}")):
        return False
    for line in iter(lambda: handle.readline(1024), b""):
        if line.strip():
            return line.lstrip().startswith(b"{")
    return True


# the line that opens the array of objects: `[` for a plain array, `… "data": [` for an envelope
_OPENING = {False: re.compile(rb"^\s*\[\s*$"), True: re.compile(rb'"data"\s*:\s*\[\s*$')}
_HEADER_LINES = 50


def _one_per_line_or_split(handle: IO[bytes], path: Path, envelope: bool) -> Iterator[Any]:
    """Fast path for the layouts the fetchers write and Stripe exports use: one object per line
    inside the array, the comma between two objects at the end of a line or at the start of the
    next (the fetchers write `,{…}`). Anything else (pretty-printed, everything on one line, a
    missing or doubled comma…) goes to the array splitter, which names what is wrong, skipping
    the objects the fast path has already yielded."""
    yielded = 0
    header = b""
    for number in range(_HEADER_LINES + 1):
        line = handle.readline(strict_json.MAX_OBJECT_BYTES)
        header += line
        if not line or _OPENING[envelope].search(line.rstrip()) or number == _HEADER_LINES:
            break
    if _OPENING[envelope].search(header.rstrip()):
        comma = None  # before the first object: None; then whether a comma followed the last
        for line in iter(lambda: handle.readline(strict_json.MAX_OBJECT_BYTES + 2), b""):
            text = line.strip()
            if text.startswith(b"]") and comma is not True:
                _check_trailer(
                    header, text + handle.read(strict_json.MAX_OBJECT_BYTES), path, yielded
                )
                return
            if text.startswith(b","):
                if comma is not False:
                    break  # a comma with no object before it, or a second one
                text = text[1:].lstrip()
            elif comma is False:
                break  # two objects with no comma between them
            comma = text.endswith(b",")
            if comma:
                text = text[:-1].rstrip()
            if not (text.startswith(b"{") and text.endswith(b"}")):
                break  # not one object per line after all
            try:
                obj = orjson.loads(text)
            except orjson.JSONDecodeError:
                break  # the splitter says why, naming the object
            if not isinstance(obj, dict):
                break
            yielded += 1
            yield checked(obj, text, yielded)
    handle.seek(0)
    for index, obj in enumerate(_split(handle, path, envelope)):
        if index >= yielded:
            yield obj


def _split(handle: IO[bytes], path: Path, envelope: bool) -> Iterator[Any]:
    for position, element in enumerate(array_elements(handle, path, envelope), start=1):
        if isinstance(element, Oversized):
            yield too_large(position, element.size, element.head)
        else:
            yield decode_object(element, position)


def _check_trailer(header: bytes, trailer: bytes, path: Path, count: int) -> None:
    """What surrounds the objects must itself be valid JSON, as a streaming parser would insist."""
    try:
        orjson.loads(header + trailer)
    except orjson.JSONDecodeError as exc:
        raise InputFileError(path, f"not valid JSON after {count} objects: {exc}") from exc


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


def _json_lines(handle: IO[bytes], path: Path) -> Iterator[Any]:
    for number, line in enumerate(
        iter(lambda: handle.readline(strict_json.MAX_OBJECT_BYTES + 2), b""), 1
    ):
        if len(line) > strict_json.MAX_OBJECT_BYTES and not line.endswith(b"\n"):
            size, head = len(line), line[:KEPT_TEXT_BYTES]
            while line and not line.endswith(b"\n"):  # the rest of the line, let go of
                line = handle.readline(_SKIP)
                size += len(line)
            yield too_large(number, size - line.endswith(b"\n"), head, "line")
            continue
        if line.strip():
            yield decode_object(line.strip(), number, "line")


_SKIP = 1 << 20


def read_api_objects(resource: Any, settings: Any) -> Generator[Any, None, None]:
    """Yield every object of a resource from the live API (or the sandbox) via the stripe SDK.

    The same list path, params and expand[] as the curl fetchers, many requests in flight
    inside the FETCH_RATE / FETCH_ENDPOINT_RATE budget (app.stripe_api: 429s retried, 5xx and
    network errors by the SDK's own retries): a large list in `created` ranges, payment methods
    for many customers at once, embedded lists completed by the worker that fetched their
    parent. Objects stream out as pages arrive (a bounded number wait), so the bulk load
    writes while the fetch goes on. Stripe's errors become a FetchError that says what to do,
    with the key masked.
    """
    from app.stripe_api import ParallelLister, api_errors, budget_from_env

    def complete(lister: ParallelLister, obj: dict[str, Any]) -> None:
        for child in resource.children:
            complete_listed(lister, obj, child)

    with api_errors(settings, resource.name):
        lister = ParallelLister(
            api_client(settings),
            budget_from_env(),
            complete=complete if resource.children else None,
        )
        for position, obj in enumerate(_api_pages(resource, settings, lister), start=1):
            problem = None if lister.plain else api_object_problem(obj)
            yield Unreadable(position, problem, api_object_text(obj)) if problem else obj


# --- every resource listed at once --------------------------------------------------------

# objects handed from a listing to its load in one piece (fewer wake-ups, fewer file records)
SPOOL_CHUNK = 100
# …or fewer, once the oldest of them has waited this long (a slow listing still streams)
SPOOL_CHUNK_SECONDS = 0.25
# chunks waiting in memory for a load that keeps up; the rest wait in a temporary file
SPOOL_MEMORY_CHUNKS = 4


class ListingStopped(Exception):
    """The load went away (it failed, or the run was interrupted): the listing stops."""


class ListingSpool:
    """The objects one thread lists and another loads, first in, first out.

    While the load keeps up, up to SPOOL_MEMORY_CHUNKS chunks wait in memory; beyond that, and
    for a listing whose load has not started (its parents still load), chunks go to a temporary
    file, so the listing runs at its full rate while memory stays flat. A chunk is written as
    JSON (orjson: seven times faster to write and read back than pickle), or pickled when
    JSON cannot hold it exactly (integers beyond 64 bits, lone surrogates, an object already
    set aside), so the load still sees, and sets aside, exactly what was listed. A chunk goes
    to memory only when the file holds nothing, so the load reads the memory's chunks (older)
    first, then the file's, and order is kept.
    """

    def __init__(self, memory_chunks: int = SPOOL_MEMORY_CHUNKS) -> None:
        self.memory_chunks = memory_chunks
        self._memory: deque[list[Any]] = deque()
        self._file: Any = None
        self._records: deque[tuple[int, int]] = deque()  # (offset, length) of each file chunk
        self._end = 0
        self._cond = threading.Condition()
        self._attached = False
        self._finished = False
        self._closed = False
        self._error: BaseException | None = None
        self.listed = 0

    # the listing's side

    def put(self, chunk: list[Any]) -> None:
        """Hand over a chunk; raises ListingStopped once the load has gone away."""
        if not chunk:
            return
        with self._cond:
            if self._closed:
                raise ListingStopped
            self.listed += len(chunk)
            if self._attached and not self._records and len(self._memory) < self.memory_chunks:
                self._memory.append(chunk)
                self._cond.notify()
                return
        data = _chunk_bytes(chunk)
        with self._cond:
            if self._closed:
                raise ListingStopped
            if self._file is None:
                self._file = tempfile.TemporaryFile(prefix="listing-")
            self._file.seek(self._end)
            self._file.write(data)
            self._records.append((self._end, len(data)))
            self._end += len(data)
            self._cond.notify()

    def finish(self, error: BaseException | None = None) -> None:
        """The listing is complete (or broke with `error`, raised in the load after the objects
        listed before it)."""
        with self._cond:
            self._finished = True
            self._error = error
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    # the load's side

    def __iter__(self) -> Iterator[Any]:
        with self._cond:
            self._attached = True
        while True:
            chunk = self._next_chunk()
            if chunk is None:
                return
            yield from chunk

    def _next_chunk(self) -> list[Any] | None:
        with self._cond:
            while not (self._memory or self._records or self._finished or self._closed):
                self._cond.wait()
            if self._closed:
                raise ListingStopped
            if self._memory:
                return self._memory.popleft()
            if self._records:
                offset, length = self._records.popleft()
                self._file.seek(offset)
                data = self._file.read(length)
                if not self._records:  # all read: the file starts again from nothing
                    self._file.truncate(0)
                    self._end = 0
            elif self._error is not None:
                raise self._error
            else:
                return None
        return _chunk_from_bytes(data)

    def close(self) -> None:
        """The load is done with it: the listing stops at its next chunk; the file goes."""
        with self._cond:
            self._closed = True
            self._memory.clear()
            self._records.clear()
            if self._file is not None:
                self._file.close()
                self._file = None
            self._cond.notify_all()


def _chunk_bytes(chunk: list[Any]) -> bytes:
    # NaN and Infinity, which orjson would write as null, never reach here: objects holding
    # them were made Unreadable by read_api_objects
    try:
        return b"j" + orjson.dumps(chunk)
    except TypeError:  # orjson.JSONEncodeError: what JSON cannot hold, pickle keeps exactly
        return b"p" + pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL)


def _chunk_from_bytes(data: bytes) -> list[Any]:
    if data[:1] == b"j":
        return list(orjson.loads(data[1:]))
    return list(pickle.loads(data[1:]))  # noqa: S301 — our own file, written just now


class ApiListings:
    """Every chosen resource listed from the API at once, from the moment this is built, each
    in a thread of its own drawing on the one request budget, into a `ListingSpool`.

    The loads may then go in any order (parents first) and at their own pace: a listing never
    waits for its load to start, so every endpoint with work keeps its share of the budget
    busy. `objects(resource)` is the resource's listing for its load, `started[name]` the
    Stripe time its listing began (the state its rows record), `close()` stops what still runs.
    """

    def __init__(
        self,
        resources: list[Resource],
        settings: Any,
        *,
        board: ProgressBoard | None = None,
        memory_chunks: int = SPOOL_MEMORY_CHUNKS,
    ) -> None:
        from app.ingest import stripe_now

        self.spools: dict[str, ListingSpool] = {}
        self.started: dict[str, datetime] = {}
        self._threads: list[threading.Thread] = []
        for resource in resources:
            spool = ListingSpool(memory_chunks)
            self.spools[resource.name] = spool
            self.started[resource.name] = stripe_now()
            task = board.task(f"list {resource.name}") if board is not None else None
            thread = threading.Thread(
                target=_list_into,
                args=(resource, settings, spool, task, board),
                name=f"list-{resource.name}",
                daemon=True,
            )
            self._threads.append(thread)
        for thread in self._threads:
            thread.start()

    def objects(self, resource: Resource) -> Iterator[Any]:
        return iter(self.spools[resource.name])

    def close(self) -> None:
        for spool in self.spools.values():
            spool.close()

    def __enter__(self) -> ApiListings:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _list_into(
    resource: Resource,
    settings: Any,
    spool: ListingSpool,
    task: Any,
    board: ProgressBoard | None,
) -> None:
    """The thread of one listing: its objects into `spool`, in chunks, until done or stopped."""
    objects = read_api_objects(resource, settings)
    chunk: list[Any] = []
    since = 0.0
    error: BaseException | None = None
    try:
        for obj in objects:
            if not chunk:
                since = time.monotonic()
            chunk.append(obj)
            if len(chunk) >= SPOOL_CHUNK or time.monotonic() - since >= SPOOL_CHUNK_SECONDS:
                spool.put(chunk)
                if task is not None:
                    task(len(chunk))
                chunk = []
        spool.put(chunk)
        if task is not None:
            task(len(chunk))
        chunk = []
    except ListingStopped:
        objects.close()
        return
    except BaseException as exc:  # noqa: BLE001 — raised in the load, after what was listed
        error = exc
    finally:
        if task is not None and board is not None:
            board.finish(task)
    if error is not None and chunk:
        try:
            spool.put(chunk)  # the objects listed before the failure are loaded
        except BaseException:  # noqa: BLE001 — the failure itself is what the load is told
            pass
    spool.finish(error)


def api_client(settings: Any) -> stripe.StripeClient:
    from app.stripe_api import stripe_client

    return stripe_client(settings)


def _api_pages(resource: Any, settings: Any, lister: ParallelLister) -> Iterator[dict[str, Any]]:
    from app.stripe_api import ListSpec

    params: dict[str, Any] = dict(resource.list_params)
    expand = resource.expand_for(settings.stripe_api_version)
    if expand:
        params["expand"] = list(expand)
    if resource.per_customer:
        # one request per customer is the API's shape: many customers at once, their
        # payment methods in the customers' order
        # the customers' ids in their list's order, listed in created ranges like any large
        # list: paged one after another, this listing's latency kept /v1/customers busy for
        # seconds after the others were done
        customers = ListSpec("/v1/customers", {})
        ids = (c["id"] for c in lister.objects(customers, in_order=True))
        methods = ListSpec(resource.list_path.replace("{customer}", "{id}"), params)
        # the ids are read ahead (a few bytes each): the customer listing is done in seconds,
        # not paced by the payment methods' one endpoint, and its share of the budget is free
        yield from lister.for_parents(methods, _read_ahead(ids))
        return
    yield from lister.objects(ListSpec(resource.list_path, params))


def _read_ahead(items: Iterator[Any]) -> Iterator[Any]:
    """`items`, read to the end by a thread of their own as fast as they come."""
    import queue

    ahead: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()

    def read() -> None:
        try:
            for item in items:
                ahead.put((True, item))
        except BaseException as exc:  # noqa: BLE001 — raised in the reader, in order
            ahead.put((False, exc))
            return
        ahead.put((False, None))

    threading.Thread(target=read, name="read-ahead", daemon=True).start()
    while True:
        more, item = ahead.get()
        if more:
            yield item
        elif item is not None:
            raise item
        else:
            return


def _child_list(child: Child, parent_id: str) -> tuple[str, dict[str, Any]]:
    """The path (its `{id}` kept, the budget's endpoint) and params that page a child list."""
    path, _, query = child.list_path.partition("?")
    params = {k: v.replace("{id}", parent_id) for k, v in parse_qsl(query)}
    return path, params


def complete_listed(lister: Any, parent: dict[str, Any], child: Child) -> None:
    """`complete_embedded` for the parallel lister: pages the rest in the calling worker."""
    from app.stripe_api import ListSpec

    envelope = dig(parent, *child.envelope_path)
    if not isinstance(envelope, dict) or envelope.get("has_more") is not True:
        return
    data = envelope.get("data") or []
    path, params = _child_list(child, parent["id"])
    start = {"limit": 100, **({"starting_after": data[-1]["id"]} if data else {})}
    rest = lister.pages(ListSpec(path, params), start, parent_id=parent["id"])
    envelope["data"] = [*data, *(obj for page in rest for obj in page)]
    envelope["has_more"] = False


def complete_embedded(
    client: stripe.StripeClient, pager: ApiPager, parent: dict[str, Any], child: Child
) -> None:
    """Stripe embeds only the first page of a child list (`has_more: true` when there is more):
    page the rest from the registry's list path and put the whole list in the parent."""
    from app.stripe_api import get_json

    envelope = dig(parent, *child.envelope_path)
    if not isinstance(envelope, dict) or envelope.get("has_more") is not True:
        return
    data = envelope.get("data") or []
    template, params = _child_list(child, parent["id"])
    path = template.replace("{id}", parent["id"])
    params = {"limit": 100, **params}
    if data:
        params["starting_after"] = data[-1]["id"]

    def list_page(p: dict[str, Any]) -> Any:
        return get_json(client, path, p).data

    envelope["data"] = [*data, *pager.each(list_page, params, template)]
    envelope["has_more"] = False
