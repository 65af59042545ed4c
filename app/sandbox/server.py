"""The HTTP front of the sandbox: auth, limits, faults, idempotency, routing, JSON out.

A `ThreadingHTTPServer` speaking HTTP/1.1 with keep-alive; state changes and page building run
under the store's lock (the GIL would serialise them anyway), encoding is orjson. The bench in
scripts/bench_sandbox.py measures this path.

Malformed requests get Stripe's 400-family error body, never a 500 or a stuck thread: a body is
at most `MAX_BODY_BYTES` with a valid Content-Length, read within `read_timeout` seconds; an
unknown `Stripe-Version` is refused as Stripe refuses it (the parameters' own limits are in
params.py). A version newer than the sandbox knows is answered in its newest shapes, with a
`Sandbox-Rendered-As` header saying so (versions.py).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import secrets
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from app.sandbox import render, resources
from app.sandbox.context import Context
from app.sandbox.errors import (
    ApiError,
    AuthenticationError,
    IdempotencyError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    StripeError,
)
from app.sandbox.limits import FaultConfig, FaultInjector, RateLimiter
from app.sandbox.params import Params, as_int, decode_form
from app.sandbox.persist import StatePersister
from app.sandbox.store import Store
from app.sandbox.versions import (
    DEFAULT_API_VERSION,
    NEWEST_API_VERSION,
    api_version_of,
    rendered_as,
)
from app.sandbox.webhooks import WebhookConfig, WebhookDispatcher

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 12111
_IDEMPOTENCY_CAPACITY = 100_000
# Stripe keeps the results of idempotent requests for 24 hours.
_IDEMPOTENCY_TTL = 24 * 3600
# Stripe's limit on an Idempotency-Key; longer keys would also let a client fill the memory.
MAX_IDEMPOTENCY_KEY = 255
# Stripe's requests are a few KB at most (50 metadata keys of 500 characters is ~30 KB): 1 MiB
# leaves room for any of them and none for a flood.
MAX_BODY_BYTES = 1 << 20
# A body declared a little over the cap is read and thrown away so that the client, still
# sending, gets the 413 rather than a reset connection; a bigger one closes the connection.
_DRAIN_BYTES = 8 << 20
DEFAULT_READ_TIMEOUT = 30.0
# Added to an answer rendered in another version than the one asked (a client newer than the
# sandbox): names the version the body is in, as `Stripe-Version` then does too.
RENDERED_AS_HEADER = "Sandbox-Rendered-As"
# The newer versions the log has named (each once); a client inventing names cannot grow it past this.
_MAX_NEWER_VERSIONS_LOGGED = 100


@dataclass(frozen=True)
class SandboxConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    rate_limit: bool = False
    test_rate: float = 25.0
    live_rate: float = 100.0
    endpoint_rate: float | None = None
    faults: FaultConfig = field(default_factory=FaultConfig)
    webhooks: WebhookConfig = field(default_factory=WebhookConfig)
    accept_live_keys: bool = True
    # Where the state is kept across restarts; None keeps it in memory only.
    state_file: Path | None = None
    # Seconds a connection may stay silent (between requests, or mid-request) before it is
    # closed, and the most a request body may take to arrive: a client that stalls frees its thread.
    read_timeout: float = DEFAULT_READ_TIMEOUT
    # The account's default API version: requests without `Stripe-Version` get it, events carry it.
    api_version: str = DEFAULT_API_VERSION


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


@dataclass
class _Saved:
    fingerprint: str
    response: Response
    stamp: float


def error_response(error: StripeError, request_id: str | None = None) -> Response:
    """Stripe's error body for `error`, with a fresh Request-Id unless one is given."""
    response = Response(error.status, orjson.dumps(error.body()))
    response.headers["Request-Id"] = request_id or "req_" + secrets.token_hex(7)
    if isinstance(error, ApiError):
        response.headers["Stripe-Should-Retry"] = "true"
    return response


