#!/usr/bin/env python
"""Receive Stripe's webhooks into the events inbox, and apply them to the mirror.

Exit codes: 0 stopped cleanly (SIGTERM); 2 refused to start (no STRIPE_WEBHOOK_SECRET, the
address is taken, a bad DATABASE_URL) or an unexpected error; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn  # noqa: E402

from app.commands.cli import add_debug_option, run_command  # noqa: E402
from app.core.config import load_settings  # noqa: E402
from app.core.errors import ConfigError  # noqa: E402
from app.core.exit_codes import EXIT_FAILED, EXIT_OK  # noqa: E402
from app.live.webhook import (  # noqa: E402
    DEFAULT_PATH,
    DRAIN_INTERVAL,
    TOLERANCE,
    MaskingFormatter,
    create_app,
    require_secret,
)

DESCRIPTION = f"""\
Receive Stripe's webhooks and keep the mirror current.

The flow: verify, store, acknowledge — apply elsewhere.
  1. POST <path> verifies the Stripe-Signature header with STRIPE_WEBHOOK_SECRET; a bad or
     missing signature, one older than {TOLERANCE} s (a replay) or a body that is not an event
     gets a 400 and nothing is stored.
  2. The raw event is committed to the stripe_events inbox (the event id is its key, so a
     duplicate delivery changes nothing) BEFORE the answer: 200 {{"received": true,
     "duplicate": false|true}}. When PostgreSQL cannot take it the answer is 503 and Stripe
     delivers it again later: an acknowledged event is never lost.
  3. A worker thread applies the inbox to the mirror through the same path as `make sync`
     (oldest first, the newest state wins whatever the arrival order), as soon as something
     is stored and every {DRAIN_INTERVAL:.0f} s anyway; it waits out database or API outages.
GET /healthz answers 200 with the number of events waiting, 503 when the database is down.
"""

EPILOG = """\
Pointing Stripe at it:
  local, with the Stripe CLI:  stripe listen --forward-to localhost:8010/webhooks/stripe
      prints the signing secret (whsec_…): put it in .env.local as STRIPE_WEBHOOK_SECRET.
  a deployed receiver: Dashboard → Developers → Webhooks → Add endpoint, the URL
      https://<your host>/webhooks/stripe (behind a TLS proxy), events customer.*, product.*,
      price.*, payment_method.*, invoice.*, payment_intent.*, charge.*; the endpoint's
      "Signing secret" is STRIPE_WEBHOOK_SECRET.
  the local sandbox (make sandbox): create an endpoint whose url is this receiver,
      curl -u sk_test_x: http://127.0.0.1:12111/v1/webhook_endpoints \\
           -d url=http://127.0.0.1:8010/webhooks/stripe -d "enabled_events[]=*"
      and use the `secret` it returns as STRIPE_WEBHOOK_SECRET.
STRIPE_SECRET_KEY and STRIPE_API_BASE are used by the worker only, to settle two states of an
object stamped in the same second and to page long child lists. Environment: ENV,
DATABASE_URL, STRIPE_WEBHOOK_SECRET, STRIPE_SECRET_KEY, STRIPE_API_BASE.
Exit codes: 0 stopped (SIGTERM); 2 refused to start or failed; 130 interrupted (Ctrl-C).
"""


def listen(host: str, port: int) -> socket.socket:
    """Bind before starting, so a taken address is one clear line and exit 2."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ConfigError(f"cannot listen on {host}:{port}: {reason}") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8010, help="port to listen on")
    parser.add_argument(
        "--path", default=DEFAULT_PATH, help=f"the webhook route (default {DEFAULT_PATH})"
    )
    parser.add_argument(
        "--no-worker",
        action="store_true",
        help="only verify and store; leave applying the inbox to `make sync` or another receiver",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    add_debug_option(parser)
    args = parser.parse_args(argv)

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(MaskingFormatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, handlers=[handler])
    logging.getLogger("stripe").setLevel(logging.WARNING)  # the SDK logs every request

    settings = load_settings()
    require_secret(settings)  # before binding anything
    app = create_app(settings, path=args.path, worker=not args.no_worker)
    sock = listen(args.host, args.port)
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,  # our handler above, which masks secrets
        access_log=False,  # the receiver logs one line per delivery itself
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    logging.getLogger(__name__).info(
        "receiving Stripe webhooks at http://%s:%d%s (%s)",
        args.host,
        args.port,
        args.path,
        "store only" if args.no_worker else "the worker applies them",
    )

    def stop_cleanly(*_: Any) -> None:
        sys.exit(EXIT_OK)

    # uvicorn shuts down gracefully on SIGTERM, then raises it again: end with 0, not killed
    signal.signal(signal.SIGTERM, stop_cleanly)
    try:
        server.run(sockets=[sock])
    except SystemExit as exc:
        if exc.code in (None, EXIT_OK):
            return EXIT_OK
        # uvicorn exits 3 when the app's startup failed; it has said why
        sys.stderr.write("error: the receiver could not start (see above)\n")
        return EXIT_FAILED
    return EXIT_OK if server.started else EXIT_FAILED


if __name__ == "__main__":
    run_command(main)
