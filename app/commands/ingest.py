"""The command behind `make ingest-all` and every `scripts/ingest/ingest_<table>.py`."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from app.commands.cli import add_debug_option, log_to_stderr
from app.core.config import Settings, load_settings, mask_secrets
from app.core.errors import PipelineError
from app.core.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL
from app.core.progress import ProgressBoard
from app.db.session import get_engine
from app.live.sync import read_cursor, write_cursor
from app.load.ingest import MODES, IngestResult
from app.load.runner import fewer_malloc_arenas, run
from app.registry import BY_NAME, load_order, parse_names

log = logging.getLogger(__name__)


def build_parser(resources: list[str] | None) -> argparse.ArgumentParser:
    one = resources is not None and len(resources) == 1
    what = resources[0] if resources and one else "every resource, parents first"
    parser = argparse.ArgumentParser(
        description=f"Load Stripe objects into PostgreSQL: {what}.",
        epilog=(
            "Exit codes: 0 all loaded; 1 some objects were set aside (see the rejects files); "
            "2 an input could not be read, the database refused the run or an unexpected error; "
            "130 interrupted. "
            "Environment: ENV (DEV|PROD), DATABASE_URL, STRIPE_SECRET_KEY, STRIPE_API_BASE."
        ),
    )
    parser.add_argument(
        "--source",
        choices=["json", "api"],
        default="json",
        help="json: files written by `make fetch` (default); api: the Stripe API "
        "(or the local sandbox) through the stripe SDK",
    )
    parser.add_argument(
        "--json-dir",
        type=Path,
        default=None,
        help="folder of <resource>.json files (default: data/imported_stripe_data); while "
        "`make fetch` writes it, each file is loaded once the fetch has written it",
    )
    if one:
        parser.add_argument(
            "--file",
            type=Path,
            default=None,
            help="one JSON file to load instead of <json-dir>/<resource>.json",
        )
    else:
        parser.add_argument(
            "--resources",
            default="",
            help=f"comma- or space-separated subset of: {', '.join(BY_NAME)}",
        )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="upsert",
        help="upsert (default): changed objects update their row; "
        "skip: keep the first version of every row",
    )
    parser.add_argument(
        "--rejects-dir",
        type=Path,
        default=None,
        help="where objects that could not be loaded are written (default: data/rejects)",
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="the input is a complete listing: soft-delete the rows it lacks (the delete sweep; "
        "needs the listing's start time: SOURCE=api, or files written by `make fetch`). After "
        "all eight resources, `make sync` goes on from the listing's start",
    )
    parser.add_argument("--database-url", default=None, help="overrides DATABASE_URL")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress display: errors and the summary"
    )
    add_debug_option(parser)
    return parser


def main(argv: list[str] | None = None, resources: list[str] | None = None) -> int:
    args = build_parser(resources).parse_args(argv)
    fewer_malloc_arenas()
    log_to_stderr(quiet=args.quiet)
    try:
        settings = load_settings()
        names = resources or parse_names(args.resources) or None
        chosen = load_order(names)
    except (PipelineError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    url = args.database_url or settings.database_url
    json_dir = args.json_dir or settings.json_dir
    single_file = getattr(args, "file", None)
    results: list[IngestResult] = []
    try:
        with ProgressBoard(enabled=not args.quiet) as board:
            run(
                url,
                chosen,
                settings,
                source=args.source,
                json_dir=json_dir,
                single_file=single_file,
                mode=args.mode,
                rejects_dir=args.rejects_dir or settings.rejects_dir,
                results=results,
                sweep=args.sweep,
                board=board,
                on_whole_listing=lambda at, account: start_sync_cursor(
                    get_engine(url), settings, at, account
                ),
            )
    except PipelineError as exc:
        if results:
            print(format_summary(results))
        print(f"error: {mask_secrets(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except BaseException:
        # a crash or Ctrl-C: show what was done before it; run_command says what happened
        if results:
            print(format_summary(results), flush=True)
        raise
    print(format_summary(results))
    return exit_code(results, args.rejects_dir or settings.rejects_dir)


def start_sync_cursor(engine: Any, settings: Settings, at: datetime, account: str) -> None:
    """Every resource of `account` listed whole and swept: `make sync` can go on from the
    listing's start instead of listing everything again (a cursor already there is never moved
    back)."""
    if read_cursor(engine, settings, account) is None:
        write_cursor(engine, settings, at, None, refreshed=True, account=account)
        log.info("sync cursor set to %s: `make sync` goes on from there", f"{at:%Y-%m-%d %H:%M:%S}")


COLUMNS = ("read", "inserted", "updated", "unchanged", "deleted", "rejected", "placeholders")


def format_summary(results: list[IngestResult]) -> str:
    header = f"{'table':<24}" + "".join(f"{c:>13}" for c in COLUMNS) + f"{'seconds':>9}"
    lines = [header, "-" * len(header)]
    for result in results:
        if not any(stats.read for stats in result.stats.values()):
            result.stats.clear()  # nothing read (a failure before the first object): no rows
        for index, (table, stats) in enumerate(result.stats.items()):
            name = table if index == 0 else f"  └ {table}"
            seconds = f"{result.seconds:>9.2f}" if index == 0 else ""
            lines.append(
                f"{name:<24}" + "".join(f"{getattr(stats, c):>13,}" for c in COLUMNS) + seconds
            )
        if result.error:
            lines.append(f"{result.resource:<24}  FAILED: {result.error}")
    return "\n".join(lines)


def exit_code(results: list[IngestResult], rejects_dir: Path) -> int:
    failed = [r.resource for r in results if r.error]
    rejected = sum(r.rejected for r in results)
    if failed:
        print(f"\n{len(failed)} resource(s) failed: {', '.join(failed)}", file=sys.stderr)
    if rejected:
        print(
            f"\n{rejected} object(s) set aside, with their reasons, in {rejects_dir}/",
            file=sys.stderr,
        )
    if failed:
        return EXIT_FAILED
    return EXIT_PARTIAL if rejected else EXIT_OK