def _wire_bytes(text: str) -> bytes:
    """A request target back to its bytes: http.server decodes the request line as Latin-1."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:  # not from the wire: a caller's own text
        return text.encode("utf-8", "surrogatepass")


class Sandbox:
    """The whole sandbox behind one `handle()` call; the HTTP layer only moves bytes."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.stores = {
            livemode: Store(livemode=livemode, api_version=self.config.api_version)
            for livemode in (False, True)
        }
        self.limiter = (
            RateLimiter(
                test_rate=self.config.test_rate,
                live_rate=self.config.live_rate,
                endpoint_rate=self.config.endpoint_rate,
            )
            if self.config.rate_limit
            else None
        )
        self.faults = FaultInjector(self.config.faults) if self.config.faults.enabled else None
        self._idempotency: OrderedDict[tuple[str, str], _Saved] = OrderedDict()
        self._idempotency_lock = threading.Lock()
        # Bumped under the store's lock by every request that may change state: the persister
        # snapshots when it moves.
        self.generation = 0
        self._newer_versions: set[str] = set()
        self._newer_versions_lock = threading.Lock()
        # how far the last (or running) seed got: {"running": bool, step: {"done", "total"}}
        self.seeding: dict[str, Any] = {"running": False}
        # Every event either store records is delivered to its webhook endpoints.
        self.webhooks = WebhookDispatcher(self.config.webhooks)
        for store in self.stores.values():
            store.event_listener = self.webhooks.on_event
        self.persister = (
            StatePersister(self, self.config.state_file) if self.config.state_file else None
        )

    @property
    def store(self) -> Store:
        """The test-mode store, which tests and the seeder use."""
        return self.stores[False]

    def close(self) -> None:
        """Stop delivering webhooks; write the last snapshot, if the state is kept in a file."""
        self.webhooks.close()
        if self.persister is not None:
            self.persister.close()

    def reset(self) -> None:
        with self.frozen():
            self.webhooks.clear()
            for store in self.stores.values():
                store.reset()
            self._idempotency.clear()
            self.generation += 1
        if self.persister is not None:
            self.persister.save_now()
        logger.info("sandbox state emptied")

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Hold every lock of the state, always in the same order: nothing changes meanwhile."""
        with self.stores[False].lock, self.stores[True].lock, self._idempotency_lock:
            yield

    def state(self) -> dict[str, Any]:
        """The whole state as plain builtins, for the state file (call inside `frozen()`)."""
        wall_minus_monotonic = time.time() - time.monotonic()
        return {
            "stores": {
                "live" if livemode else "test": store.dump_state()
                for livemode, store in self.stores.items()
            },
            # Saved requests, with wall-clock stamps: monotonic time restarts with the machine.
            "idempotency": [
                (key, saved.fingerprint, saved.response.status, saved.response.body,
                 saved.response.headers, saved.stamp + wall_minus_monotonic)
                for key, saved in self._idempotency.items()
            ],
        }  # fmt: skip

    def restore(self, state: dict[str, Any]) -> None:
        """Replace the whole state with one from `state()`."""
        monotonic_minus_wall = time.monotonic() - time.time()
        with self.frozen():
            self.webhooks.clear()
            for livemode, store in self.stores.items():
                store.load_state(state["stores"]["live" if livemode else "test"])
            self._idempotency.clear()
            for key, fingerprint, status, body, headers, stamp in state["idempotency"]:
                self._idempotency[(key[0], key[1])] = _Saved(
                    fingerprint, Response(status, body, headers), stamp + monotonic_minus_wall
                )

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        request_id = "req_" + secrets.token_hex(7)
        base_headers = {"Request-Id": request_id}
        try:
            asked = api_version_of(headers.get("stripe-version"), self.config.api_version)
            api_version = rendered_as(asked)
            base_headers["Stripe-Version"] = api_version
            if api_version != asked:
                base_headers[RENDERED_AS_HEADER] = api_version
                self._log_newer_version(asked, api_version)
            response = self._dispatch(method, target, headers, body, request_id, api_version)
        except StripeError as error:
            response = error_response(error, request_id)
        except Exception:  # a sandbox bug must answer 500 like Stripe, not kill the connection
            logger.exception("unhandled error serving %s %s", method, target)
            failure = ApiError("An unknown error occurred in the sandbox.")
            response = Response(500, orjson.dumps(failure.body()))
        response.headers = {**base_headers, **response.headers}
        return response

    def _log_newer_version(self, asked: str, rendered: str) -> None:
        """One warning per version newer than the sandbox, not one per request."""
        with self._newer_versions_lock:
            if (
                asked in self._newer_versions
                or len(self._newer_versions) >= _MAX_NEWER_VERSIONS_LOGGED
            ):
                return
            self._newer_versions.add(asked)
        logger.warning(
            "Stripe-Version %s is newer than the sandbox's newest (%s): answered in %s's shapes, "
            "with a %s header",
            asked, NEWEST_API_VERSION, rendered, RENDERED_AS_HEADER,
        )  # fmt: skip

    def _dispatch(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        request_id: str,
        api_version: str,
    ) -> Response:
        try:
            split = urlsplit(target)
        except ValueError:  # `//[` reads as a broken IPv6 host
            raise InvalidRequestError(
                f"Unrecognized request URL ({method}: {target[:200]})."
            ) from None
        path = split.path.rstrip("/") or "/"
        if path.startswith("/_sandbox/"):
            return self._admin(method, path, split.query, body)
        if self.faults is not None:
            fault = self.faults.draw()
            if fault == "drop":
                return Response(0, b"", drop=True)
            if fault == "error":
                raise ApiError("An unknown error occurred (injected by the sandbox).")
            if fault == "slow":
                time.sleep(self.config.faults.slow_seconds)
        api_key, livemode = self._authenticate(headers)
        found = resources.match(method, path)
        if self.limiter is not None:
            endpoint = f"{method} {found[0].template if found else path}"
            if not self.limiter.allow(livemode, endpoint):
                raise RateLimitError(
                    "Request rate limit exceeded. Learn more about rate limits here "
                    "https://stripe.com/docs/rate-limits."
                )
        if found is None:
            raise NotFoundError(f"Unrecognized request URL ({method}: {path}).", param=None)
        route, ids = found
        params = decode_form(_wire_bytes(split.query)) if split.query else {}
        if method == "POST" and body:
            params.update(decode_form(body))
        idempotency_key = headers.get("idempotency-key") if method == "POST" else None
        if idempotency_key and len(idempotency_key) > MAX_IDEMPOTENCY_KEY:
            raise InvalidRequestError(
                f"Invalid Idempotency-Key: keys can be at most {MAX_IDEMPOTENCY_KEY} characters long."
            )
        if idempotency_key:
            fingerprint = hashlib.sha256(
                method.encode()
                + b" "
                + path.encode()
                + b"?"
                + orjson.dumps(params, option=orjson.OPT_SORT_KEYS)
            ).hexdigest()
            saved = self._saved(api_key, idempotency_key, fingerprint)
            if saved is not None:
                return saved
        store = self.stores[livemode]
        ctx = Context(
            store,
            int(time.time()),
            request_id=request_id,
            idempotency_key=idempotency_key,
            stripe_account=headers.get("stripe-account") or None,
        )
        try:
            with store.lock:
                try:
                    result = route.handler(ctx, params, *ids)
                finally:
                    # Even a failed request may have changed something (a declined charge).
                    if method != "GET":
                        self.generation += 1
                encoded = orjson.dumps(render.response(store, result, params, api_version))
            response = Response(200, encoded)
        except StripeError as error:
            # Card errors happened (the charge exists) and are replayed; validation errors are not.
            if idempotency_key and error.status == 402:
                self._save(
                    api_key, idempotency_key, fingerprint, Response(402, orjson.dumps(error.body()))
                )
            raise
        if idempotency_key:
            response.headers["Idempotency-Key"] = idempotency_key
            self._save(api_key, idempotency_key, fingerprint, response)
        return response

    def _authenticate(self, headers: dict[str, str]) -> tuple[str, bool]:
        header = headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        key = ""
        if scheme.lower() == "bearer":
            key = credential.strip()
        elif scheme.lower() == "basic":
            try:
                key = base64.b64decode(credential).decode().partition(":")[0]
            except (ValueError, UnicodeDecodeError):
                key = ""
        if not key:
            raise AuthenticationError(
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            )
        if key.startswith("sk_test_") and len(key) > len("sk_test_"):
            return key, False
        if (
            self.config.accept_live_keys
            and key.startswith("sk_live_")
            and len(key) > len("sk_live_")
        ):
            return key, True
        shown = (
            key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else key[:3] + "***"
        )
        raise AuthenticationError(f"Invalid API Key provided: {shown}", code="api_key_invalid")

    def _saved(self, api_key: str, idempotency_key: str, fingerprint: str) -> Response | None:
        with self._idempotency_lock:
            saved = self._idempotency.get((api_key, idempotency_key))
            if saved is None or time.monotonic() - saved.stamp > _IDEMPOTENCY_TTL:
                return None
        if saved.fingerprint != fingerprint:
            raise IdempotencyError(
                "Keys for idempotent requests can only be used with the same parameters they were "
                f"first used with. Try using a key other than '{idempotency_key}' if you meant to "
                "execute a different request.",
            )
        response = saved.response
        headers = {**response.headers, "Idempotent-Replayed": "true"}
        return Response(response.status, response.body, headers)

    def _save(
        self, api_key: str, idempotency_key: str, fingerprint: str, response: Response
    ) -> None:
        with self._idempotency_lock:
            self._idempotency[(api_key, idempotency_key)] = _Saved(
                fingerprint,
                Response(response.status, response.body, dict(response.headers)),
                time.monotonic(),
            )
            while len(self._idempotency) > _IDEMPOTENCY_CAPACITY:
                self._idempotency.popitem(last=False)

    def _admin(self, method: str, path: str, query: str, body: bytes) -> Response:
        params: Params = decode_form(_wire_bytes(query)) if query else {}
        if body:
            params.update(decode_form(body))
        if path == "/_sandbox/health" and method == "GET":
            persister = self.persister
            health = {
                "ok": True,
                "counts": self.store.counts(),
                "state_file": str(persister.path) if persister else None,
                "state_saved": persister.saved if persister else None,
                "webhooks": self.webhooks.summary(),
            }
            return Response(200, orjson.dumps(health))
        if path == "/_sandbox/reset" and method == "POST":
            self.reset()
            return Response(200, orjson.dumps({"ok": True}))
        if path == "/_sandbox/seed" and method == "GET":
            # how far the seed under way is (read without the store's lock, which it holds)
            return Response(200, orjson.dumps(self.seeding))
        if path == "/_sandbox/seed" and method == "POST":
            from app.sandbox.seed import seed_store

            customers = as_int(params, "customers", required=True, minimum=0) or 0
            seed = as_int(params, "seed") or 0

            def progress(step: str, done: int, total: int) -> None:
                self.seeding = {**self.seeding, step: {"done": done, "total": total}}

            with self.store.lock:
                self.seeding = {"running": True}
                try:
                    report = seed_store(
                        self.store, customers=customers, seed=seed, progress=progress
                    )
                finally:
                    self.generation += 1
                    self.seeding = {**self.seeding, "running": False}
            return Response(200, orjson.dumps(report))
        raise InvalidRequestError(f"Unrecognized request URL ({method}: {path}).")


class _BodyRefused(Exception):
    """The request's body cannot be read: answer `error` and close the connection."""

    def __init__(self, error: StripeError) -> None:
        super().__init__(error.message)
        self.error = error


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # a request line http.server cannot read is refused in HTTP/1.1, not as a bare HTTP/0.9 body
    default_request_version = "HTTP/1.1"
    # Headers and body leave in one buffered write, without Nagle: otherwise every small answer
    # waits out the client's delayed ACK (~40 ms) on a keep-alive connection.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16
    server: SandboxHTTPServer

    def setup(self) -> None:
        # the socket's timeout: a silent client frees its thread (http.server has none by default)
        super().setup()
        self.connection.settimeout(self.server.sandbox.config.read_timeout)

    def _declared_length(self) -> int:
        """The body's length from Content-Length, or the refusal of a malformed or oversized one."""
        if self.headers.get("Transfer-Encoding"):
            error = InvalidRequestError(
                "Transfer-Encoding is not supported: send the body with a Content-Length."
            )
            error.status = 411
            raise _BodyRefused(error)
        values = {value.strip() for value in self.headers.get_all("Content-Length") or ()}
        if not values:
            return 0
        value = values.pop()
        if values or not value.isascii() or not value.isdigit():
            raise _BodyRefused(
                InvalidRequestError(
                    f"Invalid Content-Length header: {value[:40]!r} (expected one number of bytes)."
                )
            )
        length = int(value) if len(value) <= 20 else _DRAIN_BYTES + 1
        if length > MAX_BODY_BYTES:
            error = InvalidRequestError(
                f"Request body too large: at most {MAX_BODY_BYTES} bytes are accepted."
            )
            error.status = 413
            if length <= _DRAIN_BYTES and not self.headers.get("Expect"):
                self._read_exactly(length, keep=False)
            raise _BodyRefused(error)
        return length

    def _read_exactly(self, length: int, *, keep: bool = True) -> bytes:
        """`length` bytes of body, within the read timeout in all (not per byte)."""
        deadline = time.monotonic() + self.server.sandbox.config.read_timeout
        chunks: list[bytes] = []
        remaining = length
        try:
            while remaining:
                if time.monotonic() > deadline:
                    raise TimeoutError
                chunk = self.rfile.read1(min(remaining, 1 << 16))
                if not chunk:
                    raise _BodyRefused(
                        InvalidRequestError(
                            f"The request body ended after {length - remaining} of the "
                            f"{length} bytes its Content-Length announced."
                        )
                    )
                remaining -= len(chunk)
                if keep:
                    chunks.append(chunk)
        except TimeoutError:
            error = InvalidRequestError(
                f"Timed out reading the request body: {length - remaining} of the {length} bytes "
                "its Content-Length announced arrived."
            )
            error.status = 408
            raise _BodyRefused(error) from None
        return b"".join(chunks)

    def handle_expect_100(self) -> bool:
        # refuse a bad or oversized body before the client sends it
        try:
            self._declared_length()
        except _BodyRefused as refused:
            self._refuse(refused.error)
            return False
        return super().handle_expect_100()

    def _serve(self) -> None:
        try:
            body = self._read_exactly(self._declared_length())
        except _BodyRefused as refused:
            self._refuse(refused.error)
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        response = self.server.sandbox.handle(self.command, self.path, headers, body)
        if response.drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                logger.debug("peer already gone while dropping a connection")
            return
        self._send(response)

    # PUT, PATCH and OPTIONS reach the router, which answers Stripe's 404 for them
    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_OPTIONS = _serve  # noqa: N815

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _refuse(self, error: StripeError) -> None:
        """Answer `error` and close: after a bad request, where the next one starts is unknown."""
        self.close_connection = True
        response = error_response(error)
        response.headers["Connection"] = "close"
        try:
            self._send(response)
            self.wfile.flush()
        except OSError:
            logger.debug("peer gone before its %s answer", error.status)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a malformed request line, oversized headers, an unknown
        method) in Stripe's error shape rather than as an HTML page."""
        if not message:
            message = self.responses.get(code, ("Bad request",))[0]
        error = InvalidRequestError(message)
        error.status = code
        self._refuse(error)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        logger.debug("%s " + format, self.address_string(), *args)


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        super().__init__((sandbox.config.host, sandbox.config.port), _Handler)

    @property
    def url(self) -> str:
        return f"http://{self.sandbox.config.host}:{self.server_address[1]}"


