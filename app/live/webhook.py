"""The webhook receiver: verify, store, acknowledge — apply elsewhere.

`POST /webhooks/stripe` verifies the `Stripe-Signature` header with the stripe package, puts the
raw event in the `stripe_events` inbox in one short transaction, and answers 200 only once that
transaction is committed. A delivery that is not signed with our endpoint's secret, is older than
the tolerance (a replay) or is not an event gets a 400 and nothing is stored; when the database
cannot take the event the answer is 503, so Stripe delivers it again later and nothing is lost.

Applying is not the handler's job: a worker thread drains the inbox through the one apply path
(`app.live.events.drain`, the one `make sync` uses), woken when the handler stored something and
every few seconds anyway. It outlives database and API outages (a line in the log, a retry with
backoff) and stops with the server. `GET /healthz` says how many events wait to be applied.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg2
import stripe
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.client.stripe_api import mirrored_account
from app.core.config import DEFAULT_ACCOUNT, Settings, mask_secrets, parse_database_url
from app.core.errors import ConfigError, first_line
from app.core.strict_json import MAX_OBJECT_BYTES, Unreadable, decode_object
from app.db.session import sqlalchemy_url
from app.live.events import ObjectReader, drain, store_events, valid_event
from app.live.sync import StripeApi

log = logging.getLogger(__name__)

DEFAULT_PATH = "/webhooks/stripe"
TOLERANCE = 300  # seconds: a signature older than this is a replay (Stripe's default)
MAX_BODY = MAX_OBJECT_BYTES  # Stripe's largest events are a few hundred KB
DRAIN_INTERVAL = 5.0  # seconds between drains when nothing wakes the worker
MAX_BACKOFF = 60.0  # the longest wait between retries while the database or the API is down
# Stripe counts a slow answer as a failed delivery: every database wait is bounded to a few
# seconds, so a stuck database becomes a quick 503 (and a retry by Stripe), not a hung request
DB_TIMEOUT = 5
# the errors that mean "the database could not take it now"; raw_cursor's statements raise
# psycopg2's own errors, SQLAlchemy wraps the rest
DB_ERRORS = (SQLAlchemyError, psycopg2.Error)

SECRET_HELP = (
    "STRIPE_WEBHOOK_SECRET is not set: it is the endpoint's signing secret (whsec_…) that "
    "verifies deliveries. `stripe listen --forward-to localhost:8010/webhooks/stripe` prints "
    "one, the Stripe Dashboard shows one per endpoint, the local sandbox returns one when you "
    "create an endpoint (POST /v1/webhook_endpoints); put it in .env.local"
)


class Rejected(Exception):
    """A delivery we will not store: why, in a few words, for the 400 body and the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def require_secret(settings: Settings) -> str:
    secret = settings.stripe_webhook_secret.strip()
    if not secret:
        raise ConfigError(SECRET_HELP)
    return secret


def verify(body: bytes, header: str | None, secret: str) -> dict[str, Any]:
    """The event this delivery carries, exactly as Stripe sent it; Rejected when the signature
    does not hold or the body is not an event we can store."""
    if not header:
        raise Rejected("no Stripe-Signature header")
    try:
        stripe.Webhook.construct_event(body, header, secret, tolerance=TOLERANCE)
    except stripe.SignatureVerificationError as exc:
        if "tolerance" in str(exc).lower():
            raise Rejected(
                f"the signature is more than {TOLERANCE} s old (a replay, or a clock out of sync)"
            ) from exc
        raise Rejected(f"bad signature: {first_line(exc).split('. ')[0]}") from exc
    # signed by Stripe but not a JSON object: not UTF-8, not JSON, or an array / a scalar (the
    # SDK then fails to read it as an event)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise Rejected("the body is not a JSON object") from exc
    # the stored event is the body itself, parsed strictly (the SDK's reading is lenient and
    # turns it into objects of its own): what is kept is exactly what Stripe sent
    event = decode_object(body, 1, "the body")
    if isinstance(event, Unreadable):
        raise Rejected(event.reason)
    reason = valid_event(event)
    if reason is not None:
        raise Rejected(reason)
    result: dict[str, Any] = event
    return result


