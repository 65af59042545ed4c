"""The command behind `make check-db` (scripts/check_db_integrity.py): is the mirror right?"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine, pool
from sqlalchemy.exc import OperationalError

from app.check.reconcile import KINDS, SAMPLE_SIZE, CheckReport, TableCheck, check
from app.client.stripe_api import mirrored_account
from app.commands.cli import add_debug_option, log_to_stderr
from app.core.config import Settings, load_settings, mask_secrets
from app.core.errors import PipelineError
from app.core.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL
from app.core.progress import ProgressBoard, ProgressCallback, ProgressTask
from app.db.session import sqlalchemy_url
from app.load.api_source import read_api_objects
from app.load.json_files import read_json_objects
from app.load.runner import json_account, only_account
from app.registry import BY_NAME, Resource, load_order, parse_names
from app.schema import require_tables, unreachable

log = logging.getLogger(__name__)


DESCRIPTION = """\
Check that PostgreSQL mirrors Stripe: table by table and field by field.

For every resource (parents first) and its embedded children (subscription items, invoice
lines), the source objects go through the ingest's transformers into a temporary table, and
PostgreSQL compares them with the stored rows in bulk. Reported per table:
  - row counts, source against database;
  - missing: ids in the source but not in the database;
  - extra: ids in the database but not in the source;
  - differs: rows whose stored object (raw) or typed columns differ, naming the columns and
    the object's fields (e.g. `amount`, `items.data[0].quantity`) for the first few;
  - not replaced: objects in the source the database only holds as a placeholder;
  - deletion differs: deleted in Stripe but live in the database, or the reverse;
  - dangling: foreign keys naming no row (possible once constraints were bypassed);
  - unreadable: source objects the transformers refuse (the ingest set them aside);
  - placeholders: referenced but never fetched (Stripe does not list deleted objects);
  - soft-deleted rows.
