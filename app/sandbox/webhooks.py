"""Webhook delivery: every recorded event is POSTed, signed as Stripe signs it, to the endpoints
that want it, from background threads (an API request never waits for a delivery).

The store tells `WebhookDispatcher.on_event` of each event it records, under its lock; the
dispatcher picks the enabled endpoints whose `enabled_events` match, sets the event's
`pending_webhooks` to their number and queues one delivery per endpoint. Each endpoint has its
own queue (ordered by due time) and a few worker threads, each with one keep-alive connection,
so a slow or failing endpoint holds up no other. A delivery is Stripe's:

    POST <url>
    Content-Type: application/json; charset=utf-8
    User-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)
    Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed by the secret>

with the event as the body (rendered in the endpoint's `api_version` when it has one). A 2xx
answer delivers it (`pending_webhooks` goes down by one); anything else, a timeout or a refused
connection is retried after `retry_base` seconds, doubling up to `retry_max`, at most
`max_attempts` times in all (Stripe retries for three days; the sandbox's schedule is short so
that tests and benchmarks see retries). Stripe does not promise order, and neither does this:
opt-in faults make that visible — `shuffle` holds each event for a random time up to
`shuffle_window` seconds, so events close together arrive in random order, and `duplicate_rate`
sends that share of events twice — both drawn from a generator seeded with `seed`.

Deliveries are not part of the saved state: those still queued when the sandbox stops are lost.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import http.client
import itertools
import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from app.sandbox import render
from app.sandbox.store import Obj, Store
from app.sandbox.versions import rendered_as

logger = logging.getLogger(__name__)

USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
CONTENT_TYPE = "application/json; charset=utf-8"


@dataclass(frozen=True)
class WebhookConfig:
    retry_base: float = 1.0  # seconds before the first retry, doubling with each attempt
    retry_max: float = 60.0  # the longest wait between two attempts
    max_attempts: int = 12  # attempts in all before a delivery is given up
    timeout: float = 10.0  # seconds an endpoint has to answer
    connections: int = 2  # concurrent deliveries (keep-alive connections) per endpoint
    shuffle: bool = False
    shuffle_window: float = 0.5
    duplicate_rate: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.retry_base <= 0 or self.retry_max < self.retry_base:
            raise ValueError("webhook retries need 0 < retry_base <= retry_max")
        if self.max_attempts < 1 or self.connections < 1 or self.timeout <= 0:
            raise ValueError("webhook max_attempts and connections must be >= 1, timeout > 0")
        if not 0.0 <= self.duplicate_rate <= 1.0 or self.shuffle_window < 0:
            raise ValueError("webhook duplicate_rate must be within 0..1, shuffle_window >= 0")

    def retry_delay(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed attempt."""
        return float(min(self.retry_max, self.retry_base * 2 ** min(attempts - 1, 60)))


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    """Stripe's `Stripe-Signature` value for `body` sent at `timestamp`."""
    signed = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def wants(endpoint: Obj, event_type: str) -> bool:
    enabled = endpoint["enabled_events"]
    return "*" in enabled or event_type in enabled


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    event: Obj = field(compare=False)
    attempts: int = field(default=0, compare=False)
    duplicate: bool = field(default=False, compare=False)
    body: bytes | None = field(default=None, compare=False)


class _Connection:
    """One keep-alive connection, reopened when the endpoint's address changes or it breaks."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._target: tuple[str, str, int | None] | None = None
        self._reused = False

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        parts = urlsplit(url)
        target = (parts.scheme, parts.hostname or "", parts.port)
        if self._conn is None or self._target != target:
            self.close()
            connection_class = (
                http.client.HTTPSConnection
                if parts.scheme == "https"
                else http.client.HTTPConnection
            )
            self._conn = connection_class(target[1], target[2], timeout=self.timeout)
            self._target = target
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        while True:
            reused = self._reused
            try:
                self._conn.request("POST", path, body, headers)
                response = self._conn.getresponse()
                response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive connection the endpoint closed meanwhile: once more on a new one.
                self._conn.close()
                self._reused = False
                if reused:
                    continue
                raise
            except BaseException:
                self._conn.close()
                self._reused = False
                raise
            self._reused = not response.will_close
            if response.will_close:
                self._conn.close()
            return response.status

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._reused = False


class _Lane:
    """One endpoint's deliveries: a queue ordered by due time and the workers that send them."""

    def __init__(self, dispatcher: WebhookDispatcher, store: Store, endpoint_id: str) -> None:
        self.dispatcher = dispatcher
        self.store = store
        self.endpoint_id = endpoint_id
        self.heap: list[_Delivery] = []
        self.in_flight = 0
        self.stopped = False
        self.cond = threading.Condition()
        self.threads = [
            threading.Thread(target=self._work, name=f"webhook-{endpoint_id}-{n}", daemon=True)
            for n in range(dispatcher.config.connections)
        ]
        for thread in self.threads:
            thread.start()

    def push(self, delivery: _Delivery) -> None:
        with self.cond:
            heapq.heappush(self.heap, delivery)
            self.cond.notify()

    def busy(self) -> bool:
        with self.cond:
            return bool(self.heap) or self.in_flight > 0

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.heap.clear()
            self.cond.notify_all()

    def _next(self) -> _Delivery | None:
        with self.cond:
            while not self.stopped:
                if self.heap:
                    wait = self.heap[0].due - time.monotonic()
                    if wait <= 0:
                        self.in_flight += 1
                        return heapq.heappop(self.heap)
                    self.cond.wait(wait)
                elif self.endpoint_id in self.store.tables["webhook_endpoint"].by_id:
                    self.cond.wait(1.0)
                else:
                    self.stopped = True  # the endpoint was deleted: its workers end
            return None

    def _work(self) -> None:
        connection = _Connection(self.dispatcher.config.timeout)
        try:
            while (delivery := self._next()) is not None:
                try:
                    self.dispatcher.attempt(self, delivery, connection)
                except Exception:  # a sandbox bug must not end this endpoint's deliveries
                    logger.exception("webhook delivery to %s failed", self.endpoint_id)
                finally:
                    with self.cond:
                        self.in_flight -= 1
        finally:
            connection.close()


