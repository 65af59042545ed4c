"""Listing in parallel inside the request budget (`ParallelLister`).

- a large list is split into `created` ranges, each paged by its own worker and merged in the
  order pages arrive. Ranges are `[gte, lt)` on whole seconds, so objects created in the same
  second fall into one range (no duplicates, no gaps). The newest range is open-ended, and
  once everything is listed the objects created since the listing began are listed too, so
  none created during the fetch is lost;
- lists that belong to a parent (a customer's payment methods) are fetched for many parents
  at once and yielded in the parents' order.
Pages wait in bounded queues, so memory stays flat: a slow consumer (the bulk load) holds the
workers back rather than piling pages up.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import stripe

from app.client.budget import RequestBudget
from app.client.stripe_api import (
    MAX_RATE_LIMIT_RETRIES,
    PAGE,
    get_json,
    quiet_sdk_logging,
    retry_delay,
)
from app.core.strict_json import plain_answer

log = logging.getLogger(__name__)

# the end of a worker's pages
_DONE = object()

# pages fetched but not yet taken by the consumer, at most (memory stays flat)
MAX_WAITING_PAGES = 16


@dataclass(frozen=True)
class ListSpec:
    """One list endpoint: `path` (`{id}` for a parent's id), its params, its budget key."""

    path: str
    params: dict[str, Any]

    def url(self, parent_id: str | None = None) -> str:
        return self.path.replace("{id}", parent_id) if parent_id else self.path


class _Stopped(Exception):
    """The consumer went away: workers drop what they hold."""


class ParallelLister:
    """Lists through a `StripeClient` with up to `workers` requests in flight, each inside the
    budget. `objects(spec)` lists a whole endpoint (in `created` ranges when it is large);
    `for_parents(spec, ids)` lists a per-parent endpoint for many parents at once. `complete`,
    if given, is called on each object in the worker that fetched it (to page embedded lists)."""

    def __init__(
        self,
        client: stripe.StripeClient,
        budget: RequestBudget,
        *,
        workers: int | None = None,
        complete: Callable[[ParallelLister, dict[str, Any]], None] | None = None,
    ) -> None:
        self.client = client
        self.budget = budget
        self.workers = max(1, workers or budget.endpoint_workers())
        self.complete = complete
        self.requests = 0
        self.rate_limited = 0
        # every answer so far was plain (app.core.strict_json.plain_answer): no object listed can be
        # nested too deeply or hold NaN, and the objects need no walk of their own
        self.plain = True
        self._lock = threading.Lock()
        self._stop = threading.Event()
        quiet_sdk_logging()

    # one request

    def get(self, spec: ListSpec, params: dict[str, Any], parent_id: str | None = None) -> Any:
        """One page (the decoded body), inside the budget, retrying 429s."""
        url = spec.url(parent_id)
        for attempt in range(1, MAX_RATE_LIMIT_RETRIES + 2):
            if self._stop.is_set():
                raise _Stopped
            # a per-parent list (one request per parent) is the backfill's long pole
            self.budget.wait(spec.path, first=parent_id is not None)
            with self._lock:
                self.requests += 1
            try:
                with self.budget.in_flight:
                    answer = get_json(self.client, url, params)
                if self.plain and not (answer.strict and plain_answer(answer.body, finite=True)):
                    self.plain = False  # set before its objects are handed on
                return answer.data
            except stripe.RateLimitError as exc:
                with self._lock:
                    self.rate_limited += 1
                if attempt > MAX_RATE_LIMIT_RETRIES:
                    raise
                delay = retry_delay(exc, attempt)
                log.info("rate limited (429) on %s; retry %d in %.2fs", spec.path, attempt, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def pages(
        self, spec: ListSpec, params: dict[str, Any], parent_id: str | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """A list (or a range of it) page by page, in this thread."""
        params = {**spec.params, **params}
        while True:
            body = self.get(spec, params, parent_id)
            data = list(body.get("data") or [])
            if self.complete is not None:
                for obj in data:
                    self.complete(self, obj)
            yield data
            if body.get("has_more") is not True or not data:
                return
            params = {**params, "starting_after": data[-1]["id"]}
            params.pop("ending_before", None)

    # a whole endpoint, in created ranges

    def objects(self, spec: ListSpec, *, in_order: bool = False) -> Iterator[dict[str, Any]]:
        """Every object of the list, each once, including those created while it is listed:
        in the order pages arrive, or `in_order`, a sequential listing's (newest first)."""
        first = self.get(spec, {**spec.params, "limit": PAGE})
        data = list(first.get("data") or [])
        if self.complete is not None:
            for obj in data:
                self.complete(self, obj)
        yield from data
        if first.get("has_more") is not True or not data:
            return
        newest, edge = _created(data[0]), _created(data[-1])
        # the objects of the newest second, to tell apart those created during the listing
        recent = {obj["id"] for obj in data if _created(obj) >= newest}
        jobs: list[Callable[[], Iterable[list[dict[str, Any]]]]] = [
            # the rest of the first page's range: objects of its last second not on it (ties)
            lambda: self.pages(
                spec, {"limit": PAGE, "created": {"gte": edge}, "starting_after": data[-1]["id"]}
            )
        ]
        for lower, upper in self._ranges(spec, edge, newest):
            bounds = {"lt": upper} if lower is None else {"gte": lower, "lt": upper}
            jobs.append(lambda b=bounds: self.pages(spec, {"limit": PAGE, "created": b}))  # type: ignore[misc]
        for page in self._in_order(jobs) if in_order else self._run(jobs):
            for obj in page:
                if _created(obj) >= newest:
                    recent.add(obj["id"])
            yield from page
        # created during the listing: newer than the first page, or in its newest second
        for page in self.pages(spec, {"limit": PAGE, "created": {"gte": newest}}):
            fresh = [obj for obj in page if obj["id"] not in recent]
            recent.update(obj["id"] for obj in fresh)
            yield from fresh

    def _ranges(self, spec: ListSpec, edge: int, newest: int) -> list[tuple[int | None, int]]:
        """`[lower, upper)` ranges covering everything created before `edge`, newest first; the
        oldest has no lower bound. Their number follows the density of the first page."""
        oldest = self._oldest(spec, edge)
        if oldest is None:
            return []
        span = edge - oldest
        density = PAGE / max(1, newest - edge + 1)  # objects per second on the first page
        pages_expected = density * span / PAGE
        count = max(1, min(4 * self.workers, math.ceil(pages_expected), span))
        cuts = [edge - (span * i) // count for i in range(count + 1)]
        ranges: list[tuple[int | None, int]] = []
        for i in range(count):
            upper, lower = cuts[i], cuts[i + 1]
            if lower < upper:
                ranges.append((None if i == count - 1 else lower, upper))
        return ranges

    def _oldest(self, spec: ListSpec, edge: int) -> int | None:
        """A second no later than the oldest object created before `edge` (None: there is
        none), within a few percent of the span: probes of `created[lt]` sent together."""

        def any_before(moment: int) -> bool:
            body = self.get(spec, {**spec.params, "limit": 1, "created": {"lt": moment}})
            return bool(body.get("data"))

        if not any_before(edge):
            return None
        # 1 hour, 4 hours, … ~30 years back
        spans = [3600 * 4**k for k in range(10)]
        found = self._map(lambda s: any_before(edge - s), spans)
        deeper = [s for s, yes in zip(spans, found, strict=True) if yes]
        if not deeper:
            low, high = edge - spans[0], edge
        else:
            k = spans.index(deeper[-1])
            low = edge - (spans[k + 1] if k + 1 < len(spans) else 2 * spans[k])
            high = edge - spans[k]
        # narrow [low, high): the oldest object lies within it
        step = max(1, (high - low) // 8)
        points = list(range(low + step, high, step))
        found = self._map(any_before, points)
        for point, yes in zip(points, found, strict=True):
            if yes:
                return max(0, point - step)
        return max(0, points[-1] if points else low)

    # per-parent lists, for many parents at once

    def for_parents(self, spec: ListSpec, parent_ids: Iterable[str]) -> Iterator[dict[str, Any]]:
        """The list of each parent, parent after parent in the order given, fetched `workers`
        parents at a time."""

        def whole(parent_id: str) -> list[dict[str, Any]]:
            return [
                obj
                for page in self.pages(spec, {"limit": PAGE}, parent_id=parent_id)
                for obj in page
            ]

        yield from (obj for objs in self._ordered(whole, parent_ids) for obj in objs)

    # the workers

    def _run(
        self, jobs: list[Callable[[], Iterable[list[dict[str, Any]]]]]
    ) -> Iterator[list[dict[str, Any]]]:
        """The pages of all `jobs`, in the order they arrive. At most MAX_WAITING_PAGES pages
        are asked for and not yet taken: a worker takes a turn before it asks for the next page,
        not after, so a consumer slower than the budget (the load, on a busy machine) holds the
        workers back instead of each holding a parsed page (a few MB for 100 invoices) while
        it waits."""
        pages: queue.Queue[Any] = queue.Queue()
        room = threading.BoundedSemaphore(min(2 * self.workers, MAX_WAITING_PAGES))
        todo: queue.SimpleQueue[Callable[[], Iterable[list[dict[str, Any]]]]] = queue.SimpleQueue()
        for job in jobs:
            todo.put(job)

        def work() -> None:
            try:
                while not self._stop.is_set():
                    try:
                        job = todo.get_nowait()
                    except queue.Empty:
                        return
                    chain = iter(job())
                    while True:
                        self._take(room)
                        try:
                            page = next(chain)
                        except StopIteration:
                            room.release()
                            break
                        pages.put(page)
            except _Stopped:
                return
            except BaseException as exc:  # noqa: BLE001 — handed to the consumer, raised there
                self._put(pages, exc, force=True)
            finally:
                self._put(pages, _DONE, force=True)

        threads = [
            threading.Thread(target=work, name=f"stripe-list-{i}", daemon=True)
            for i in range(min(self.workers, len(jobs)))
        ]
        for thread in threads:
            thread.start()
        running = len(threads)
        try:
            while running:
                item = pages.get()
                if item is _DONE:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    room.release()
                    yield item
        finally:
            if running:
                self._stop.set()
                _drain(pages)

    def _in_order(
        self, jobs: list[Callable[[], Iterable[list[dict[str, Any]]]]]
    ) -> Iterator[list[dict[str, Any]]]:
        """The pages of `jobs` in the jobs' order: the first unfinished job's as they come,
        those of the next ones (at most 2 × workers jobs ahead) kept until it is done."""
        window: deque[queue.SimpleQueue[Any]] = deque()
        todo: queue.Queue[tuple[Callable[[], Iterable[Any]], queue.SimpleQueue[Any]] | None]
        todo = queue.Queue()
        waiting = iter(jobs)

        def work() -> None:
            while not self._stop.is_set():
                got = todo.get()
                if got is None:
                    return
                job, out = got
                try:
                    for page in job():
                        out.put(page)
                except BaseException as exc:  # noqa: BLE001 — raised in the consumer
                    out.put(exc)
                    return
                out.put(_DONE)

        def start_next() -> bool:
            job = next(waiting, None)
            if job is None:
                return False
            window.append(queue.SimpleQueue())
            todo.put((job, window[-1]))
            return True

        threads = [
            threading.Thread(target=work, name=f"stripe-list-{i}", daemon=True)
            for i in range(min(self.workers, len(jobs)))
        ]
        for thread in threads:
            thread.start()
        try:
            while len(window) < 2 * self.workers and start_next():
                pass
            while window:
                try:
                    item = window[0].get(timeout=0.1)
                except queue.Empty:
                    if self._stop.is_set():  # stopped elsewhere: the job may never end
                        raise _Stopped from None
                    continue
                if item is _DONE:
                    window.popleft()
                    start_next()
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            if window:
                self._stop.set()
            for _ in threads:
                todo.put(None)

    def _ordered(
        self, fetch: Callable[[str], list[dict[str, Any]]], keys: Iterable[str]
    ) -> Iterator[list[dict[str, Any]]]:
        """`fetch(key)` for each key, `workers` at a time, the results in the keys' order;
        at most `2 × workers` results wait."""
        window: deque[_Result] = deque()
        todo: queue.Queue[tuple[str, _Result] | None] = queue.Queue()
        threads: list[threading.Thread] = []

        def work() -> None:
            while not self._stop.is_set():
                got = todo.get()
                if got is None:
                    return
                key, result = got
                try:
                    result.set(fetch(key))
                except _Stopped:
                    result.set(None)
                    return
                except BaseException as exc:  # noqa: BLE001 — raised in the consumer
                    result.set(exc)

        try:
            for key in keys:
                if len(threads) < self.workers:
                    thread = threading.Thread(
                        target=work, name=f"stripe-list-{len(threads)}", daemon=True
                    )
                    thread.start()
                    threads.append(thread)
                result = _Result()
                window.append(result)
                todo.put((key, result))
                while len(window) >= 2 * self.workers or (window and window[0].ready()):
                    yield window.popleft().get()
            while window:
                yield window.popleft().get()
        finally:
            if window:
                self._stop.set()
            for _ in threads:
                todo.put(None)

    def _map(self, fetch: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        """`fetch` over `items` in parallel (a few small requests)."""
        results = [_Result() for _ in items]

        def one(item: Any, result: _Result) -> None:
            try:
                result.set(fetch(item))
            except BaseException as exc:  # noqa: BLE001 — raised in the caller
                result.set(exc)

        for item, result in zip(items, results, strict=True):
            threading.Thread(target=one, args=(item, result), daemon=True).start()
        return [result.get() for result in results]

    def _take(self, room: threading.BoundedSemaphore) -> None:
        """A turn to ask for a page, waiting while the consumer has enough; _Stopped once it
        went away."""
        while not room.acquire(timeout=0.1):
            if self._stop.is_set():
                raise _Stopped
        if self._stop.is_set():
            room.release()
            raise _Stopped

    def _put(self, pages: queue.Queue[Any], item: Any, *, force: bool = False) -> None:
        while True:
            if self._stop.is_set() and not force:
                raise _Stopped
            try:
                pages.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set():
                    if force:
                        return
                    raise _Stopped from None


class _Result:
    """A value one thread sets and another waits for (an exception is raised when got)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._value: Any = None

    def set(self, value: Any) -> None:
        self._value = value
        self._event.set()

    def ready(self) -> bool:
        return self._event.is_set()

    def get(self) -> Any:
        self._event.wait()
        if isinstance(self._value, BaseException):
            raise self._value
        return self._value


def _drain(pages: queue.Queue[Any]) -> None:
    while True:
        try:
            pages.get_nowait()
        except queue.Empty:
            return


def _created(obj: dict[str, Any]) -> int:
    created = obj.get("created")
    return created if isinstance(created, int) else 0