Placeholders and soft-deleted rows are listed, but do not fail the check.
Nothing is written: the check runs in one REPEATABLE READ transaction that is rolled back.
"""

EPILOG = """\
Exit codes: 0 the database agrees with the source; 1 differences were found (see the report);
2 the check could not run (database unreachable, tables missing, a source file missing or not
JSON, the API failing, an unexpected error: one line, the traceback with --debug); 130
interrupted.
Environment: ENV (DEV|PROD), DATABASE_URL, STRIPE_SECRET_KEY, STRIPE_API_BASE,
STRIPE_API_VERSION, JSON_DIR.
Examples:
  scripts/check_db_integrity.py --json-dir data/sample
  scripts/check_db_integrity.py --source api --resources customers,charges --json report.json
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="check_db_integrity.py",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--source",
        choices=["json", "api"],
        default="json",
        help="json: compare with the files of `make fetch` (default); api: with "
        "the Stripe API (or the local sandbox) through the stripe SDK",
    )
    parser.add_argument(
        "--json-dir",
        type=Path,
        default=None,
        help="folder of <resource>.json files (default: data/imported_stripe_data)",
    )
    parser.add_argument(
        "--resources", default="", help=f"comma- or space-separated subset of: {', '.join(BY_NAME)}"
    )
    parser.add_argument(
        "--json",
        dest="report_path",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the full report as JSON to PATH",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=SAMPLE_SIZE,
        metavar="N",
        help=f"ids named per kind of difference (default {SAMPLE_SIZE})",
    )
    parser.add_argument("--database-url", default=None, help="overrides DATABASE_URL")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress display: errors and the report"
    )
    add_debug_option(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log_to_stderr(quiet=args.quiet)
    try:
        settings = load_settings()
        chosen = load_order(parse_names(args.resources) or None)
    except (PipelineError, ValueError) as exc:  # ValueError: unknown resource names
        sys.stderr.write(f"error: {mask_secrets(str(exc))}\n")
        return EXIT_FAILED
    url = args.database_url or settings.database_url
    json_dir = args.json_dir or settings.json_dir
    try:
        with ProgressBoard(enabled=not args.quiet) as board:
            report = run(
                url,
                chosen,
                settings,
                source=args.source,
                json_dir=json_dir,
                sample_size=max(args.samples, 0),
                board=board,
            )
    except PipelineError as exc:
        sys.stderr.write(f"error: {mask_secrets(str(exc))}\n")
        return EXIT_FAILED
    # the report is the command's output (stdout), not a log line
    sys.stdout.write(format_report(report) + "\n")
    if args.report_path is not None:
        write_report(report, args.report_path, mask_secrets(url))
        sys.stdout.write(f"\nreport written to {args.report_path}\n")
    return exit_code(report)


def run(
    url: str,
    chosen: list[Resource],
    settings: Settings,
    *,
    source: str,
    json_dir: Path,
    sample_size: int = SAMPLE_SIZE,
    board: ProgressBoard | None = None,
) -> CheckReport:
    # a connection of its own (no pool): temp_buffers can only be set before a session's
    # first temporary table, and the default 8MB would spill the expected rows to disk
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    progress = _tasks(board, source, json_dir)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SET temp_buffers = '512MB'")
            require_tables(conn, chosen)
            conn.rollback()
            # one snapshot for every query, so an ingest running meanwhile cannot make
            # one table disagree with another; rolled back, so temp objects vanish too
            conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin() as transaction:
                conn.exec_driver_sql("SET LOCAL work_mem = '128MB'")
                if source == "api":
                    location = settings.stripe_api_base
                    report = check(
                        conn,
                        chosen,
                        lambda r: read_api_objects(r, settings),
                        source="api",
                        location=location,
                        sample_size=sample_size,
                        progress=progress,
                        account=mirrored_account(settings),
                    )
                    progress.finish()
                else:
                    report = check(
                        conn,
                        chosen,
                        lambda r: read_json_objects(json_dir / r.file_name),
                        source="json",
                        location=str(json_dir),
                        sample_size=sample_size,
                        progress=progress,
                        account=json_account(
                            json_dir, [r.name for r in chosen], settings, only_account(conn)
                        ),
                    )
                    progress.finish()
                transaction.rollback()
    except OperationalError as exc:
        raise unreachable(url, exc) from exc
    finally:
        engine.dispose()
    return report


class _tasks:
    """One task of the board per resource checked, each finished when the next one starts.

    The total is the object count `make fetch` recorded for the file; the API gives none."""

    def __init__(self, board: ProgressBoard | None, source: str, json_dir: Path) -> None:
        self.board = board or ProgressBoard(enabled=False)
        self.source = source
        self.json_dir = json_dir
        self.current: ProgressTask | None = None

    def __call__(self, name: str) -> ProgressCallback:
        self.finish()
        total = None
        if self.source == "json":
            total = _recorded_count(self.json_dir / BY_NAME[name].file_name)
        self.current = self.board.task(f"check {name}", total=total)
        return self.current

    def finish(self) -> None:
        if self.current is not None:
            self.board.finish(self.current)
            self.current = None


def _recorded_count(path: Path) -> int | None:
    try:
        meta = orjson.loads(path.with_suffix(".meta.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    objects = meta.get("objects") if isinstance(meta, dict) else None
    return objects if isinstance(objects, int) and not isinstance(objects, bool) else None


# terminal columns; the details below the table name every kind, with its samples
_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("missing", ("missing",)),
    ("extra", ("extra",)),
    ("differs", ("differs", "not_replaced", "deletion_differs")),
    ("dangling", ("dangling",)),
    ("unreadable", ("unreadable",)),
    ("placeholders", ("placeholders",)),
    ("deleted", ("soft_deleted", "detached")),
)


def format_report(report: CheckReport) -> str:
    header = (
        f"{'table':<24}{'source':>10}{'database':>10}"
        + "".join(f"{title:>13}" for title, _ in _COLUMNS)
        + "  result"
    )
    lines = [f"Database against {report.source} ({report.location})", "", header, "-" * len(header)]
    for table in report.tables:
        name = f"  └ {table.table}" if table.parent else table.table
        if table.error:
            lines.append(f"{name:<24}  NOT CHECKED: {table.error}")
            continue
        counts = "".join(f"{sum(table.count(k) for k in kinds):>13,}" for _, kinds in _COLUMNS)
        result = "ok" if table.ok else "DIFFERS"
        lines.append(f"{name:<24}{table.source_count:>10,}{table.db_count:>10,}{counts}  {result}")
    details = [line for table in report.tables for line in _details(table)]
    if details:
        lines += ["", *details]
    lines += ["", _verdict(report)]
    return "\n".join(lines)


def _details(table: TableCheck) -> list[str]:
    lines = []
    for kind in KINDS:
        found = table.findings.get(kind.name)
        if found is None or not found.count:
            continue
        mark = "✗" if kind.failure else "·"
        lines.append(f"{mark} {table.table}: {found.count:,} {kind.label}")
        for sample in found.samples:
            lines.append(f"      {_describe(sample)}")
        if found.count > len(found.samples):
            lines.append(f"      … and {found.count - len(found.samples):,} more")
    return lines


def _describe(sample: dict[str, Any]) -> str:
    text = str(sample.get("id"))
    if "columns" in sample:
        parts = []
        if sample["columns"]:
            parts.append("columns: " + ", ".join(sample["columns"]))
        if sample["fields"]:
            parts.append("object fields: " + ", ".join(sample["fields"]))
        text += "  " + "; ".join(parts)
    if "column" in sample:
        text += f"  {sample['column']} = {sample['points_to']} (no such row in {sample['target']})"
    if sample.get("referenced_by"):
        text += f"  referenced by {sample['referenced_by']}"
    if "deleted_in" in sample:
        text += f"  deleted in the {sample['deleted_in']} only"
    if "reason" in sample:
        text += f"  {sample['reason']}"
    return text


def _verdict(report: CheckReport) -> str:
    if report.errors:
        names = ", ".join(t.table for t in report.errors)
        return f"FAILED: could not check {names} (see above)."
    failures = sum(t.failures for t in report.tables)
    placeholders = sum(t.count("placeholders") for t in report.tables)
    waiting = f"; {placeholders:,} placeholder(s) still waiting" if placeholders else ""
    if failures:
        tables = sum(1 for t in report.tables if not t.ok)
        return (
            f"DIFFERENCES: {failures:,} in {tables} table(s){waiting}; "
            f"checked in {report.seconds:.2f}s."
        )
    return (
        f"OK: the database agrees with the {report.source} source "
        f"({len(report.tables)} tables){waiting}; checked in {report.seconds:.2f}s."
    )


def write_report(report: CheckReport, path: Path, database: str) -> None:
    body = {
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": database,
        **report.to_dict(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n")


def exit_code(report: CheckReport) -> int:
    if report.errors:
        return EXIT_FAILED
    return EXIT_OK if report.ok else EXIT_PARTIAL