class SandboxHandle:
    """A sandbox serving from a background thread: `.url`, `.reset()`, `.stop()`."""

    def __init__(self, server: SandboxHTTPServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.sandbox = server.sandbox
        self.url = server.url

    @property
    def store(self) -> Store:
        return self.sandbox.store

    def reset(self) -> None:
        self.sandbox.reset()

    def seed(self, customers: int, seed: int = 0) -> dict[str, Any]:
        from app.sandbox.seed import seed_store

        with self.store.lock:
            try:
                return seed_store(self.store, customers=customers, seed=seed)
            finally:
                self.sandbox.generation += 1

    def wait_for_webhooks(self, timeout: float = 10.0) -> bool:
        """Wait until every queued webhook delivery (retries included) is done; False on timeout."""
        return self.sandbox.webhooks.wait_idle(timeout)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self.sandbox.close()

    def __enter__(self) -> SandboxHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_in_thread(
    port: int = 0,
    *,
    host: str = DEFAULT_HOST,
    rate_limit: bool = False,
    test_rate: float = 25.0,
    live_rate: float = 100.0,
    endpoint_rate: float | None = None,
    error_rate: float = 0.0,
    slow_rate: float = 0.0,
    slow_seconds: float = 1.0,
    drop_rate: float = 0.0,
    fault_seed: int | None = None,
    state_file: Path | None = None,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    api_version: str = DEFAULT_API_VERSION,
    webhook_retry_base: float = 1.0,
    webhook_retry_max: float = 60.0,
    webhook_max_attempts: int = 12,
    webhook_timeout: float = 10.0,
    webhook_connections: int = 2,
    webhook_shuffle: bool = False,
    webhook_shuffle_window: float = 0.5,
    webhook_duplicate_rate: float = 0.0,
) -> SandboxHandle:
    """Start a sandbox in this process (port 0: a free port), for tests; stop it with `.stop()`.

    State stays in memory unless `state_file` is given. `fault_seed` seeds the webhook faults
    (shuffle, duplicates) too.
    """
    config = SandboxConfig(
        host=host,
        port=port,
        rate_limit=rate_limit,
        test_rate=test_rate,
        live_rate=live_rate,
        endpoint_rate=endpoint_rate,
        faults=FaultConfig(error_rate, slow_rate, slow_seconds, drop_rate, fault_seed),
        state_file=state_file,
        read_timeout=read_timeout,
        api_version=api_version,
        webhooks=WebhookConfig(
            retry_base=webhook_retry_base,
            retry_max=max(webhook_retry_max, webhook_retry_base),
            max_attempts=webhook_max_attempts,
            timeout=webhook_timeout,
            connections=webhook_connections,
            shuffle=webhook_shuffle,
            shuffle_window=webhook_shuffle_window,
            duplicate_rate=webhook_duplicate_rate,
            seed=fault_seed,
        ),
    )
    server = _open(config)
    # a short poll: stop() returns within 50 ms rather than half a second
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="stripe-sandbox", daemon=True
    )
    thread.start()
    logger.info("sandbox serving at %s", server.url)
    return SandboxHandle(server, thread)


def _open(config: SandboxConfig) -> SandboxHTTPServer:
    """Load the saved state (before listening: no client sees a half-loaded sandbox), then bind."""
    sandbox = Sandbox(config)
    if sandbox.persister is not None:
        sandbox.persister.load()
    try:
        server = SandboxHTTPServer(sandbox)
    except BaseException:
        sandbox.close()
        raise
    if sandbox.persister is not None:
        sandbox.persister.start()
    return server


def serve_forever(config: SandboxConfig) -> None:
    """Serve in the foreground until interrupted; a state file gets its last snapshot on the way out."""
    server = _open(config)
    logger.info("sandbox serving at %s", server.url)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        server.sandbox.close()
