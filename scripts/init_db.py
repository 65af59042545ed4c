#!/usr/bin/env python3
"""Create stripe_db_dev and stripe_db_test if missing and bring both schemas to Alembic's head.

With --reset the databases are dropped first (refused under ENV=PROD).
Exit codes: 0 done; 2 refused, the database unreachable or the migrations failed; 130 interrupted.
"""

import argparse
import logging
import sys

from sqlalchemy.exc import SQLAlchemyError

from app import schema
from app.commands.cli import add_debug_option, run_command
from app.core.config import load_settings, mask_secrets, refuse_in_prod
from app.core.errors import ConfigError, PipelineError, first_line
from app.core.exit_codes import EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--reset",
        action="store_true",
        help="drop and recreate the databases (DEV only): every row is lost",
    )
    parser.add_argument(
        "--only",
        choices=["dev", "test"],
        default=None,
        help="only this database (default: both; under ENV=PROD only DATABASE_URL)",
    )
    add_debug_option(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        settings = load_settings()
        if args.reset:
            refuse_in_prod(settings, "reset the databases")
        urls = {"dev": settings.database_url}
        if not settings.is_prod and settings.test_database_url:
            urls["test"] = settings.test_database_url
        if args.only:
            if args.only not in urls:
                raise ConfigError(f"no {args.only} database under ENV={settings.env}")
            urls = {args.only: urls[args.only]}
        for name, url in urls.items():
            if args.reset:
                schema.drop_database(url)
            created = schema.create_database(url)
            schema.upgrade(url)
            state = "created, schema at head" if created else "exists, schema at head"
            print(f"{name}: {mask_secrets(url)} — {state}")
    except PipelineError as exc:
        print(f"error: {mask_secrets(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except SQLAlchemyError as exc:
        reason = mask_secrets(first_line(getattr(exc, "orig", None) or exc))
        print(
            f"error: {name}: the migrations could not be applied: {reason}\n"
            "If this database holds tables Alembic did not create, `make reset-db` (DEV) "
            "recreates it empty.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    run_command(main)
