"""Objects from the live API (or the sandbox) through the stripe SDK: one resource's listing
(`read_api_objects`), or every resource listed at once into spools their loads read
(`ApiListings`), embedded child lists completed from their own endpoints.
"""

from __future__ import annotations

import logging
import pickle
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
import stripe

from app.client.budget import budget_from_env
from app.client.lister import ListSpec, ParallelLister
from app.client.stripe_api import ApiPager, api_errors, get_json, stripe_client
from app.core.clock import stripe_now
from app.core.progress import ProgressBoard
from app.core.strict_json import Unreadable, api_object_problem, api_object_text
from app.registry import Child, Resource
from app.transformers.common import dig

log = logging.getLogger(__name__)


def read_api_objects(resource: Any, settings: Any) -> Generator[Any, None, None]:
    """Yield every object of a resource from the live API (or the sandbox) via the stripe SDK.

    The same list path, params and expand[] as the curl fetchers, many requests in flight
    inside the FETCH_RATE / FETCH_ENDPOINT_RATE budget (app.client.stripe_api: 429s retried, 5xx and
    network errors by the SDK's own retries): a large list in `created` ranges, payment methods
    for many customers at once, embedded lists completed by the worker that fetched their
    parent. Objects stream out as pages arrive (a bounded number wait), so the bulk load
    writes while the fetch goes on. Stripe's errors become a FetchError that says what to do,
    with the key masked.
    """

    def complete(lister: ParallelLister, obj: dict[str, Any]) -> None:
        for child in resource.children:
            complete_child_list(obj, child, listed_by(lister))

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
    return stripe_client(settings)


def _api_pages(resource: Any, settings: Any, lister: ParallelLister) -> Iterator[dict[str, Any]]:
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


# the rest of a child list after its first page: (path template, params, first request's
# params, parent id) → the remaining objects, in order
RestOfList = Callable[[str, dict[str, Any], dict[str, Any], str], Iterable[dict[str, Any]]]


def complete_child_list(parent: dict[str, Any], child: Child, rest_of: RestOfList) -> None:
    """Stripe embeds only the first page of a child list (`has_more: true` when there is more):
    page the rest from the registry's list path (`rest_of` sends the requests: the parallel
    lister's worker, or the live path's pager) and put the whole list in the parent."""
    envelope = dig(parent, *child.envelope_path)
    if not isinstance(envelope, dict) or envelope.get("has_more") is not True:
        return
    data = envelope.get("data") or []
    template, params = _child_list(child, parent["id"])
    start = {"limit": 100, **({"starting_after": data[-1]["id"]} if data else {})}
    envelope["data"] = [*data, *rest_of(template, params, start, parent["id"])]
    envelope["has_more"] = False


def listed_by(lister: ParallelLister) -> RestOfList:
    """A child list's rest paged by the parallel lister, in the calling worker."""

    def rest(
        template: str, params: dict[str, Any], start: dict[str, Any], parent_id: str
    ) -> Iterable[dict[str, Any]]:
        pages = lister.pages(ListSpec(template, params), start, parent_id=parent_id)
        return (obj for page in pages for obj in page)

    return rest


def paged_by(client: stripe.StripeClient, pager: ApiPager) -> RestOfList:
    """A child list's rest paged one request at a time inside the budget (the live path)."""

    def rest(
        template: str, params: dict[str, Any], start: dict[str, Any], parent_id: str
    ) -> Iterable[dict[str, Any]]:
        path = template.replace("{id}", parent_id)
        return pager.each(lambda p: get_json(client, path, p).data, {**start, **params}, template)

    return rest
