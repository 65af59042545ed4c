"""The command behind `make sync` (scripts/sync.py): keep the mirror current from Stripe's events."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import timedelta

from sqlalchemy.exc import OperationalError

from app.commands.cli import add_debug_option, log_to_stderr
from app.commands.ingest import format_summary
from app.core.config import load_settings, mask_secrets
from app.core.errors import PipelineError
from app.core.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL
from app.core.progress import ProgressBoard
from app.db.session import get_engine
from app.live.sync import EVENT_RETENTION, OVERLAP, SyncReport, sync_events
from app.registry import load_order
from app.schema import require_tables, unreachable

log = logging.getLogger(__name__)

DESCRIPTION = """\
Keep the mirror current from Stripe's events (GET /v1/events), one pass or following.

A pass lists the events created since the cursor kept in the database (table sync_state, per
Stripe account and mode), re-reading a short overlap behind it, stores them in the inbox
(table stripe_events: an event id is stored once, so nothing is applied twice), moves the
cursor once the listing is complete, then applies every event not yet applied, oldest first,
through the same transformers and bulk upsert as the full load. Each row keeps the Stripe time
of its state: an event older than the row's state is skipped (counted "stale"); one of the
same second with other content is settled by reading the object from the API. Deleting events
(customer.deleted, product.deleted, price.deleted, invoice.deleted) soft-delete; a detached
payment method keeps its row with no customer; a canceled subscription keeps its row, canceled.

With no cursor yet, or one older than Stripe keeps events (30 days), the pass says so and
loads every resource whole instead (listing, upsert, and the delete sweep: rows Stripe no longer
lists are soft-deleted), then starts the cursor at that load's start. `make ingest-all` with
--sweep from a fresh `make fetch` sets the first cursor too, so a sync after `make demo` is
incremental from the start.
"""

EPILOG = """\
Exit codes: 0 done; 1 some events could not be applied (their reasons are in
stripe_events.outcome); 2 the API or the database failed; 130 interrupted.
Environment: ENV, DATABASE_URL, STRIPE_SECRET_KEY, STRIPE_API_BASE, STRIPE_API_VERSION,
STRIPE_ACCOUNT (a connected account), FETCH_RATE (requests/s, default 25).
Examples:
  scripts/sync.py                      one pass
  scripts/sync.py --follow --interval 2
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sync.py",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--follow", action="store_true", help="keep polling until interrupted (Ctrl-C)"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=2.0,
        help="seconds between passes with --follow (default: %(default)s)",
    )
    parser.add_argument(
        "--overlap",
        type=float,
        default=OVERLAP.total_seconds(),
        help="seconds re-read behind the cursor each pass (default: %(default)s)",
    )
    parser.add_argument(
        "--retention-days",
        type=float,
        default=EVENT_RETENTION.days,
        help="how long Stripe keeps events; an older cursor triggers a full load "
        "(default: %(default)s)",
    )
    parser.add_argument("--database-url", default=None, help="overrides DATABASE_URL")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    add_debug_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log_to_stderr(quiet=args.quiet)
    if args.interval <= 0 or args.overlap < 0 or args.retention_days <= 0:
        print("error: --interval and --retention-days must be positive", file=sys.stderr)
        return EXIT_FAILED
    settings = load_settings()
    url = args.database_url or settings.database_url
    engine = get_engine(url)
    try:
        with engine.connect() as conn:
            require_tables(conn, load_order())
            conn.rollback()
    except OperationalError as exc:
        print(f"error: {mask_secrets(str(unreachable(url, exc)))}", file=sys.stderr)
        return EXIT_FAILED
    except PipelineError as exc:
        print(f"error: {mask_secrets(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    options = {
        "retention": timedelta(days=args.retention_days),
        "overlap": timedelta(seconds=args.overlap),
    }
    rejected = 0
    passes = 0
    try:
        while True:
            try:
                with ProgressBoard(enabled=not args.quiet) as board:
                    report = sync_events(engine, settings, board=board, **options)
            except PipelineError as exc:
                print(f"error: {mask_secrets(str(exc))}", file=sys.stderr)
                if not args.follow:
                    return EXIT_FAILED
                time.sleep(args.interval)
                continue
            passes += 1
            rejected += _rejected(report)
            if not args.follow:
                print(format_report(report))
                break
            if report.refreshed or report.applied.events or passes == 1:
                print(format_report(report), flush=True)
            elif not args.quiet:
                _status(report, passes)
            time.sleep(args.interval)
    except KeyboardInterrupt:
        if args.follow:
            print(f"\nstopped after {passes} pass(es)", file=sys.stderr)
            return EXIT_PARTIAL if rejected else EXIT_OK
        raise
    finally:
        engine.dispose()
    return EXIT_PARTIAL if rejected else EXIT_OK


def _rejected(report: SyncReport) -> int:
    return sum(
        n for outcome, n in report.applied.outcomes.items() if outcome.startswith("rejected")
    )


def _status(report: SyncReport, passes: int) -> None:
    """One line, rewritten in place on a terminal, a line per pass otherwise."""
    cursor = f"{report.cursor:%H:%M:%S}" if report.cursor else "-"
    line = (
        f"sync pass {passes}: no new events (cursor {cursor} UTC, {report.requests} request(s), "
        f"{report.seconds:.2f}s)"
    )
    if sys.stderr.isatty():
        print(f"\r{line}", end="", file=sys.stderr, flush=True)
    elif time.monotonic() >= _quiet_until[0]:  # a log file: a line a minute is enough
        print(line, file=sys.stderr, flush=True)
        _quiet_until[0] = time.monotonic() + 60


_quiet_until = [0.0]


def format_report(report: SyncReport) -> str:
    lines = []
    if report.refresh_reason:
        lines.append(f"full load: {report.refresh_reason}")
        lines.append(format_summary(report.refreshed))
    outcomes = report.applied.outcomes
    shown = ", ".join(f"{name} {n:,}" for name, n in sorted(outcomes.items())) or "none"
    lines.append(
        f"events: {report.listed:,} listed, {report.stored:,} new; applied: {shown}; "
        f"{report.applied.rereads:,} re-read(s) for same-second ties"
    )
    tables = list(report.applied.tables.values())
    if tables:
        lines.append(format_summary(tables))
    cursor = f"{report.cursor:%Y-%m-%d %H:%M:%S} UTC" if report.cursor else "none"
    lines.append(f"cursor {cursor}; {report.requests:,} request(s); {report.seconds:.2f}s")
    return "\n".join(lines)