def open_engine(database_url: str) -> Engine:
    """An engine whose every wait is short: connecting, waiting for a pooled connection."""
    connect_args: dict[str, Any] = {}
    if not any(key == "connect_timeout" for key, _ in parse_database_url(database_url).query):
        connect_args["connect_timeout"] = DB_TIMEOUT
    return create_engine(
        sqlalchemy_url(database_url),
        pool_pre_ping=True,
        pool_timeout=DB_TIMEOUT,
        connect_args=connect_args,
    )


def store(engine: Engine, event: dict[str, Any], account: str = DEFAULT_ACCOUNT) -> bool:
    """Commit the event to the inbox (a connected account's event to `event.account`, any other
    to `account`, the receiver's own); False when it was already there (a duplicate delivery)."""
    with engine.begin() as conn:
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = '{DB_TIMEOUT}s'")
        return store_events(conn, [event], "webhook", account) == 1


def pending_count(engine: Engine) -> int:
    with engine.connect() as conn:
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = '{DB_TIMEOUT}s'")
        count: int = conn.exec_driver_sql(
            "SELECT count(*) FROM stripe_events WHERE applied_at IS NULL"
        ).scalar_one()
        conn.rollback()
    return count


class InboxWorker:
    """Drains the inbox in a thread of its own: when woken, and every `interval` seconds."""

    def __init__(
        self,
        engine: Engine,
        reader: ObjectReader | None,
        *,
        interval: float = DRAIN_INTERVAL,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        self.engine = engine
        self.reader = reader
        self.interval = interval
        self.max_backoff = max_backoff
        self.wake = threading.Event()
        self.failing = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inbox-worker", daemon=True)

    @property
    def state(self) -> str:
        if not self._thread.is_alive():
            return "stopped"
        return "retrying" if self.failing else "running"

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the worker to stop and wait for it: a drain under way finishes its batch (or is
        rolled back with the process, its events still pending)."""
        self._stopping.set()
        self.wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("inbox worker: still applying after %.0f s; leaving it", timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            self.wake.clear()  # before draining: a wake during the drain means drain again
            try:
                counts = drain(self.engine, self.reader)
            except Exception as exc:  # noqa: BLE001 — the worker must outlive any failure: the events stay pending
                failures += 1
                self.failing = True
                delay = min(self.max_backoff, 2.0 ** (failures - 1))
                log.warning(
                    "inbox worker: cannot apply events now (%s: %s); retrying in %.1f s",
                    type(exc).__name__,
                    mask_secrets(first_line(exc)),
                    delay,
                )
                log.debug("inbox worker: the failure", exc_info=True)
                self._stopping.wait(delay)  # not woken by deliveries: the backoff holds
                continue
            if failures:
                log.info("inbox worker: applying again after %d failed attempt(s)", failures)
            failures, self.failing = 0, False
            if counts.events:
                outcomes = ", ".join(f"{n} {what}" for what, n in sorted(counts.outcomes.items()))
                log.info("inbox worker: %d event(s) done: %s", counts.events, outcomes)
            self.wake.wait(self.interval)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _read_body(request: Request) -> bytes | None:
    """The raw body (the signature covers these exact bytes); None when it is over MAX_BODY."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class Receiver:
    """The app's state: settings, the engine and the worker the lifespan opens and closes."""

    def __init__(
        self,
        settings: Settings,
        *,
        worker: bool = True,
        reader: ObjectReader | None = None,
        drain_interval: float = DRAIN_INTERVAL,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        self.settings = settings
        self.secret = require_secret(settings)
        # the worker's API client (same-second ties, long child lists), built now so that a
        # setting it cannot use stops the command before it listens
        self.reader: ObjectReader | None = None
        if worker:
            if reader is None and not settings.stripe_secret_key:
                log.warning(
                    "STRIPE_SECRET_KEY is not set: once an event needs the API (a same-second "
                    "tie, a long child list) the worker cannot apply the inbox until it is"
                )
            self.reader = reader or StripeApi(settings)
        self.account = self._own_account(settings, self.reader)
        self.drain_interval = drain_interval
        self.max_backoff = max_backoff
        self.engine: Engine | None = None
        self.worker: InboxWorker | None = None

    @staticmethod
    def _own_account(settings: Settings, reader: ObjectReader | None) -> str:
        """The account an event that names none (not a connected account's) belongs to:
        learned once, at start (STRIPE_ACCOUNT, else `GET /v1/account` with the key); with
        neither, the default account (app.core.config.DEFAULT_ACCOUNT), said out loud."""
        if reader is not None:
            return reader.account
        if settings.stripe_account or settings.stripe_secret_key:
            return mirrored_account(settings)
        log.warning(
            "neither STRIPE_ACCOUNT nor STRIPE_SECRET_KEY is set: events are stored for the "
            "account %s",
            DEFAULT_ACCOUNT,
        )
        return DEFAULT_ACCOUNT

    @asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self.engine = open_engine(self.settings.database_url)
        if self.reader is not None:
            self.worker = InboxWorker(
                self.engine, self.reader, interval=self.drain_interval, max_backoff=self.max_backoff
            )
            self.worker.start()
        try:
            yield
        finally:
            if self.worker is not None:
                await run_in_threadpool(self.worker.stop)
            self.engine.dispose()

    async def receive(self, request: Request) -> JSONResponse:
        client = request.client.host if request.client else "?"
        body = await _read_body(request)
        if body is None:
            log.warning("rejected a delivery from %s: over %d bytes", client, MAX_BODY)
            return _error(413, f"the body is over {MAX_BODY} bytes")
        try:
            event = await run_in_threadpool(
                verify, body, request.headers.get("stripe-signature"), self.secret
            )
        except Rejected as exc:
            log.warning("rejected a delivery from %s: %s", client, mask_secrets(exc.reason))
            return _error(400, exc.reason)
        assert self.engine is not None  # the lifespan opened it
        try:
            new = await run_in_threadpool(store, self.engine, event, self.account)
        except DB_ERRORS as exc:
            log.error(
                "%s %s not stored, answered 503 (Stripe retries): %s",
                event["id"],
                event["type"],
                mask_secrets(first_line(exc)),
            )
            return _error(503, "the event could not be stored now; deliver it again later")
        log.info("%s %s %s", event["id"], event["type"], "stored" if new else "duplicate")
        if new and self.worker is not None:
            self.worker.wake.set()
        return JSONResponse({"received": True, "duplicate": not new})

    async def healthz(self, _request: Request) -> JSONResponse:
        worker = self.worker.state if self.worker is not None else "off"
        assert self.engine is not None
        try:
            pending = await run_in_threadpool(pending_count, self.engine)
        except DB_ERRORS as exc:
            log.warning("healthz: the database is unreachable: %s", mask_secrets(first_line(exc)))
            return JSONResponse(
                {"status": "database unreachable", "worker": worker}, status_code=503
            )
        return JSONResponse({"status": "ok", "pending": pending, "worker": worker})


def create_app(
    settings: Settings,
    *,
    path: str = DEFAULT_PATH,
    worker: bool = True,
    reader: ObjectReader | None = None,
    drain_interval: float = DRAIN_INTERVAL,
    max_backoff: float = MAX_BACKOFF,
) -> Starlette:
    """The receiver as an ASGI app. Refuses (ConfigError) without STRIPE_WEBHOOK_SECRET.

    `worker=False` only stores: something else (`make sync`, another receiver) drains the inbox.
    `reader` settles same-second ties and pages long child lists (default: the Stripe API of
    `settings`).
    """
    if not path.startswith("/"):
        raise ConfigError(f"the webhook path must start with /, got {path!r}")
    receiver = Receiver(
        settings,
        worker=worker,
        reader=reader,
        drain_interval=drain_interval,
        max_backoff=max_backoff,
    )
    app = Starlette(
        routes=[
            Route(path, receiver.receive, methods=["POST"]),
            Route("/healthz", receiver.healthz, methods=["GET"]),
        ],
        lifespan=receiver.lifespan,
    )
    app.state.receiver = receiver
    return app


class MaskingFormatter(logging.Formatter):
    """Every log line, ours and uvicorn's, with Stripe keys and database passwords masked."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record))