class WebhookDispatcher:
    """Queues every event for the endpoints that want it and delivers it in the background."""

    def __init__(self, config: WebhookConfig | None = None) -> None:
        self.config = config or WebhookConfig()
        self._rng = random.Random(self.config.seed)
        self._seq = itertools.count()
        self._lanes: dict[tuple[int, str], _Lane] = {}
        self._lock = threading.Lock()
        self.stats: Counter[str] = Counter()

    # -- called by the store, under its lock ------------------------------------------------

    def on_event(self, store: Store, evt: Obj) -> None:
        endpoints = store.tables["webhook_endpoint"].by_id
        if not endpoints:
            return
        wanted = [
            endpoint_id
            for endpoint_id, endpoint in endpoints.items()
            if endpoint["status"] == "enabled" and wants(endpoint, evt["type"])
        ]
        if not wanted:
            return
        evt["pending_webhooks"] = len(wanted)
        config = self.config
        now = time.monotonic()
        with self._lock:
            for endpoint_id in wanted:
                lane = self._lane(store, endpoint_id)
                due = now + (self._rng.uniform(0, config.shuffle_window) if config.shuffle else 0)
                lane.push(_Delivery(due, next(self._seq), evt))
                self.stats["queued"] += 1
                if config.duplicate_rate and self._rng.random() < config.duplicate_rate:
                    later = due + self._rng.uniform(0, max(config.shuffle_window, 0.2))
                    lane.push(_Delivery(later, next(self._seq), evt, duplicate=True))
                    self.stats["duplicated"] += 1

    def _lane(self, store: Store, endpoint_id: str) -> _Lane:
        key = (id(store), endpoint_id)
        lane = self._lanes.get(key)
        if lane is None or lane.stopped:
            lane = self._lanes[key] = _Lane(self, store, endpoint_id)
        return lane

    # -- called by the workers ---------------------------------------------------------------

    def attempt(self, lane: _Lane, delivery: _Delivery, connection: _Connection) -> None:
        store = lane.store
        endpoint = store.tables["webhook_endpoint"].get(lane.endpoint_id)
        secret = store.webhook_secrets.get(lane.endpoint_id)
        if endpoint is None or secret is None or endpoint["status"] != "enabled":
            self._count("dropped")  # deleted or disabled meanwhile
            return
        if delivery.body is None:
            # an endpoint pinned to a version gets the event's object in that version's shape
            # (one newer than the sandbox: in its newest, the event saying which)
            version = endpoint["api_version"]
            with store.lock:
                rendered = render.event(store, delivery.event, version and rendered_as(version))
                delivery.body = orjson.dumps(rendered)
        headers = {
            "Content-Type": CONTENT_TYPE,
            "User-Agent": USER_AGENT,
            "Accept": "*/*; q=0.5, application/xml",
            "Cache-Control": "no-cache",
            "Stripe-Signature": signature_header(secret, delivery.body, int(time.time())),
        }
        delivery.attempts += 1
        try:
            status: int | None = connection.post(endpoint["url"], delivery.body, headers)
        except (OSError, http.client.HTTPException, ValueError) as error:
            logger.debug("webhook %s to %s: %s", delivery.event["id"], endpoint["url"], error)
            status = None
        if status is not None and 200 <= status < 300:
            if not delivery.duplicate:
                with store.lock:
                    evt = delivery.event
                    evt["pending_webhooks"] = max(0, evt["pending_webhooks"] - 1)
            self._count("delivered")
            return
        if delivery.attempts >= self.config.max_attempts:
            logger.info(
                "webhook %s to %s given up after %d attempts (last: %s)",
                delivery.event["id"],
                endpoint["url"],
                delivery.attempts,
                status or "no answer",
            )
            self._count("given_up")
            return
        self._count("retried")
        delivery.due = time.monotonic() + self.config.retry_delay(delivery.attempts)
        lane.push(delivery)

    def _count(self, what: str) -> None:
        with self._lock:
            self.stats[what] += 1

    # -- control -----------------------------------------------------------------------------

    def idle(self) -> bool:
        with self._lock:
            lanes = list(self._lanes.values())
        return not any(lane.busy() for lane in lanes)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or being sent (retries included); False on timeout."""
        deadline = time.monotonic() + timeout
        while not self.idle():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def summary(self) -> dict[str, Any]:
        with self._lock:
            lanes = list(self._lanes.values())
            stats = dict(self.stats)
        with_heap = sum(len(lane.heap) + lane.in_flight for lane in lanes)
        return {**stats, "pending": with_heap, "endpoints": len(lanes)}

    def clear(self) -> None:
        """Forget every queued delivery and stop the workers (the sandbox was emptied)."""
        with self._lock:
            lanes = list(self._lanes.values())
            self._lanes.clear()
        for lane in lanes:
            lane.stop()

    def close(self) -> None:
        self.clear()
